// Grid-stride reduction: each thread folds its voxels into (finite, non_finite, min, max,
// sum), a block tree-reduces in shared memory, thread 0 writes the block's partial.
// Partials (a few hundred) are reduced on the host: deterministic, no atomics on doubles.
#include <cfloat>

#include "io/finite_stats_kernel.h"

namespace neuroseg::io::detail {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void finite_stats_kernel(const T* __restrict__ x, int64_t n, FiniteStatsPartial* partials) {
  __shared__ long long s_finite[kThreads], s_bad[kThreads];
  __shared__ double s_min[kThreads], s_max[kThreads], s_sum[kThreads];
  long long finite = 0, bad = 0;
  double lo = DBL_MAX, hi = -DBL_MAX, sum = 0.0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double v = static_cast<double>(x[i]);
    if (isfinite(v)) {
      ++finite;
      lo = fmin(lo, v);
      hi = fmax(hi, v);
      sum += v;
    } else {
      ++bad;
    }
  }
  const int t = threadIdx.x;
  s_finite[t] = finite, s_bad[t] = bad, s_min[t] = lo, s_max[t] = hi, s_sum[t] = sum;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (t < stride) {
      s_finite[t] += s_finite[t + stride];
      s_bad[t] += s_bad[t + stride];
      s_min[t] = fmin(s_min[t], s_min[t + stride]);
      s_max[t] = fmax(s_max[t], s_max[t + stride]);
      s_sum[t] += s_sum[t + stride];
    }
    __syncthreads();
  }
  if (t == 0) partials[blockIdx.x] = {s_finite[0], s_bad[0], s_min[0], s_max[0], s_sum[0]};
}

}  // namespace

cudaError_t launch_finite_stats_float(const float* x, int64_t n, FiniteStatsPartial* partials, int blocks, cudaStream_t stream) {
  finite_stats_kernel<float><<<blocks, kThreads, 0, stream>>>(x, n, partials);
  return cudaGetLastError();
}

cudaError_t launch_finite_stats_double(const double* x, int64_t n, FiniteStatsPartial* partials, int blocks, cudaStream_t stream) {
  finite_stats_kernel<double><<<blocks, kThreads, 0, stream>>>(x, n, partials);
  return cudaGetLastError();
}

}  // namespace neuroseg::io::detail
