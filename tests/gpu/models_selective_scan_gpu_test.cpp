// The selective scan's CUDA kernels against the CPU twin: forward (one chunk, many chunks,
// L = 64^3 with few channels, ragged lengths, groups, fp16/bf16) and backward; the Mamba
// models on CUDA against the CPU and under fp16 autocast.
#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include "models/registry.h"
#include "models/selective_scan.h"
#include "pipelines/autocast_guard.h"

using namespace neuroseg;

namespace {

struct Case {
  int64_t batch, dim, L, N, groups;
};

std::vector<at::Tensor> inputs(const Case& c, at::ScalarType dtype) {
  const auto o = at::TensorOptions().dtype(dtype);
  const std::vector<int64_t> bc =
      c.groups == 0 ? std::vector<int64_t>{c.batch, c.N, c.L} : std::vector<int64_t>{c.batch, c.groups, c.N, c.L};
  return {at::randn({c.batch, c.dim, c.L}, o),                 // u
          0.5 * at::randn({c.batch, c.dim, c.L}, o) - 1.0,     // delta (raw)
          -at::exp(0.5 * at::randn({c.dim, c.N}, o)),          // A
          at::randn(bc, o),                                    // B
          at::randn(bc, o),                                    // C
          at::randn({c.dim}, o),                               // D
          at::randn({c.batch, c.dim, c.L}, o),                 // z
          0.3 * at::randn({c.dim}, o)};                        // delta_bias
}

models::SelectiveScanResult scan(const std::vector<at::Tensor>& x) {
  return models::selective_scan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], /*delta_softplus=*/true,
                                /*return_last_state=*/true);
}

std::vector<at::Tensor> to_cuda(const std::vector<at::Tensor>& x) {
  std::vector<at::Tensor> r;
  for (const auto& t : x) r.push_back(t.cuda());
  return r;
}

}  // namespace

TEST_SUITE("gpu_selective_scan") {
  TEST_CASE("forward: CUDA equals CPU (fp32, 1e-4)") {
    at::manual_seed(11);
    // One chunk, a ragged last chunk, many chunks, grouped B/C, and a 64^3 sequence on 2 channels.
    for (const Case& c : {Case{2, 5, 37, 16, 0}, Case{1, 3, 1000, 16, 0}, Case{2, 4, 5000, 8, 2},
                          Case{1, 2, 262144, 16, 0}, Case{3, 7, 1, 4, 0}}) {
      const auto x = inputs(c, at::kFloat);
      const auto cpu = scan(x);
      const auto gpu = scan(to_cuda(x));
      CAPTURE(c.L);
      CHECK(at::allclose(gpu.out.cpu(), cpu.out, 1e-4, 1e-4));
      CHECK(at::allclose(gpu.last_state.cpu(), cpu.last_state, 1e-4, 1e-4));
    }
  }

  TEST_CASE("forward: fp16 / bf16 inputs keep an fp32 state on CUDA too") {
    at::manual_seed(12);
    for (at::ScalarType t : {at::kHalf, at::kBFloat16}) {
      auto x = inputs(Case{1, 4, 4096, 16, 0}, at::kFloat);
      for (int i : {0, 1, 6}) x[i] = x[i].to(t);
      const auto cpu = scan(x);
      const auto gpu = scan(to_cuda(x));
      CHECK((gpu.out.scalar_type() == t));
      CHECK(at::isfinite(gpu.out).all().item<bool>());
      CHECK(at::allclose(gpu.last_state.cpu(), cpu.last_state, 1e-3, 1e-3));
      CHECK(at::allclose(gpu.out.cpu().to(at::kFloat), cpu.out.to(at::kFloat), 2e-2, 2e-2));
    }
  }

  TEST_CASE("backward: CUDA gradients equal CPU gradients") {
    at::manual_seed(13);
    for (const Case& c : {Case{2, 4, 300, 8, 0}, Case{1, 4, 700, 4, 2}}) {
      auto x = inputs(c, at::kDouble);
      for (auto& t : x) t.set_requires_grad(true);
      const at::Tensor w = at::randn_like(x[0]);
      const auto cpu = torch::autograd::grad({(scan(x).out * w).sum()}, x);
      std::vector<at::Tensor> xg;
      for (const auto& t : x) xg.push_back(t.detach().cuda().set_requires_grad(true));
      const auto gpu = torch::autograd::grad({(scan(xg).out * w.cuda()).sum()}, xg);
      for (std::size_t i = 0; i < x.size(); ++i) {
        CAPTURE(i);
        CHECK(at::allclose(gpu[i].cpu(), cpu[i], 1e-8, 1e-8));
      }
    }
  }

  TEST_CASE("empty sizes: L = 0 (forward and backward) and N = 0 over several chunks equal the CPU") {
    at::manual_seed(14);
    // L = 0: the backward must still write A's, D's and delta_bias's (zero) gradients; N = 0
    // with L > 1024 has several chunks but no state to carry between them.
    for (const Case& c : {Case{2, 3, 0, 4, 0}, Case{1, 3, 2000, 0, 0}}) {
      CAPTURE(c.L);
      auto x = inputs(c, at::kDouble);
      for (auto& t : x) t.set_requires_grad(true);
      const auto cpu_out = scan(x).out;
      const auto cpu = torch::autograd::grad({cpu_out.sum()}, x);
      std::vector<at::Tensor> xg;
      for (const auto& t : x) xg.push_back(t.detach().cuda().set_requires_grad(true));
      const auto gpu_out = scan(xg).out;
      CHECK(at::allclose(gpu_out.cpu(), cpu_out, 1e-10, 1e-10));
      const auto gpu = torch::autograd::grad({gpu_out.sum()}, xg);
      for (std::size_t i = 0; i < x.size(); ++i) {
        CAPTURE(i);
        CHECK(at::allclose(gpu[i].cpu(), cpu[i], 1e-8, 1e-8));
      }
    }
  }

  TEST_CASE("segmamba and umamba_bot: CUDA equals CPU; fp16 autocast forward and backward are finite") {
    at::manual_seed(14);
    for (const auto& [name, args] : std::vector<std::pair<std::string, nlohmann::json>>{
             {"segmamba", {{"dims", {4, 8, 8, 8}}, {"hidden_size", 8}, {"depths", {1, 1, 1, 1}}, {"d_state", 4}}},
             {"umamba_bot", {{"channels", {4, 8, 16}}, {"d_state", 4}}}}) {
      CAPTURE(name);
      auto m = models::ModelRegistry::instance().create(name, args);
      m->eval();
      const at::Tensor x = at::randn({1, 1, 32, 32, 32});
      at::Tensor cpu, gpu;
      {
        at::NoGradGuard no_grad;
        cpu = m->forward(x);
        m->to(at::kCUDA);
        gpu = m->forward(x.cuda()).cpu();
      }
      CHECK(at::allclose(gpu, cpu, 1e-3, 1e-3));
      m->train();
      pipelines::AutocastGuard autocast(at::kCUDA, at::kHalf);
      const at::Tensor y = m->forward(100 * x.cuda());
      CHECK(at::isfinite(y).all().item<bool>());
      y.to(at::kFloat).square().mean().backward();
      for (const auto& p : m->parameters()) CHECK(at::isfinite(p.grad()).all().item<bool>());
    }
  }
}
