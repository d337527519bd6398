#include "losses/loss_support.h"

#include <ATen/ATen.h>

#include "io/error.h"

namespace neuroseg::losses::detail {

Prepared prepare(const char* subject, const at::Tensor& logits, const at::Tensor& target,
                 std::optional<int64_t> ignore_index) {
  const bool shapes_ok = (logits.dim() == 5 || logits.dim() == 4) && target.dim() == logits.dim() - 1 &&
                         logits.size(0) == target.size(0) && logits.sizes().slice(2) == target.sizes().slice(1);
  if (!shapes_ok)
    throw io::Error(subject, "expects logits (N, K, D, H, W) and targets (N, D, H, W) of the same size, or (N, K, H, W) and "
                             "(N, H, W); got logits " + c10::str(logits.sizes()) + " and targets " + c10::str(target.sizes()));
  if (!at::isFloatingType(logits.scalar_type()))
    throw io::Error(subject, std::string("expects floating-point logits, got ") + c10::toString(logits.scalar_type()));
  if (logits.size(1) < 1) throw io::Error(subject, "expects at least one class");
  Prepared p;
  p.classes = logits.size(1);
  p.logits = logits.scalar_type() == at::kDouble ? logits : logits.to(at::kFloat);
  p.target = target.to(at::kLong);
  if (ignore_index) {
    const at::Tensor valid = p.target != *ignore_index;
    p.target = p.target.masked_fill(~valid, 0);
    p.valid = valid.unsqueeze(1).to(p.logits.scalar_type());
  }
  return p;
}

at::Tensor one_hot(const Prepared& in) {
  // scatter instead of at::one_hot: no int64 (N, *spatial, K) intermediate and no permute.
  at::Tensor g = at::zeros_like(in.logits, at::MemoryFormat::Contiguous).scatter_(1, in.target.unsqueeze(1), 1.0);
  if (in.valid.defined()) g.mul_(in.valid);
  return g;
}

at::Tensor probabilities(const Prepared& in) {
  at::Tensor p = at::softmax(in.logits, 1);
  return in.valid.defined() ? p * in.valid : p;
}

std::vector<int64_t> reduction_dims(int64_t dim, bool batch) {
  std::vector<int64_t> dims;
  if (batch) dims.push_back(0);
  for (int64_t d = 2; d < dim; ++d) dims.push_back(d);
  return dims;
}

at::Tensor class_mean(const at::Tensor& per_class, bool include_background) {
  const int64_t k = per_class.size(-1);
  return (include_background || k == 1 ? per_class : per_class.narrow(-1, 1, k - 1)).mean();
}

at::Tensor soft_dice_of(const at::Tensor& p, const at::Tensor& g, bool batch_dice, bool include_background, double smooth) {
  const std::vector<int64_t> dims = reduction_dims(p.dim(), batch_dice);
  const at::Tensor inter = (p * g).sum(dims), denom = p.sum(dims) + g.sum(dims);
  // (K) or (N, K); the clamp keeps smooth = 0 finite for a class absent from both.
  const at::Tensor dice = (2 * inter + smooth) / (denom + smooth).clamp_min(1e-8);
  return 1.0 - class_mean(dice, include_background);
}

at::Tensor class_weight_tensor(const char* subject, const std::vector<double>& weights, const Prepared& in) {
  if (static_cast<int64_t>(weights.size()) != in.classes)
    throw io::Error(subject, "class_weights has " + std::to_string(weights.size()) + " values but the logits have " +
                                 std::to_string(in.classes) + " classes");
  for (double w : weights)
    if (!(w >= 0)) throw io::Error(subject, "class_weights must be >= 0, got " + std::to_string(w));
  return at::tensor(weights, at::TensorOptions().dtype(at::kDouble)).to(in.logits.options());
}

}  // namespace neuroseg::losses::detail
