#pragma once
// Segmentation losses on logits (N, K, D, H, W) and integer targets (N, D, H, W).
// Soft Dice as in nnU-Net's MemoryEfficientSoftDiceLoss (Isensee et al. 2021): softmax
// probabilities p, one-hot targets g, per class  dice = (2 sum(p g) + s) / (sum(p) + sum(g) + s),
// summed over the batch too when batch_dice; the loss is 1 - mean dice.
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::losses {

struct DiceCEOptions {
  bool include_background = false;
  bool batch_dice = true;
  double smooth = 1e-5;
  double dice_weight = 1.0, ce_weight = 1.0;
};

at::Tensor soft_dice_loss(const at::Tensor& logits, const at::Tensor& target, const DiceCEOptions& o = {});
/// ce_weight * cross-entropy + dice_weight * soft Dice (the nnU-Net default loss).
at::Tensor dice_ce_loss(const at::Tensor& logits, const at::Tensor& target, const DiceCEOptions& o = {});
/// Deep supervision: outputs full resolution first; targets are nearest-downsampled to each
/// output and the terms weighted 1, 1/2, 1/4, ... normalised to sum to 1 (nnU-Net).
at::Tensor deep_supervision_loss(const std::vector<at::Tensor>& outputs, const at::Tensor& target,
                                 const DiceCEOptions& o = {});

}  // namespace neuroseg::losses
