#pragma once
// Voxel-wise classification losses on logits (N, K, D, H, W) and integer targets
// (N, D, H, W), or (N, K, H, W) and (N, H, W), computed in float32 (float64 for float64
// logits), also under autocast.
//
// Weighted cross-entropy, PyTorch's convention (torch.nn.CrossEntropyLoss with `weight`):
//   CE = sum_v w_{t_v} (-log p_{t_v}) / sum_v w_{t_v}     (v over voxels not ignored)
// Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection", multi-class softmax):
//   FL = mean_v  alpha_{t_v} (1 - p_{t_v})^gamma (-log p_{t_v})
// averaged over the voxels not ignored, alpha_t = 1 without per-class alpha; gamma = 0 and
// no alpha gives the unweighted cross-entropy. Both are 0 when every voxel is ignored.
#include <cstdint>
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::losses {

struct CrossEntropyOptions {
  std::vector<double> class_weights;    ///< K values >= 0; empty: all 1
  std::optional<int64_t> ignore_index;  ///< target value left out of the sum and of the normaliser
};

struct FocalOptions {
  double gamma = 2.0;                   ///< focusing parameter (>= 0)
  std::vector<double> alpha;            ///< per-class balancing alpha_t (K values); empty: all 1
  std::optional<int64_t> ignore_index;
};

at::Tensor cross_entropy_loss(const at::Tensor& logits, const at::Tensor& target, const CrossEntropyOptions& o = {});
at::Tensor focal_loss(const at::Tensor& logits, const at::Tensor& target, const FocalOptions& o = {});

}  // namespace neuroseg::losses
