// Mamba block (parameter shapes, counts and init as mamba_simple.py), causality, the
// tri-orientated variant, and the umamba_bot / umamba_enc / segmamba registry models:
// shapes for odd sizes, gradients, checkpoint round trip.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/mamba.h"
#include "models/registry.h"
#include "pipelines/autocast_guard.h"
#include "support/test_support.h"

using namespace neuroseg;
using nlohmann::json;

namespace {

models::SegmentationModel make(const std::string& name, const json& args) {
  return models::ModelRegistry::instance().create(name, args);
}

const json kTinyUMamba = {{"channels", {4, 8, 16}}, {"out_channels", 3}, {"d_state", 4}};
const json kTinySegMamba = {{"dims", {4, 8, 8, 8}}, {"hidden_size", 8}, {"depths", {1, 1, 1, 1}}, {"d_state", 4},
                            {"out_channels", 3}};

}  // namespace

TEST_SUITE("models_mamba") {
  TEST_CASE("Mamba block: parameter shapes, counts and init follow mamba_simple.py") {
    torch::manual_seed(0);
    // The spec's count for d_model 320: 675,840 with the LayerNorm of a Mamba layer.
    models::MambaLayer layer(320, models::MambaOptions(320), /*residual=*/false);
    CHECK(models::count_parameters(*layer) == 675840);
    const auto p = layer->mamba->named_parameters();
    CHECK(p["in_proj.weight"].sizes() == at::IntArrayRef({1280, 320}));
    CHECK(p["conv1d.weight"].sizes() == at::IntArrayRef({640, 1, 4}));
    CHECK(p["x_proj.weight"].sizes() == at::IntArrayRef({20 + 32, 640}));  // dt_rank = ceil(320 / 16)
    CHECK(p["dt_proj.weight"].sizes() == at::IntArrayRef({640, 20}));
    CHECK(p["A_log"].sizes() == at::IntArrayRef({640, 16}));
    CHECK(p["out_proj.weight"].sizes() == at::IntArrayRef({320, 640}));
    CHECK(at::allclose(p["A_log"][5], at::log(at::arange(1, 17, at::kFloat))));
    CHECK(at::equal(p["D"], at::ones({640})));
    // softplus(dt bias) is the initial step, log-uniform in [dt_min, dt_max] = [1e-3, 0.1].
    const at::Tensor dt = at::softplus(p["dt_proj.bias"]);
    CHECK(dt.min().item<double>() >= 1e-3 * (1 - 1e-4));
    CHECK(dt.max().item<double>() <= 0.1 * (1 + 1e-4));
    // SegMamba's tri-orientated layer (the spec's analysis: 31,488 at C = 48).
    models::MambaLayer tom(48, models::MambaOptions(48).directions(3), /*residual=*/true);
    CHECK(models::count_parameters(*tom) == 31488);
    const auto q = tom->mamba->named_parameters();
    for (const char* key : {"A_b_log", "A_s_log", "D_b", "D_s", "conv1d_b.weight", "x_proj_s.weight", "dt_proj_b.bias"})
      CHECK(q.contains(key));
  }

  TEST_CASE("Mamba block equals mamba-ssm's Mamba (reference path) with the same weights") {
    // tests/fixtures/make_selective_scan_fixture.py ran mamba_simple.Mamba(d_model 8,
    // d_state 4) of mamba-ssm 2.3.2.post1 and saved its state dict, input and output.
    auto all = models::read_state_dict(std::string(NEUROSEG_SOURCE_DIR) + "/tests/fixtures/selective_scan_ref.pt");
    std::map<std::string, at::Tensor> weights;
    for (const auto& [key, value] : all)
      if (key.rfind("block.", 0) == 0 && key != "block.input" && key != "block.output") weights[key.substr(6)] = value;
    models::Mamba block(models::MambaOptions(8).d_state(4));
    models::load_state_dict(*block, weights, {}, "selective_scan_ref.pt");  // strict: same names and shapes
    at::NoGradGuard no_grad;
    const at::Tensor out = block->forward(all.at("block.input"));
    const double err = (out - all.at("block.output")).abs().max().item<double>();
    MESSAGE("Mamba block vs mamba_simple.Mamba: max abs error " << err);
    CHECK(at::allclose(out, all.at("block.output"), 1e-5, 1e-5));
  }

  TEST_CASE("one-direction Mamba is causal; the tri-orientated one is not") {
    torch::manual_seed(1);
    models::Mamba one(models::MambaOptions(8).d_state(4));
    models::Mamba three(models::MambaOptions(8).d_state(4).directions(3));
    const at::Tensor x = at::randn({2, 24, 8});
    at::Tensor changed = x.clone();
    changed.narrow(1, 15, 9).normal_();  // tokens 15.. differ
    const at::Tensor a = one->forward(x), b = one->forward(changed);
    CHECK(at::allclose(a.narrow(1, 0, 15), b.narrow(1, 0, 15), 1e-6, 1e-6));
    CHECK_FALSE(at::allclose(a.narrow(1, 15, 9), b.narrow(1, 15, 9)));
    CHECK_FALSE(at::allclose(three->forward(x, 4).narrow(1, 0, 15), three->forward(changed, 4).narrow(1, 0, 15)));
  }

  TEST_CASE("umamba_bot, umamba_enc, segmamba: shapes, gradients, layers where the papers put them") {
    torch::manual_seed(2);
    for (const auto& [name, args, size] : std::vector<std::tuple<std::string, json, std::vector<int64_t>>>{
             {"umamba_bot", kTinyUMamba, {8, 12, 4}},
             {"umamba_enc", kTinyUMamba, {4, 8, 12}},
             {"segmamba", kTinySegMamba, {16, 32, 16}}}) {
      CAPTURE(name);
      auto m = make(name, args);
      const at::Tensor x = at::randn({2, 1, size[0], size[1], size[2]});
      const at::Tensor y = m->forward(x);
      CHECK(y.sizes() == at::IntArrayRef({2, 3, size[0], size[1], size[2]}));
      y.square().mean().backward();
      for (const auto& p : m->named_parameters()) {
        CAPTURE(p.key());
        REQUIRE(p.value().grad().defined());
      }
      int64_t layers = 0;
      for (const auto& p : m->named_parameters())
        if (p.key().find("A_log") != std::string::npos) ++layers;
      CHECK(layers == (name == "umamba_bot" ? 1 : name == "umamba_enc" ? 3 : 4));
    }
    CHECK_THROWS_WITH(make("segmamba", {{"dims", {4, 8}}}),
                      "model 'segmamba': argument 'dims': SegMamba has exactly 4 stages, e.g. [48, 96, 192, 384]");
  }

  TEST_CASE("umamba_enc: stages with no more voxels than channels scan channel tokens") {
    torch::manual_seed(3);
    // Patch 8^3, strides 1, 2, 2: stage 2 is 2^3 = 8 voxels <= 32 channels.
    auto m = make("umamba_enc", {{"channels", {4, 12, 32}}, {"d_state", 4}, {"patch_size", {8, 8, 8}}});
    const auto p = m->named_parameters();
    CHECK(p["mamba.2.norm.weight"].sizes() == at::IntArrayRef({8}));                // d_model = 8 voxels
    CHECK(p["mamba.2.mamba.in_proj.weight"].sizes() == at::IntArrayRef({32, 8}));
    CHECK(p["mamba.1.norm.weight"].sizes() == at::IntArrayRef({12}));               // d_model = 12 channels
    CHECK(m->forward(at::randn({1, 1, 8, 8, 8})).sizes() == at::IntArrayRef({1, 2, 8, 8, 8}));
  }

  TEST_CASE("parameter counts match the spec's analysis of the reference code") {
    // shared/specs/mamba_sam.md §A.5 (SegMamba, in 4 / out 4): ~67.4 M in all, Mamba layers
    // ~3.1 M; one ToM layer 31,488 / 94,080 / 312,576 / 1,122,816 at C = 48 / 96 / 192 / 384.
    auto m = make("segmamba", {{"in_channels", 4}, {"out_channels", 4}});
    const auto p = m->named_parameters();
    int64_t total = 0, mamba = 0, encoder = 0;
    std::vector<int64_t> per_stage(4, 0);
    for (const auto& kv : p) {
      const int64_t n = kv.value().numel();
      total += n;
      const std::string& k = kv.key();
      if (k.rfind("stages.", 0) == 0) {
        mamba += n;
        if (k.rfind(".0.", 8) == 8) per_stage[std::stoi(k.substr(7, 1))] += n;  // first layer of each stage
      }
      if (k.rfind("downsample.", 0) == 0 || k.rfind("gsc.", 0) == 0 || k.rfind("stages.", 0) == 0 ||
          k.rfind("out_mlp.", 0) == 0)
        encoder += n;
    }
    MESSAGE("segmamba(4 -> 4): total " << total << ", encoder " << encoder << ", Mamba layers " << mamba);
    CHECK(per_stage == std::vector<int64_t>{31488, 94080, 312576, 1122816});
    CHECK(std::abs(total - 67.4e6) / 67.4e6 < 0.01);
    CHECK(std::abs(encoder - 15.7e6) / 15.7e6 < 0.01);
    CHECK(std::abs(mamba - 3.1e6) / 3.1e6 < 0.02);
    // U-Mamba_Bot's bottleneck layer at 320 channels: 675,840 (§A.4).
    auto bot = make("umamba_bot", json::object());
    CHECK(models::count_parameters(*bot->named_children()["mamba"]) == 675840);
  }

  TEST_CASE("autocast (bf16) over a long sequence stays finite and close to fp32") {
    // U-Mamba reports NaNs under AMP (bowang-lab/U-Mamba#8); here the scan's state is fp32
    // whatever the input dtype. 16 x 32 x 32 = 16,384 tokens, large activations.
    torch::manual_seed(5);
    models::MambaLayer layer(8, models::MambaOptions(8).d_state(16).directions(3), /*residual=*/false);
    const at::Tensor x = 50 * at::randn({1, 8, 16, 32, 32});
    const at::Tensor ref = layer->forward(x);
    at::Tensor low;
    {
      pipelines::AutocastGuard autocast(at::kCPU, at::kBFloat16);
      low = layer->forward(x);
      low.to(at::kFloat).sum().backward();
    }
    CHECK((low.scalar_type() == at::kBFloat16));  // autocast really ran the projections in bf16
    CHECK(at::isfinite(low).all().item<bool>());
    for (const auto& p : layer->parameters()) CHECK(at::isfinite(p.grad()).all().item<bool>());
    const double rel = ((low.to(at::kFloat) - ref).norm() / ref.norm()).item<double>();
    MESSAGE("bf16 autocast vs fp32, relative L2 difference " << rel);
    CHECK(rel < 0.05);
  }

  TEST_CASE("checkpoint round trip") {
    testing::ScratchDir dir("mamba_checkpoint");
    torch::manual_seed(4);
    for (const auto& [name, args] :
         std::vector<std::pair<std::string, json>>{{"umamba_bot", kTinyUMamba}, {"segmamba", kTinySegMamba}}) {
      auto m = make(name, args);
      m->eval();
      models::CheckpointMeta meta;
      meta.model = name;
      meta.args = args;
      meta.patch_size = {16, 16, 16};
      models::save_checkpoint(dir.file(name + ".pt"), *m, meta);
      const auto loaded = models::load_checkpoint(dir.file(name + ".pt"));
      const at::Tensor x = at::randn({1, 1, 16, 16, 16});
      CHECK(at::equal(loaded.model->forward(x), m->forward(x)));
    }
  }
}
