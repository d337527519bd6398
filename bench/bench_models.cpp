// Forward and forward+backward throughput of a registry model on CPU or CUDA.
// Prints one JSON line; bench/models_bench.py runs it beside MONAI / PyTorch eager.
//   neuroseg_bench_models --model unet --args '{}' --size 96 --mode fwd|train [--repeats 3]
//                         [--threads 2] [--device cpu|cuda] [--amp none|bf16|fp16]
#include <chrono>
#include <cstdio>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>

#include "models/registry.h"
#include "pipelines/autocast_guard.h"

int main(int argc, char** argv) {
  CLI::App app{"neuroseg model throughput"};
  std::string model = "unet", args = "{}", mode = "fwd", device = "cpu", amp = "none";
  int64_t size = 96, repeats = 3, threads = 2, batch = 1;
  app.add_option("--model", model);
  app.add_option("--args", args);
  app.add_option("--size", size);
  app.add_option("--batch", batch);
  app.add_option("--mode", mode)->check(CLI::IsMember({"fwd", "train"}));
  app.add_option("--repeats", repeats);
  app.add_option("--threads", threads);
  app.add_option("--device", device);
  app.add_option("--amp", amp)->check(CLI::IsMember({"none", "bf16", "fp16"}));
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(static_cast<int>(threads));
  torch::manual_seed(0);
  const nlohmann::json model_args = nlohmann::json::parse(args);
  auto net = neuroseg::models::ModelRegistry::instance().create(model, model_args);
  const c10::Device dev(device);
  net->to(dev);
  const at::Tensor x = at::randn({batch, net->in_channels(), size, size, size}, at::TensorOptions().device(dev));
  const at::ScalarType amp_type = amp == "fp16" ? at::kHalf : at::kBFloat16;
  auto step = [&] {
    neuroseg::pipelines::AutocastGuard guard(dev.type(), amp_type, amp != "none");
    if (mode == "fwd") {
      c10::InferenceMode inference;
      net->forward(x);
    } else {
      net->zero_grad();
      at::Tensor y = net->forward(x);
      y.to(at::kFloat).mean().backward();
    }
    if (dev.is_cuda()) torch::cuda::synchronize();
  };
  if (mode == "fwd") net->eval();
  else net->train();
  step();  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < repeats; ++r) step();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats;
  const double voxels = double(batch) * size * size * size;
  std::printf("%s\n", nlohmann::json{{"model", model}, {"mode", mode}, {"size", size}, {"device", device},
                                     {"amp", amp}, {"threads", threads}, {"seconds", seconds},
                                     {"voxels_per_s", voxels / seconds},
                                     {"parameters", neuroseg::models::count_parameters(*net)}}
                          .dump()
                          .c_str());
  return 0;
}
