#pragma once
// Raw-pointer core of the selective scan shared by the CPU twin (selective_scan_cpu.cpp)
// and the CUDA kernels (selective_scan_cuda.cu): no torch headers, so nvcc compiles it.
// Host side, checks and autograd: selective_scan.cpp.
//
// One row = one (batch b, channel d). With delta_t = softplus(delta_raw_t + bias_d):
//   h_t = exp(delta_t A_d) * h_{t-1} + delta_t B_t u_t      (h: N states, h_{-1} = 0)
//   y_t = <h_t, C_t> + D_d u_t ;  out_t = y_t * silu(z_t)
// B_t, C_t come from group g = d / (dim / groups).
#include <cstdint>
#include <math.h>

#if defined(NEUROSEG_WITH_CUDA) || defined(__CUDACC__)
#include <cuda_runtime_api.h>
#endif

#if defined(__CUDACC__)
#define NEUROSEG_HD __host__ __device__ __forceinline__
#else
#define NEUROSEG_HD inline
#endif

namespace neuroseg::models::detail {

/// Element types the kernels take for u, delta, z and out; weights and state are float
/// (double only with double inputs).
enum class ScanDtype { kFloat, kDouble, kHalf, kBFloat16 };

/// Inputs, all contiguous: u, delta, z: (batch, dim, L) of T; A: (dim, N), B, C: (batch,
/// groups, N, L), D, delta_bias: (dim), of W. z, D and delta_bias may be null.
template <typename T, typename W>
struct ScanArgs {
  const T* u;
  const T* delta;
  const T* z;
  const W* A;
  const W* B;
  const W* C;
  const W* D;
  const W* delta_bias;
  int64_t batch, dim, length, dstate, groups;
  bool softplus;
};

/// Gradients of one backward pass. dout: (batch, dim, L) of T; dlast: (batch, dim, N) or
/// null. Outputs (W): du, ddelta, dz (null without z): (batch, dim, L); dA: (batch, dim, N)
/// and dD, ddelta_bias: (batch, dim), per batch (the host sums); dB, dC: (batch, groups, N,
/// L), accumulated with `add` because the channels of a group share them.
template <typename T, typename W>
struct ScanGrads {
  const T* dout;
  const W* dlast;
  W *du, *ddelta, *dz, *dA, *dB, *dC, *dD, *ddelta_bias;
};

NEUROSEG_HD float scan_exp(float x) { return expf(x); }
NEUROSEG_HD double scan_exp(double x) { return exp(x); }
NEUROSEG_HD float scan_log1p(float x) { return log1pf(x); }
NEUROSEG_HD double scan_log1p(double x) { return log1p(x); }

/// The discretisation step: torch's softplus (identity above 20) of delta_raw + bias.
template <typename W>
NEUROSEG_HD W scan_delta(W raw, W bias, bool softplus) {
  const W x = raw + bias;
  return softplus && x <= W(20) ? scan_log1p(scan_exp(x)) : x;
}

/// d softplus / dx (1 above the threshold, as torch's softplus backward).
template <typename W>
NEUROSEG_HD W scan_delta_grad(W raw, W bias, bool softplus) {
  const W x = raw + bias;
  return softplus && x <= W(20) ? W(1) / (W(1) + scan_exp(-x)) : W(1);
}

/// Timesteps per recomputation chunk of the backward pass.
constexpr int64_t kScanBackwardChunk = 256;

/// Scratch (W elements) one backward row needs: state checkpoints at chunk starts, the
/// states of one chunk, lambda and the dA sums.
NEUROSEG_HD int64_t scan_backward_scratch(int64_t length, int64_t dstate) {
  const int64_t chunks = (length + kScanBackwardChunk - 1) / kScanBackwardChunk;
  return (chunks + kScanBackwardChunk + 3) * dstate;
}

/// Exact backward of one row (b, d) by reverse-mode through the recurrence. States are
/// recomputed, not stored: a forward sweep keeps h at every chunk start, then the chunks are
/// walked backwards, each re-run from its checkpoint (memory O(L/K + K) per row, not O(L)).
/// With lambda_t = dL/dh_t and a_t = exp(delta_t A):
///   lambda_t = C_t dy_t + a_{t+1} lambda_{t+1}   (+ dlast at t = L-1)
///   dA += lambda_t h_{t-1} a_t delta_t,  ddelta_t += lambda_t (h_{t-1} a_t A + B_t u_t),
///   dB_t += lambda_t delta_t u_t,  du_t += lambda_t B_t delta_t,  dC_t += dy_t h_t.
/// `add(ptr, value)` accumulates into dB/dC (an atomic add on the GPU).
template <typename T, typename W, typename Add>
NEUROSEG_HD void scan_backward_row(const ScanArgs<T, W>& p, const ScanGrads<T, W>& g, int64_t b, int64_t d, W* scratch,
                                   Add add) {
  const int64_t L = p.length, N = p.dstate, K = kScanBackwardChunk;
  const int64_t row = b * p.dim + d, grp = b * p.groups + d / (p.dim / p.groups);
  const T* u = p.u + row * L;
  const T* dr = p.delta + row * L;
  const T* z = p.z ? p.z + row * L : nullptr;
  const T* dout = g.dout + row * L;
  const W* A = p.A + d * N;
  const W* B = p.B + grp * N * L;
  const W* C = p.C + grp * N * L;
  W* dB = g.dB + grp * N * L;
  W* dC = g.dC + grp * N * L;
  const W bias = p.delta_bias ? p.delta_bias[d] : W(0);
  const W Dd = p.D ? p.D[d] : W(0);
  const int64_t chunks = (L + K - 1) / K;
  W* ckpt = scratch;             // (chunks, N): h before each chunk
  W* hs = ckpt + chunks * N;     // (K + 1, N): h before and after each step of one chunk
  W* lam = hs + (K + 1) * N;     // (N)
  W* dA = lam + N;               // (N)
  for (int64_t n = 0; n < N; ++n) {
    hs[n] = W(0);
    dA[n] = W(0);
    lam[n] = g.dlast ? g.dlast[row * N + n] : W(0);
  }
  for (int64_t c = 0; c < chunks; ++c) {
    for (int64_t n = 0; n < N; ++n) ckpt[c * N + n] = hs[n];
    const int64_t end = (c + 1) * K < L ? (c + 1) * K : L;
    for (int64_t t = c * K; t < end; ++t) {
      const W dt = scan_delta(static_cast<W>(dr[t]), bias, p.softplus), du = dt * static_cast<W>(u[t]);
      for (int64_t n = 0; n < N; ++n) hs[n] = scan_exp(dt * A[n]) * hs[n] + du * B[n * L + t];
    }
  }
  W dD = 0, dbias = 0;
  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * K, end = (c + 1) * K < L ? (c + 1) * K : L;
    for (int64_t n = 0; n < N; ++n) hs[n] = ckpt[c * N + n];
    for (int64_t t = t0; t < end; ++t) {
      const W dt = scan_delta(static_cast<W>(dr[t]), bias, p.softplus), du = dt * static_cast<W>(u[t]);
      const W* prev = hs + (t - t0) * N;
      W* cur = hs + (t - t0 + 1) * N;
      for (int64_t n = 0; n < N; ++n) cur[n] = scan_exp(dt * A[n]) * prev[n] + du * B[n * L + t];
    }
    for (int64_t t = end - 1; t >= t0; --t) {
      const W ut = static_cast<W>(u[t]), raw = static_cast<W>(dr[t]);
      const W dt = scan_delta(raw, bias, p.softplus);
      const W* prev = hs + (t - t0) * N;
      const W* cur = hs + (t - t0 + 1) * N;
      W dy = static_cast<W>(dout[t]);
      if (z) {  // out = y * z * sigmoid(z): the gate needs y, recomputed from h_t
        W y = Dd * ut;
        for (int64_t n = 0; n < N; ++n) y += cur[n] * C[n * L + t];
        const W zt = static_cast<W>(z[t]), sz = W(1) / (W(1) + scan_exp(-zt));
        g.dz[row * L + t] = dy * y * sz * (W(1) + zt * (W(1) - sz));
        dy *= zt * sz;
      }
      dD += dy * ut;
      W du = dy * Dd, ddt = 0;
      for (int64_t n = 0; n < N; ++n) {
        const W Bt = B[n * L + t], a = scan_exp(dt * A[n]);
        const W l = lam[n] + dy * C[n * L + t];
        add(dC + n * L + t, dy * cur[n]);
        add(dB + n * L + t, l * dt * ut);
        const W da = l * prev[n] * a;
        ddt += da * A[n] + l * Bt * ut;
        du += l * Bt * dt;
        dA[n] += da * dt;
        lam[n] = l * a;
      }
      const W draw = ddt * scan_delta_grad(raw, bias, p.softplus);
      g.ddelta[row * L + t] = draw;
      dbias += draw;
      g.du[row * L + t] = du;
    }
  }
  for (int64_t n = 0; n < N; ++n) g.dA[row * N + n] = dA[n];
  g.dD[row] = dD;
  g.ddelta_bias[row] = dbias;
}

#if defined(NEUROSEG_WITH_CUDA) || defined(__CUDACC__)
/// Type-erased ScanArgs for the CUDA launchers (W = double for kDouble, else float).
struct ScanLaunch {
  ScanDtype dtype;
  const void *u, *delta, *z, *A, *B, *C, *D, *delta_bias;
  int64_t batch, dim, length, dstate, groups;
  bool softplus;
};

/// Timesteps per thread block of the forward kernel (128 threads x 8 items).
constexpr int64_t kScanForwardChunk = 1024;

/// W elements of forward workspace: per (row, chunk, state) the chunk aggregate (a, b) and
/// the carried-in state.
inline int64_t scan_forward_workspace(int64_t rows, int64_t length, int64_t dstate) {
  return rows * ((length + kScanForwardChunk - 1) / kScanForwardChunk) * dstate * 3;
}

/// out: (batch, dim, L) of T; last_state: (batch, dim, N) of W; workspace: as above.
cudaError_t launch_selective_scan_forward(const ScanLaunch& a, void* out, void* last_state, void* workspace,
                                          cudaStream_t stream);

/// The ScanGrads buffers as void pointers (dB, dC zeroed by the caller); scratch holds
/// batch * dim * scan_backward_scratch(L, N) W elements.
cudaError_t launch_selective_scan_backward(const ScanLaunch& a, const void* dout, const void* dlast, void* du,
                                           void* ddelta, void* dz, void* dA, void* dB, void* dC, void* dD,
                                           void* ddelta_bias, void* scratch, cudaStream_t stream);
#endif

}  // namespace neuroseg::models::detail
