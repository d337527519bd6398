// Selective-scan throughput: our op (CPU or CUDA) against the naive per-timestep loop of
// tensor ops (selective_scan_ref's algorithm, detail::selective_scan_naive), on Mamba-shaped
// random inputs (batch 1, N = 16, gate, D, delta bias, softplus). One JSON line per
// (L, channels): tokens/s = batch * L / seconds. The naive loop costs the same per step at
// any L, so it is timed on the first --naive-steps steps and its rate reported as such.
//   neuroseg_bench_scan [--lengths 4096,32768,262144] [--channels 48,96,192,384]
//                       [--threads 2] [--device cpu|cuda] [--repeats 3] [--naive-steps 4096]
//                       [--backward]
#include <chrono>
#include <cstdio>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/autograd.h>
#include <torch/cuda.h>

#include "models/selective_scan.h"

namespace {

using neuroseg::models::selective_scan;

double seconds_of(const std::function<void()>& fn, int64_t repeats, bool cuda) {
  fn();  // warm-up
  if (cuda) torch::cuda::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < repeats; ++r) fn();
  if (cuda) torch::cuda::synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / static_cast<double>(repeats);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"selective scan throughput"};
  std::vector<int64_t> lengths{4096, 32768, 262144}, channels{48, 96, 192, 384};
  int64_t threads = 2, repeats = 3, naive_steps = 4096, dstate = 16;
  std::string device = "cpu";
  bool backward = false;
  app.add_option("--lengths", lengths)->delimiter(',');
  app.add_option("--channels", channels)->delimiter(',');
  app.add_option("--threads", threads);
  app.add_option("--repeats", repeats);
  app.add_option("--naive-steps", naive_steps, "0: skip the naive loop");
  app.add_option("--dstate", dstate);
  app.add_option("--device", device);
  app.add_flag("--backward", backward, "time forward + backward instead of forward");
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(static_cast<int>(threads));
  const bool cuda = device != "cpu";
  const auto opt = at::TensorOptions().device(c10::Device(device));
  for (int64_t L : lengths) {
    for (int64_t D : channels) {
      at::manual_seed(0);
      // Mamba's ranges: A = -(1..N), raw dt around softplus^-1(0.01).
      const at::Tensor u = at::randn({1, D, L}, opt), z = at::randn({1, D, L}, opt);
      const at::Tensor delta = at::randn({1, D, L}, opt) - 4.0;
      const at::Tensor A = -at::arange(1, dstate + 1, opt.dtype(at::kFloat)).repeat({D, 1});
      const at::Tensor B = at::randn({1, dstate, L}, opt), C = at::randn({1, dstate, L}, opt);
      const at::Tensor Dp = at::ones({D}, opt), bias = at::zeros({D}, opt);
      const auto ours = [&] {
        if (!backward) {
          at::NoGradGuard no_grad;
          selective_scan(u, delta, A, B, C, Dp, z, bias, true);
          return;
        }
        const at::Tensor uu = u.detach().requires_grad_(true), dd = delta.detach().requires_grad_(true);
        const at::Tensor out = selective_scan(uu, dd, A, B, C, Dp, z, bias, true).out;
        torch::autograd::grad({out.sum()}, {uu, dd});
      };
      const double t_ours = seconds_of(ours, repeats, cuda);
      nlohmann::json j = {{"L", L}, {"channels", D}, {"dstate", dstate}, {"device", device}, {"threads", threads},
                          {"backward", backward}, {"ours_s", t_ours}, {"ours_tokens_per_s", L / t_ours}};
      if (naive_steps > 0) {
        const int64_t n = std::min(L, naive_steps);
        const auto part = [&](const at::Tensor& t) { return t.narrow(-1, 0, n); };
        const auto naive = [&] {
          if (!backward) {
            at::NoGradGuard no_grad;
            neuroseg::models::detail::selective_scan_naive(part(u), part(delta), A, part(B), part(C), Dp, part(z), bias,
                                                           true);
            return;
          }
          const at::Tensor uu = part(u).detach().requires_grad_(true), dd = part(delta).detach().requires_grad_(true);
          const at::Tensor out =
              neuroseg::models::detail::selective_scan_naive(uu, dd, A, part(B), part(C), Dp, part(z), bias, true).out;
          torch::autograd::grad({out.sum()}, {uu, dd});
        };
        const double t_naive = seconds_of(naive, 1, cuda);
        j["naive_steps_timed"] = n;
        j["naive_tokens_per_s"] = n / t_naive;
        j["speedup"] = (L / t_ours) / (n / t_naive);
      }
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
