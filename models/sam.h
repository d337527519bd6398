#pragma once
// Segment Anything (Kirillov et al. 2023, arXiv 2304.02643) ViT-B in LibTorch, module for
// module as facebookresearch/segment-anything (segment_anything/modeling/*.py) so that the
// official SAM ViT-B and MedSAM state dicts load strictly by key and shape
// (shared/specs/mamba_sam.md §C), and the SAM4EM-style adapter on top of it (§B.1):
//
//   ImageEncoderViT   patch 16 conv -> (B, H/16, W/16, 768) + pos_embed -> 12 blocks (window
//                     14, global attention in blocks 2/5/8/11, decomposed relative positions)
//                     -> neck (1x1 conv, LN2d, 3x3 conv, LN2d) -> (B, 256, H/16, W/16)
//   PromptEncoder     points / boxes -> sparse (B, N, 256) tokens (random-Fourier PE + learned
//                     type embeddings), mask logits (B, 1, 4h, 4w) -> dense (B, 256, h, w)
//   MaskDecoder       two-way transformer (depth 2, 8 heads) over [iou, 4 mask tokens, prompt
//                     tokens] and the image tokens -> (B, 4, 4h, 4w) low-res mask logits + IoU
//   SamImpl           the three above as a registry slice model (`sam_vit_b`): prompt-free
//                     decoding from learned prompt tokens (stage 1) and re-decoding with the
//                     stage-1 mask as dense prompt (stage 2), LoRA on q and v of every encoder
//                     block, and memory attention across the slices of a stack (MemoryBank).
//
// Attention runs through at::scaled_dot_product_attention; the encoder's decomposed
// relative-position term is passed as an additive float mask (so SDPA's memory-efficient
// kernel takes it on the GPU; flash kernels take no mask), query rows chunked in the global
// blocks so the (heads, 4096, 4096) bias never exists at once.
//
// The module tree (and so the state-dict names) mirrors the Python one: image_encoder.*,
// prompt_encoder.*, mask_decoder.*; Sequential children keep the reference's indices (the
// parameter-free activation modules count, so a conv after a GELU is index 2 as in Python). The adapter's own parameters live under names no SAM
// file has (attn.lora_q/lora_v, prompt_tokens*, memory.*): load_sam_weights() loads a
// converted SAM file strictly over SAM's keys and leaves those at their initialisation.
#include <array>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <torch/arg.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "adapters/low_rank.h"
#include "models/layers.h"
#include "models/segmentation_model.h"

namespace neuroseg::models {

struct SamOptions {
  // --- SAM itself (defaults: ViT-B, build_sam.py's build_sam_vit_b) ---
  /// Square input side the encoder runs at; slices are resized to it. Other sizes than
  /// pretrain_image_size interpolate pos_embed (bilinear) and the global blocks'
  /// relative-position tables (linear, as the reference's get_rel_pos).
  TORCH_ARG(int64_t, image_size) = 1024;
  /// The size the weights were made for: fixes pos_embed (1, S/16, S/16, C) and the global
  /// blocks' rel-pos tables (2·S/16-1, head_dim), i.e. the state-dict shapes.
  TORCH_ARG(int64_t, pretrain_image_size) = 1024;
  TORCH_ARG(int64_t, patch_size) = 16;
  TORCH_ARG(int64_t, embed_dim) = 768;
  TORCH_ARG(int64_t, depth) = 12;
  TORCH_ARG(int64_t, num_heads) = 12;
  TORCH_ARG(std::vector<int64_t>, global_attn_indexes) = std::vector<int64_t>{2, 5, 8, 11};
  TORCH_ARG(int64_t, window_size) = 14;
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(int64_t, prompt_embed_dim) = 256;  ///< neck output = decoder width
  TORCH_ARG(int64_t, mask_in_chans) = 16;
  TORCH_ARG(int64_t, decoder_depth) = 2;
  TORCH_ARG(int64_t, decoder_heads) = 8;
  TORCH_ARG(int64_t, decoder_mlp_dim) = 2048;
  TORCH_ARG(int64_t, num_multimask_outputs) = 3;
  TORCH_ARG(int64_t, iou_head_depth) = 3;
  TORCH_ARG(int64_t, iou_head_hidden_dim) = 256;
  // --- the segmentation model around it (SAM4EM-style adapter) ---
  /// Input channels of the volume: 1 (replicated to RGB, as grayscale EM/MRI) or 3.
  TORCH_ARG(int64_t, in_channels) = 1;
  /// Classes incl. background; class c >= 1 is decoded from its own learned prompt tokens
  /// (one mask per class, SAM's one-prompt-one-mask), background's logit is 0.
  TORCH_ARG(int64_t, out_channels) = 2;
  TORCH_ARG(int64_t, prompt_tokens) = 4;  ///< learned sparse tokens per class and stage
  TORCH_ARG(bool, two_stage) = true;      ///< stage 2: re-decode with the stage-1 mask as dense prompt
  TORCH_ARG(int64_t, lora_rank) = 0;      ///< 0: no LoRA; else LoRA of this rank on q and v of every block
  TORCH_ARG(double, lora_alpha) = 0;      ///< 0: = rank (scale 1)
  /// Freeze the image encoder (its LoRA factors still train), as SAM4EM.
  TORCH_ARG(bool, freeze_encoder) = false;
  TORCH_ARG(int64_t, memory_slots) = 0;   ///< 0: no memory; K: the last K slices' memories
  TORCH_ARG(bool, deep_supervision) = false;  ///< train on stage 2 and stage 1 (weights 2/3, 1/3)

 public:
  static SamOptions from_json(const nlohmann::json& args);
  nlohmann::json to_json() const;
  int64_t grid() const { return image_size() / patch_size(); }
  int64_t pretrain_grid() const { return pretrain_image_size() / patch_size(); }
};

/// \brief LayerNorm over the channels of a (B, C, H, W) map (common.py LayerNorm2d).
class LayerNorm2dImpl : public torch::nn::Module {
 public:
  explicit LayerNorm2dImpl(int64_t channels, double eps = 1e-6);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(LayerNorm2d);

/// \brief Linear -> act -> Linear (common.py MLPBlock; GELU in the encoder, ReLU in the decoder).
class MLPBlockImpl : public torch::nn::Module {
 public:
  MLPBlockImpl(int64_t dim, int64_t hidden, bool relu);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear lin1{nullptr}, lin2{nullptr};
  bool relu;
};
TORCH_MODULE(MLPBlock);

/// \brief Encoder attention with decomposed relative positions (image_encoder.py
/// Attention). (B, H, W, C) -> same. With LoRA, q and v run with W0 + s·B·A (adapters/).
class ViTAttentionImpl : public torch::nn::Module {
 public:
  /// rel_size: the token grid side the tables are made for (window, or the global grid).
  ViTAttentionImpl(int64_t dim, int64_t heads, int64_t rel_size);
  at::Tensor forward(const at::Tensor& x);
  /// Adds LoRA factors for the q and v row blocks of qkv (names lora_q, lora_v).
  void add_lora(const adapters::AdapterOptions& options);
  /// qkv.weight, plus the LoRA updates when present and not merged.
  at::Tensor qkv_weight() const;
  void merge_lora();  ///< folds the updates into qkv.weight (inference)

  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  at::Tensor rel_pos_h, rel_pos_w;
  adapters::LowRankUpdate lora_q{nullptr}, lora_v{nullptr};
  int64_t heads;
  bool lora_merged = false;
};
TORCH_MODULE(ViTAttention);

class ViTBlockImpl : public torch::nn::Module {
 public:
  ViTBlockImpl(int64_t dim, int64_t heads, double mlp_ratio, int64_t window, int64_t global_grid);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  ViTAttention attn{nullptr};
  MLPBlock mlp{nullptr};
  int64_t window;  ///< 0: global attention
};
TORCH_MODULE(ViTBlock);

class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int64_t patch, int64_t in, int64_t dim);
  at::Tensor forward(const at::Tensor& x);  ///< (B, 3, H, W) -> (B, H/p, W/p, C)
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

class ImageEncoderViTImpl : public torch::nn::Module {
 public:
  explicit ImageEncoderViTImpl(const SamOptions& o);
  /// (B, 3, S, S) normalised image (S a multiple of the patch) -> (B, 256, S/16, S/16).
  at::Tensor forward(const at::Tensor& x);
  PatchEmbed patch_embed{nullptr};
  at::Tensor pos_embed;
  torch::nn::ModuleList blocks{nullptr};
  Chain neck{nullptr};
};
TORCH_MODULE(ImageEncoderViT);

/// \brief Random-Fourier positional encoding (prompt_encoder.py PositionEmbeddingRandom).
class PositionEmbeddingRandomImpl : public torch::nn::Module {
 public:
  explicit PositionEmbeddingRandomImpl(int64_t num_pos_feats);
  at::Tensor encode(const at::Tensor& coords01) const;  ///< (..., 2) in [0,1] -> (..., 2F)
  at::Tensor grid(int64_t h, int64_t w) const;           ///< (2F, h, w) at pixel centres
  at::Tensor positional_encoding_gaussian_matrix;       ///< (2, F) buffer (in the checkpoint)
};
TORCH_MODULE(PositionEmbeddingRandom);

class PromptEncoderImpl : public torch::nn::Module {
 public:
  explicit PromptEncoderImpl(const SamOptions& o);
  /// points: (B, N, 2) xy in input pixels with labels (B, N) (1 fg, 0 bg, -1 padding);
  /// boxes (B, 4) x0 y0 x1 y1; masks (B, 1, 4h, 4w) logits. `grid`/`image_size`: the
  /// embedding side and the input side. Returns (sparse (B, N', C), dense (B, C, h, w)).
  std::pair<at::Tensor, at::Tensor> forward(const std::optional<at::Tensor>& points, const std::optional<at::Tensor>& labels,
                                            const std::optional<at::Tensor>& boxes, const std::optional<at::Tensor>& masks,
                                            int64_t grid, int64_t image_size);
  at::Tensor dense_pe(int64_t grid) const;  ///< (1, C, grid, grid)
  at::Tensor embed_masks(const at::Tensor& masks);
  at::Tensor no_mask(int64_t batch, int64_t grid) const;

  PositionEmbeddingRandom pe_layer{nullptr};
  torch::nn::ModuleList point_embeddings{nullptr};
  torch::nn::Embedding not_a_point_embed{nullptr}, no_mask_embed{nullptr};
  Chain mask_downscaling{nullptr};
  int64_t embed_dim;
};
TORCH_MODULE(PromptEncoder);

/// \brief Decoder attention (transformer.py Attention), internal width dim / downsample.
class TokenAttentionImpl : public torch::nn::Module {
 public:
  TokenAttentionImpl(int64_t dim, int64_t heads, int64_t downsample);
  at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  int64_t heads;
};
TORCH_MODULE(TokenAttention);

class TwoWayAttentionBlockImpl : public torch::nn::Module {
 public:
  TwoWayAttentionBlockImpl(int64_t dim, int64_t heads, int64_t mlp_dim, bool skip_first_layer_pe);
  /// Returns (queries, keys).
  std::pair<at::Tensor, at::Tensor> forward(at::Tensor queries, at::Tensor keys, const at::Tensor& query_pe,
                                            const at::Tensor& key_pe);
  TokenAttention self_attn{nullptr}, cross_attn_token_to_image{nullptr}, cross_attn_image_to_token{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr}, norm4{nullptr};
  MLPBlock mlp{nullptr};
  bool skip_first_layer_pe;
};
TORCH_MODULE(TwoWayAttentionBlock);

class TwoWayTransformerImpl : public torch::nn::Module {
 public:
  TwoWayTransformerImpl(int64_t depth, int64_t dim, int64_t heads, int64_t mlp_dim);
  /// image (B, C, h, w), image_pe (B, C, h, w), tokens (B, N, C) -> (tokens, image tokens (B, hw, C)).
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& image, const at::Tensor& image_pe, const at::Tensor& tokens);
  torch::nn::ModuleList layers{nullptr};
  TokenAttention final_attn_token_to_image{nullptr};
  torch::nn::LayerNorm norm_final_attn{nullptr};
};
TORCH_MODULE(TwoWayTransformer);

/// \brief Linear layers with ReLU between (mask_decoder.py MLP).
class SamMLPImpl : public torch::nn::Module {
 public:
  SamMLPImpl(int64_t in, int64_t hidden, int64_t out, int64_t num_layers);
  at::Tensor forward(at::Tensor x);
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(SamMLP);

class MaskDecoderImpl : public torch::nn::Module {
 public:
  explicit MaskDecoderImpl(const SamOptions& o);
  /// image_embeddings (1 or B, C, h, w), image_pe (1, C, h, w), sparse (B, N, C), dense
  /// (B, C, h, w) -> (all 4 mask logits (B, 4, 4h, 4w), IoU predictions (B, 4)).
  std::pair<at::Tensor, at::Tensor> predict_masks(const at::Tensor& image_embeddings, const at::Tensor& image_pe,
                                                  const at::Tensor& sparse, const at::Tensor& dense);
  /// As mask_decoder.py forward: masks 1..3 when multimask, else mask 0.
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& image_embeddings, const at::Tensor& image_pe,
                                            const at::Tensor& sparse, const at::Tensor& dense, bool multimask_output);
  TwoWayTransformer transformer{nullptr};
  torch::nn::Embedding iou_token{nullptr}, mask_tokens{nullptr};
  Chain output_upscaling{nullptr};
  torch::nn::ModuleList output_hypernetworks_mlps{nullptr};
  SamMLP iou_prediction_head{nullptr};
  int64_t num_mask_tokens;
};
TORCH_MODULE(MaskDecoder);

/// \brief Memory across the slices of a stack: K slots, slot k holding the memory of the
/// slice k+1 steps back (a FIFO, as SAM2's memory bank, so every slot holds a different
/// slice; SAM4EM's released EMA update writes the same value into all of them, spec §B.1).
/// A memory is proj(image embedding) + a conv encoding of the slice's *predicted* mask
/// (never its ground truth). The current embedding reads the memories by multi-head
/// cross-attention (keys: memory tokens 2x average-pooled + 2D PE + a learned embedding of
/// the slot's distance); the read is added through a zero-initialised projection, so an
/// empty or untrained memory leaves SAM's embedding unchanged.
class MemoryBankImpl : public torch::nn::Module {
 public:
  MemoryBankImpl(int64_t dim, int64_t slots, int64_t heads = 8);
  /// emb (B, C, h, w), pe (1, C, h, w) -> emb + read (emb itself while no slot is filled).
  at::Tensor read(const at::Tensor& emb, const at::Tensor& pe);
  /// Pushes the memory of one slice (emb (B, C, h, w), mask logits (B, M, 4h, 4w)).
  void write(const at::Tensor& emb, const at::Tensor& mask_logits);
  void reset() { slots_.clear(); }
  /// The filled slots, most recent first, each (B, C, h, w).
  const std::vector<at::Tensor>& slots() const { return slots_; }
  int64_t capacity() const { return capacity_; }

  torch::nn::Conv2d value_proj{nullptr};
  Chain mask_encoder{nullptr};
  torch::nn::LayerNorm query_norm{nullptr};
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  at::Tensor slot_embed;  ///< (K, C)

 private:
  std::vector<at::Tensor> slots_;
  int64_t capacity_, heads_;
};
TORCH_MODULE(MemoryBank);

/// \brief The registry model `sam_vit_b`: SAM as a prompt-free 2D segmentation model run
/// slice by slice (SliceModelImpl), memory carried along the slices.
class SamImpl : public SliceModelImpl {
 public:
  explicit SamImpl(const SamOptions& options);

  // --- SAM's own API (prompted), as segment_anything's Sam ---
  /// (B, Cin, H, W) volume-normalised slices -> (B, 3, S, S): channels replicated, resized.
  at::Tensor prepare(const at::Tensor& slice) const;
  at::Tensor encode(const at::Tensor& image) { return image_encoder->forward(image); }
  /// Masks and IoU from prompts on an embedding (mask_decoder(prompt_encoder(...))).
  std::pair<at::Tensor, at::Tensor> predict(const at::Tensor& image_embeddings, const std::optional<at::Tensor>& points,
                                            const std::optional<at::Tensor>& labels, const std::optional<at::Tensor>& boxes,
                                            const std::optional<at::Tensor>& mask_input, bool multimask_output);

  // --- prompt-free segmentation ---
  /// (B, Cin, H, W) -> {stage-2 logits, stage-1 logits} (B, out_channels, H, W) (one entry
  /// without two_stage); updates the memory when there is one.
  std::vector<at::Tensor> segment_slice(const at::Tensor& slice);
  at::Tensor forward_slice(const at::Tensor& slice, int64_t z) override;
  std::vector<at::Tensor> forward_deep_supervision(const at::Tensor& x) override;
  void reset_memory() override;
  std::string model_name() const override { return "sam_vit_b"; }
  int64_t in_channels() const override { return options.in_channels(); }
  int64_t out_channels() const override { return options.out_channels(); }
  std::array<int64_t, 3> size_divisor() const override { return {1, 1, 1}; }

  /// Folds LoRA into the qkv weights (faster inference; training afterwards is wrong).
  void merge_lora();
  /// The LoRA factors' parameter count (= depth · 2 · r · 2·embed_dim).
  int64_t lora_parameters() const;
  /// True for the parameters a SAM file does not have (LoRA, learned prompts, memory).
  static bool is_adapter_key(const std::string& name);

  SamOptions options;
  ImageEncoderViT image_encoder{nullptr};
  PromptEncoder prompt_encoder{nullptr};
  MaskDecoder mask_decoder{nullptr};
  at::Tensor prompt_tokens, prompt_tokens_stage2;  ///< (classes-1, P, C) learned sparse prompts
  MemoryBank memory{nullptr};
};
TORCH_MODULE(Sam);

/// Loads a converted SAM / MedSAM ViT file (scripts/convert_sam_checkpoint.py) into `sam`:
/// strict over SAM's own keys and shapes, the adapter's parameters left as they are.
/// io::Error naming the file says how to convert an official .pth that LibTorch cannot read.
void load_sam_weights(SamImpl& sam, const std::string& path);

struct LoadedModel;

/// SAM4EM-style fine-tuning (`neuroseg finetune --adapter sam4em`): the `base` sam_vit_b
/// checkpoint's model rebuilt with LoRA (rank, alpha) on q and v of every encoder block, the
/// rest of the encoder frozen, deep supervision on both decoding stages, `memory_slots` (-1:
/// the base's), and the prompt encoder / mask decoder trainable or frozen; the base's weights
/// are copied over strictly (parameters the base lacks keep their initialisation). Returns
/// the model and its registry arguments.
std::pair<SegmentationModel, nlohmann::json> prepare_sam4em(const LoadedModel& base, int64_t rank, double alpha,
                                                            int64_t memory_slots, bool train_decoder);

}  // namespace neuroseg::models
