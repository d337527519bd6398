// The losses of losses/ on CUDA: equal to the CPU in float32, and float32 with finite
// gradients under CUDA fp16/bf16 autocast with extreme half-precision logits.
#include <doctest/doctest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "losses/cl_dice.h"
#include "losses/loss_factory.h"
#include "pipelines/autocast_guard.h"

using namespace neuroseg;

TEST_SUITE("gpu_losses") {
  TEST_CASE("every loss on CUDA equals the CPU (float32)") {
    at::manual_seed(0);
    const at::Tensor x = at::randn({2, 3, 9, 10, 11}) * 3;
    const at::Tensor t = at::randint(0, 3, {2, 9, 10, 11}, at::kLong);
    for (const auto& name : losses::loss_names()) {
      CAPTURE(name);
      const losses::LossFn f = losses::make_loss(name, nlohmann::json::object());
      at::Tensor xc = x.clone().requires_grad_(true), xg = x.cuda().requires_grad_(true);
      const at::Tensor lc = f(xc, t), lg = f(xg, t.cuda());
      CHECK(lg.item<double>() == doctest::Approx(lc.item<double>()).epsilon(1e-5));
      lc.backward();
      lg.backward();
      CHECK(at::allclose(xg.grad().cpu(), xc.grad(), 1e-4, 1e-6));
    }
    const at::Tensor bar = (at::rand({1, 2, 12, 13, 14}) > 0.4).to(at::kFloat);
    CHECK(at::allclose(losses::soft_skeleton(bar.cuda(), 5).cpu(), losses::soft_skeleton(bar, 5)));
  }

  TEST_CASE("CUDA autocast: float32 losses, finite gradients with +-1e4 half logits") {
    at::manual_seed(1);
    const at::Tensor signs = at::randint(0, 2, {2, 3, 6, 7, 8}).to(at::kFloat) * 2 - 1;
    const std::vector<at::Tensor> targets{at::randint(0, 3, {2, 6, 7, 8}, at::kLong), at::zeros({2, 6, 7, 8}, at::kLong),
                                          at::full({2, 6, 7, 8}, 2, at::kLong)};
    for (const auto& name : losses::loss_names()) {
      const losses::LossFn f = losses::make_loss(name, nlohmann::json::object());
      for (const auto& target : targets) {
        for (const at::ScalarType amp : {at::kHalf, at::kBFloat16}) {
          CAPTURE(name);
          CAPTURE(amp);
          const at::Tensor half = (signs * 1e4).to(amp);
          const double ref = f(half.to(at::kFloat), target).item<double>();
          REQUIRE(std::isfinite(ref));
          at::Tensor logits = half.cuda().requires_grad_(true);
          at::Tensor loss;
          {
            pipelines::AutocastGuard guard(c10::kCUDA, amp);
            loss = f(logits, target.cuda());
          }
          CHECK((loss.scalar_type() == at::kFloat));
          CHECK(loss.item<double>() == doctest::Approx(ref).epsilon(1e-5));
          loss.backward();
          CHECK(at::isfinite(logits.grad()).all().item<bool>());
        }
      }
    }
    // A convolution under fp16 autocast feeding the loss: fp16 logits, float32 loss and
    // finite float32 weight gradients.
    at::Tensor weight = (at::randn({3, 1, 3, 3, 3}) * 0.3).cuda().requires_grad_(true);
    const at::Tensor image = at::randn({2, 1, 6, 7, 8}).cuda() * 1e3;
    at::Tensor logits, loss;
    {
      pipelines::AutocastGuard guard(c10::kCUDA, at::kHalf);
      logits = at::conv3d(image, weight, {}, {1, 1, 1}, {1, 1, 1});
      loss = losses::make_loss("dice_focal", nlohmann::json::object())(logits, targets[0].cuda());
    }
    CHECK((logits.scalar_type() == at::kHalf));
    CHECK((loss.scalar_type() == at::kFloat));
    loss.backward();
    CHECK(at::isfinite(weight.grad()).all().item<bool>());
  }
}
