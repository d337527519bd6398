#include "losses/deep_supervision.h"

#include <ATen/ATen.h>

#include "io/error.h"

namespace neuroseg::losses {

at::Tensor deep_supervision_loss(const std::vector<at::Tensor>& outputs, const at::Tensor& target, const LossFn& loss) {
  if (outputs.empty()) throw io::Error("deep supervision loss", "needs at least one output");
  double total_weight = 0;
  for (std::size_t i = 0; i < outputs.size(); ++i) total_weight += 1.0 / double(1 << i);
  at::Tensor sum;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    at::Tensor t = target;
    if (outputs[i].dim() == target.dim() + 1 && outputs[i].sizes().slice(2) != target.sizes().slice(1)) {
      const std::vector<int64_t> size(outputs[i].sizes().begin() + 2, outputs[i].sizes().end());
      // Labels travel as float32 (exact up to 2^24) through nearest resampling.
      const at::Tensor f = target.unsqueeze(1).to(at::kFloat);
      t = (size.size() == 3 ? at::upsample_nearest3d(f, size, {}, {}, {}) : at::upsample_nearest2d(f, size, {}, {})).squeeze(1).to(at::kLong);
    }
    const at::Tensor term = loss(outputs[i], t) * ((1.0 / double(1 << i)) / total_weight);
    sum = sum.defined() ? sum + term : term;
  }
  return sum;
}

}  // namespace neuroseg::losses
