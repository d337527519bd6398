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
// SurfaceConvention::kDeepMind: the surfel convention of DeepMind's surface-distance package
// (compute_surface_distances and the metrics on it; Nikolov et al. 2021), for comparison with
// numbers computed by it:
//   - surface elements are the 2x2x2 voxel cubes of the union box (padded by background) whose
//     corners are neither all set nor all clear; each carries the area (mm^2, with the
//     spacing) of its marching-cubes surface (metrics/surfel_normals_table.h), and distances
//     are between cube positions;
//   - HD = the larger directed maximum; HD95 = the larger directed area-weighted percentile:
//     elements sorted by (distance, area), the first whose cumulative area fraction reaches
//     95%; ASSD = the area-weighted mean distance of both surfaces pooled; NSD(tau) = the
//     area of both surfaces within tau over their total area (compute_surface_dice_at_tolerance).
//   - Empty masks, as the package: both empty -> HD and HD95 +inf, ASSD and NSD NaN; exactly
//     one empty -> HD, HD95 and ASSD +inf, NSD 0.
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
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::metrics {

enum class SurfaceConvention { kMonai, kDeepMind };

/// "monai" or "deepmind"; std::invalid_argument otherwise.
SurfaceConvention parse_surface_convention(const std::string& name);
const char* to_string(SurfaceConvention convention);

struct SurfaceDistances {
  /// MONAI: float32 distances of every surface voxel of the prediction to the reference
  /// surface (raster order), and the other way round; with exactly one mask empty, both hold
  /// +inf once per surface voxel of the other mask (MONAI); both empty: both empty.
  /// DeepMind: float64 distances of every surface element (lattice raster order), +inf for
  /// all of them when the other mask is empty.
  at::Tensor pred_to_ref, ref_to_pred;
  /// DeepMind only (undefined for MONAI): float64 area (mm^2) of each element, same order.
  at::Tensor pred_areas, ref_areas;
};

/// `pred`, `ref`: (D, H, W) masks (non-zero = inside) on the same device. `spacing_zyx`: voxel
/// size along D, H, W. The result is on the CPU.
SurfaceDistances surface_distances(const at::Tensor& pred, const at::Tensor& ref, const std::array<double, 3>& spacing_zyx,
                                   SurfaceConvention convention = SurfaceConvention::kMonai);

struct SurfaceMetrics {
  double hd, hd95, assd, nsd;
};

/// HD, HD at `percentile` (95: HD95), ASSD and NSD at `tolerance_mm` from the directed sets,
/// in the convention they were computed with.
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
/// DeepMind convention by tensor ops and the EDT (any device; the CUDA path, and the CPU
/// fused pass's twin in tests).
SurfaceDistances surfel_distances_tensor_ops(const at::Tensor& pred, const at::Tensor& ref,
                                             const std::array<double, 3>& spacing_zyx);
}  // namespace detail

}  // namespace neuroseg::metrics
