// SAM ViT-B (models/sam.h): the official state-dict layout, equivalence with the Python
// reference on a tiny configuration (tests/fixtures/sam_tiny.pt, from make_sam_fixture.py),
// strict loading, shapes of the prompt-free slice model, LoRA's parameter count and memory
// slots. The full ViT-B at 1024² against the reference is the slow suite models_sam_slow.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/serialize.h>

#include "io/error.h"
#include "models/checkpoint.h"
#include "models/registry.h"
#include "models/sam.h"
#include "pipelines/slice_inference.h"
#include "pipelines/synth_em.h"
#include "support/test_support.h"

using namespace neuroseg;
using nlohmann::json;

namespace {

// The configuration of make_sam_fixture.py's tiny_sam().
json tiny_args() {
  return {{"image_size", 128},     {"pretrain_image_size", 128}, {"embed_dim", 32},        {"depth", 4},
          {"num_heads", 2},        {"global_attn_indexes", {1, 3}}, {"window_size", 3},   {"prompt_embed_dim", 32},
          {"mask_in_chans", 8},    {"decoder_heads", 2},         {"decoder_mlp_dim", 64}, {"iou_head_hidden_dim", 32}};
}

json with(json a, const json& extra) {
  for (const auto& item : extra.items()) a[item.key()] = item.value();
  return a;
}

models::Sam make_sam(const json& args) { return models::Sam(models::SamOptions::from_json(args)); }

std::string fixture(const std::string& name) { return std::string(NEUROSEG_SOURCE_DIR) + "/tests/fixtures/" + name; }

std::map<std::string, at::Tensor> read_fixture(const std::string& path) { return models::read_state_dict(path); }

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  return (a - b).abs().max().item<double>();
}

// The tiny fixture's weights (keys "w.<name>") into a model built with `args`.
void load_tiny_weights(models::SamImpl& sam, const std::map<std::string, at::Tensor>& f) {
  std::map<std::string, at::Tensor> w;
  for (const auto& [k, v] : f)
    if (k.rfind("w.", 0) == 0) w[k.substr(2)] = v;
  for (const auto& p : sam.named_parameters())
    if (models::SamImpl::is_adapter_key(p.key())) w[p.key()] = p.value().detach().clone();
  models::load_state_dict(sam, w, {}, "sam_tiny.pt");
}

std::string load_error(models::SamImpl& sam, const std::map<std::string, at::Tensor>& tensors, const testing::ScratchDir& dir) {
  c10::Dict<std::string, at::Tensor> d;
  for (const auto& [k, v] : tensors) d.insert(k, v);
  const std::string path = dir.file("weights.pt");
  models::write_pickle(path, c10::IValue(d));
  try {
    models::load_sam_weights(sam, path);
  } catch (const io::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_SUITE("models_sam") {
  TEST_CASE("sam_vit_b has the official checkpoint's 314 keys, shapes and 93,735,728 values") {
    auto model = models::ModelRegistry::instance().create("sam_vit_b", json::object());
    auto* sam = dynamic_cast<models::SamImpl*>(model.get());
    REQUIRE(sam != nullptr);
    std::map<std::string, at::Tensor> sam_keys;
    for (const auto& p : sam->named_parameters())
      if (!models::SamImpl::is_adapter_key(p.key())) sam_keys[p.key()] = p.value();
    for (const auto& b : sam->named_buffers()) sam_keys[b.key()] = b.value();
    CHECK(sam_keys.size() == 314);
    int64_t values = 0, encoder = 0, prompt = 0, decoder = 0;
    for (const auto& [k, t] : sam_keys) {
      values += t.numel();
      (k.rfind("image_encoder.", 0) == 0 ? encoder : k.rfind("prompt_encoder.", 0) == 0 ? prompt : decoder) += t.numel();
    }
    CHECK(values == 93735728);  // spec §C.5
    CHECK(encoder == 89670912);
    CHECK(prompt == 6476);
    CHECK(decoder == 4058340);
    auto shape = [&](const std::string& k) { return sam_keys.at(k).sizes().vec(); };
    CHECK(shape("image_encoder.pos_embed") == std::vector<int64_t>{1, 64, 64, 768});
    CHECK(shape("image_encoder.blocks.0.attn.rel_pos_h") == std::vector<int64_t>{27, 64});
    CHECK(shape("image_encoder.blocks.2.attn.rel_pos_w") == std::vector<int64_t>{127, 64});
    CHECK(shape("image_encoder.blocks.11.attn.rel_pos_h") == std::vector<int64_t>{127, 64});
    CHECK(shape("image_encoder.neck.2.weight") == std::vector<int64_t>{256, 256, 3, 3});
    CHECK(shape("image_encoder.neck.3.bias") == std::vector<int64_t>{256});
    CHECK(shape("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix") == std::vector<int64_t>{2, 128});
    CHECK(shape("prompt_encoder.mask_downscaling.6.weight") == std::vector<int64_t>{256, 16, 1, 1});
    CHECK(shape("mask_decoder.transformer.layers.1.cross_attn_image_to_token.q_proj.weight") == std::vector<int64_t>{128, 256});
    CHECK(shape("mask_decoder.output_upscaling.0.weight") == std::vector<int64_t>{256, 64, 2, 2});
    CHECK(shape("mask_decoder.output_upscaling.3.bias") == std::vector<int64_t>{32});
    CHECK(shape("mask_decoder.output_hypernetworks_mlps.3.layers.2.weight") == std::vector<int64_t>{32, 256});
    CHECK(shape("mask_decoder.iou_prediction_head.layers.2.weight") == std::vector<int64_t>{4, 256});
  }

  TEST_CASE("tiny SAM equals segment_anything: embedding, dense PE, point / box / mask-prompt masks and IoU") {
    const auto f = read_fixture(fixture("sam_tiny.pt"));
    auto sam = make_sam(tiny_args());
    load_tiny_weights(*sam, f);
    sam->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor emb = sam->encode(f.at("image"));
    CHECK(max_diff(emb, f.at("embedding")) < 1e-4);
    CHECK(max_diff(sam->prompt_encoder->dense_pe(8), f.at("dense_pe")) < 1e-5);
    auto [pm, pi] = sam->predict(emb, f.at("point_coords"), f.at("point_labels"), std::nullopt, std::nullopt, true);
    CHECK(max_diff(pm, f.at("point_masks")) < 1e-4);
    CHECK(max_diff(pi, f.at("point_iou")) < 1e-4);
    auto [bm, bi] = sam->predict(emb, std::nullopt, std::nullopt, f.at("box"), std::nullopt, false);
    CHECK(max_diff(bm, f.at("box_masks")) < 1e-4);
    CHECK(max_diff(bi, f.at("box_iou")) < 1e-4);
    auto [mm, mi] = sam->predict(emb, std::nullopt, std::nullopt, f.at("box"), f.at("mask_prompt"), false);
    CHECK(max_diff(mm, f.at("box_mask_masks")) < 1e-4);
    CHECK(max_diff(mi, f.at("box_mask_iou")) < 1e-4);
    // Different prompts give different masks (the comparison is not vacuous).
    CHECK(max_diff(pm.narrow(1, 0, 1), bm) > 1e-2);
  }

  TEST_CASE("load_sam_weights is strict over SAM's keys and shapes and says how to convert") {
    const testing::ScratchDir dir("sam_strict");
    const auto f = read_fixture(fixture("sam_tiny.pt"));
    std::map<std::string, at::Tensor> w;
    for (const auto& [k, v] : f)
      if (k.rfind("w.", 0) == 0) w[k.substr(2)] = v;
    // A complete file loads, into a model with LoRA and memory too (those keep their init).
    auto sam = make_sam(with(tiny_args(), {{"lora_rank", 2}, {"memory_slots", 2}}));
    CHECK(load_error(*sam, w, dir).empty());
    CHECK(at::equal(sam->image_encoder->pos_embed, w.at("image_encoder.pos_embed")));
    auto missing = w;
    missing.erase("mask_decoder.iou_token.weight");
    CHECK(load_error(*sam, missing, dir).find("missing: mask_decoder.iou_token.weight") != std::string::npos);
    auto extra = w;
    extra["image_encoder.blocks.9.attn.qkv.weight"] = at::zeros({96, 32});
    CHECK(load_error(*sam, extra, dir).find("unexpected: image_encoder.blocks.9.attn.qkv.weight") != std::string::npos);
    auto wrong = w;
    wrong["image_encoder.blocks.1.attn.rel_pos_h"] = at::zeros({27, 16});
    const std::string e = load_error(*sam, wrong, dir);
    CHECK(e.find("mis-shaped: image_encoder.blocks.1.attn.rel_pos_h (27, 16) vs model (15, 16)") != std::string::npos);
    CHECK(e.find(dir.file("weights.pt")) != std::string::npos);  // names the file
    // An official-style file (torch.save(sam.state_dict()): an OrderedDict) is refused with the
    // way to convert it; converted by scripts/convert_sam_checkpoint.py, it loads.
    const std::string raw = fixture("sam_tiny_raw.pth");
    try {
      models::load_sam_weights(*sam, raw);
      FAIL("LibTorch read an OrderedDict: the converter may be unnecessary now");
    } catch (const io::Error& err) {
      const std::string msg = err.what();
      CHECK(msg.find("OrderedDict") != std::string::npos);
      CHECK(msg.find("python scripts/convert_sam_checkpoint.py " + raw) != std::string::npos);
    }
    const std::string converted = dir.file("converted.pt");
    const std::string cmd = std::string(NEUROSEG_PYTHON) + " " + NEUROSEG_SOURCE_DIR + "/scripts/convert_sam_checkpoint.py " + raw +
                            " " + converted + " > /dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    auto fresh = make_sam(tiny_args());
    models::load_sam_weights(*fresh, converted);
    for (const auto& [k, v] : w) CHECK_MESSAGE(at::equal(fresh->named_parameters().contains(k) ? fresh->named_parameters()[k] : fresh->named_buffers()[k], v), k);
    // A file that is not a torch.save'd dict: one line naming it and the converter.
    const std::string junk = dir.file("junk.pth");
    std::ofstream(junk) << "not a checkpoint";
    try {
      models::load_sam_weights(*sam, junk);
      FAIL("a junk file loaded");
    } catch (const io::Error& err) {
      const std::string msg = err.what();
      CHECK(msg.find(junk) != std::string::npos);
      CHECK(msg.find("scripts/convert_sam_checkpoint.py") != std::string::npos);
      CHECK(msg.find('\n') == std::string::npos);
    }
  }

  TEST_CASE("prompt-free slice model: shapes, classes, other input sizes, two stages, checkpoint round trip") {
    torch::manual_seed(0);
    auto sam = make_sam(with(tiny_args(), {{"out_channels", 3}, {"image_size", 96}, {"memory_slots", 2}, {"lora_rank", 2}}));
    sam->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor x = at::randn({2, 1, 3, 40, 56});
    const at::Tensor y = sam->forward(x);
    CHECK(y.sizes() == at::IntArrayRef({2, 3, 3, 40, 56}));
    CHECK(at::equal(y.select(1, 0), at::zeros_like(y.select(1, 0))));  // background logit 0
    CHECK(max_diff(y.select(1, 1), y.select(1, 2)) > 1e-3);              // classes decoded from their own prompts
    const auto ds = sam->forward_deep_supervision(x);
    REQUIRE(ds.size() == 2);
    CHECK(max_diff(ds[0], y) < 1e-5);
    CHECK(ds[1].sizes() == y.sizes());
    CHECK(max_diff(ds[0], ds[1]) > 1e-3);  // stage 2 re-decodes with the stage-1 mask
    // Checkpoint round trip through the registry (LoRA, prompts and memory included).
    const testing::ScratchDir dir("sam_ckpt");
    models::CheckpointMeta meta;
    meta.model = "sam_vit_b";
    meta.args = sam->options.to_json();
    models::save_checkpoint(dir.file("sam.pt"), *sam, meta);
    auto loaded = models::load_checkpoint(dir.file("sam.pt"));
    CHECK(max_diff(loaded.model->forward(x), y) < 1e-5);
    CHECK_THROWS_WITH_AS(make_sam(with(tiny_args(), {{"in_channels", 2}})), doctest::Contains("in_channels"), io::Error);
    CHECK_THROWS_WITH_AS(make_sam(with(tiny_args(), {{"lora_rnak", 2}})), doctest::Contains("lora_rank"), io::Error);
  }

  TEST_CASE("LoRA on q and v: trainable parameters = depth * 2 * r * 2 * width, zero update at init, merge") {
    torch::manual_seed(0);
    const int64_t r = 3, depth = 4, width = 32;
    auto base = make_sam(with(tiny_args(), {{"two_stage", false}}));
    auto sam = make_sam(with(tiny_args(), {{"lora_rank", r}, {"freeze_encoder", true}, {"two_stage", false}}));
    CHECK(sam->lora_parameters() == depth * 2 * r * 2 * width);
    int64_t encoder_trainable = 0, lora_keys = 0;
    for (const auto& p : sam->image_encoder->named_parameters()) {
      if (p.value().requires_grad()) encoder_trainable += p.value().numel();
      if (p.key().find(".lora_") != std::string::npos) ++lora_keys;
    }
    CHECK(encoder_trainable == depth * 2 * r * 2 * width);  // the frozen encoder trains its LoRA only
    CHECK(lora_keys == depth * 2 * 2);                       // A and B for q and v in every block
    // ViT-B's count: 12 blocks · 2 · r · (768 + 768) = 36,864 r.
    auto vitb = models::Sam(models::SamOptions().lora_rank(4));
    CHECK(vitb->lora_parameters() == 36864 * 4);
    // B = 0 at init: the adapted encoder equals the base.
    torch::NoGradGuard no_grad;
    for (const auto& p : base->named_parameters()) {
      auto& t = const_cast<at::Tensor&>(sam->named_parameters()[p.key()]);
      t.copy_(p.value());
    }
    sam->eval();
    base->eval();
    const at::Tensor img = at::randn({1, 3, 128, 128});
    CHECK(max_diff(sam->encode(img), base->encode(img)) < 1e-6);
    for (const auto& p : sam->named_parameters())
      if (p.key().find(".lora_q.B") != std::string::npos || p.key().find(".lora_v.B") != std::string::npos)
        const_cast<at::Tensor&>(p.value()).normal_(0, 0.05);
    const at::Tensor adapted = sam->encode(img);
    CHECK(max_diff(adapted, base->encode(img)) > 1e-3);
    // Only q and v change: k's rows of the effective qkv weight are the base's.
    const auto& attn = sam->image_encoder->blocks[0]->as<models::ViTBlock>()->attn;
    const at::Tensor w = attn->qkv_weight();
    CHECK(at::equal(w.narrow(0, width, width), attn->qkv->weight.narrow(0, width, width)));
    CHECK(max_diff(w.narrow(0, 0, width), attn->qkv->weight.narrow(0, 0, width)) > 1e-4);
    CHECK(max_diff(w.narrow(0, 2 * width, width), attn->qkv->weight.narrow(0, 2 * width, width)) > 1e-4);
    sam->merge_lora();
    CHECK(max_diff(sam->encode(img), adapted) < 1e-5);
  }

  TEST_CASE("memory: K slots hold the K previous slices (all different), empty memory is identity, no ground truth") {
    torch::manual_seed(0);
    auto sam = make_sam(with(tiny_args(), {{"memory_slots", 3}}));
    auto plain = make_sam(tiny_args());
    torch::NoGradGuard no_grad;
    for (const auto& p : plain->named_parameters())
      const_cast<at::Tensor&>(sam->named_parameters()[p.key()]).copy_(p.value());
    for (const auto& b : plain->named_buffers()) const_cast<at::Tensor&>(sam->named_buffers()[b.key()]).copy_(b.value());
    sam->eval();
    plain->eval();
    std::vector<at::Tensor> slices;
    for (int i = 0; i < 5; ++i) slices.push_back(at::randn({1, 1, 64, 64}));
    // Untrained memory (zero output projection) leaves SAM's result unchanged.
    sam->reset_memory();
    for (int i = 0; i < 3; ++i) CHECK(max_diff(sam->forward_slice(slices[i], i), plain->forward_slice(slices[i], i)) < 1e-5);
    // FIFO: after each slice the new memory is slot 0 and the others move down unchanged.
    sam->reset_memory();
    std::vector<at::Tensor> before;
    for (int i = 0; i < 5; ++i) {
      sam->forward_slice(slices[i], i);
      const auto& s = sam->memory->slots();
      CHECK(static_cast<int64_t>(s.size()) == std::min(i + 1, 3));
      for (size_t k = 1; k < s.size(); ++k) CHECK(at::equal(s[k], before[k - 1]));
      before = s;
    }
    // Every slot holds different content (SAM4EM's released EMA update makes them equal).
    const auto& s = sam->memory->slots();
    for (size_t a = 0; a < s.size(); ++a)
      for (size_t b = a + 1; b < s.size(); ++b) CHECK(max_diff(s[a], s[b]) > 1e-3);
    // With a trained read, a slice's result depends on the previous slice; the first slice
    // of a stack reads nothing (no ground truth is ever written).
    sam->memory->out_proj->weight.normal_(0, 0.1);
    sam->reset_memory();
    CHECK(max_diff(sam->forward_slice(slices[0], 0), plain->forward_slice(slices[0], 0)) < 1e-5);
    const at::Tensor after_a = sam->forward_slice(slices[1], 1);
    sam->reset_memory();
    sam->forward_slice(slices[2], 0);
    const at::Tensor after_b = sam->forward_slice(slices[1], 1);
    CHECK(max_diff(after_a, after_b) > 1e-4);
    sam->reset_memory();
    CHECK(sam->memory->slots().empty());
  }

  TEST_CASE("slice_inference runs whole slices in order with the memory carried, along any axis") {
    torch::manual_seed(0);
    auto sam = make_sam(with(tiny_args(), {{"memory_slots", 2}}));
    {
      torch::NoGradGuard no_grad;
      sam->memory->out_proj->weight.normal_(0, 0.1);  // a memory that matters
    }
    sam->eval();
    const at::Tensor image = at::randn({1, 4, 40, 48});
    at::Tensor ref;
    {
      torch::NoGradGuard no_grad;
      ref = sam->forward(image.unsqueeze(0)).squeeze(0);
    }
    const at::Tensor z = pipelines::slice_inference(*sam, image, pipelines::parse_slice_axis("z"), c10::Device(c10::kCPU), false);
    CHECK(max_diff(z, ref) < 1e-5);
    // Along x: the volume's x-slices in order, written back on the input grid.
    const at::Tensor x = pipelines::slice_inference(*sam, image, pipelines::parse_slice_axis("x"), c10::Device(c10::kCPU), false);
    CHECK(x.sizes() == at::IntArrayRef({2, 4, 40, 48}));
    at::Tensor ref_x;
    {
      torch::NoGradGuard no_grad;
      ref_x = sam->forward(image.movedim(3, 1).unsqueeze(0)).squeeze(0).movedim(1, 3);
    }
    CHECK(max_diff(x, ref_x) < 1e-5);
    // Without the memory carried (each slice alone) the result differs: the memory is used.
    at::Tensor alone = at::empty_like(z);
    {
      torch::NoGradGuard no_grad;
      for (int64_t s = 0; s < 4; ++s) {
        sam->reset_memory();
        alone.select(1, s).copy_(sam->forward_slice(image.select(1, s).unsqueeze(0), s).squeeze(0));
      }
    }
    CHECK(max_diff(alone.select(1, 0), z.select(1, 0)) < 1e-5);
    CHECK(max_diff(alone.select(1, 3), z.select(1, 3)) > 1e-4);
    CHECK_THROWS_AS(pipelines::parse_slice_axis("t"), io::Error);
  }

  TEST_CASE("synth em: reproducible EM-like stacks with mitochondria labels and anisotropic spacing") {
    pipelines::SynthEmOptions o;
    o.size = {8, 96, 96};
    o.anisotropy = 5;
    o.seed = 3;
    const auto a = pipelines::synth_em(o), b = pipelines::synth_em(o);
    CHECK(at::equal(a.image.data, b.image.data));
    CHECK(at::equal(a.labels.data, b.labels.data));
    o.seed = 4;
    CHECK(!at::equal(pipelines::synth_em(o).image.data, a.image.data));
    CHECK(a.image.data.sizes() == at::IntArrayRef({1, 8, 96, 96}));
    CHECK((a.image.data.scalar_type() == at::kByte));
    CHECK(a.image.geometry.spacing[2] == doctest::Approx(5 * a.image.geometry.spacing[0]));
    const at::Tensor fg = a.labels.data == 1;
    const double fraction = fg.to(at::kFloat).mean().item<double>();
    CHECK(fraction > 0.01);
    CHECK(fraction < 0.4);
    // Mitochondria are darker than the cytoplasm, and they span several slices.
    const at::Tensor img = a.image.data.to(at::kFloat);
    CHECK(img.masked_select(fg).mean().item<double>() < img.masked_select(~fg).mean().item<double>() - 20);
    CHECK(fg.any(3).any(2).squeeze(0).to(at::kInt).sum().item<int64_t>() >= 3);
  }

  TEST_CASE("prepare_sam4em: LoRA on q/v, encoder frozen, base weights kept, decoder optionally frozen") {
    torch::manual_seed(0);
    models::LoadedModel base;
    base.meta.model = "sam_vit_b";
    base.meta.args = tiny_args();
    base.model = models::ModelRegistry::instance().create("sam_vit_b", base.meta.args);
    auto [model, args] = models::prepare_sam4em(base, 3, 6, 2, /*train_decoder=*/false);
    CHECK(args["lora_rank"] == 3);
    CHECK(args["memory_slots"] == 2);
    CHECK(args["deep_supervision"] == true);
    CHECK(args["freeze_encoder"] == true);
    auto* sam = dynamic_cast<models::SamImpl*>(model.get());
    REQUIRE(sam != nullptr);
    const auto before = base.model->named_parameters();
    int64_t trainable = 0, expected = sam->lora_parameters();
    for (const auto& p : sam->named_parameters()) {
      if (before.contains(p.key())) CHECK_MESSAGE(at::equal(p.value(), before[p.key()]), p.key());
      if (p.value().requires_grad()) trainable += p.value().numel();
      if (p.key().rfind("prompt_tokens", 0) == 0 || p.key().rfind("memory.", 0) == 0) expected += p.value().numel();
    }
    CHECK(sam->lora_parameters() == 4 * 2 * 3 * 2 * 32);
    CHECK(trainable == expected);  // LoRA, learned prompts and memory; SAM's own weights frozen
    auto [m2, a2] = models::prepare_sam4em(base, 3, 6, -1, /*train_decoder=*/true);
    CHECK(a2["memory_slots"] == 0);  // the base's
    int64_t decoder_trainable = 0;
    for (const auto& p : dynamic_cast<models::SamImpl*>(m2.get())->mask_decoder->parameters())
      decoder_trainable += p.requires_grad() ? p.numel() : 0;
    CHECK(decoder_trainable > 0);
    base.meta.model = "unet";
    CHECK_THROWS_WITH_AS(models::prepare_sam4em(base, 3, 6, 0, true), doctest::Contains("sam_vit_b"), io::Error);
  }
}
