#pragma once
// clDice, the centreline Dice of Shit et al. 2021 ("clDice - a Novel Topology-Preserving
// Loss Function for Tubular Structure Segmentation", CVPR), on the skeletons of
// metrics/skeleton.h (skimage's skeletonize_3d, as FISBe's localisation uses them):
//   Tprec = |S(pred) ∩ ref| / |S(pred)|    (FISBe's clPrecision)
//   Tsens = |S(ref) ∩ pred| / |S(ref)|     (FISBe's clRecall)
//   clDice = 2 Tprec Tsens / (Tprec + Tsens)
// in float64. Edge cases: both masks empty -> all three are 1 (nothing to disagree on); one
// mask empty -> its ratio (0/0) and the score are 0; Tprec + Tsens = 0 -> score 0 (FISBe's
// nan_to_num rule, shared/specs/fisbe.md §2.3). A skeleton is empty only for an empty mask
// (thinning keeps one voxel of every component).
#include <ATen/core/Tensor.h>

namespace neuroseg::metrics {

struct ClDice {
  double precision = 0;    ///< Tprec: fraction of the prediction's skeleton inside the reference
  double sensitivity = 0;  ///< Tsens: fraction of the reference's skeleton inside the prediction
  double score = 0;        ///< harmonic mean of the two
};

/// \brief `pred`, `ref`: masks of the same shape, (D, H, W) or (H, W), any dtype, non-zero =
/// foreground, any device (computed on the CPU).
ClDice cl_dice_parts(const at::Tensor& pred, const at::Tensor& ref);

/// \brief cl_dice_parts(pred, ref).score.
double cl_dice(const at::Tensor& pred, const at::Tensor& ref);

}  // namespace neuroseg::metrics
