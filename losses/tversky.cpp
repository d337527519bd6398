#include "losses/tversky.h"

#include <ATen/ATen.h>

#include "io/error.h"
#include "losses/loss_support.h"

namespace neuroseg::losses {

at::Tensor tversky_loss(const at::Tensor& logits, const at::Tensor& target, const TverskyOptions& o) {
  if (!(o.alpha >= 0) || !(o.beta >= 0))
    throw io::Error("tversky loss", "alpha and beta must be >= 0, got " + std::to_string(o.alpha) + " and " + std::to_string(o.beta));
  detail::NoAutocast no_autocast;
  const detail::Prepared in = detail::prepare("tversky loss", logits, target, o.ignore_index);
  const at::Tensor p = detail::probabilities(in), g = detail::one_hot(in);
  const std::vector<int64_t> dims = detail::reduction_dims(p.dim(), o.batch_dice);
  // FP and FN from the sums (sum p - TP, sum g - TP): no (1 - g), (1 - p) volumes, and
  // ignored voxels (p = g = 0 there) drop out of all three.
  const at::Tensor tp = (p * g).sum(dims), fp = p.sum(dims) - tp, fn = g.sum(dims) - tp;
  const at::Tensor ti = (tp + o.smooth) / (tp + o.alpha * fp + o.beta * fn + o.smooth).clamp_min(1e-8);
  return 1.0 - detail::class_mean(ti, o.include_background);
}

}  // namespace neuroseg::losses
