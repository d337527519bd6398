#pragma once
// Mamba-1's selective scan (Gu & Dao 2023, arXiv 2312.00752, Algorithm 2), with exactly the
// shapes and semantics of mamba-ssm's `selective_scan_ref` (state-spaces/mamba,
// mamba_ssm/ops/selective_scan_interface.py), real A and input-dependent B, C only:
//
//   u, delta, z : (batch, dim, L)          A : (dim, N)   D, delta_bias : (dim)
//   B, C        : (batch, N, L) or (batch, G, N, L) (channel d uses group d / (dim / G))
//   delta_t = softplus(delta_t + delta_bias)         (softplus only if delta_softplus)
//   h_t     = exp(delta_t A) * h_{t-1} + delta_t B_t u_t      h: (batch, dim, N), h_{-1} = 0
//   out_t   = (<h_t, C_t> + D u_t) * silu(z_t)                 (D, z optional)
//
// out has u's dtype; the state and all arithmetic are fp32 for fp32/fp16/bf16 inputs
// (double for double), so fp16/bf16 autocast cannot overflow the state. last_state is
// h_{L-1} in fp32 (double). Differentiable in every tensor argument (an autograd function
// with exact CPU and CUDA backward kernels). CPU: models/selective_scan_cpu.cpp; CUDA:
// models/selective_scan_cuda.cu; dispatch and autograd: models/selective_scan.cpp.
#include <ATen/core/Tensor.h>

namespace neuroseg::models {

struct SelectiveScanResult {
  at::Tensor out;         ///< (batch, dim, L), u's dtype
  at::Tensor last_state;  ///< (batch, dim, N); undefined unless asked for
};

/// Undefined D / z / delta_bias mean "absent" (None in the reference). Throws io::Error
/// for shapes or devices that do not fit.
SelectiveScanResult selective_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                   const at::Tensor& B, const at::Tensor& C, const at::Tensor& D = {},
                                   const at::Tensor& z = {}, const at::Tensor& delta_bias = {},
                                   bool delta_softplus = false, bool return_last_state = false);

namespace detail {

/// Inputs checked and laid out for the kernels: u, delta, z contiguous in u's dtype; A, B,
/// C, D, delta_bias contiguous in the compute dtype (float, or double for double u); B, C
/// as (batch, G, N, L).
struct ScanTensors {
  at::Tensor u, delta, A, B, C, D, z, delta_bias;
  bool softplus = false;
};

struct ScanGradTensors {
  at::Tensor du, ddelta, dA, dB, dC, dD, dz, ddelta_bias;  ///< in the compute dtype, B/C as (batch, G, N, L)
};

/// Forward without autograd: {out, last_state}.
std::pair<at::Tensor, at::Tensor> selective_scan_forward_cpu(const ScanTensors& s);
ScanGradTensors selective_scan_backward_cpu(const ScanTensors& s, const at::Tensor& dout, const at::Tensor& dlast);
#ifdef NEUROSEG_WITH_CUDA
std::pair<at::Tensor, at::Tensor> selective_scan_forward_cuda(const ScanTensors& s);
ScanGradTensors selective_scan_backward_cuda(const ScanTensors& s, const at::Tensor& dout, const at::Tensor& dlast);
#endif

/// The plain per-timestep loop over tensor ops (the reference's algorithm, in LibTorch):
/// for tests and the benchmark baseline. Same arguments as selective_scan.
SelectiveScanResult selective_scan_naive(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                         const at::Tensor& B, const at::Tensor& C, const at::Tensor& D,
                                         const at::Tensor& z, const at::Tensor& delta_bias, bool delta_softplus);

}  // namespace detail
}  // namespace neuroseg::models
