// SAM ViT-B image-encoder throughput (images/s) on CPU or CUDA, at any input size (the
// 1024²-shaped weights are interpolated for others, models/sam.h). Prints one JSON line.
//   neuroseg_bench_sam --size 1024 [--batch 1] [--repeats 3] [--threads 2] [--device cpu|cuda]
//                      [--amp none|bf16|fp16] [--lora-rank 0] [--mode fwd|train]
#include <chrono>
#include <cstdio>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>

#include "models/sam.h"
#include "pipelines/autocast_guard.h"

int main(int argc, char** argv) {
  CLI::App app{"SAM ViT-B image encoder throughput"};
  std::string device = "cpu", amp = "none", mode = "fwd";
  int64_t size = 1024, repeats = 3, threads = 2, batch = 1, lora_rank = 0;
  app.add_option("--size", size);
  app.add_option("--batch", batch);
  app.add_option("--repeats", repeats);
  app.add_option("--threads", threads);
  app.add_option("--device", device);
  app.add_option("--amp", amp)->check(CLI::IsMember({"none", "bf16", "fp16"}));
  app.add_option("--lora-rank", lora_rank);
  app.add_option("--mode", mode)->check(CLI::IsMember({"fwd", "train"}));
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(static_cast<int>(threads));
  torch::manual_seed(0);
  neuroseg::models::Sam sam(neuroseg::models::SamOptions().image_size(size).lora_rank(lora_rank).freeze_encoder(lora_rank > 0));
  const c10::Device dev(device);
  sam->to(dev);
  const at::Tensor x = at::randn({batch, 3, size, size}, at::TensorOptions().device(dev));
  const at::ScalarType amp_type = amp == "fp16" ? at::kHalf : at::kBFloat16;
  auto step = [&] {
    neuroseg::pipelines::AutocastGuard guard(dev.type(), amp_type, amp != "none");
    if (mode == "fwd") {
      c10::InferenceMode inference;
      sam->encode(x);
    } else {
      sam->zero_grad();
      sam->encode(x).to(at::kFloat).mean().backward();
    }
    if (dev.is_cuda()) torch::cuda::synchronize();
  };
  if (mode == "fwd") sam->eval();
  else sam->train();
  step();  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < repeats; ++r) step();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats;
  std::printf("%s\n", nlohmann::json{{"model", "sam_vit_b image encoder"}, {"mode", mode}, {"size", size}, {"batch", batch},
                                     {"device", device}, {"amp", amp}, {"threads", threads}, {"lora_rank", lora_rank},
                                     {"seconds_per_batch", seconds}, {"images_per_s", double(batch) / seconds}}
                          .dump()
                          .c_str());
  return 0;
}
