#pragma once
// Tversky loss (Salehi et al. 2017, "Tversky loss function for image segmentation using 3D
// fully convolutional deep networks") on logits (N, K, D, H, W) and integer targets
// (N, D, H, W), or (N, K, H, W) and (N, H, W). With softmax probabilities p and one-hot
// targets g, per class
//   TP = sum p g,  FP = sum p (1 - g),  FN = sum (1 - p) g,
//   TI = (TP + s) / (TP + alpha FP + beta FN + s),
// summed over the batch too when batch_dice (else per sample, then averaged); the loss is
// 1 - mean TI over the classes (class 0 left out unless include_background). beta > alpha
// weighs false negatives more (recall for small lesions); alpha = beta = 0.5 is soft Dice.
// Computed in float32 (float64 for float64 logits), also under autocast.
#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

namespace neuroseg::losses {

struct TverskyOptions {
  double alpha = 0.3, beta = 0.7;  ///< weights of false positives and false negatives (Salehi et al.)
  bool include_background = false;
  bool batch_dice = true;
  double smooth = 1e-5;
  std::optional<int64_t> ignore_index;
};

at::Tensor tversky_loss(const at::Tensor& logits, const at::Tensor& target, const TverskyOptions& o = {});

}  // namespace neuroseg::losses
