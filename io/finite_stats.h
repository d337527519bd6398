#pragma once
// One pass over a volume: how many voxels are NaN/Inf, and the min, max and sum of the
// finite ones. Used for the NaN warning on read and `info`'s value range. CPU and CUDA
// implementations behind one dispatcher (torchvision-ops layout):
//   finite_stats.cpp       dispatch on the tensor's device
//   finite_stats_cpu.cpp   multi-threaded reduction
//   finite_stats_cuda.cu   grid-stride kernel, per-block partials reduced on the host
#include <cstdint>

#include <ATen/core/Tensor.h>

namespace neuroseg::io {

struct FiniteStats {
  int64_t finite = 0;      ///< number of finite voxels
  int64_t non_finite = 0;  ///< NaN or +-Inf
  double min = 0, max = 0, sum = 0;  ///< over finite voxels (0 when there are none)
};

/// Any dtype, CPU or CUDA; integer tensors are all finite.
FiniteStats finite_stats(const at::Tensor& x);

namespace detail {
FiniteStats finite_stats_cpu(const at::Tensor& x);
#ifdef NEUROSEG_WITH_CUDA
FiniteStats finite_stats_cuda(const at::Tensor& x);
#endif
}  // namespace detail

}  // namespace neuroseg::io
