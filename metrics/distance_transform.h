#pragma once
// Exact Euclidean distance transform with anisotropic spacing, scipy's
// ndimage.distance_transform_edt semantics: every non-zero voxel gets the distance (in the
// spacing's units) to the nearest zero voxel; zero voxels get 0; with no zero voxel at all,
// every distance is +inf.
//
// Separable algorithm of Felzenszwalb & Huttenlocher (2012, "Distance Transforms of Sampled
// Functions"): the squared EDT is a lower envelope of parabolas computed one axis at a time
// (x, then y, then z), linear in the number of voxels. CPU and CUDA twins behind one
// dispatcher; both work in float64 so they agree to rounding.
//   distance_transform.cpp       dispatch + CPU (threads over lines)
//   distance_transform_cuda.cu   one thread per line, lines in chunks to bound scratch memory
#include <array>

#include <ATen/core/Tensor.h>

namespace neuroseg::metrics {

/// `mask`: (D, H, W), any dtype (non-zero = inside), CPU or CUDA. `spacing_zyx`: voxel size
/// along D, H, W. Returns float32 (D, H, W) on the mask's device.
at::Tensor distance_transform_edt(const at::Tensor& mask, const std::array<double, 3>& spacing_zyx = {1, 1, 1});

namespace detail {
at::Tensor distance_transform_edt_cpu(const at::Tensor& mask, const std::array<double, 3>& spacing_zyx);
#ifdef NEUROSEG_WITH_CUDA
at::Tensor distance_transform_edt_cuda(const at::Tensor& mask, const std::array<double, 3>& spacing_zyx);
#endif
}  // namespace detail

}  // namespace neuroseg::metrics
