// SAM on CUDA: the tiny reference configuration (tests/fixtures/sam_tiny.pt) equals the CPU /
// Python results in fp32 (SDPA with the rel-pos bias as mask: the memory-efficient kernel),
// bf16 autocast stays close, the full ViT-B encoder runs at 1024² under bf16, and the
// prompt-free slice model with LoRA and memory trains on the device.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/sam.h"
#include "pipelines/autocast_guard.h"

using namespace neuroseg;

namespace {
const nlohmann::json kTiny = {{"image_size", 128},  {"pretrain_image_size", 128}, {"embed_dim", 32},  {"depth", 4},
                              {"num_heads", 2},     {"global_attn_indexes", {1, 3}}, {"window_size", 3}, {"prompt_embed_dim", 32},
                              {"mask_in_chans", 8}, {"decoder_heads", 2},         {"decoder_mlp_dim", 64}, {"iou_head_hidden_dim", 32}};
}

TEST_SUITE("gpu_models_sam") {
  TEST_CASE("tiny SAM on CUDA equals the reference (fp32) and stays close under bf16 autocast") {
    const auto f = models::read_state_dict(std::string(NEUROSEG_SOURCE_DIR) + "/tests/fixtures/sam_tiny.pt");
    models::Sam sam(models::SamOptions::from_json(kTiny));
    std::map<std::string, at::Tensor> w;
    for (const auto& [k, v] : f)
      if (k.rfind("w.", 0) == 0) w[k.substr(2)] = v;
    for (const auto& p : sam->named_parameters())
      if (models::SamImpl::is_adapter_key(p.key())) w[p.key()] = p.value().detach().clone();
    models::load_state_dict(*sam, w, {}, "sam_tiny.pt");
    sam->to(at::kCUDA);
    sam->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor img = f.at("image").cuda();
    const at::Tensor emb = sam->encode(img);
    CHECK((emb.cpu() - f.at("embedding")).abs().max().item<double>() < 1e-4);
    auto [m, iou] = sam->predict(emb, f.at("point_coords").cuda(), f.at("point_labels").cuda(), std::nullopt, std::nullopt, true);
    CHECK((m.cpu() - f.at("point_masks")).abs().max().item<double>() < 1e-4);
    pipelines::AutocastGuard amp(c10::kCUDA, at::kBFloat16);
    const at::Tensor emb16 = sam->encode(img).to(at::kFloat).cpu();
    CHECK(emb16.isfinite().all().item<bool>());
    CHECK((emb16 - f.at("embedding")).abs().max().item<double>() < 0.1 * f.at("embedding").abs().max().item<double>());
  }

  TEST_CASE("ViT-B encoder at 1024² under bf16 on CUDA; the slice model with LoRA and memory trains") {
    models::Sam vitb{models::SamOptions()};
    vitb->to(at::kCUDA);
    vitb->eval();
    {
      torch::NoGradGuard no_grad;
      pipelines::AutocastGuard amp(c10::kCUDA, at::kBFloat16);
      const at::Tensor e = vitb->encode(at::randn({1, 3, 1024, 1024}, at::kCUDA));
      CHECK(e.sizes() == at::IntArrayRef({1, 256, 64, 64}));
      CHECK(e.to(at::kFloat).isfinite().all().item<bool>());
    }
    nlohmann::json args = kTiny;
    args["lora_rank"] = 2;
    args["memory_slots"] = 2;
    args["freeze_encoder"] = true;
    models::Sam sam(models::SamOptions::from_json(args));
    sam->to(at::kCUDA);
    sam->train();
    const at::Tensor x = at::randn({2, 1, 3, 64, 64}, at::kCUDA);
    const auto out = sam->forward_deep_supervision(x);
    (out[0].mean() + out[1].mean()).backward();
    const auto& attn = sam->image_encoder->blocks[0]->as<models::ViTBlock>()->attn;
    CHECK(attn->lora_q->parameters()[0].grad().defined());
    CHECK(!attn->qkv->weight.grad().defined());  // frozen
  }
}
