#pragma once
// 3D skeletonization by medial-axis thinning (Lee, Kashyap & Chu 1994, "Building skeleton
// models via 3-D medial surface/axis thinning algorithms", CVGIP 56(6)), voxel for voxel the
// result of scikit-image 0.19's `skimage.morphology.skeletonize_3d` (= `skeletonize` for 3D
// input), a port of Fiji's Skeletonize3D. FISBe's clDice localisation uses this skeleton
// (shared/specs/fisbe.md §2.2), so the raster order of the passes is reproduced exactly.
//
// Value mapping: skimage returns the input's maximum where the skeleton is (1 for a 0/1
// uint8 mask, 255 for a bool mask, 5 for a uint8 mask of 5s); here the result is always
// uint8 {0, 1}. Foreground is "non-zero", i.e. skimage on (mask != 0): this equals skimage on
// mask.astype(uint8) for bool and 0/1 masks, the FISBe use (a value such as 256 or 0.5 would
// be zero after astype(uint8) but is foreground here).
//
// Like skimage's, the skeleton is a subset of the mask and never splits a component, but a
// small component can vanish (the sequential re-check deletes a voxel that an earlier
// deletion of the same pass left isolated), and it is not centred for even widths.
#include <ATen/core/Tensor.h>

namespace neuroseg::metrics {

/// \brief Skeleton of a binary mask. `mask`: (D, H, W) or (H, W), any dtype, non-zero =
/// foreground, any device (computed on the CPU). Returns uint8 {0, 1} of the mask's shape on
/// the CPU. A 2D mask, like a (1, H, W) volume, is thinned as skimage does: as a one-slice
/// volume with only the four in-plane border directions.
at::Tensor skeletonize(const at::Tensor& mask);

/// \brief One skeleton per instance. `labels`: (D, H, W) or (H, W), integer or bool, 0 =
/// background. Every non-zero value is skeletonized on its own (the mask `labels == value`,
/// cropped to its bounding box, instances in parallel), and the skeleton voxels take that
/// value. Returns a tensor of `labels`' dtype and shape on the CPU. Skeletons of different
/// instances may touch; each voxel belongs to at most one instance, so they never collide.
at::Tensor skeletonize_labels(const at::Tensor& labels);

namespace detail {
/// \brief Self-check of the lookup tables behind skeletonize: the number of 3x3x3
/// neighbourhoods (every `stride`-th of the 2^26 with a foreground centre) where the
/// table-driven end-point/Euler/simple tests disagree with Lee's definitions, on the portable
/// path and, where the CPU takes it, the pext path. 0 when correct.
int64_t skeleton_table_mismatches(uint32_t stride);
}  // namespace detail

}  // namespace neuroseg::metrics
