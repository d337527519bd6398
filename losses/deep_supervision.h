#pragma once
// Deep supervision for any loss (nnU-Net, Isensee et al. 2021): the loss of every output
// head against the target nearest-downsampled to that head's grid, weighted 1, 1/2, 1/4, ...
// normalised to sum to 1.
#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::losses {

/// A loss on logits (N, K, *spatial) and integer targets (N, *spatial); returns a scalar.
using LossFn = std::function<at::Tensor(const at::Tensor& logits, const at::Tensor& target)>;

/// `outputs`: full resolution first, each (N, K, *spatial_i) with 2 or 3 spatial axes;
/// `target`: (N, *spatial_0).
at::Tensor deep_supervision_loss(const std::vector<at::Tensor>& outputs, const at::Tensor& target, const LossFn& loss);

}  // namespace neuroseg::losses
