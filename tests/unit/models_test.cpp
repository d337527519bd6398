// Models: registry, U-Net (3D/2D), PLS-Net, checkpoints and Python weights.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <torch/serialize.h>

#include "io/compression.h"
#include "io/error.h"
#include "models/checkpoint.h"
#include "models/plsnet.h"
#include "models/registry.h"
#include "models/unet.h"
#include "pipelines/autocast_guard.h"
#include "support/test_support.h"

using namespace neuroseg;
using nlohmann::json;

namespace {

models::SegmentationModel make(const std::string& name, const json& args) {
  return models::ModelRegistry::instance().create(name, args);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

const json kTiny = {{"channels", {4, 8, 16}}, {"out_channels", 3}};

}  // namespace

TEST_SUITE("models_registry") {
  TEST_CASE("the registry holds exactly what neuroseg ships") {
    CHECK(models::ModelRegistry::instance().names() == std::vector<std::string>{"unet", "unet2d", "plsnet", "umamba_bot", "umamba_enc", "segmamba", "sam_vit_b", "torchscript"});
  }

  TEST_CASE("unknown names and arguments suggest the closest valid one") {
    CHECK(error_of([] { make("Unte", {}); }) ==
          "model 'Unte': unknown model; did you mean 'unet'? (available: unet, unet2d, plsnet, umamba_bot, umamba_enc, segmamba, sam_vit_b, torchscript)");
    CHECK(error_of([] { make("unet", {{"chanels", {4, 8}}}); }).find("unknown argument 'chanels'; did you mean 'channels'?") !=
          std::string::npos);
    CHECK(error_of([] { make("UNET", {{"norm", "instnce"}}); }) ==
          "model 'unet': argument 'norm': unknown value 'instnce'; did you mean 'instance'? (one of instance, batch, group)");
  }

  TEST_CASE("bad values name the argument") {
    CHECK(error_of([] { make("unet", {{"out_channels", -1}}); }) == "model 'unet': argument 'out_channels': must be >= 1, got -1");
    CHECK(error_of([] { make("unet", {{"channels", {4, 0, 8}}}); }) ==
          "model 'unet': argument 'channels': values must be >= 1, got 0");
    CHECK(error_of([] { make("unet", {{"channels", {4, 8}}, {"strides", {1, 2, 2}}}); }) ==
          "model 'unet': argument 'strides': has 3 entries; needs one per stage (2)");
    CHECK(error_of([] { make("unet", {{"channels", {4, 8}}, {"kernel_sizes", {3, 4}}}); }) ==
          "model 'unet': argument 'kernel_sizes': must be odd, got 4");
    CHECK(error_of([] { make("unet", {{"channels", {4, 12}}, {"norm", "group"}}); }) ==
          "model 'unet': argument 'num_groups': 4 channels are not divisible into 8 groups");
    CHECK(error_of([] { make("unet", {{"deep_supervision", "yes"}}); }) ==
          "model 'unet': argument 'deep_supervision': expected true or false, got \"yes\"");
    CHECK(error_of([] { make("plsnet", {{"channels", {16, 64}}}); }) ==
          "model 'plsnet': argument 'channels': PLS-Net has exactly 3 stages, e.g. [16, 64, 128]");
    CHECK(error_of([] { make("torchscript", {}); }).find("argument 'path'") != std::string::npos);
    CHECK(error_of([] { make("unet", json::array()); }) == "model 'unet': arguments must be a JSON object");
  }
}

TEST_SUITE("models_unet") {
  TEST_CASE("output shapes for several sizes, strides and variants") {
    torch::manual_seed(0);
    struct Case {
      json args;
      std::vector<int64_t> input;
    };
    const std::vector<Case> cases = {
        {kTiny, {2, 1, 8, 16, 12}},
        {{{"channels", {4, 8, 16}}, {"strides", {{1, 1, 1}, {1, 2, 2}, {2, 2, 2}}}}, {1, 1, 6, 12, 20}},
        {{{"channels", {4, 8}}, {"block", "residual"}, {"norm", "batch"}, {"act", "relu"}, {"upsample", "interpolate"}},
         {2, 1, 4, 6, 8}},
        {{{"channels", {8, 16}}, {"norm", "group"}, {"num_groups", 4}, {"in_channels", 2}, {"kernel_sizes", {{1, 3, 3}, 3}}},
         {1, 2, 4, 4, 4}},
    };
    for (const auto& c : cases) {
      INFO(c.args.dump());
      auto m = make("unet", c.args);
      const at::Tensor y = m->forward(at::randn(c.input));
      CHECK(y.size(0) == c.input[0]);
      CHECK(y.size(1) == m->out_channels());
      for (int a = 2; a < 5; ++a) CHECK(y.size(a) == c.input[a]);
    }
    auto two = make("unet2d", {{"channels", {4, 8}}, {"out_channels", 2}});
    CHECK((two->forward(at::randn({1, 1, 3, 8, 6})).sizes() == at::IntArrayRef{1, 2, 3, 8, 6}));
    CHECK(two->size_divisor() == std::array<int64_t, 3>{1, 2, 2});
  }

  TEST_CASE("deep supervision returns one output per decoder stage, full resolution first") {
    auto m = make("unet", {{"channels", {4, 8, 16}}, {"deep_supervision", true}});
    const auto outs = m->forward_deep_supervision(at::randn({1, 1, 8, 8, 8}));
    REQUIRE(outs.size() == 2);
    CHECK((outs[0].sizes() == at::IntArrayRef{1, 2, 8, 8, 8}));
    CHECK((outs[1].sizes() == at::IntArrayRef{1, 2, 4, 4, 4}));
  }

  TEST_CASE("sizes that do not divide by the total stride say how to pad") {
    auto m = make("unet", {{"channels", {4, 8, 16}}, {"strides", {{1, 1, 1}, {1, 2, 2}, {2, 2, 2}}}});
    CHECK(m->size_divisor() == std::array<int64_t, 3>{2, 4, 4});
    CHECK(error_of([&] { m->forward(at::randn({1, 1, 5, 12, 10})); }) ==
          "model 'unet': input size 5x12x10 (DxHxW) is not a multiple of the total stride 2x4x4; pad it to 6x12x12");
    CHECK(error_of([&] { m->forward(at::randn({1, 2, 4, 4, 4})); }) == "model 'unet': expects 1 input channels, got 2");
  }

  TEST_CASE("parameter count matches the layer arithmetic") {
    // enc0 conv 1->4 (112) + norm (8) + conv 4->4 (436) + norm (8); enc1 8*4*27+8 + 16 + 8*8*27+8 + 16;
    // up 8*4*8+4; dec 4*8*27+4 + 8 + 436 + 8; head 4*2+2  = 4794
    CHECK(models::count_parameters(*make("unet", {{"channels", {4, 8}}})) == 4794);
  }

  TEST_CASE("gradients reach every parameter; CPU forward is deterministic") {
    torch::manual_seed(3);
    for (const auto& [name, args] : std::vector<std::pair<std::string, json>>{
             {"unet", kTiny}, {"unet", {{"channels", {4, 8}}, {"block", "residual"}}}, {"plsnet", json::object()}}) {
      INFO(name);
      auto m = make(name, args);
      m->train();
      const at::Tensor x = at::randn({2, 1, 8, 8, 8});
      const at::Tensor y = m->forward(x);
      (y * at::randn_like(y)).sum().backward();
      for (const auto& p : m->named_parameters()) {
        INFO(p.key());
        REQUIRE(p.value().grad().defined());
        CHECK(p.value().grad().abs().sum().item<double>() > 0);
      }
      m->eval();
      c10::InferenceMode guard;
      CHECK(at::equal(m->forward(x), m->forward(x)));
    }
  }

  TEST_CASE("autocast bf16 and channels-last-3d agree with fp32") {
    torch::manual_seed(5);
    auto m = make("unet", kTiny);
    m->eval();
    c10::InferenceMode guard;
    const at::Tensor x = at::randn({1, 1, 8, 16, 12});
    const at::Tensor ref = m->forward(x);
    const at::Tensor cl = m->forward(x.contiguous(at::MemoryFormat::ChannelsLast3d));
    CHECK(at::allclose(cl, ref, 1e-4, 1e-4));
    at::Tensor half;
    {
      pipelines::AutocastGuard amp(at::kCPU, at::kBFloat16);
      half = m->forward(x);
      CHECK(at::autocast::is_autocast_enabled(at::kCPU));
    }
    CHECK_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
    CHECK((half.scalar_type() == at::kBFloat16));
    CHECK(at::isfinite(half).all().item<bool>());
    CHECK((half.to(at::kFloat) - ref).abs().max().item<double>() < 0.1 * ref.abs().max().item<double>() + 0.05);
  }
}

TEST_SUITE("models_plsnet") {
  TEST_CASE("parameter counts match the spec (250.7k for 2 classes) and shapes") {
    const double expected[] = {250.7e3, 251.5e3, 252.2e3};
    for (int c = 2; c <= 4; ++c) {
      auto m = make("plsnet", {{"out_channels", c}});
      CHECK(std::abs(models::count_parameters(*m) - expected[c - 2]) / expected[c - 2] < 0.01);
    }
    auto m = make("plsnet", json::object());
    m->eval();
    CHECK((m->forward(at::randn({1, 1, 16, 24, 8})).sizes() == at::IntArrayRef{1, 2, 16, 24, 8}));
    CHECK(error_of([&] { m->forward(at::randn({1, 1, 12, 16, 16})); }).find("pad it to 16x16x16") != std::string::npos);
  }

  TEST_CASE("batch statistics at inference (Bouget et al.) leave the running statistics alone") {
    torch::manual_seed(7);
    auto running = make("plsnet", json::object());
    auto batch = make("plsnet", {{"batch_stats_at_inference", true}});
    // Same weights; perturbed running stats so that the two modes differ.
    models::load_state_dict(*batch, [&] {
      std::map<std::string, at::Tensor> t;
      for (const auto& p : running->named_parameters()) t[p.key()] = p.value();
      for (const auto& b : running->named_buffers()) t[b.key()] = b.value();
      return t;
    }(), {}, "same");
    running->eval();
    batch->eval();
    const at::Tensor x = at::randn({1, 1, 8, 8, 8}) * 3 + 1;
    auto before = batch->named_buffers()["down1.norm.bn.running_mean"].clone();
    const at::Tensor a = running->forward(x), b = batch->forward(x);
    CHECK_FALSE(at::allclose(a, b));
    CHECK(at::equal(before, batch->named_buffers()["down1.norm.bn.running_mean"]));
  }
}

TEST_SUITE("models_checkpoint") {
  TEST_CASE("save -> load gives identical outputs and the same metadata") {
    testing::ScratchDir dir("checkpoint");
    torch::manual_seed(11);
    for (const auto& [name, args] : std::vector<std::pair<std::string, json>>{{"unet", kTiny}, {"plsnet", json::object()}}) {
      auto m = make(name, args);
      m->eval();
      models::CheckpointMeta meta;
      meta.model = name;
      meta.args = args;
      meta.preprocessing = {{"target_spacing", {1.0, 1.0, 1.0}}, {"orientation", "RAS"},
                            {"normalization", {{"scheme", "zscore"}, {"mean", 12.5}, {"std", 3.0}}}};
      meta.labels = {{"background", 0}, {"brain", 1}};
      meta.patch_size = {8, 16, 16};
      const std::string path = dir.file(name + ".pt");
      models::save_checkpoint(path, *m, meta);
      const auto loaded = models::load_checkpoint(path);
      const at::Tensor x = at::randn({1, 1, 8, 16, 16});
      CHECK(at::equal(loaded.model->forward(x), m->forward(x)));
      CHECK(loaded.meta.to_json() == meta.to_json());
    }
  }

  TEST_CASE("incompatible files are refused with the reason") {
    testing::ScratchDir dir("checkpoint_bad");
    auto m = make("unet", kTiny);
    models::CheckpointMeta meta;
    meta.model = "unet";
    meta.args = kTiny;
    models::save_checkpoint(dir.file("ok.pt"), *m, meta);
    // A newer format version.
    auto root = torch::pickle_load([&] {
                  const auto b = io::read_file_bytes(dir.file("ok.pt"));
                  return std::vector<char>(b.begin(), b.end());
                }()).toGenericDict();
    root.insert_or_assign(std::string("version"), int64_t(99));
    {
      const auto bytes = torch::pickle_save(c10::IValue(root));
      std::ofstream(dir.file("new.pt"), std::ios::binary).write(bytes.data(), bytes.size());
    }
    CHECK(error_of([&] { models::load_checkpoint(dir.file("new.pt")); }).find("format version 99 is not supported") !=
          std::string::npos);
    std::ofstream(dir.file("junk.pt")) << "not a pickle";
    CHECK(error_of([&] { models::load_checkpoint(dir.file("junk.pt")); }).find("junk.pt: not a readable torch.save file") !=
          std::string::npos);
    // Weights that do not fit: every kind of problem listed.
    std::map<std::string, at::Tensor> t;
    for (const auto& p : m->named_parameters()) t[p.key()] = p.value().clone();
    t.erase("heads.0.conv.bias");
    t["encoder.0.0.conv.weight"] = at::zeros({5, 1, 3, 3, 3});
    t["extra.weight"] = at::zeros({1});
    const std::string e = error_of([&] { models::load_state_dict(*m, t, {}, "w.pt"); });
    CHECK(e.find("w.pt: weights do not fit the model: mis-shaped: encoder.0.0.conv.weight (5, 1, 3, 3, 3) vs model (4, 1, 3, 3, 3)") == 0);
    CHECK(e.find("missing: heads.0.conv.bias") != std::string::npos);
    CHECK(e.find("unexpected: extra.weight") != std::string::npos);
  }
}

TEST_SUITE("models_python") {
  TEST_CASE("weights and TorchScript saved by Python PyTorch reproduce Python's output to 1e-5") {
    testing::ScratchDir dir("python_fixture");
    const std::string cmd = std::string(NEUROSEG_PYTHON) + " " + NEUROSEG_SOURCE_DIR +
                            "/tests/fixtures/make_torch_fixtures.py " + dir.path().string() + " > /dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    const auto io_pair = models::read_state_dict(dir.file("unet_io.pt"));
    const at::Tensor x = io_pair.at("input"), expected = io_pair.at("output");
    const json args = {{"channels", {4, 8, 16}}, {"strides", {{1, 1, 1}, {2, 2, 2}, {1, 2, 2}}}, {"out_channels", 3}};
    auto m = make("unet", args);
    m->eval();
    models::load_state_dict(*m, models::read_state_dict(dir.file("unet_state_dict.pt")), {}, "unet_state_dict.pt");
    CHECK(at::allclose(m->forward(x), expected, 1e-5, 1e-5));

    // The same weights under other names need the key map; without it every key is reported.
    auto m2 = make("unet", args);
    m2->eval();
    CHECK(error_of([&] {
            models::load_state_dict(*m2, models::read_state_dict(dir.file("unet_state_dict_prefixed.pt")), {}, "p.pt");
          }).find("unexpected: module.") != std::string::npos);
    models::StateDictOptions map;
    map.key_map = {{"^module\\.", ""}};
    models::load_state_dict(*m2, models::read_state_dict(dir.file("unet_state_dict_prefixed.pt")), map, "p.pt");
    CHECK(at::allclose(m2->forward(x), expected, 1e-5, 1e-5));

    auto ts = make("torchscript", {{"path", dir.file("unet_torchscript.pt")}, {"out_channels", 3}});
    CHECK(at::allclose(ts->forward(x), expected, 1e-5, 1e-5));
  }
}
