#pragma once
// Soft clDice (Shit, Paetzold et al., CVPR 2021, "clDice - a Novel Topology-Preserving Loss
// Function for Tubular Structure Segmentation") on logits (N, K, D, H, W) and integer
// targets (N, D, H, W), or (N, K, H, W) and (N, H, W).
//
// Soft skeleton (the authors' soft_skel): soft erosion = min-pooling over the 6-neighbourhood
// (min of 3x1x1, 1x3x1, 1x1x3 min-pools; 3x1, 1x3 in 2D), soft dilation = 3x3x3 max-pooling,
// open = dilate(erode(x)); skel = relu(x - open(x)), then `iterations` times
//   x = erode(x);  delta = relu(x - open(x));  skel = skel + relu(delta - skel delta).
// With probabilities p, one-hot targets g and their skeletons S_p, S_g, per class
//   Tprec = (sum S_p g + s) / (sum S_p + s),  Tsens = (sum S_g p + s) / (sum S_g + s),
//   clDice loss = 1 - 2 Tprec Tsens / (Tprec + Tsens),
// over foreground classes (class 0 too when include_background), summed over the batch when
// batch_dice (else per sample), then averaged. The authors train with
//   (1 - alpha) soft Dice + alpha clDice loss,
// alpha = 0.5, 3 iterations and s = 1 in their code; the iterations should reach the radius
// (in voxels) of the thickest tubular structure, since thicker parts never thin to a line.
// Computed in float32 (float64 for float64 logits), also under autocast.
#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

namespace neuroseg::losses {

struct ClDiceOptions {
  int64_t iterations = 3;  ///< soft-skeleton iterations (authors' default)
  double alpha = 0.5;      ///< weight of clDice in (1 - alpha) Dice + alpha clDice
  double smooth = 1.0;     ///< s of Tprec / Tsens (authors' value)
  double dice_smooth = 1e-5;
  bool include_background = false;
  bool batch_dice = true;
  std::optional<int64_t> ignore_index;
};

/// Soft erosion, dilation and skeleton of x (N, C, D, H, W) or (N, C, H, W), values in [0, 1],
/// each channel on its own. Borders: pooling ignores the outside (no padding value enters).
at::Tensor soft_erode(const at::Tensor& x);
at::Tensor soft_dilate(const at::Tensor& x);
at::Tensor soft_skeleton(const at::Tensor& x, int64_t iterations);

/// The clDice loss term alone (no Dice).
at::Tensor soft_cldice_loss(const at::Tensor& logits, const at::Tensor& target, const ClDiceOptions& o = {});
/// (1 - alpha) soft Dice + alpha soft clDice, as the authors train.
at::Tensor dice_cldice_loss(const at::Tensor& logits, const at::Tensor& target, const ClDiceOptions& o = {});

}  // namespace neuroseg::losses
