#pragma once
// Surface distances between two binary masks and the metrics built on them: Hausdorff
// distance, its 95th percentile (HD95), average symmetric surface distance (ASSD) and the
// normalised surface distance (NSD, "surface Dice" at a tolerance; Nikolov et al. 2021).
// Distances are in mm from the spacing, anisotropic spacing included.
//
// Convention (MONAI's, monai.metrics.{hausdorff_distance, surface_distance, surface_dice}
// with the default euclidean metric and use_subvoxels=False, so numbers are comparable with
// the most used toolkit):
//   - surface voxels = mask XOR its binary erosion by the 6-connected cross, voxels outside
//     the image counting as background (so a mask touching the border has a surface there);
//   - the distance of a surface voxel of A to B = the exact Euclidean distance (with the
//     spacing) from its centre to the nearest surface voxel centre of B;
//   - HD = max of both directed maxima; HD95 = max of both directed 95th percentiles, each
//     with numpy's linear interpolation; ASSD = mean of both directed sets pooled; NSD(tau) =
//     (#{d_AB <= tau} + #{d_BA <= tau}) / (|S_A| + |S_B|).
// Empty masks, as MONAI: both empty -> HD, HD95, ASSD and NSD are NaN; exactly one empty ->
// HD, HD95 and ASSD are +inf and NSD is 0.
//
// CPU and CUDA twins behind one entry point, both exact:
//   - CUDA: the masks are cropped to the bounding box of their union (+1 voxel), the
//     surfaces extracted by tensor shifts and the distances read off the exact EDT
//     (metrics/distance_transform.h) of the other surface's complement: O(box volume), which
//     a GPU streams through.
//   - CPU: the union box and both surfaces' voxel coordinates come from one threaded pass,
//     and each directed set is a nearest-neighbour search of one coordinate set against the
//     other: a bucket grid answers queries near the other surface, a k-d tree the far ones.
//     O(surface) rather than O(volume): MONAI's CPU path runs two scipy EDTs per metric.
#include <array>
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::metrics {

struct SurfaceDistances {
  /// float32, distances of every surface voxel of the prediction to the reference surface
  /// (raster order), and the other way round. With exactly one mask empty, both hold +inf
  /// once per surface voxel of the other mask (MONAI); both empty: both empty.
  at::Tensor pred_to_ref, ref_to_pred;
};

/// `pred`, `ref`: (D, H, W) masks (non-zero = inside) on the same device. `spacing_zyx`: voxel
/// size along D, H, W.
SurfaceDistances surface_distances(const at::Tensor& pred, const at::Tensor& ref,
                                   const std::array<double, 3>& spacing_zyx);

struct SurfaceMetrics {
  double hd, hd95, assd, nsd;
};

/// HD, HD at `percentile` (95: HD95), ASSD and NSD at `tolerance_mm` from the directed sets.
SurfaceMetrics surface_metrics(const SurfaceDistances& d, double tolerance_mm = 1.0, double percentile = 95.0);

/// numpy.percentile(x, q) with the default linear interpolation; NaN for an empty x.
double percentile_linear(std::vector<double> x, double q);

/// Surface voxels (bool) of a (D, H, W) mask: mask AND NOT its erosion by the 6-connected
/// cross, voxels outside the image counting as background. CPU: one pass; other devices:
/// seven shifted views of the zero-padded mask.
at::Tensor surface_voxels(const at::Tensor& mask);

namespace detail {
at::Tensor surface_voxels_cpu(const at::Tensor& mask);
at::Tensor surface_voxels_tensor_ops(const at::Tensor& mask);  ///< any device; the GPU path
/// Directed distances between two non-empty surfaces (bool (D, H, W)) by each method: the
/// EDT of the other surface's complement (any device), or the CPU nearest-neighbour search
/// (bucket grid within `search_mm`, k-d tree beyond; < 0: the default radius, 0: k-d tree only).
SurfaceDistances surface_distances_edt(const at::Tensor& surface_pred, const at::Tensor& surface_ref,
                                       const std::array<double, 3>& spacing_zyx);
SurfaceDistances surface_distances_search(const at::Tensor& surface_pred, const at::Tensor& surface_ref,
                                          const std::array<double, 3>& spacing_zyx, double search_mm = -1);
}  // namespace detail

}  // namespace neuroseg::metrics
