// Argument checks, layout, the autograd function, the CPU/CUDA dispatch, the CUDA host side
// and the naive per-timestep loop. Kernels: selective_scan_cpu.cpp, selective_scan_cuda.cu.
#include "models/selective_scan.h"

#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#ifdef NEUROSEG_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include "io/error.h"
#include "models/selective_scan_kernel.h"

namespace neuroseg::models {
namespace {

[[noreturn]] void fail(const std::string& message) { throw io::Error("selective scan", message); }

std::string shape_of(const at::Tensor& t) {
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + ")";
}

void check_args(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                const at::Tensor& C, const at::Tensor& D, const at::Tensor& z, const at::Tensor& delta_bias) {
  if (!u.defined() || u.dim() != 3) fail("u must be (batch, dim, L), got " + (u.defined() ? shape_of(u) : "none"));
  if (!at::isFloatingType(u.scalar_type())) fail("u must be floating point");
  const int64_t batch = u.size(0), dim = u.size(1), L = u.size(2);
  if (!delta.defined() || !delta.sizes().equals(u.sizes()))
    fail("delta must have u's shape " + shape_of(u) + ", got " + (delta.defined() ? shape_of(delta) : "none"));
  if (!A.defined() || A.dim() != 2 || A.size(0) != dim)
    fail("A must be (dim, N) = (" + std::to_string(dim) + ", N), got " + (A.defined() ? shape_of(A) : "none"));
  if (A.is_complex()) fail("complex A is not supported (Mamba's real 'S4D-real' A only)");
  const int64_t N = A.size(1);
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"B", B}, {"C", C}}) {
    const bool ok3 = t.defined() && t.dim() == 3 && t.size(0) == batch && t.size(1) == N && t.size(2) == L;
    const bool ok4 = t.defined() && t.dim() == 4 && t.size(0) == batch && t.size(1) >= 1 && dim % t.size(1) == 0 &&
                     t.size(2) == N && t.size(3) == L;
    if (!ok3 && !ok4)
      fail(std::string(name) + " must be input-dependent, (batch, N, L) or (batch, G, N, L) with G dividing dim " +
           std::to_string(dim) + "; got " + (t.defined() ? shape_of(t) : "none") + " for N = " + std::to_string(N));
  }
  if (B.dim() == 4 && C.dim() == 4 && B.size(1) != C.size(1)) fail("B and C must have the same number of groups");
  if (D.defined() && (D.dim() != 1 || D.size(0) != dim)) fail("D must be (dim), got " + shape_of(D));
  if (delta_bias.defined() && (delta_bias.dim() != 1 || delta_bias.size(0) != dim))
    fail("delta_bias must be (dim), got " + shape_of(delta_bias));
  if (z.defined() && !z.sizes().equals(u.sizes())) fail("z must have u's shape " + shape_of(u) + ", got " + shape_of(z));
  for (const at::Tensor& t : {delta, A, B, C, D, z, delta_bias})
    if (t.defined() && t.device() != u.device()) fail("all tensors must be on u's device (" + u.device().str() + ")");
}

at::Tensor grouped(const at::Tensor& t) { return t.dim() == 3 ? t.unsqueeze(1) : t; }

// Layout for the kernels; B and C get the larger group count of the two (a 3D one is G = 1).
detail::ScanTensors prepare(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                            const at::Tensor& C, const at::Tensor& D, const at::Tensor& z,
                            const at::Tensor& delta_bias, bool softplus) {
  const at::ScalarType w = u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto as_w = [&](const at::Tensor& t) { return t.defined() ? t.to(w).contiguous() : at::Tensor(); };
  detail::ScanTensors s;
  s.u = u.contiguous();
  s.delta = delta.to(u.scalar_type()).contiguous();
  s.z = z.defined() ? z.to(u.scalar_type()).contiguous() : at::Tensor();
  s.A = as_w(A);
  at::Tensor b = grouped(B), c = grouped(C);
  const int64_t groups = std::max(b.size(1), c.size(1));
  s.B = as_w(b.expand({b.size(0), groups, b.size(2), b.size(3)}));
  s.C = as_w(c.expand({c.size(0), groups, c.size(2), c.size(3)}));
  s.D = as_w(D);
  s.delta_bias = as_w(delta_bias);
  s.softplus = softplus;
  return s;
}

// (batch, G, N, L) gradient back to the caller's layout of B or C (3D, or fewer groups).
at::Tensor ungrouped(const at::Tensor& g, const at::Tensor& like) {
  at::Tensor r = g;
  if (like.dim() == 3) r = r.sum(1);
  else if (like.size(1) != g.size(1)) r = r.view({g.size(0), like.size(1), -1, g.size(2), g.size(3)}).sum(2);
  return r.to(like.scalar_type());
}

std::pair<at::Tensor, at::Tensor> forward_any(const detail::ScanTensors& s) {
  if (s.u.is_cuda()) {
#ifdef NEUROSEG_WITH_CUDA
    return detail::selective_scan_forward_cuda(s);
#else
    fail("this neuroseg was built without CUDA kernels");
#endif
  }
  return detail::selective_scan_forward_cpu(s);
}

detail::ScanGradTensors backward_any(const detail::ScanTensors& s, const at::Tensor& dout, const at::Tensor& dlast) {
  if (s.u.is_cuda()) {
#ifdef NEUROSEG_WITH_CUDA
    return detail::selective_scan_backward_cuda(s, dout, dlast);
#else
    fail("this neuroseg was built without CUDA kernels");
#endif
  }
  return detail::selective_scan_backward_cpu(s, dout, dlast);
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Saves the inputs, not the states: the backward recomputes them (O(L/256 + 256) per row).
struct SelectiveScanFunction : public torch::autograd::Function<SelectiveScanFunction> {
  // Autograd functions take defined tensors only: absent D / z / delta_bias arrive as empty
  // tensors, and bits 0 / 1 / 2 of `present` say which of the three were given.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& u, const at::Tensor& delta,
                               const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const at::Tensor& D,
                               const at::Tensor& z, const at::Tensor& delta_bias, bool softplus, int64_t present) {
    ctx->save_for_backward({u, delta, A, B, C, D, z, delta_bias});
    ctx->saved_data["softplus"] = softplus;
    ctx->saved_data["present"] = present;
    auto [out, last] = forward_any(prepare(u, delta, A, B, C, real(D, present, 0), real(z, present, 1),
                                           real(delta_bias, present, 2), softplus));
    return {out, last};
  }

  static at::Tensor real(const at::Tensor& t, int64_t present, int bit) {
    return (present >> bit) & 1 ? t : at::Tensor();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list v = ctx->get_saved_variables();
    const int64_t present = ctx->saved_data["present"].toInt();
    const at::Tensor &u = v[0], &delta = v[1], &A = v[2], &B = v[3], &C = v[4];
    const at::Tensor D = real(v[5], present, 0), z = real(v[6], present, 1), bias = real(v[7], present, 2);
    const detail::ScanTensors s = prepare(u, delta, A, B, C, D, z, bias, ctx->saved_data["softplus"].toBool());
    const at::Tensor dout = grads[0].defined() ? grads[0] : at::zeros_like(u);
    const detail::ScanGradTensors g = backward_any(s, dout, grads[1]);
    const auto as = [](const at::Tensor& grad, const at::Tensor& like) {
      return like.defined() ? grad.to(like.scalar_type()) : at::Tensor();
    };
    return {as(g.du, u), as(g.ddelta, delta), as(g.dA, A), ungrouped(g.dB, B), ungrouped(g.dC, C), as(g.dD, D),
            z.defined() ? as(g.dz, z) : at::Tensor(), as(g.ddelta_bias, bias), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

SelectiveScanResult selective_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                   const at::Tensor& B, const at::Tensor& C, const at::Tensor& D, const at::Tensor& z,
                                   const at::Tensor& delta_bias, bool delta_softplus, bool return_last_state) {
  check_args(u, delta, A, B, C, D, z, delta_bias);
  const at::Tensor none = at::empty({0}, u.options());
  const int64_t present = (D.defined() ? 1 : 0) | (z.defined() ? 2 : 0) | (delta_bias.defined() ? 4 : 0);
  const variable_list r = SelectiveScanFunction::apply(u, delta, A, B, C, D.defined() ? D : none, z.defined() ? z : none,
                                                       delta_bias.defined() ? delta_bias : none, delta_softplus, present);
  return {r[0], return_last_state ? r[1] : at::Tensor()};
}

namespace detail {

#ifdef NEUROSEG_WITH_CUDA
namespace {

ScanLaunch launch_args(const ScanTensors& s) {
  ScanDtype dtype = ScanDtype::kFloat;
  switch (s.u.scalar_type()) {
    case at::kFloat: dtype = ScanDtype::kFloat; break;
    case at::kDouble: dtype = ScanDtype::kDouble; break;
    case at::kHalf: dtype = ScanDtype::kHalf; break;
    case at::kBFloat16: dtype = ScanDtype::kBFloat16; break;
    default: fail(std::string("unsupported dtype ") + c10::toString(s.u.scalar_type()));
  }
  const auto ptr = [](const at::Tensor& t) -> const void* { return t.defined() ? t.data_ptr() : nullptr; };
  return {dtype,       ptr(s.u),     ptr(s.delta), ptr(s.z),   ptr(s.A),     ptr(s.B),     ptr(s.C),
          ptr(s.D),    ptr(s.delta_bias), s.u.size(0), s.u.size(1), s.u.size(2), s.A.size(1), s.B.size(1),
          s.softplus};
}

void check_launch(cudaError_t rc) {
  if (rc != cudaSuccess) fail(std::string("CUDA launch failed: ") + cudaGetErrorString(rc));
}

}  // namespace

std::pair<at::Tensor, at::Tensor> selective_scan_forward_cuda(const ScanTensors& s) {
  const c10::cuda::CUDAGuard guard(s.u.device());
  const int64_t batch = s.u.size(0), dim = s.u.size(1), L = s.u.size(2), N = s.A.size(1);
  if ((L + kScanForwardChunk - 1) / kScanForwardChunk > 65535) fail("L above 65535 * 1024 is not supported on CUDA");
  at::Tensor out = at::empty_like(s.u);
  at::Tensor last = at::zeros({batch, dim, N}, s.A.options());
  at::Tensor workspace = at::empty({scan_forward_workspace(batch * dim, L, N)}, s.A.options());
  check_launch(launch_selective_scan_forward(launch_args(s), out.data_ptr(), last.data_ptr(), workspace.data_ptr(),
                                             at::cuda::getCurrentCUDAStream()));
  return {out, last};
}

ScanGradTensors selective_scan_backward_cuda(const ScanTensors& s, const at::Tensor& dout_in, const at::Tensor& dlast_in) {
  const c10::cuda::CUDAGuard guard(s.u.device());
  const int64_t batch = s.u.size(0), dim = s.u.size(1), L = s.u.size(2), N = s.A.size(1), G = s.B.size(1);
  const at::TensorOptions w = s.A.options();
  const at::Tensor dout = dout_in.to(s.u.scalar_type()).contiguous();
  const at::Tensor dlast = dlast_in.defined() ? dlast_in.to(w.dtype()).contiguous() : at::Tensor();
  ScanGradTensors g;
  g.du = at::empty({batch, dim, L}, w);
  g.ddelta = at::empty({batch, dim, L}, w);
  if (s.z.defined()) g.dz = at::empty({batch, dim, L}, w);
  g.dB = at::zeros({batch, G, N, L}, w);
  g.dC = at::zeros({batch, G, N, L}, w);
  // Zeroed: with L = 0 the kernel is not launched, and these gradients are 0 (as on the CPU).
  at::Tensor dA_rows = at::zeros({batch, dim, N}, w), dD_rows = at::zeros({batch, dim}, w);
  at::Tensor dbias_rows = at::zeros({batch, dim}, w);
  at::Tensor scratch = at::empty({batch * dim * scan_backward_scratch(L, N)}, w);
  check_launch(launch_selective_scan_backward(
      launch_args(s), dout.data_ptr(), dlast.defined() ? dlast.data_ptr() : nullptr, g.du.data_ptr(),
      g.ddelta.data_ptr(), g.dz.defined() ? g.dz.data_ptr() : nullptr, dA_rows.data_ptr(), g.dB.data_ptr(),
      g.dC.data_ptr(), dD_rows.data_ptr(), dbias_rows.data_ptr(), scratch.data_ptr(), at::cuda::getCurrentCUDAStream()));
  g.dA = dA_rows.sum(0);
  g.dD = dD_rows.sum(0);
  g.ddelta_bias = dbias_rows.sum(0);
  return g;
}
#endif

SelectiveScanResult selective_scan_naive(const at::Tensor& u_in, const at::Tensor& delta_in, const at::Tensor& A,
                                         const at::Tensor& B_in, const at::Tensor& C_in, const at::Tensor& D,
                                         const at::Tensor& z, const at::Tensor& delta_bias, bool delta_softplus) {
  check_args(u_in, delta_in, A, B_in, C_in, D, z, delta_bias);
  const at::ScalarType w = u_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t batch = u_in.size(0), dim = u_in.size(1), L = u_in.size(2);
  const at::Tensor u = u_in.to(w), Aw = A.to(w);
  at::Tensor delta = delta_in.to(w);
  if (delta_bias.defined()) delta = delta + delta_bias.to(w).unsqueeze(-1);
  if (delta_softplus) delta = at::softplus(delta, 1, 20);
  // (batch, dim, N, L): each channel's B / C.
  const auto per_channel = [&](const at::Tensor& t) {
    const at::Tensor g = grouped(t).to(w);
    return g.repeat_interleave(dim / g.size(1), 1);
  };
  const at::Tensor B = per_channel(B_in), C = per_channel(C_in);
  at::Tensor h = at::zeros({batch, dim, A.size(1)}, u.options());
  std::vector<at::Tensor> ys;
  ys.reserve(L);
  for (int64_t t = 0; t < L; ++t) {
    const at::Tensor dt = delta.select(2, t).unsqueeze(-1);  // (batch, dim, 1)
    h = at::exp(dt * Aw) * h + dt * u.select(2, t).unsqueeze(-1) * B.select(3, t);
    ys.push_back((h * C.select(3, t)).sum(-1));
  }
  at::Tensor out = at::stack(ys, 2);
  if (D.defined()) out = out + u * D.to(w).unsqueeze(-1);
  if (z.defined()) out = out * at::silu(z.to(w));
  return {out.to(u_in.scalar_type()), h};
}

}  // namespace detail
}  // namespace neuroseg::models
