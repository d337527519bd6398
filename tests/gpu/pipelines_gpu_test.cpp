// The model and pipeline paths on CUDA against their CPU results.
#include <doctest/doctest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include "models/registry.h"
#include "pipelines/augment.h"
#include "pipelines/sliding_window.h"

using namespace neuroseg;

TEST_SUITE("gpu_pipelines") {
  TEST_CASE("U-Net, PLS-Net and the sliding window on CUDA match the CPU") {
    for (const char* name : {"unet", "plsnet"}) {
      torch::manual_seed(0);
      auto m = models::ModelRegistry::instance().create(name, {{"out_channels", 2}});
      m->eval();
      const at::Tensor x = at::randn({1, 1, 32, 32, 32});
      at::Tensor cpu;
      {
        c10::InferenceMode guard;
        cpu = m->forward(x);
      }
      m->to(at::kCUDA);
      c10::InferenceMode guard;
      CHECK(at::allclose(m->forward(x.cuda()).cpu(), cpu, 1e-3, 1e-3));
      pipelines::SlidingWindowOptions o;
      o.roi = {32, 32, 32};
      o.device = c10::Device(c10::kCUDA, 0);
      const at::Tensor volume = at::randn({1, 40, 48, 36});
      const at::Tensor gpu_out = pipelines::sliding_window_inference(*m, volume, o);
      o.buffers = "host";  // float32 host buffers: the same result as fp16 device buffers, within fp16
      CHECK(at::allclose(gpu_out, pipelines::sliding_window_inference(*m, volume, o), 2e-3, 2e-3));
      m->to(at::kCPU);
      o.device = c10::Device(c10::kCPU);
      CHECK(at::allclose(gpu_out, pipelines::sliding_window_inference(*m, volume, o), 2e-3, 2e-3));
    }
  }

  TEST_CASE("augmentation runs on the device and keeps labels integral") {
    at::Tensor image = at::randn({2, 1, 16, 16, 16}, at::kCUDA);
    at::Tensor label = (at::rand({2, 16, 16, 16}, at::kCUDA) > 0.5).to(at::kLong);
    pipelines::AugmentOptions o;
    o.probability = 1.0;
    o.elastic = 2.0;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
    pipelines::augment_batch(image, label, o, gen);
    CHECK(image.is_cuda());
    CHECK(at::isfinite(image).all().item<bool>());
    CHECK(((label == 0) | (label == 1)).all().item<bool>());
  }
}
