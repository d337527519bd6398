#pragma once
// Raw-pointer interface of the CUDA kernel (no torch headers, so nvcc stays fast).
#include <cstdint>

#include <cuda_runtime_api.h>

namespace neuroseg::io::detail {

/// Per-block partial results; the host reduces `blocks` of them.
struct FiniteStatsPartial {
  long long finite, non_finite;
  double min, max, sum;
};

/// Launches on `stream`; `partials` (device) holds `blocks` entries. Returns cudaGetLastError().
cudaError_t launch_finite_stats_float(const float* x, int64_t n, FiniteStatsPartial* partials, int blocks, cudaStream_t stream);
cudaError_t launch_finite_stats_double(const double* x, int64_t n, FiniteStatsPartial* partials, int blocks, cudaStream_t stream);

}  // namespace neuroseg::io::detail
