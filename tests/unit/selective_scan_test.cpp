// The selective scan's CPU op against mamba-ssm's selective_scan_ref (committed fixture),
// against the naive per-timestep loop, gradients by finite differences (double) and by
// autograd through the naive loop, fp16/bf16 handling and argument errors.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include "io/error.h"
#include "models/checkpoint.h"
#include "models/selective_scan.h"

using namespace neuroseg;

namespace {

struct Inputs {
  at::Tensor u, delta, A, B, C, D, z, bias;
  bool softplus = true;
};

// Mamba's ranges: A = -exp(.) < 0, small raw delta. groups 0 = (batch, N, L) B and C.
Inputs random_inputs(int64_t batch, int64_t dim, int64_t L, int64_t N, int64_t groups, at::ScalarType dtype,
                     bool with_optional = true) {
  const auto o = at::TensorOptions().dtype(dtype);
  Inputs x;
  x.u = at::randn({batch, dim, L}, o);
  x.delta = 0.5 * at::randn({batch, dim, L}, o) - 1.0;
  x.A = -at::exp(0.5 * at::randn({dim, N}, o));
  const std::vector<int64_t> bc = groups == 0 ? std::vector<int64_t>{batch, N, L} : std::vector<int64_t>{batch, groups, N, L};
  x.B = at::randn(bc, o);
  x.C = at::randn(bc, o);
  if (with_optional) {
    x.D = at::randn({dim}, o);
    x.z = at::randn({batch, dim, L}, o);
    x.bias = 0.3 * at::randn({dim}, o);
  }
  return x;
}

models::SelectiveScanResult run(const Inputs& x) {
  return models::selective_scan(x.u, x.delta, x.A, x.B, x.C, x.D, x.z, x.bias, x.softplus, /*return_last_state=*/true);
}

double max_abs(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

std::string sci(double v) {
  std::ostringstream s;
  s << std::scientific << std::setprecision(2) << v;
  return s.str();
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_SUITE("models_selective_scan") {
  TEST_CASE("equals mamba-ssm's selective_scan_ref (committed fixture)") {
    // tests/fixtures/make_selective_scan_fixture.py ran mamba-ssm 2.3.2.post1's own function.
    const auto f = models::read_state_dict(std::string(NEUROSEG_SOURCE_DIR) + "/tests/fixtures/selective_scan_ref.pt");
    int cases = 0;
    for (const std::string name : {"full", "grouped", "plain", "no_gate", "long"}) {
      const auto get = [&](const std::string& key) {
        const auto it = f.find(name + "." + key);
        return it == f.end() ? at::Tensor() : it->second;
      };
      const at::Tensor flags = get("flags");
      REQUIRE(flags.defined());
      const auto r = models::selective_scan(get("u"), get("delta"), get("A"), get("B"), get("C"), get("D"), get("z"),
                                            get("delta_bias"), flags[0].item<int64_t>() != 0, true);
      const double out_err = max_abs(r.out, get("out")), state_err = max_abs(r.last_state, get("last_state"));
      const std::string report = name + ": max |out - ref| = " + sci(out_err) +
                                 ", max |last_state - ref| = " + sci(state_err);
      MESSAGE(report);
      CHECK((r.out.scalar_type() == at::kFloat));
      CHECK(at::allclose(r.out, get("out"), 1e-5, 1e-5));
      CHECK(at::allclose(r.last_state, get("last_state"), 1e-5, 1e-5));
      ++cases;
    }
    CHECK(cases == 5);
  }

  TEST_CASE("equals the naive per-timestep loop, for every optional combination and odd sizes") {
    at::manual_seed(3);
    for (int64_t groups : {0, 1, 2}) {
      for (bool with_optional : {true, false}) {
        for (bool softplus : {true, false}) {
          Inputs x = random_inputs(2, 6, 23, 5, groups, at::kDouble, with_optional);
          x.softplus = softplus;
          if (!softplus) x.delta = 0.05 + 0.5 * at::rand_like(x.delta);  // a positive step without softplus
          const auto r = run(x);
          const auto n = models::detail::selective_scan_naive(x.u, x.delta, x.A, x.B, x.C, x.D, x.z, x.bias, softplus);
          CHECK(max_abs(r.out, n.out) < 1e-12);
          CHECK(max_abs(r.last_state, n.last_state) < 1e-12);
        }
      }
    }
    // Length 1 and dim 1.
    const Inputs x = random_inputs(1, 1, 1, 3, 0, at::kDouble);
    const auto n = models::detail::selective_scan_naive(x.u, x.delta, x.A, x.B, x.C, x.D, x.z, x.bias, true);
    CHECK(max_abs(run(x).out, n.out) < 1e-12);
  }

  TEST_CASE("gradcheck: analytic gradients equal central finite differences (double)") {
    at::manual_seed(4);
    for (int64_t groups : {0, 2}) {
      Inputs x = random_inputs(2, 4, 9, 3, groups, at::kDouble);
      std::vector<at::Tensor*> params{&x.u, &x.delta, &x.A, &x.B, &x.C, &x.D, &x.z, &x.bias};
      for (at::Tensor* p : params) p->set_requires_grad(true);
      const at::Tensor w_out = at::randn_like(x.u), w_last = at::randn({2, 4, 3}, x.u.options());
      const auto objective = [&] {
        const auto r = run(x);
        return (r.out * w_out).sum() + (r.last_state * w_last).sum();
      };
      std::vector<at::Tensor> inputs;
      for (at::Tensor* p : params) inputs.push_back(*p);
      const auto grads = torch::autograd::grad({objective()}, inputs);
      const double eps = 1e-6;
      double worst = 0;
      at::NoGradGuard no_grad;
      for (std::size_t i = 0; i < params.size(); ++i) {
        at::Tensor flat = params[i]->view({-1});
        const at::Tensor g = grads[i].reshape({-1});
        for (int64_t k = 0; k < flat.numel(); ++k) {
          const double v = flat[k].item<double>();
          flat[k].fill_(v + eps);
          const double up = objective().item<double>();
          flat[k].fill_(v - eps);
          const double down = objective().item<double>();
          flat[k].fill_(v);
          const double numeric = (up - down) / (2 * eps), analytic = g[k].item<double>();
          worst = std::max(worst, std::abs(numeric - analytic) / (1.0 + std::abs(numeric)));
        }
      }
      const std::string report = "groups " + std::to_string(groups) + ": worst relative gradient error " + sci(worst);
      MESSAGE(report);
      CHECK(worst < 1e-6);
    }
  }

  TEST_CASE("gradients over several backward chunks equal autograd through the naive loop") {
    // L = 600 crosses the 256-step recomputation chunks of the backward.
    at::manual_seed(5);
    Inputs x = random_inputs(1, 3, 600, 4, 0, at::kDouble);
    std::vector<at::Tensor*> params{&x.u, &x.delta, &x.A, &x.B, &x.C, &x.D, &x.z, &x.bias};
    for (at::Tensor* p : params) p->set_requires_grad(true);
    std::vector<at::Tensor> inputs;
    for (at::Tensor* p : params) inputs.push_back(*p);
    const at::Tensor w = at::randn_like(x.u);
    const auto ours = torch::autograd::grad({(run(x).out * w).sum()}, inputs);
    const auto n = models::detail::selective_scan_naive(x.u, x.delta, x.A, x.B, x.C, x.D, x.z, x.bias, true);
    const auto ref = torch::autograd::grad({(n.out * w).sum()}, inputs);
    for (std::size_t i = 0; i < ours.size(); ++i) CHECK(at::allclose(ours[i], ref[i], 1e-9, 1e-9));
  }

  TEST_CASE("empty sizes: no time steps (L = 0), no state (N = 0) over several chunks") {
    at::manual_seed(9);
    // L = 0: an empty output, a zero state, and zero gradients (none of A, D, delta_bias acts).
    Inputs x = random_inputs(2, 3, 0, 4, 0, at::kDouble);
    std::vector<at::Tensor> inputs;
    for (at::Tensor* p : {&x.u, &x.delta, &x.A, &x.B, &x.C, &x.D, &x.z, &x.bias}) inputs.push_back(p->set_requires_grad(true));
    const auto r = run(x);
    CHECK(r.out.numel() == 0);
    CHECK(r.last_state.abs().sum().item<double>() == 0.0);
    for (const at::Tensor& g : torch::autograd::grad({r.out.sum()}, inputs)) CHECK(g.abs().sum().item<double>() == 0.0);
    // N = 0, L above one forward chunk: out = (D u) gated by silu(z), as the naive loop.
    const Inputs y = random_inputs(1, 3, 2000, 0, 0, at::kDouble);
    const auto n = models::detail::selective_scan_naive(y.u, y.delta, y.A, y.B, y.C, y.D, y.z, y.bias, true);
    CHECK(at::allclose(run(y).out, n.out, 1e-12, 1e-12));
  }

  TEST_CASE("fp16 and bf16: fp32 state, output in the input dtype, finite over long sequences") {
    at::manual_seed(6);
    for (at::ScalarType t : {at::kHalf, at::kBFloat16}) {
      Inputs x = random_inputs(1, 4, 5000, 16, 0, at::kFloat);
      // Decay close to 1 and a large input: the state grows to ~1e5, past fp16's 65504 in
      // unnormalised products, but the fp32 state keeps it exact.
      x.A = -1e-4 * at::ones({4, 16});
      Inputs lo = x;
      lo.u = x.u.to(t);
      lo.delta = x.delta.to(t);
      lo.z = x.z.to(t);
      const auto r = run(lo);
      CHECK((r.out.scalar_type() == t));
      CHECK((r.last_state.scalar_type() == at::kFloat));
      CHECK(at::isfinite(r.last_state).all().item<bool>());
      Inputs rounded = x;
      rounded.u = lo.u.to(at::kFloat);
      rounded.delta = lo.delta.to(at::kFloat);
      rounded.z = lo.z.to(at::kFloat);
      const auto f = run(rounded);
      CHECK(at::allclose(r.last_state, f.last_state, 1e-5, 1e-5));
      CHECK(at::allclose(r.out.to(at::kFloat), f.out.to(t).to(at::kFloat)));
    }
  }

  TEST_CASE("arguments that do not fit name the problem") {
    const Inputs x = random_inputs(2, 4, 8, 3, 0, at::kFloat);
    const auto call = [&](const at::Tensor& A, const at::Tensor& B) {
      return error_of([&] { models::selective_scan(x.u, x.delta, A, B, x.C); });
    };
    CHECK(call(x.A, x.B) == "no error");
    CHECK(call(x.A.t(), x.B) == "selective scan: A must be (dim, N) = (4, N), got (3, 4)");
    CHECK(call(x.A, at::randn({4, 3})).find("B must be input-dependent, (batch, N, L) or (batch, G, N, L)") !=
          std::string::npos);
    CHECK(call(x.A, at::randn({2, 3, 3, 8})).find("G dividing dim 4") != std::string::npos);
    CHECK(error_of([&] { models::selective_scan(x.u, x.delta.narrow(2, 0, 4), x.A, x.B, x.C); }) ==
          "selective scan: delta must have u's shape (2, 4, 8), got (2, 4, 4)");
  }
}
