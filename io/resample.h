#pragma once
// Resampling between voxel grids that share a direction (reorient first otherwise).
// Separable: with equal directions, output index o along axis a maps to the source
// continuous index p = (d_a + o * out_spacing_a) / in_spacing_a, d = D^T (out_origin - in_origin),
// so three 1D passes (linear or nearest) are exact. Outside the source field the edge
// voxel is repeated.
#include <array>

#include "io/volume.h"

namespace neuroseg::io {

enum class Interpolation { Linear, Nearest };

/// \brief Resamples onto the grid (`geometry`, `size_xyz`). Linear returns floating
/// data (float32 unless the input is float64); Nearest keeps the dtype (labels).
Volume resample_to_grid(const Volume& v, const Geometry& geometry, const std::array<int64_t, 3>& size_xyz,
                        Interpolation mode);

/// \brief Resamples to `spacing` (mm, x y z) over the same field of view: size =
/// round(size * old / new), grid centred on the original. The exact inverse onto the
/// original grid is resample_to_grid(result, original.geometry, original.size_xyz(), mode).
Volume resample_to_spacing(const Volume& v, const std::array<double, 3>& spacing, Interpolation mode);

}  // namespace neuroseg::io
