#include "io/resample.h"

#include <cmath>

#include <ATen/ATen.h>

#include "io/error.h"

namespace neuroseg::io {

Volume resample_to_grid(const Volume& v, const Geometry& g, const std::array<int64_t, 3>& size_xyz,
                        Interpolation mode) {
  for (int k = 0; k < 9; ++k)
    if (std::abs(g.direction[k] - v.geometry.direction[k]) > 1e-6)
      throw Error(v.name(), "cannot resample onto a grid with another direction; reorient first");
  for (int a = 0; a < 3; ++a)
    if (size_xyz[a] < 1 || !(g.spacing[a] > 0)) throw Error(v.name(), "resampling target grid is empty");

  // Offset of the target origin from the source origin, along the (shared) index axes.
  std::array<double, 3> d{};
  for (int a = 0; a < 3; ++a)
    for (int r = 0; r < 3; ++r) d[a] += v.geometry.dir(r, a) * (g.origin[r] - v.geometry.origin[r]);

  at::Tensor x = v.data;
  if (mode == Interpolation::Linear && !at::isFloatingType(x.scalar_type())) x = x.to(at::kFloat);
  const auto in_size = v.size_xyz();
  for (int a = 0; a < 3; ++a) {
    const int dim = 3 - a;  // tensor dim of index axis a
    const int64_t n = in_size[a], m = size_xyz[a];
    const double scale = g.spacing[a] / v.geometry.spacing[a];
    const double shift = d[a] / v.geometry.spacing[a];
    if (n == m && std::abs(scale - 1) < 1e-12 && std::abs(shift) < 1e-9) continue;  // identical axis
    at::Tensor p = at::arange(m, at::TensorOptions().dtype(at::kDouble)).mul_(scale).add_(shift);
    if (mode == Interpolation::Nearest) {
      at::Tensor idx = (p + 0.5).floor_().clamp_(0, n - 1).to(at::kLong);
      x = x.index_select(dim, idx.to(x.device()));
    } else {
      at::Tensor lo = p.floor().clamp(0, n - 1);
      at::Tensor w = (p - p.floor()).to(x.scalar_type());
      w = at::where(p < 0, at::zeros_like(w), w);
      w = at::where(p >= n - 1, at::zeros_like(w), w);  // beyond the last voxel: repeat it
      at::Tensor lo_i = lo.to(at::kLong), hi_i = (lo + 1).clamp(0, n - 1).to(at::kLong);
      std::vector<int64_t> shape(4, 1);
      shape[dim] = m;
      w = w.reshape(shape).to(x.device());
      at::Tensor a0 = x.index_select(dim, lo_i.to(x.device()));
      at::Tensor a1 = x.index_select(dim, hi_i.to(x.device()));
      x = a0 + (a1 - a0) * w;
    }
  }
  Volume out;
  out.data = x.contiguous();
  out.geometry = g;
  out.source = v.source;
  if (mode == Interpolation::Linear && dtype_is_integer(out.source.dtype))
    out.source.dtype = x.scalar_type() == at::kDouble ? DType::Float64 : DType::Float32;
  return out;
}

Volume resample_to_spacing(const Volume& v, const std::array<double, 3>& spacing, Interpolation mode) {
  Geometry g = v.geometry;
  std::array<int64_t, 3> size{};
  const auto in_size = v.size_xyz();
  std::array<double, 3> shift{};  // along index axes, in mm
  for (int a = 0; a < 3; ++a) {
    if (!(spacing[a] > 0) || !std::isfinite(spacing[a]))
      throw Error(v.name(), "target spacing must be positive, got " + std::to_string(spacing[a]));
    size[a] = std::max<int64_t>(1, std::llround(double(in_size[a]) * v.geometry.spacing[a] / spacing[a]));
    g.spacing[a] = spacing[a];
    shift[a] = 0.5 * double(in_size[a] - 1) * v.geometry.spacing[a] - 0.5 * double(size[a] - 1) * spacing[a];
  }
  for (int r = 0; r < 3; ++r)
    for (int a = 0; a < 3; ++a) g.origin[r] += v.geometry.dir(r, a) * shift[a];
  return resample_to_grid(v, g, size, mode);
}

}  // namespace neuroseg::io
