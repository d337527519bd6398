// CPU twin of the selective scan: the recurrence walked in time order per row (batch,
// channel), rows spread over threads. Exact (no reassociation): it is the reference the
// CUDA kernel is tested against. The backward is scan_backward_row, shared with CUDA.
#include <algorithm>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include "models/selective_scan.h"
#include "models/selective_scan_kernel.h"

namespace neuroseg::models::detail {
namespace {

template <typename T, typename W>
ScanArgs<T, W> args_of(const ScanTensors& s) {
  auto opt = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<W>() : nullptr; };
  return {s.u.data_ptr<T>(),
          s.delta.data_ptr<T>(),
          s.z.defined() ? s.z.data_ptr<T>() : nullptr,
          s.A.data_ptr<W>(),
          s.B.data_ptr<W>(),
          s.C.data_ptr<W>(),
          opt(s.D),
          opt(s.delta_bias),
          s.u.size(0),
          s.u.size(1),
          s.u.size(2),
          s.A.size(1),
          s.B.size(1),
          s.softplus};
}

// One row in time order; h (N) is the caller's scratch.
template <typename T, typename W>
void forward_row(const ScanArgs<T, W>& p, int64_t b, int64_t d, T* out, W* last, W* h) {
  const int64_t L = p.length, N = p.dstate, row = b * p.dim + d, grp = b * p.groups + d / (p.dim / p.groups);
  const T* u = p.u + row * L;
  const T* dr = p.delta + row * L;
  const T* z = p.z ? p.z + row * L : nullptr;
  const W* A = p.A + d * N;
  const W* B = p.B + grp * N * L;
  const W* C = p.C + grp * N * L;
  const W bias = p.delta_bias ? p.delta_bias[d] : W(0), Dd = p.D ? p.D[d] : W(0);
  for (int64_t n = 0; n < N; ++n) h[n] = W(0);
  for (int64_t t = 0; t < L; ++t) {
    const W ut = static_cast<W>(u[t]);
    const W dt = scan_delta(static_cast<W>(dr[t]), bias, p.softplus), dtu = dt * ut;
    W y = Dd * ut;
    for (int64_t n = 0; n < N; ++n) {
      h[n] = scan_exp(dt * A[n]) * h[n] + dtu * B[n * L + t];
      y += h[n] * C[n * L + t];
    }
    if (z) {
      const W zt = static_cast<W>(z[t]);
      y *= zt / (W(1) + scan_exp(-zt));
    }
    out[row * L + t] = static_cast<T>(y);
  }
  for (int64_t n = 0; n < N; ++n) last[row * N + n] = h[n];
}

}  // namespace

std::pair<at::Tensor, at::Tensor> selective_scan_forward_cpu(const ScanTensors& s) {
  const int64_t batch = s.u.size(0), dim = s.u.size(1), N = s.A.size(1);
  at::Tensor out = at::empty_like(s.u);
  at::Tensor last = at::empty({batch, dim, N}, s.A.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.u.scalar_type(), "selective_scan_cpu", [&] {
    using W = at::opmath_type<scalar_t>;
    const ScanArgs<scalar_t, W> p = args_of<scalar_t, W>(s);
    scalar_t* o = out.data_ptr<scalar_t>();
    W* l = last.data_ptr<W>();
    // Grain 1: a row is L * N exponentials, always worth a task of its own.
    at::parallel_for(0, batch * dim, 1, [&](int64_t begin, int64_t end) {
      std::vector<W> h(N);
      for (int64_t r = begin; r < end; ++r) forward_row(p, r / dim, r % dim, o, l, h.data());
    });
  });
  return {out, last};
}

ScanGradTensors selective_scan_backward_cpu(const ScanTensors& s, const at::Tensor& dout_in, const at::Tensor& dlast_in) {
  const int64_t batch = s.u.size(0), dim = s.u.size(1), L = s.u.size(2), N = s.A.size(1);
  const at::TensorOptions w = s.A.options();
  const at::Tensor dout = dout_in.to(s.u.scalar_type()).contiguous();
  const at::Tensor dlast = dlast_in.defined() ? dlast_in.to(w.dtype()).contiguous() : at::Tensor();
  ScanGradTensors g;
  g.du = at::empty({batch, dim, L}, w);
  g.ddelta = at::empty({batch, dim, L}, w);
  if (s.z.defined()) g.dz = at::empty({batch, dim, L}, w);
  at::Tensor dA_rows = at::empty({batch, dim, N}, w), dD_rows = at::empty({batch, dim}, w);
  at::Tensor dbias_rows = at::empty({batch, dim}, w);
  // Channels of a group share B and C: the rows are split into `parts` ranges, each with
  // its own dB / dC accumulator, summed at the end (no atomics; deterministic for a fixed
  // thread count).
  const int64_t rows = batch * dim, parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
  at::Tensor dB_parts = at::zeros({parts, batch, s.B.size(1), N, L}, w);
  at::Tensor dC_parts = at::zeros({parts, batch, s.B.size(1), N, L}, w);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.u.scalar_type(), "selective_scan_backward_cpu", [&] {
    using W = at::opmath_type<scalar_t>;
    const ScanArgs<scalar_t, W> p = args_of<scalar_t, W>(s);
    const int64_t part_size = batch * s.B.size(1) * N * L;
    at::parallel_for(0, parts, 1, [&](int64_t part_begin, int64_t part_end) {
      for (int64_t part = part_begin; part < part_end; ++part) {
      ScanGrads<scalar_t, W> gr{dout.data_ptr<scalar_t>(),
                                dlast.defined() ? dlast.data_ptr<W>() : nullptr,
                                g.du.data_ptr<W>(),
                                g.ddelta.data_ptr<W>(),
                                g.dz.defined() ? g.dz.data_ptr<W>() : nullptr,
                                dA_rows.data_ptr<W>(),
                                dB_parts.data_ptr<W>() + part * part_size,
                                dC_parts.data_ptr<W>() + part * part_size,
                                dD_rows.data_ptr<W>(),
                                dbias_rows.data_ptr<W>()};
      std::vector<W> scratch(scan_backward_scratch(L, N));
      for (int64_t r = part * rows / parts; r < (part + 1) * rows / parts; ++r)
        scan_backward_row(p, gr, r / dim, r % dim, scratch.data(), [](W* at, W v) { *at += v; });
      }
    });
  });
  g.dB = dB_parts.sum(0);
  g.dC = dC_parts.sum(0);
  g.dA = dA_rows.sum(0);
  g.dD = dD_rows.sum(0);
  g.ddelta_bias = dbias_rows.sum(0);
  return g;
}

}  // namespace neuroseg::models::detail
