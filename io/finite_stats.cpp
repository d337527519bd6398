#include "io/finite_stats.h"

#include <algorithm>
#include <cfloat>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#ifdef NEUROSEG_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "io/finite_stats_kernel.h"
#endif

#include "io/error.h"

namespace neuroseg::io {
namespace detail {
namespace {

void merge(FiniteStats& a, const FiniteStats& b) {
  if (b.finite > 0) {
    a.min = a.finite > 0 ? std::min(a.min, b.min) : b.min;
    a.max = a.finite > 0 ? std::max(a.max, b.max) : b.max;
  }
  a.finite += b.finite;
  a.non_finite += b.non_finite;
  a.sum += b.sum;
}

template <typename T>
FiniteStats fold(const T* x, int64_t begin, int64_t end) {
  FiniteStats s;
  double lo = DBL_MAX, hi = -DBL_MAX, sum = 0;
  int64_t finite = 0;
  for (int64_t i = begin; i < end; ++i) {
    const double v = static_cast<double>(x[i]);
    if (std::isfinite(v)) {
      ++finite;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      sum += v;
    }
  }
  s.finite = finite;
  s.non_finite = (end - begin) - finite;
  if (finite) s.min = lo, s.max = hi, s.sum = sum;
  return s;
}

}  // namespace

FiniteStats finite_stats_cpu(const at::Tensor& input) {
  at::Tensor x = input.contiguous();
  if (x.scalar_type() == at::kBool) x = x.to(at::kByte);
  if (x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16) x = x.to(at::kFloat);
  const int64_t n = x.numel();
  // Fixed chunks merged in order: the result does not depend on the thread count.
  const int64_t chunk = 1 << 16, chunks = (n + chunk - 1) / chunk;
  std::vector<FiniteStats> parts(static_cast<std::size_t>(chunks));
  AT_DISPATCH_ALL_TYPES(x.scalar_type(), "finite_stats_cpu", [&] {
    const scalar_t* p = x.data_ptr<scalar_t>();
    at::parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) parts[c] = fold(p, c * chunk, std::min(n, (c + 1) * chunk));
    });
  });
  FiniteStats out;
  for (const auto& s : parts) merge(out, s);
  return out;
}

#ifdef NEUROSEG_WITH_CUDA
FiniteStats finite_stats_cuda(const at::Tensor& input) {
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor x = input.contiguous();
  if (x.scalar_type() != at::kDouble) x = x.to(at::kFloat);
  const int64_t n = x.numel();
  const int blocks = static_cast<int>(std::clamp<int64_t>((n + 255) / 256, 1, 1024));
  at::Tensor partials = at::empty({blocks * static_cast<int64_t>(sizeof(FiniteStatsPartial))},
                                  x.options().dtype(at::kByte));
  auto* dev = reinterpret_cast<FiniteStatsPartial*>(partials.data_ptr());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const cudaError_t rc = x.scalar_type() == at::kDouble
                             ? launch_finite_stats_double(x.data_ptr<double>(), n, dev, blocks, stream)
                             : launch_finite_stats_float(x.data_ptr<float>(), n, dev, blocks, stream);
  if (rc != cudaSuccess) throw Error("finite_stats", std::string("CUDA launch failed: ") + cudaGetErrorString(rc));
  const at::Tensor host = partials.cpu();
  const auto* p = reinterpret_cast<const FiniteStatsPartial*>(host.data_ptr());
  FiniteStats out;
  for (int b = 0; b < blocks; ++b) {
    FiniteStats s;
    s.finite = p[b].finite;
    s.non_finite = p[b].non_finite;
    if (s.finite) s.min = p[b].min, s.max = p[b].max, s.sum = p[b].sum;
    merge(out, s);
  }
  return out;
}
#endif

}  // namespace detail

FiniteStats finite_stats(const at::Tensor& x) {
  if (x.numel() == 0) return {};
  if (x.device().is_cuda()) {
#ifdef NEUROSEG_WITH_CUDA
    if (at::isFloatingType(x.scalar_type())) return detail::finite_stats_cuda(x);
    return detail::finite_stats_cpu(x.cpu());  // integers: exact 64-bit extremes on the CPU
#else
    throw Error("finite_stats", "this neuroseg was built without CUDA kernels");
#endif
  }
  return detail::finite_stats_cpu(x);
}

}  // namespace neuroseg::io
