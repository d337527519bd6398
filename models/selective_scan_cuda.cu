// CUDA selective scan. The recurrence h_t = a_t h_{t-1} + b_t is a prefix "sum" under the
// associative operator (a0, b0) then (a1, b1) = (a1 a0, a1 b0 + b1) (Blelloch 1990;
// Martin & Cundy 2018 for linear RNNs). Forward, in three launches so that one long row
// (L = 64^3 = 262,144 for a 64^3 feature map) spreads over many blocks instead of the one
// block per (batch, channel) of mamba-ssm's kernel:
//   1. chunk_kernel<false>: grid (rows, chunks); each block reduces its 1024 timesteps to
//      one aggregate (a, b) per state n (thread-level sequential + block scan);
//   2. carry_kernel: one thread per (row, n) scans the chunk aggregates, giving the state
//      entering every chunk;
//   3. chunk_kernel<true>: each block rescans its chunk from that state (exclusive block
//      scan for each thread's start), accumulates y_t = <h_t, C_t> in registers and writes
//      out_t = (y_t + D u_t) silu(z_t). The (B, D, L, N) states never leave registers.
// One chunk (L <= 1024) skips 1 and 2. State and arithmetic are fp32 for fp16/bf16 inputs.
// Backward: scan_backward_row (selective_scan_kernel.h), one thread per row, the CPU
// twin's code; dB/dC by atomicAdd since channels of a group share them.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "models/selective_scan_kernel.h"

namespace neuroseg::models::detail {
namespace {

constexpr int kThreads = 128;
constexpr int kItems = static_cast<int>(kScanForwardChunk) / kThreads;  // 8 timesteps per thread
constexpr int kWarps = kThreads / 32;

template <typename W>
struct Pair {
  W a, b;
};

// `first` then `second`.
template <typename W>
__device__ __forceinline__ Pair<W> compose(Pair<W> first, Pair<W> second) {
  return {second.a * first.a, second.a * first.b + second.b};
}

// Exclusive scan of one Pair per thread over the block (thread order = time order);
// `total` receives the whole block's composition. Every thread of the block must call it.
template <typename W>
__device__ Pair<W> block_exclusive_scan(Pair<W> v, Pair<W>* warp_sums, Pair<W>& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  Pair<W> x = v;
#pragma unroll
  for (int off = 1; off < 32; off *= 2) {
    const W a = __shfl_up_sync(0xffffffffu, x.a, off), b = __shfl_up_sync(0xffffffffu, x.b, off);
    if (lane >= off) x = compose(Pair<W>{a, b}, x);
  }
  Pair<W> before{__shfl_up_sync(0xffffffffu, x.a, 1), __shfl_up_sync(0xffffffffu, x.b, 1)};
  if (lane == 0) before = Pair<W>{W(1), W(0)};
  if (lane == 31) warp_sums[warp] = x;
  __syncthreads();
  if (warp == 0) {
    Pair<W> w = lane < kWarps ? warp_sums[lane] : Pair<W>{W(1), W(0)};
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
      const W a = __shfl_up_sync(0xffffffffu, w.a, off), b = __shfl_up_sync(0xffffffffu, w.b, off);
      if (lane >= off) w = compose(Pair<W>{a, b}, w);
    }
    if (lane < kWarps) warp_sums[lane] = w;
  }
  __syncthreads();
  const Pair<W> prefix = warp > 0 ? warp_sums[warp - 1] : Pair<W>{W(1), W(0)};
  total = warp_sums[kWarps - 1];
  __syncthreads();  // warp_sums is reused by the next call
  return compose(prefix, before);
}

// kFinal false: write chunk aggregates agg[(row, chunk, n)] = (a, b).
// kFinal true: rescan from carry[(row, chunk, n)] (null: zero state), write out (and the
// last state from the thread that holds t = L - 1).
template <typename T, typename W, bool kFinal>
__global__ void __launch_bounds__(kThreads) chunk_kernel(ScanArgs<T, W> p, W* agg, const W* carry, T* out, W* last_state) {
  __shared__ Pair<W> warp_sums[kWarps];
  const int64_t row = blockIdx.x, chunk = blockIdx.y, chunks = gridDim.y;
  const int64_t L = p.length, N = p.dstate;
  const int64_t d = row % p.dim, b = row / p.dim;
  const int64_t grp = b * p.groups + d / (p.dim / p.groups);
  const int64_t t0 = chunk * kScanForwardChunk + int64_t(threadIdx.x) * kItems;
  const T* u = p.u + row * L;
  const T* dr = p.delta + row * L;
  const W* A = p.A + d * N;
  const W* B = p.B + grp * N * L;
  const W* C = p.C + grp * N * L;
  const W bias = p.delta_bias ? p.delta_bias[d] : W(0);

  W dt[kItems], dtu[kItems], y[kItems];
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const int64_t t = t0 + k;
    const bool ok = t < L;
    dt[k] = ok ? scan_delta(static_cast<W>(dr[t]), bias, p.softplus) : W(0);
    dtu[k] = ok ? dt[k] * static_cast<W>(u[t]) : W(0);
    y[k] = W(0);
  }
  for (int64_t n = 0; n < N; ++n) {
    const W An = A[n];
    W a[kItems], bb[kItems];
    Pair<W> mine{W(1), W(0)};
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int64_t t = t0 + k;
      // Past the end: the identity (1, 0), so padding changes nothing.
      a[k] = t < L ? scan_exp(dt[k] * An) : W(1);
      bb[k] = t < L ? dtu[k] * B[n * L + t] : W(0);
      mine = compose(mine, Pair<W>{a[k], bb[k]});
    }
    Pair<W> total;
    const Pair<W> before = block_exclusive_scan(mine, warp_sums, total);
    if (!kFinal) {
      if (threadIdx.x == 0) {
        W* slot = agg + ((row * chunks + chunk) * N + n) * 2;
        slot[0] = total.a;
        slot[1] = total.b;
      }
      continue;
    }
    const W h0 = carry ? carry[(row * chunks + chunk) * N + n] : W(0);
    W h = before.a * h0 + before.b;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int64_t t = t0 + k;
      h = a[k] * h + bb[k];
      if (t < L) y[k] += h * C[n * L + t];
      if (t == L - 1 && last_state) last_state[row * N + n] = h;
    }
  }
  if (!kFinal) return;
  const W Dd = p.D ? p.D[d] : W(0);
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const int64_t t = t0 + k;
    if (t >= L) break;
    W o = y[k] + Dd * static_cast<W>(u[t]);
    if (p.z) {
      const W zt = static_cast<W>(p.z[row * L + t]);
      o *= zt / (W(1) + scan_exp(-zt));
    }
    out[row * L + t] = static_cast<T>(o);
  }
}

// One thread per (row, n): carry[(row, c, n)] = state entering chunk c.
template <typename W>
__global__ void carry_kernel(const W* agg, W* carry, int64_t rows, int64_t chunks, int64_t N) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= rows * N) return;
  const int64_t row = i / N, n = i % N;
  W h = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t at = (row * chunks + c) * N + n;
    carry[at] = h;
    h = agg[at * 2] * h + agg[at * 2 + 1];
  }
}

template <typename W>
struct AtomicAdd {
  __device__ void operator()(W* p, W v) const { atomicAdd(p, v); }
};

template <typename T, typename W>
__global__ void backward_kernel(ScanArgs<T, W> p, ScanGrads<T, W> g, W* scratch) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (row >= p.batch * p.dim) return;
  scan_backward_row(p, g, row / p.dim, row % p.dim, scratch + row * scan_backward_scratch(p.length, p.dstate),
                    AtomicAdd<W>{});
}

template <typename T, typename W>
ScanArgs<T, W> typed(const ScanLaunch& a) {
  return {static_cast<const T*>(a.u), static_cast<const T*>(a.delta), static_cast<const T*>(a.z),
          static_cast<const W*>(a.A), static_cast<const W*>(a.B), static_cast<const W*>(a.C),
          static_cast<const W*>(a.D), static_cast<const W*>(a.delta_bias), a.batch, a.dim, a.length, a.dstate,
          a.groups, a.softplus};
}

template <typename T, typename W>
cudaError_t forward(const ScanLaunch& a, void* out, void* last_state, void* workspace, cudaStream_t stream) {
  const ScanArgs<T, W> p = typed<T, W>(a);
  const int64_t rows = a.batch * a.dim, chunks = (a.length + kScanForwardChunk - 1) / kScanForwardChunk;
  if (rows == 0 || a.length == 0) return cudaSuccess;
  if (chunks > 65535) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(chunks));
  W* agg = static_cast<W*>(workspace);
  W* carry = agg + rows * chunks * a.dstate * 2;
  // Chunks hand their end state on (N > 0 only: with no state there is nothing to carry,
  // and a carry launch over rows x 0 states would have 0 blocks, an invalid configuration).
  const bool carried = chunks > 1 && a.dstate > 0;
  if (carried) {
    chunk_kernel<T, W, false><<<grid, kThreads, 0, stream>>>(p, agg, nullptr, nullptr, nullptr);
    const int64_t n = rows * a.dstate;
    carry_kernel<W><<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(agg, carry, rows, chunks, a.dstate);
  }
  chunk_kernel<T, W, true><<<grid, kThreads, 0, stream>>>(p, nullptr, carried ? carry : nullptr, static_cast<T*>(out),
                                                          static_cast<W*>(last_state));
  return cudaGetLastError();
}

template <typename T, typename W>
cudaError_t backward(const ScanLaunch& a, const void* dout, const void* dlast, void* du, void* ddelta, void* dz, void* dA,
                     void* dB, void* dC, void* dD, void* ddelta_bias, void* scratch, cudaStream_t stream) {
  const ScanArgs<T, W> p = typed<T, W>(a);
  const ScanGrads<T, W> g{static_cast<const T*>(dout), static_cast<const W*>(dlast), static_cast<W*>(du),
                          static_cast<W*>(ddelta), static_cast<W*>(dz), static_cast<W*>(dA),
                          static_cast<W*>(dB), static_cast<W*>(dC), static_cast<W*>(dD),
                          static_cast<W*>(ddelta_bias)};
  const int64_t rows = a.batch * a.dim;
  if (rows == 0 || a.length == 0) return cudaSuccess;
  // Few rows (batch x d_inner, often a few hundred): small blocks spread them over more SMs.
  backward_kernel<T, W><<<static_cast<unsigned>((rows + 31) / 32), 32, 0, stream>>>(p, g, static_cast<W*>(scratch));
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_selective_scan_forward(const ScanLaunch& a, void* out, void* last_state, void* workspace,
                                          cudaStream_t stream) {
  switch (a.dtype) {
    case ScanDtype::kFloat: return forward<float, float>(a, out, last_state, workspace, stream);
    case ScanDtype::kDouble: return forward<double, double>(a, out, last_state, workspace, stream);
    case ScanDtype::kHalf: return forward<__half, float>(a, out, last_state, workspace, stream);
    case ScanDtype::kBFloat16: return forward<__nv_bfloat16, float>(a, out, last_state, workspace, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_selective_scan_backward(const ScanLaunch& a, const void* dout, const void* dlast, void* du,
                                           void* ddelta, void* dz, void* dA, void* dB, void* dC, void* dD,
                                           void* ddelta_bias, void* scratch, cudaStream_t stream) {
  switch (a.dtype) {
    case ScanDtype::kFloat:
      return backward<float, float>(a, dout, dlast, du, ddelta, dz, dA, dB, dC, dD, ddelta_bias, scratch, stream);
    case ScanDtype::kDouble:
      return backward<double, double>(a, dout, dlast, du, ddelta, dz, dA, dB, dC, dD, ddelta_bias, scratch, stream);
    case ScanDtype::kHalf:
      return backward<__half, float>(a, dout, dlast, du, ddelta, dz, dA, dB, dC, dD, ddelta_bias, scratch, stream);
    case ScanDtype::kBFloat16:
      return backward<__nv_bfloat16, float>(a, dout, dlast, du, ddelta, dz, dA, dB, dC, dD, ddelta_bias, scratch,
                                            stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace neuroseg::models::detail
