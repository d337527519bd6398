#pragma once
// Raw-pointer interface of the CUDA EDT pass (no torch headers in nvcc).
#include <cstdint>

#include <cuda_runtime_api.h>

namespace neuroseg::metrics::detail {

/// One 1D squared-distance pass over `lines` lines of `n` samples, starting at line
/// `first_line`. Line l's samples are at data[base(l) + i * stride], base(l) computed from
/// (l / inner) * outer_stride + (l % inner) * inner_stride. Scratch: v (int64) and z, f
/// (double), each lines * n (+1 for z) entries. Returns cudaGetLastError().
cudaError_t launch_edt_pass(double* data, int64_t first_line, int64_t lines, int64_t n, int64_t stride, int64_t inner,
                            int64_t inner_stride, int64_t outer_stride, double spacing, int64_t* v, double* z, double* f,
                            cudaStream_t stream);

}  // namespace neuroseg::metrics::detail
