#include "losses/cross_entropy.h"

#include <ATen/ATen.h>

#include "io/error.h"
#include "losses/loss_support.h"

namespace neuroseg::losses {
namespace {

// log p_t (N, *spatial) from log_softmax: stable for any logits (no exp overflow).
at::Tensor target_log_probability(const detail::Prepared& in) {
  return at::log_softmax(in.logits, 1).gather(1, in.target.unsqueeze(1)).squeeze(1);
}

// Per-voxel weight (N, *spatial): the class weight of the target, 0 where ignored.
at::Tensor voxel_weights(const char* subject, const std::vector<double>& weights, const detail::Prepared& in) {
  at::Tensor w = weights.empty() ? at::ones(in.target.sizes(), in.logits.options())
                                 : detail::class_weight_tensor(subject, weights, in).index_select(0, in.target.flatten())
                                       .view(in.target.sizes());
  return in.valid.defined() ? w * in.valid.squeeze(1) : w;
}

// sum / normaliser, 0 (with zero gradient) when nothing counts.
at::Tensor safe_ratio(const at::Tensor& sum, const at::Tensor& normaliser) {
  return sum / at::where(normaliser > 0, normaliser, at::ones_like(normaliser));
}

}  // namespace

at::Tensor cross_entropy_loss(const at::Tensor& logits, const at::Tensor& target, const CrossEntropyOptions& o) {
  detail::NoAutocast no_autocast;
  const detail::Prepared in = detail::prepare("cross-entropy loss", logits, target, o.ignore_index);
  if (o.class_weights.empty() && !in.valid.defined()) return -target_log_probability(in).mean();
  const at::Tensor w = voxel_weights("cross-entropy loss", o.class_weights, in);
  return safe_ratio(-(w * target_log_probability(in)).sum(), w.sum());
}

at::Tensor focal_loss(const at::Tensor& logits, const at::Tensor& target, const FocalOptions& o) {
  if (!(o.gamma >= 0)) throw io::Error("focal loss", "gamma must be >= 0, got " + std::to_string(o.gamma));
  detail::NoAutocast no_autocast;
  const detail::Prepared in = detail::prepare("focal loss", logits, target, o.ignore_index);
  const at::Tensor log_pt = target_log_probability(in);
  at::Tensor term = -log_pt;
  if (o.gamma != 0) {
    // 1 - p_t = -expm1(log p_t): exact when p_t is close to 1. The floor keeps the gradient
    // of x^gamma finite at x = 0 for gamma < 1 (it only changes values below 1e-30).
    term = term * (-at::expm1(log_pt)).clamp_min(1e-30).pow(o.gamma);
  }
  if (o.alpha.empty() && !in.valid.defined()) return term.mean();
  const at::Tensor alpha_t = voxel_weights("focal loss", o.alpha, in);
  const at::Tensor counted = in.valid.defined() ? in.valid.sum() : at::scalar_tensor(double(in.target.numel()), in.logits.options());
  return safe_ratio((alpha_t * term).sum(), counted);
}

}  // namespace neuroseg::losses
