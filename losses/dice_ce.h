#pragma once
// Soft Dice and Dice + cross-entropy on logits (N, K, D, H, W) and integer targets
// (N, D, H, W), or (N, K, H, W) and (N, H, W).
// Soft Dice as in nnU-Net's MemoryEfficientSoftDiceLoss (Isensee et al. 2021): softmax
// probabilities p, one-hot targets g, per class  dice = (2 sum(p g) + s) / (sum(p) + sum(g) + s),
// summed over the batch too when batch_dice (else per sample, then averaged); the loss is
// 1 - mean dice over the classes (class 0 left out unless include_background).
// Everything is computed in float32 (float64 for float64 logits), also under autocast.
#include <cstdint>
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::losses {

struct DiceCEOptions {
  bool include_background = false;
  bool batch_dice = true;
  double smooth = 1e-5;
  double dice_weight = 1.0, ce_weight = 1.0;
  std::vector<double> class_weights;   ///< cross-entropy weight per class (K values); empty: all 1
  std::optional<int64_t> ignore_index;  ///< target value that counts in no term
};

at::Tensor soft_dice_loss(const at::Tensor& logits, const at::Tensor& target, const DiceCEOptions& o = {});
/// ce_weight * (weighted) cross-entropy + dice_weight * soft Dice (the nnU-Net default loss).
at::Tensor dice_ce_loss(const at::Tensor& logits, const at::Tensor& target, const DiceCEOptions& o = {});
/// Deep supervision with Dice + CE on every output (see losses/deep_supervision.h for any loss).
at::Tensor deep_supervision_loss(const std::vector<at::Tensor>& outputs, const at::Tensor& target,
                                 const DiceCEOptions& o = {});

}  // namespace neuroseg::losses
