#include "losses/dice_ce.h"

#include <ATen/ATen.h>

#include "io/error.h"

namespace neuroseg::losses {

at::Tensor soft_dice_loss(const at::Tensor& logits, const at::Tensor& target, const DiceCEOptions& o) {
  if (logits.dim() != 5 || target.dim() != 4 || logits.size(0) != target.size(0) ||
      logits.sizes().slice(2) != target.sizes().slice(1))
    throw io::Error("dice loss", "expects logits (N, K, D, H, W) and targets (N, D, H, W) of the same size");
  const int64_t k = logits.size(1);
  const at::Tensor p = at::softmax(logits.to(at::kFloat), 1);
  const at::Tensor g = at::one_hot(target.to(at::kLong), k).permute({0, 4, 1, 2, 3}).to(at::kFloat);
  std::vector<int64_t> dims = o.batch_dice ? std::vector<int64_t>{0, 2, 3, 4} : std::vector<int64_t>{2, 3, 4};
  const at::Tensor inter = (p * g).sum(dims), denom = p.sum(dims) + g.sum(dims);
  at::Tensor dice = (2 * inter + o.smooth) / (denom + o.smooth).clamp_min(1e-8);
  if (!o.include_background && k > 1) dice = dice.narrow(-1, 1, k - 1);
  return 1.0 - dice.mean();
}

at::Tensor dice_ce_loss(const at::Tensor& logits, const at::Tensor& target, const DiceCEOptions& o) {
  const at::Tensor ce = at::cross_entropy_loss(logits.to(at::kFloat), target.to(at::kLong));
  return o.ce_weight * ce + o.dice_weight * soft_dice_loss(logits, target, o);
}

at::Tensor deep_supervision_loss(const std::vector<at::Tensor>& outputs, const at::Tensor& target, const DiceCEOptions& o) {
  double total_weight = 0;
  for (std::size_t i = 0; i < outputs.size(); ++i) total_weight += 1.0 / double(1 << i);
  at::Tensor loss;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    at::Tensor t = target;
    if (outputs[i].sizes().slice(2) != target.sizes().slice(1)) {
      std::vector<int64_t> size(outputs[i].sizes().begin() + 2, outputs[i].sizes().end());
      t = at::upsample_nearest3d(target.unsqueeze(1).to(at::kFloat), size, {}, {}, {}).squeeze(1).to(at::kLong);
    }
    const at::Tensor term = dice_ce_loss(outputs[i], t, o) * ((1.0 / double(1 << i)) / total_weight);
    loss = loss.defined() ? loss + term : term;
  }
  return loss;
}

}  // namespace neuroseg::losses
