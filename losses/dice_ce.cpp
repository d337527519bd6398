#include "losses/dice_ce.h"

#include <ATen/ATen.h>

#include "losses/cross_entropy.h"
#include "losses/deep_supervision.h"
#include "losses/loss_support.h"

namespace neuroseg::losses {

at::Tensor soft_dice_loss(const at::Tensor& logits, const at::Tensor& target, const DiceCEOptions& o) {
  detail::NoAutocast no_autocast;
  const detail::Prepared in = detail::prepare("dice loss", logits, target, o.ignore_index);
  return detail::soft_dice_of(detail::probabilities(in), detail::one_hot(in), o.batch_dice, o.include_background, o.smooth);
}

at::Tensor dice_ce_loss(const at::Tensor& logits, const at::Tensor& target, const DiceCEOptions& o) {
  CrossEntropyOptions ce;
  ce.class_weights = o.class_weights;
  ce.ignore_index = o.ignore_index;
  return o.ce_weight * cross_entropy_loss(logits, target, ce) + o.dice_weight * soft_dice_loss(logits, target, o);
}

at::Tensor deep_supervision_loss(const std::vector<at::Tensor>& outputs, const at::Tensor& target, const DiceCEOptions& o) {
  return deep_supervision_loss(
      outputs, target, [&o](const at::Tensor& x, const at::Tensor& t) { return dice_ce_loss(x, t, o); });
}

}  // namespace neuroseg::losses
