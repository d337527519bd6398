#include "metrics/distance_transform.h"

#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#ifdef NEUROSEG_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "metrics/distance_transform_kernel.h"
#endif

#include "io/error.h"

namespace neuroseg::metrics {
namespace {

// One axis of a (D, H, W) volume seen as lines: count, length, element stride, and how a
// line index maps to its first element (line = outer * inner + i).
struct Axis {
  int64_t lines, n, stride, inner, inner_stride, outer_stride;
};

std::array<Axis, 3> axes_of(int64_t D, int64_t H, int64_t W) {
  // x lines: (d, h) pairs; y lines: (d, w); z lines: (h, w).
  return {{{D * H, W, 1, H, W, H * W}, {D * W, H, W, W, 1, H * W}, {H * W, D, H * W, H * W, 1, 0}}};
}

at::Tensor initial_squared(const at::Tensor& mask) {
  const double inf = std::numeric_limits<double>::infinity();
  return at::where(mask != 0, at::full({}, inf, mask.options().dtype(at::kDouble)),
                   at::zeros({}, mask.options().dtype(at::kDouble)))
      .contiguous();
}

void check_args(const at::Tensor& mask, const std::array<double, 3>& sp) {
  if (mask.dim() != 3) throw io::Error("distance transform", "expects a (D, H, W) mask, got " + std::to_string(mask.dim()) + "D");
  for (double s : sp)
    if (!(s > 0) || !std::isfinite(s)) throw io::Error("distance transform", "spacing must be positive");
}

}  // namespace

namespace detail {

at::Tensor distance_transform_edt_cpu(const at::Tensor& mask, const std::array<double, 3>& sp) {
  check_args(mask, sp);
  const int64_t D = mask.size(0), H = mask.size(1), W = mask.size(2);
  at::Tensor d2 = initial_squared(mask.to(at::kCPU));
  double* data = d2.data_ptr<double>();
  const std::array<Axis, 3> axes = axes_of(D, H, W);
  const double spacing[3] = {sp[2], sp[1], sp[0]};  // x, y, z passes
  for (int a = 0; a < 3; ++a) {
    const Axis ax = axes[a];
    if (ax.n == 0 || ax.lines == 0) continue;
    at::parallel_for(0, ax.lines, 64, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> v(ax.n);
      std::vector<double> z(ax.n + 1), f(ax.n);
      const double s = spacing[a];
      for (int64_t line = begin; line < end; ++line) {
        double* d = data + (line / ax.inner) * ax.outer_stride + (line % ax.inner) * ax.inner_stride;
        for (int64_t i = 0; i < ax.n; ++i) f[i] = d[i * ax.stride];
        int64_t k = -1;
        double cut = 0;
        for (int64_t q = 0; q < ax.n; ++q) {
          if (std::isinf(f[q])) continue;
          const double fq = f[q] + (q * s) * (q * s);
          while (k >= 0) {
            const double fv = f[v[k]] + (v[k] * s) * (v[k] * s);
            cut = (fq - fv) / (2.0 * s * static_cast<double>(q - v[k]));
            if (cut > z[k]) break;
            --k;
          }
          ++k;
          v[k] = q;
          z[k] = k == 0 ? -std::numeric_limits<double>::infinity() : cut;
          z[k + 1] = std::numeric_limits<double>::infinity();
        }
        if (k < 0) continue;  // no finite sample on this line
        int64_t j = 0;
        for (int64_t q = 0; q < ax.n; ++q) {
          while (z[j + 1] < q * s) ++j;
          const double dx = static_cast<double>(q - v[j]) * s;
          d[q * ax.stride] = dx * dx + f[v[j]];
        }
      }
    });
  }
  return d2.sqrt_().to(at::kFloat);
}

#ifdef NEUROSEG_WITH_CUDA
at::Tensor distance_transform_edt_cuda(const at::Tensor& mask, const std::array<double, 3>& sp) {
  check_args(mask, sp);
  const c10::cuda::CUDAGuard guard(mask.device());
  const int64_t D = mask.size(0), H = mask.size(1), W = mask.size(2);
  at::Tensor d2 = initial_squared(mask);
  const std::array<Axis, 3> axes = axes_of(D, H, W);
  const double spacing[3] = {sp[2], sp[1], sp[0]};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  for (int a = 0; a < 3; ++a) {
    const Axis ax = axes[a];
    if (ax.n == 0 || ax.lines == 0) continue;
    // Scratch (v, z, f) bounded to ~256 MB: lines are processed in chunks.
    const int64_t per_line = ax.n * 8 * 3 + 8;
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(ax.lines, (int64_t(256) << 20) / per_line));
    at::Tensor v = at::empty({chunk * ax.n}, d2.options().dtype(at::kLong));
    at::Tensor z = at::empty({chunk * (ax.n + 1)}, d2.options());
    at::Tensor f = at::empty({chunk * ax.n}, d2.options());
    for (int64_t first = 0; first < ax.lines; first += chunk) {
      const int64_t count = std::min(chunk, ax.lines - first);
      const cudaError_t rc = detail::launch_edt_pass(d2.data_ptr<double>(), first, count, ax.n, ax.stride, ax.inner,
                                                     ax.inner_stride, ax.outer_stride, spacing[a], v.data_ptr<int64_t>(),
                                                     z.data_ptr<double>(), f.data_ptr<double>(), stream);
      if (rc != cudaSuccess) throw io::Error("distance transform", std::string("CUDA launch failed: ") + cudaGetErrorString(rc));
    }
  }
  return d2.sqrt_().to(at::kFloat);
}
#endif

}  // namespace detail

at::Tensor distance_transform_edt(const at::Tensor& mask, const std::array<double, 3>& spacing_zyx) {
  if (mask.device().is_cuda()) {
#ifdef NEUROSEG_WITH_CUDA
    return detail::distance_transform_edt_cuda(mask, spacing_zyx);
#else
    throw io::Error("distance transform", "this neuroseg was built without CUDA kernels");
#endif
  }
  return detail::distance_transform_edt_cpu(mask, spacing_zyx);
}

}  // namespace neuroseg::metrics
