// The LoRA family: zero update at the start, merge/unmerge exact, parameter counts by the
// formulas, dilated and depthwise convs, gradients only in the updates, injection by name
// patterns, adapter files bound to their base model.
#include <doctest/doctest.h>

#include <ATen/ATen.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include "adapters/adapted_model.h"
#include "adapters/low_rank.h"
#include "io/error.h"
#include "models/registry.h"
#include "support/test_support.h"

using namespace neuroseg;
using adapters::AdapterKind;

namespace {

// Gives every factor a random value so that ΔW != 0.
void randomize(adapters::LowRankUpdateImpl& u) {
  torch::NoGradGuard g;
  for (auto& p : u.named_parameters())
    if (p.key() != "magnitude") p.value().normal_(0, 0.1);
    else p.value().mul_(1.3);
}

const std::vector<AdapterKind> kAll = {AdapterKind::kLoraC, AdapterKind::kConvLora, AdapterKind::kCpLora,
                                       AdapterKind::kDoraC, AdapterKind::kConvDora, AdapterKind::kCpDora};

}  // namespace

TEST_SUITE("adapters") {
  TEST_CASE("parameter counts follow the formulas (Conv3d 64->64, 3x3x3, rank 16)") {
    torch::nn::Conv3d conv(torch::nn::Conv3dOptions(64, 64, 3));
    auto count = [&](AdapterKind k) {
      adapters::AdapterOptions o;
      o.kind = k;
      o.rank = 16;
      return adapters::LowRankUpdate(o, conv->weight)->trainable_parameters();
    };
    CHECK(count(AdapterKind::kLoraC) == 16 * (64 + 64 * 27));          // 28,672 (peft's conv LoRA)
    CHECK(count(AdapterKind::kConvLora) == 16 * 3 * (64 * 3 + 64 * 9));  // 36,864 (loralib + PR #157)
    CHECK(count(AdapterKind::kCpLora) == 16 * (64 + 64 + 9));           // 2,192
    CHECK(count(AdapterKind::kDoraC) == count(AdapterKind::kLoraC) + 64);
    CHECK(count(AdapterKind::kCpDora) == count(AdapterKind::kCpLora) + 64);
  }

  TEST_CASE("every kind: zero update at start, dilated/depthwise/2D/Linear layers, merge and unmerge exact") {
    at::manual_seed(1);
    torch::nn::Conv3d dilated(torch::nn::Conv3dOptions(8, 12, {3, 3, 2}).dilation({2, 1, 2}).padding({2, 1, 1}).groups(4));
    torch::nn::Conv3d depthwise(torch::nn::Conv3dOptions(6, 6, 3).padding(1).groups(6));
    torch::nn::Conv2d conv2d(torch::nn::Conv2dOptions(5, 7, 3).stride(2));
    torch::nn::Linear linear(9, 4);
    const at::Tensor x3 = at::randn({2, 8, 7, 6, 9}), xd = at::randn({1, 6, 5, 5, 5}), x2 = at::randn({2, 5, 9, 8}),
                     xl = at::randn({3, 9});
    struct Layer {
      std::function<at::Tensor()> run;
      at::Tensor* weight;
    };
    std::vector<Layer> layers = {{[&] { return dilated(x3); }, &dilated->weight},
                                 {[&] { return depthwise(xd); }, &depthwise->weight},
                                 {[&] { return conv2d(x2); }, &conv2d->weight},
                                 {[&] { return linear(xl); }, &linear->weight}};
    for (const AdapterKind k : kAll)
      for (auto& layer : layers) {
        CAPTURE(adapters::to_string(k));
        adapters::AdapterOptions o;
        o.kind = k;
        o.rank = 3;
        o.alpha = 6;
        const at::Tensor w0 = *layer.weight;  // the registered parameter
        const at::Tensor original = w0.clone();
        const at::Tensor base_out = layer.run();
        adapters::LowRankUpdate u(o, w0);
        CHECK(at::equal(u->effective_weight(), original) ==  !adapters::is_dora(k));  // DoRA: m·W0/|W0| (rounding)
        *layer.weight = u->effective_weight();
        CHECK(at::allclose(layer.run(), base_out, 1e-5, 1e-6));
        randomize(*u);
        *layer.weight = u->effective_weight();
        const at::Tensor adapted = layer.run();
        CHECK_FALSE(at::allclose(adapted, base_out, 1e-3, 1e-4));
        u->merge();
        *layer.weight = u->effective_weight();
        CHECK(at::allclose(layer.run(), adapted, 1e-5, 1e-6));
        u->unmerge();
        CHECK(at::allclose(w0, original, 0, 1e-6));
        *layer.weight = w0;
      }
  }

  TEST_CASE("injection by patterns into a U-Net: table, frozen base, gradients only in updates, files bound to the base") {
    at::manual_seed(2);
    const nlohmann::json args = {{"channels", {4, 8}}, {"out_channels", 2}};
    auto base = models::ModelRegistry::instance().create("unet", args);
    const at::Tensor x = at::randn({1, 1, 8, 8, 8});
    base->eval();
    const at::Tensor base_out = base->forward(x);
    adapters::AdapterOptions o;
    o.kind = AdapterKind::kCpDora;
    o.rank = 2;
    adapters::AdaptedModel m(base, "unet", args, o, std::vector<std::string>{"decoder*"});
    REQUIRE_FALSE(m->layers().empty());
    for (const auto& l : m->layers()) CHECK(l.name.rfind("decoder", 0) == 0);
    m->eval();
    CHECK(at::allclose(m->forward(x), base_out, 1e-5, 1e-6));
    m->train();
    m->forward(x).square().mean().backward();
    for (const auto& p : m->base()->parameters()) CHECK_FALSE(p.grad().defined());
    int64_t with_grad = 0;
    for (const auto& l : m->layers())
      for (const auto& p : l.update->parameters()) with_grad += p.grad().defined();
    CHECK(with_grad > 0);
    CHECK(m->trainable_parameters() < m->base_parameters() / 10);
    CHECK_THROWS_AS(adapters::AdaptedModel(models::ModelRegistry::instance().create("unet", args), "unet", args, o, std::vector<std::string>{"nothing.*"}),
                    io::Error);

    // Save, load onto the same base (identical output), refuse another base's weights.
    for (const auto& l : m->layers()) randomize(*l.update.ptr());
    m->eval();
    const at::Tensor adapted = m->forward(x);
    testing::ScratchDir dir("adapters");
    m->save(dir.file("site.nsa"));
    models::LoadedModel loaded{base, {}};
    loaded.meta.model = "unet";
    loaded.meta.args = args;
    auto again = adapters::load_adapted(loaded, dir.file("site.nsa"));
    again->eval();
    CHECK(at::allclose(again->forward(x), adapted, 1e-6, 1e-7));
    models::LoadedModel other{models::ModelRegistry::instance().create("unet", args), {}};  // other random weights
    other.meta.model = "unet";
    other.meta.args = args;
    CHECK_THROWS_WITH_AS(adapters::load_adapted(other, dir.file("site.nsa")), doctest::Contains("other weights"), io::Error);
    // Norm training: trainable copies of the instance norms' affine parameters, saved with
    // the updates; the base's own parameters stay untouched until merge, restored by unmerge.
    adapters::AdapterOptions on = o;
    on.train_norms = true;
    adapters::AdaptedModel mn(base, "unet", args, on, std::vector<std::string>{"decoder*"});
    REQUIRE_FALSE(mn->norms().empty());
    int64_t norm_params = 0;
    for (const auto& n : mn->norms()) norm_params += n.weight.numel() * 2;
    CHECK(mn->trainable_parameters() == m->trainable_parameters() + norm_params);
    mn->eval();
    CHECK(at::allclose(mn->forward(x), base_out, 1e-5, 1e-6));  // identity at start
    {
      torch::NoGradGuard no_grad;
      for (const auto& n : mn->norms()) n.weight.mul_(1.5), n.bias.add_(0.1);
    }
    const at::Tensor normed = mn->forward(x);
    CHECK_FALSE(at::allclose(normed, base_out, 1e-4, 1e-4));
    const at::Tensor base_norm0 = mn->norms()[0].base_weight.clone();
    mn->merge();
    CHECK(at::allclose(mn->base()->forward(x), normed, 1e-5, 1e-6));
    mn->unmerge();
    CHECK(at::equal(mn->norms()[0].base_weight, base_norm0));
    mn->save(dir.file("site_norms.nsa"));
    auto again_n = adapters::load_adapted(loaded, dir.file("site_norms.nsa"));
    again_n->eval();
    CHECK(at::allclose(again_n->forward(x), normed, 1e-6, 1e-7));
    CHECK(adapters::name_matches("decoder.1.conv", "*.conv"));
    CHECK_FALSE(adapters::name_matches("encoder.conv", "decoder.*"));
  }
}
