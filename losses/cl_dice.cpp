#include "losses/cl_dice.h"

#include <ATen/ATen.h>

#include "io/error.h"
#include "losses/loss_support.h"

namespace neuroseg::losses {
namespace {

void check_volume(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 || x.dim() == 5, "soft morphology expects (N, C, H, W) or (N, C, D, H, W), got ", x.sizes());
}

// Min-pooling as -maxpool(-x): max-pooling pads with -inf, so the outside never wins.
at::Tensor min_pool(const at::Tensor& x, at::IntArrayRef kernel, at::IntArrayRef padding) {
  const std::vector<int64_t> stride(kernel.size(), 1);
  return x.dim() == 5 ? -at::max_pool3d(-x, kernel, stride, padding) : -at::max_pool2d(-x, kernel, stride, padding);
}

at::Tensor soft_open(const at::Tensor& x) { return soft_dilate(soft_erode(x)); }

void check_options(const ClDiceOptions& o) {
  if (o.iterations < 0) throw io::Error("cldice loss", "iterations must be >= 0, got " + std::to_string(o.iterations));
  if (!(o.alpha >= 0 && o.alpha <= 1)) throw io::Error("cldice loss", "alpha must be in [0, 1], got " + std::to_string(o.alpha));
}

// clDice loss of probabilities p and one-hot g (N, K, *spatial), both already masked.
at::Tensor cldice_of(const at::Tensor& p_all, const at::Tensor& g_all, const ClDiceOptions& o) {
  const int64_t k = p_all.size(1);
  // Skeletons of the classes that are scored only (the background is the largest).
  const bool drop_background = !o.include_background && k > 1;
  const at::Tensor p = drop_background ? p_all.narrow(1, 1, k - 1) : p_all;
  const at::Tensor g = drop_background ? g_all.narrow(1, 1, k - 1) : g_all;
  const at::Tensor skel_p = soft_skeleton(p, o.iterations), skel_g = soft_skeleton(g, o.iterations);
  const std::vector<int64_t> dims = detail::reduction_dims(p.dim(), o.batch_dice);
  const at::Tensor tprec = ((skel_p * g).sum(dims) + o.smooth) / (skel_p.sum(dims) + o.smooth).clamp_min(1e-8);
  const at::Tensor tsens = ((skel_g * p).sum(dims) + o.smooth) / (skel_g.sum(dims) + o.smooth).clamp_min(1e-8);
  const at::Tensor cl = 1.0 - 2.0 * tprec * tsens / (tprec + tsens).clamp_min(1e-8);
  return cl.mean();
}

}  // namespace

at::Tensor soft_erode(const at::Tensor& x) {
  check_volume(x);
  if (x.dim() == 5)
    return at::min(at::min(min_pool(x, {3, 1, 1}, {1, 0, 0}), min_pool(x, {1, 3, 1}, {0, 1, 0})),
                   min_pool(x, {1, 1, 3}, {0, 0, 1}));
  return at::min(min_pool(x, {3, 1}, {1, 0}), min_pool(x, {1, 3}, {0, 1}));
}

at::Tensor soft_dilate(const at::Tensor& x) {
  check_volume(x);
  return x.dim() == 5 ? at::max_pool3d(x, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}) : at::max_pool2d(x, {3, 3}, {1, 1}, {1, 1});
}

at::Tensor soft_skeleton(const at::Tensor& x, int64_t iterations) {
  TORCH_CHECK(iterations >= 0, "soft_skeleton: iterations must be >= 0, got ", iterations);
  at::Tensor img = x;
  at::Tensor skel = at::relu(img - soft_open(img));
  for (int64_t i = 0; i < iterations; ++i) {
    img = soft_erode(img);
    const at::Tensor delta = at::relu(img - soft_open(img));
    // A soft union: adds what delta brings beyond the current skeleton.
    skel = skel + at::relu(delta - skel * delta);
  }
  return skel;
}

at::Tensor soft_cldice_loss(const at::Tensor& logits, const at::Tensor& target, const ClDiceOptions& o) {
  check_options(o);
  detail::NoAutocast no_autocast;
  const detail::Prepared in = detail::prepare("cldice loss", logits, target, o.ignore_index);
  return cldice_of(detail::probabilities(in), detail::one_hot(in), o);
}

at::Tensor dice_cldice_loss(const at::Tensor& logits, const at::Tensor& target, const ClDiceOptions& o) {
  check_options(o);
  detail::NoAutocast no_autocast;
  const detail::Prepared in = detail::prepare("cldice loss", logits, target, o.ignore_index);
  const at::Tensor p = detail::probabilities(in), g = detail::one_hot(in);
  const at::Tensor dice = detail::soft_dice_of(p, g, o.batch_dice, o.include_background, o.dice_smooth);
  return (1.0 - o.alpha) * dice + o.alpha * cldice_of(p, g, o);
}

}  // namespace neuroseg::losses
