// Felzenszwalb-Huttenlocher 1D lower envelope, one CUDA thread per line. The three
// separable passes are launched by the host (distance_transform.cpp) in line chunks.
#include <cmath>

#include "metrics/distance_transform_kernel.h"

namespace neuroseg::metrics::detail {
namespace {

__global__ void edt_pass_kernel(double* data, int64_t first_line, int64_t lines, int64_t n, int64_t stride, int64_t inner,
                                int64_t inner_stride, int64_t outer_stride, double sp, int64_t* v_all, double* z_all,
                                double* f_all) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= lines) return;
  const int64_t line = first_line + t;
  double* d = data + (line / inner) * outer_stride + (line % inner) * inner_stride;
  int64_t* v = v_all + t * n;
  double* z = z_all + t * (n + 1);
  double* f = f_all + t * n;
  for (int64_t i = 0; i < n; ++i) f[i] = d[i * stride];
  int64_t k = -1;
  for (int64_t q = 0; q < n; ++q) {
    if (isinf(f[q])) continue;
    const double fq = f[q] + (q * sp) * (q * sp);
    double s = -INFINITY;
    while (k >= 0) {
      const double fv = f[v[k]] + (v[k] * sp) * (v[k] * sp);
      s = (fq - fv) / (2.0 * sp * (q - v[k]));
      if (s > z[k]) break;
      --k;
    }
    ++k;
    v[k] = q;
    z[k] = k == 0 ? -INFINITY : s;
    z[k + 1] = INFINITY;
  }
  if (k < 0) return;  // no finite sample: the line stays +inf
  int64_t j = 0;
  for (int64_t q = 0; q < n; ++q) {
    while (z[j + 1] < q * sp) ++j;
    const double dx = (q - v[j]) * sp;
    d[q * stride] = dx * dx + f[v[j]];
  }
}

}  // namespace

cudaError_t launch_edt_pass(double* data, int64_t first_line, int64_t lines, int64_t n, int64_t stride, int64_t inner,
                            int64_t inner_stride, int64_t outer_stride, double spacing, int64_t* v, double* z, double* f,
                            cudaStream_t stream) {
  const int threads = 128;
  const int64_t blocks = (lines + threads - 1) / threads;
  edt_pass_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(data, first_line, lines, n, stride, inner,
                                                                          inner_stride, outer_stride, spacing, v, z, f);
  return cudaGetLastError();
}

}  // namespace neuroseg::metrics::detail
