#include "models/sam.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/nn/modules/activation.h>

#include "io/error.h"
#include "io/json_args.h"
#include "models/checkpoint.h"

namespace neuroseg::models {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Elements of the rel-pos bias one SDPA call may materialise (floats): 2^26 = 256 MB. The
// global blocks at 1024² have a (heads, 4096, 4096) bias per image: 805 MB for ViT-B.
constexpr int64_t kBiasBudget = int64_t(1) << 26;

// image_encoder.py get_rel_pos for q_size == k_size == n: the (n, n, C) table of
// rel_pos[(i - j) + n - 1], the table linearly resized first when it is made for another n.
at::Tensor get_rel_pos(int64_t n, const at::Tensor& rel_pos) {
  const int64_t max_dist = 2 * n - 1;
  at::Tensor table = rel_pos;
  if (rel_pos.size(0) != max_dist) {
    // F.interpolate(rel_pos.reshape(1, L, -1).permute(0, 2, 1), size=max_dist, mode="linear")
    table = at::upsample_linear1d(rel_pos.reshape({1, rel_pos.size(0), -1}).permute({0, 2, 1}), {max_dist},
                                  /*align_corners=*/false)
                .reshape({-1, max_dist})
                .permute({1, 0});
  }
  const at::Tensor i = at::arange(n, rel_pos.options().dtype(at::kLong));
  const at::Tensor idx = i.unsqueeze(1) - i.unsqueeze(0) + (n - 1);
  return table.index({idx});
}

// (B, H, W, C) -> windows (B·nW, w, w, C), zero-padded to multiples of w.
at::Tensor window_partition(const at::Tensor& x, int64_t w, int64_t& hp, int64_t& wp) {
  const int64_t b = x.size(0), h = x.size(1), wd = x.size(2), c = x.size(3);
  const int64_t ph = (w - h % w) % w, pw = (w - wd % w) % w;
  at::Tensor y = (ph || pw) ? at::constant_pad_nd(x, {0, 0, 0, pw, 0, ph}) : x;
  hp = h + ph, wp = wd + pw;
  return y.view({b, hp / w, w, wp / w, w, c}).permute({0, 1, 3, 2, 4, 5}).contiguous().view({-1, w, w, c});
}

at::Tensor window_unpartition(const at::Tensor& windows, int64_t w, int64_t hp, int64_t wp, int64_t h, int64_t wd) {
  const int64_t b = windows.size(0) / (hp * wp / w / w);
  at::Tensor x = windows.view({b, hp / w, wp / w, w, w, -1}).permute({0, 1, 3, 2, 4, 5}).contiguous().view({b, hp, wp, -1});
  if (hp > h || wp > wd) x = x.slice(1, 0, h).slice(2, 0, wd).contiguous();
  return x;
}

// (B, N, C) -> (B, heads, N, C/heads) and back.
at::Tensor separate_heads(const at::Tensor& x, int64_t heads) {
  return x.reshape({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}
at::Tensor recombine_heads(const at::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Options

SamOptions SamOptions::from_json(const nlohmann::json& args) {
  SamOptions o;
  io::JsonArgs a("model 'sam_vit_b'", args);
  o.image_size(a.get_int("image_size", o.image_size(), 16));
  o.pretrain_image_size(a.get_int("pretrain_image_size", o.pretrain_image_size(), 16));
  o.patch_size(a.get_int("patch_size", o.patch_size(), 1));
  o.embed_dim(a.get_int("embed_dim", o.embed_dim(), 1));
  o.depth(a.get_int("depth", o.depth(), 1));
  o.num_heads(a.get_int("num_heads", o.num_heads(), 1));
  o.global_attn_indexes(a.get_int_list("global_attn_indexes", o.global_attn_indexes(), 0));
  o.window_size(a.get_int("window_size", o.window_size(), 1));
  o.mlp_ratio(a.get_double("mlp_ratio", o.mlp_ratio(), 0.0));
  o.prompt_embed_dim(a.get_int("prompt_embed_dim", o.prompt_embed_dim(), 8));
  o.mask_in_chans(a.get_int("mask_in_chans", o.mask_in_chans(), 4));
  o.decoder_depth(a.get_int("decoder_depth", o.decoder_depth(), 1));
  o.decoder_heads(a.get_int("decoder_heads", o.decoder_heads(), 1));
  o.decoder_mlp_dim(a.get_int("decoder_mlp_dim", o.decoder_mlp_dim(), 1));
  o.num_multimask_outputs(a.get_int("num_multimask_outputs", o.num_multimask_outputs(), 0));
  o.iou_head_depth(a.get_int("iou_head_depth", o.iou_head_depth(), 1));
  o.iou_head_hidden_dim(a.get_int("iou_head_hidden_dim", o.iou_head_hidden_dim(), 1));
  o.in_channels(a.get_int("in_channels", o.in_channels(), 1));
  o.out_channels(a.get_int("out_channels", o.out_channels(), 2));
  o.prompt_tokens(a.get_int("prompt_tokens", o.prompt_tokens(), 1));
  o.two_stage(a.get_bool("two_stage", o.two_stage()));
  o.lora_rank(a.get_int("lora_rank", o.lora_rank(), 0));
  o.lora_alpha(a.get_double("lora_alpha", o.lora_alpha(), 0.0));
  o.freeze_encoder(a.get_bool("freeze_encoder", o.freeze_encoder()));
  o.memory_slots(a.get_int("memory_slots", o.memory_slots(), 0));
  o.deep_supervision(a.get_bool("deep_supervision", o.deep_supervision()));
  a.finish();
  if (o.in_channels() != 1 && o.in_channels() != 3) a.fail("in_channels", "must be 1 (replicated to RGB) or 3");
  if (o.image_size() % o.patch_size()) a.fail("image_size", "must be a multiple of patch_size " + std::to_string(o.patch_size()));
  if (o.pretrain_image_size() % o.patch_size())
    a.fail("pretrain_image_size", "must be a multiple of patch_size " + std::to_string(o.patch_size()));
  if (o.embed_dim() % o.num_heads()) a.fail("num_heads", "must divide embed_dim " + std::to_string(o.embed_dim()));
  for (int64_t i : o.global_attn_indexes())
    if (i >= o.depth()) a.fail("global_attn_indexes", std::to_string(i) + " is not a block (depth " + std::to_string(o.depth()) + ")");
  if (o.prompt_embed_dim() % 8) a.fail("prompt_embed_dim", "must be a multiple of 8 (the mask upscaling divides it by 8)");
  if ((o.prompt_embed_dim() / 2) % o.decoder_heads())
    a.fail("decoder_heads", "must divide prompt_embed_dim / 2 (the cross-attentions' width)");
  if (o.mask_in_chans() % 4) a.fail("mask_in_chans", "must be a multiple of 4");
  if (o.mlp_ratio() <= 0) a.fail("mlp_ratio", "must be positive");
  if (o.freeze_encoder() && o.lora_rank() == 0) io::warn("model 'sam_vit_b': freeze_encoder without lora_rank trains no encoder weight");
  return o;
}

nlohmann::json SamOptions::to_json() const {
  return {{"image_size", image_size()},
          {"pretrain_image_size", pretrain_image_size()},
          {"patch_size", patch_size()},
          {"embed_dim", embed_dim()},
          {"depth", depth()},
          {"num_heads", num_heads()},
          {"global_attn_indexes", global_attn_indexes()},
          {"window_size", window_size()},
          {"mlp_ratio", mlp_ratio()},
          {"prompt_embed_dim", prompt_embed_dim()},
          {"mask_in_chans", mask_in_chans()},
          {"decoder_depth", decoder_depth()},
          {"decoder_heads", decoder_heads()},
          {"decoder_mlp_dim", decoder_mlp_dim()},
          {"num_multimask_outputs", num_multimask_outputs()},
          {"iou_head_depth", iou_head_depth()},
          {"iou_head_hidden_dim", iou_head_hidden_dim()},
          {"in_channels", in_channels()},
          {"out_channels", out_channels()},
          {"prompt_tokens", prompt_tokens()},
          {"two_stage", two_stage()},
          {"lora_rank", lora_rank()},
          {"lora_alpha", lora_alpha()},
          {"freeze_encoder", freeze_encoder()},
          {"memory_slots", memory_slots()},
          {"deep_supervision", deep_supervision()}};
}

// ---------------------------------------------------------------------------------------
// Shared layers

LayerNorm2dImpl::LayerNorm2dImpl(int64_t channels, double eps_) : eps(eps_) {
  weight = register_parameter("weight", at::ones({channels}));
  bias = register_parameter("bias", at::zeros({channels}));
}

at::Tensor LayerNorm2dImpl::forward(const at::Tensor& x) {
  const at::Tensor u = x.mean(1, /*keepdim=*/true);
  const at::Tensor s = (x - u).pow(2).mean(1, true);
  const at::Tensor y = (x - u) / at::sqrt(s + eps);
  return weight.view({-1, 1, 1}) * y + bias.view({-1, 1, 1});
}

MLPBlockImpl::MLPBlockImpl(int64_t dim, int64_t hidden, bool relu_) : relu(relu_) {
  lin1 = register_module("lin1", torch::nn::Linear(dim, hidden));
  lin2 = register_module("lin2", torch::nn::Linear(hidden, dim));
}

at::Tensor MLPBlockImpl::forward(const at::Tensor& x) {
  const at::Tensor h = lin1->forward(x);
  return lin2->forward(relu ? at::relu(h) : at::gelu(h));  // nn.GELU: exact (erf)
}

// ---------------------------------------------------------------------------------------
// Image encoder

ViTAttentionImpl::ViTAttentionImpl(int64_t dim, int64_t heads_, int64_t rel_size) : heads(heads_) {
  qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(true)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
  // rel_pos_zero_init=True in the reference.
  rel_pos_h = register_parameter("rel_pos_h", at::zeros({2 * rel_size - 1, dim / heads}));
  rel_pos_w = register_parameter("rel_pos_w", at::zeros({2 * rel_size - 1, dim / heads}));
}

void ViTAttentionImpl::add_lora(const adapters::AdapterOptions& o) {
  const int64_t dim = proj->options.in_features();
  // The updates only read their base's shape (delta()); qkv_weight() adds them to the live
  // parameter, which stays correct after model->to(device) replaces the parameter's data.
  lora_q = register_module("lora_q", adapters::LowRankUpdate(o, qkv->weight.narrow(0, 0, dim)));
  lora_v = register_module("lora_v", adapters::LowRankUpdate(o, qkv->weight.narrow(0, 2 * dim, dim)));
}

at::Tensor ViTAttentionImpl::qkv_weight() const {
  if (!lora_q || lora_merged) return qkv->weight;
  const int64_t dim = proj->options.in_features();
  const at::Tensor& w = qkv->weight;
  return at::cat({w.narrow(0, 0, dim) + lora_q->delta(), w.narrow(0, dim, dim), w.narrow(0, 2 * dim, dim) + lora_v->delta()}, 0);
}

void ViTAttentionImpl::merge_lora() {
  if (!lora_q || lora_merged) return;
  torch::NoGradGuard no_grad;
  const int64_t dim = proj->options.in_features();
  qkv->weight.narrow(0, 0, dim).add_(lora_q->delta());
  qkv->weight.narrow(0, 2 * dim, dim).add_(lora_v->delta());
  lora_merged = true;
}

at::Tensor ViTAttentionImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), h = x.size(1), w = x.size(2), c = x.size(3), n = h * w, hd = c / heads;
  // (B, HW, 3, heads, hd) -> (3, B, heads, HW, hd)
  const at::Tensor qkv_out = at::linear(x, qkv_weight(), qkv->bias).reshape({b, n, 3, heads, hd}).permute({2, 0, 3, 1, 4});
  const at::Tensor q = qkv_out[0], k = qkv_out[1], v = qkv_out[2];
  // Decomposed relative positions (MViTv2), from the *unscaled* q:
  //   bias[(y, x), (ky, kx)] = q(y,x)·Rh[y - ky] + q(y,x)·Rw[x - kx]
  const at::Tensor rh = get_rel_pos(h, rel_pos_h).to(q.scalar_type());  // (h, h, hd)
  const at::Tensor rw = get_rel_pos(w, rel_pos_w).to(q.scalar_type());  // (w, w, hd)
  const at::Tensor r_q = q.reshape({b, heads, h, w, hd});
  // Query rows in chunks of whole grid rows, so that the bias stays under the budget.
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(h, kBiasBudget / std::max<int64_t>(1, b * heads * w * n)));
  std::vector<at::Tensor> outs;
  for (int64_t y0 = 0; y0 < h; y0 += rows) {
    const int64_t r = std::min(rows, h - y0);
    const at::Tensor rq = r_q.narrow(2, y0, r);
    const at::Tensor rel_h = at::einsum("bnhwc,hkc->bnhwk", {rq, rh.narrow(0, y0, r)});  // (b, heads, r, w, h)
    const at::Tensor rel_w = at::einsum("bnhwc,wkc->bnhwk", {rq, rw});                  // (b, heads, r, w, w)
    const at::Tensor bias = (rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)).reshape({b, heads, r * w, n});
    outs.push_back(at::scaled_dot_product_attention(q.narrow(2, y0 * w, r * w), k, v, bias));
  }
  const at::Tensor o = outs.size() == 1 ? outs[0] : at::cat(outs, 2);  // (B, heads, HW, hd)
  return proj->forward(o.view({b, heads, h, w, hd}).permute({0, 2, 3, 1, 4}).reshape({b, h, w, c}));
}

ViTBlockImpl::ViTBlockImpl(int64_t dim, int64_t heads, double mlp_ratio, int64_t window_, int64_t global_grid)
    : window(window_) {
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6)));
  attn = register_module("attn", ViTAttention(dim, heads, window > 0 ? window : global_grid));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6)));
  mlp = register_module("mlp", MLPBlock(dim, static_cast<int64_t>(dim * mlp_ratio), /*relu=*/false));
}

at::Tensor ViTBlockImpl::forward(const at::Tensor& x) {
  at::Tensor y = norm1->forward(x);
  if (window > 0) {
    const int64_t h = y.size(1), w = y.size(2);
    int64_t hp = 0, wp = 0;
    const at::Tensor windows = window_partition(y, window, hp, wp);  // sets hp, wp: sequence before the use
    y = window_unpartition(attn->forward(windows), window, hp, wp, h, w);
  } else {
    y = attn->forward(y);
  }
  const at::Tensor z = x + y;
  return z + mlp->forward(norm2->forward(z));
}

PatchEmbedImpl::PatchEmbedImpl(int64_t patch, int64_t in, int64_t dim) {
  proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, dim, patch).stride(patch)));
}

at::Tensor PatchEmbedImpl::forward(const at::Tensor& x) { return proj->forward(x).permute({0, 2, 3, 1}); }

ImageEncoderViTImpl::ImageEncoderViTImpl(const SamOptions& o) {
  const int64_t dim = o.embed_dim(), g = o.pretrain_grid(), out = o.prompt_embed_dim();
  patch_embed = register_module("patch_embed", PatchEmbed(o.patch_size(), 3, dim));
  pos_embed = register_parameter("pos_embed", at::zeros({1, g, g, dim}));
  blocks = register_module("blocks", torch::nn::ModuleList());
  const auto& global = o.global_attn_indexes();
  for (int64_t i = 0; i < o.depth(); ++i) {
    const bool is_global = std::find(global.begin(), global.end(), i) != global.end();
    blocks->push_back(ViTBlock(dim, o.num_heads(), o.mlp_ratio(), is_global ? 0 : o.window_size(), g));
  }
  neck = register_module("neck", Chain());
  neck->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, out, 1).bias(false)));
  neck->push_back(LayerNorm2d(out));
  neck->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(out, out, 3).padding(1).bias(false)));
  neck->push_back(LayerNorm2d(out));
}

at::Tensor ImageEncoderViTImpl::forward(const at::Tensor& x) {
  at::Tensor t = patch_embed->forward(x);  // (B, h, w, C)
  at::Tensor pos = pos_embed;
  if (pos.size(1) != t.size(1) || pos.size(2) != t.size(2))  // another input size than the weights'
    pos = at::upsample_bilinear2d(pos.permute({0, 3, 1, 2}), {t.size(1), t.size(2)}, /*align_corners=*/false)
              .permute({0, 2, 3, 1});
  t = t + pos;
  for (const auto& blk : *blocks) t = blk->as<ViTBlock>()->forward(t);
  return neck->forward(t.permute({0, 3, 1, 2}));
}

// ---------------------------------------------------------------------------------------
// Prompt encoder

PositionEmbeddingRandomImpl::PositionEmbeddingRandomImpl(int64_t f) {
  positional_encoding_gaussian_matrix = register_buffer("positional_encoding_gaussian_matrix", at::randn({2, f}));
}

at::Tensor PositionEmbeddingRandomImpl::encode(const at::Tensor& coords01) const {
  const at::Tensor c = at::matmul(2 * coords01 - 1, positional_encoding_gaussian_matrix) * (2 * kPi);
  return at::cat({at::sin(c), at::cos(c)}, -1);
}

at::Tensor PositionEmbeddingRandomImpl::grid(int64_t h, int64_t w) const {
  const auto opts = positional_encoding_gaussian_matrix.options();
  const at::Tensor y = ((at::arange(h, opts) + 0.5) / h).view({h, 1}).expand({h, w});
  const at::Tensor x = ((at::arange(w, opts) + 0.5) / w).view({1, w}).expand({h, w});
  return encode(at::stack({x, y}, -1)).permute({2, 0, 1});
}

PromptEncoderImpl::PromptEncoderImpl(const SamOptions& o) : embed_dim(o.prompt_embed_dim()) {
  pe_layer = register_module("pe_layer", PositionEmbeddingRandom(embed_dim / 2));
  point_embeddings = register_module("point_embeddings", torch::nn::ModuleList());
  for (int i = 0; i < 4; ++i) point_embeddings->push_back(torch::nn::Embedding(1, embed_dim));  // pos/neg point, 2 box corners
  not_a_point_embed = register_module("not_a_point_embed", torch::nn::Embedding(1, embed_dim));
  const int64_t m = o.mask_in_chans();
  mask_downscaling = register_module("mask_downscaling", Chain());
  mask_downscaling->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, m / 4, 2).stride(2)));
  mask_downscaling->push_back(LayerNorm2d(m / 4));
  mask_downscaling->push_back(torch::nn::GELU());
  mask_downscaling->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(m / 4, m, 2).stride(2)));
  mask_downscaling->push_back(LayerNorm2d(m));
  mask_downscaling->push_back(torch::nn::GELU());
  mask_downscaling->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(m, embed_dim, 1)));
  no_mask_embed = register_module("no_mask_embed", torch::nn::Embedding(1, embed_dim));
}

at::Tensor PromptEncoderImpl::dense_pe(int64_t g) const { return pe_layer->grid(g, g).unsqueeze(0); }

at::Tensor PromptEncoderImpl::embed_masks(const at::Tensor& masks) { return mask_downscaling->forward(masks); }

at::Tensor PromptEncoderImpl::no_mask(int64_t batch, int64_t g) const {
  return no_mask_embed->weight.reshape({1, -1, 1, 1}).expand({batch, -1, g, g});
}

std::pair<at::Tensor, at::Tensor> PromptEncoderImpl::forward(const std::optional<at::Tensor>& points,
                                                             const std::optional<at::Tensor>& labels,
                                                             const std::optional<at::Tensor>& boxes,
                                                             const std::optional<at::Tensor>& masks, int64_t g,
                                                             int64_t image_size) {
  if (points.has_value() != labels.has_value()) throw io::Error("sam prompt", "points need labels and labels need points");
  const int64_t bs = points ? points->size(0) : boxes ? boxes->size(0) : masks ? masks->size(0) : 1;
  const auto& w = no_mask_embed->weight;
  std::vector<at::Tensor> sparse{at::empty({bs, 0, embed_dim}, w.options())};
  auto emb = [&](int i) { return point_embeddings[i]->as<torch::nn::Embedding>()->weight; };  // (1, C)
  if (points) {
    at::Tensor p = points->to(w.scalar_type()) + 0.5;  // pixel centres
    at::Tensor l = labels->to(w.scalar_type());
    if (!boxes) {  // a padding point stands in for the missing box
      p = at::cat({p, at::zeros({bs, 1, 2}, p.options())}, 1);
      l = at::cat({l, -at::ones({bs, 1}, l.options())}, 1);
    }
    const at::Tensor pe = pe_layer->encode(p / static_cast<double>(image_size));  // x / W, y / H (square input)
    const at::Tensor pad = (l == -1).unsqueeze(-1).to(pe.scalar_type()), neg = (l == 0).unsqueeze(-1).to(pe.scalar_type()),
                     pos = (l == 1).unsqueeze(-1).to(pe.scalar_type());
    sparse.push_back(pe * (1 - pad) + pad * not_a_point_embed->weight + neg * emb(0) + pos * emb(1));
  }
  if (boxes) {
    const at::Tensor corners = (boxes->to(w.scalar_type()) + 0.5).reshape({-1, 2, 2});
    const at::Tensor pe = pe_layer->encode(corners / static_cast<double>(image_size));
    sparse.push_back(pe + at::cat({emb(2), emb(3)}, 0).unsqueeze(0));
  }
  const at::Tensor dense = masks ? embed_masks(*masks) : no_mask(bs, g);
  return {at::cat(sparse, 1), dense};
}

// ---------------------------------------------------------------------------------------
// Mask decoder

TokenAttentionImpl::TokenAttentionImpl(int64_t dim, int64_t heads_, int64_t downsample) : heads(heads_) {
  const int64_t internal = dim / downsample;
  q_proj = register_module("q_proj", torch::nn::Linear(dim, internal));
  k_proj = register_module("k_proj", torch::nn::Linear(dim, internal));
  v_proj = register_module("v_proj", torch::nn::Linear(dim, internal));
  out_proj = register_module("out_proj", torch::nn::Linear(internal, dim));
}

at::Tensor TokenAttentionImpl::forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const at::Tensor o = at::scaled_dot_product_attention(separate_heads(q_proj->forward(q), heads),
                                                        separate_heads(k_proj->forward(k), heads),
                                                        separate_heads(v_proj->forward(v), heads));  // scale 1/sqrt(c/head)
  return out_proj->forward(recombine_heads(o));
}

TwoWayAttentionBlockImpl::TwoWayAttentionBlockImpl(int64_t dim, int64_t heads, int64_t mlp_dim, bool skip)
    : skip_first_layer_pe(skip) {
  self_attn = register_module("self_attn", TokenAttention(dim, heads, 1));
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  cross_attn_token_to_image = register_module("cross_attn_token_to_image", TokenAttention(dim, heads, 2));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  mlp = register_module("mlp", MLPBlock(dim, mlp_dim, /*relu=*/true));
  norm3 = register_module("norm3", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  norm4 = register_module("norm4", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  cross_attn_image_to_token = register_module("cross_attn_image_to_token", TokenAttention(dim, heads, 2));
}

std::pair<at::Tensor, at::Tensor> TwoWayAttentionBlockImpl::forward(at::Tensor queries, at::Tensor keys,
                                                                    const at::Tensor& query_pe, const at::Tensor& key_pe) {
  if (skip_first_layer_pe) {  // layer 0: no PE and no residual
    queries = self_attn->forward(queries, queries, queries);
  } else {
    const at::Tensor q = queries + query_pe;
    queries = queries + self_attn->forward(q, q, queries);
  }
  queries = norm1->forward(queries);
  {
    const at::Tensor q = queries + query_pe, k = keys + key_pe;
    queries = norm2->forward(queries + cross_attn_token_to_image->forward(q, k, keys));
  }
  queries = norm3->forward(queries + mlp->forward(queries));
  const at::Tensor q = queries + query_pe, k = keys + key_pe;
  keys = norm4->forward(keys + cross_attn_image_to_token->forward(k, q, queries));
  return {queries, keys};
}

TwoWayTransformerImpl::TwoWayTransformerImpl(int64_t depth, int64_t dim, int64_t heads, int64_t mlp_dim) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < depth; ++i) layers->push_back(TwoWayAttentionBlock(dim, heads, mlp_dim, i == 0));
  final_attn_token_to_image = register_module("final_attn_token_to_image", TokenAttention(dim, heads, 2));
  norm_final_attn = register_module("norm_final_attn", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
}

std::pair<at::Tensor, at::Tensor> TwoWayTransformerImpl::forward(const at::Tensor& image, const at::Tensor& image_pe,
                                                                 const at::Tensor& tokens) {
  const at::Tensor img = image.flatten(2).permute({0, 2, 1}), pe = image_pe.flatten(2).permute({0, 2, 1});
  at::Tensor queries = tokens, keys = img;
  for (const auto& layer : *layers) std::tie(queries, keys) = layer->as<TwoWayAttentionBlock>()->forward(queries, keys, tokens, pe);
  const at::Tensor q = queries + tokens, k = keys + pe;
  queries = norm_final_attn->forward(queries + final_attn_token_to_image->forward(q, k, keys));
  return {queries, keys};
}

SamMLPImpl::SamMLPImpl(int64_t in, int64_t hidden, int64_t out, int64_t num_layers) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i)
    layers->push_back(torch::nn::Linear(i == 0 ? in : hidden, i == num_layers - 1 ? out : hidden));
}

at::Tensor SamMLPImpl::forward(at::Tensor x) {
  const size_t n = layers->size();
  for (size_t i = 0; i < n; ++i) {
    x = layers[i]->as<torch::nn::Linear>()->forward(x);
    if (i + 1 < n) x = at::relu(x);
  }
  return x;
}

MaskDecoderImpl::MaskDecoderImpl(const SamOptions& o) : num_mask_tokens(o.num_multimask_outputs() + 1) {
  const int64_t c = o.prompt_embed_dim();
  transformer = register_module("transformer", TwoWayTransformer(o.decoder_depth(), c, o.decoder_heads(), o.decoder_mlp_dim()));
  iou_token = register_module("iou_token", torch::nn::Embedding(1, c));
  mask_tokens = register_module("mask_tokens", torch::nn::Embedding(num_mask_tokens, c));
  output_upscaling = register_module("output_upscaling", Chain());
  output_upscaling->push_back(torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(c, c / 4, 2).stride(2)));
  output_upscaling->push_back(LayerNorm2d(c / 4));
  output_upscaling->push_back(torch::nn::GELU());
  output_upscaling->push_back(torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(c / 4, c / 8, 2).stride(2)));
  output_upscaling->push_back(torch::nn::GELU());
  output_hypernetworks_mlps = register_module("output_hypernetworks_mlps", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_mask_tokens; ++i) output_hypernetworks_mlps->push_back(SamMLP(c, c, c / 8, 3));
  iou_prediction_head = register_module("iou_prediction_head", SamMLP(c, o.iou_head_hidden_dim(), num_mask_tokens, o.iou_head_depth()));
}

std::pair<at::Tensor, at::Tensor> MaskDecoderImpl::predict_masks(const at::Tensor& image_embeddings, const at::Tensor& image_pe,
                                                                 const at::Tensor& sparse, const at::Tensor& dense) {
  const int64_t b = sparse.size(0);
  const at::Tensor output_tokens = at::cat({iou_token->weight, mask_tokens->weight}, 0).unsqueeze(0).expand({b, -1, -1});
  const at::Tensor tokens = at::cat({output_tokens, sparse.to(output_tokens.scalar_type())}, 1);
  // One embedding per prompt set: the reference repeats a single image's embedding.
  if (image_embeddings.size(0) != b && image_embeddings.size(0) != 1)
    throw io::Error("sam mask decoder", std::to_string(image_embeddings.size(0)) + " image embeddings for " + std::to_string(b) +
                                            " prompt sets (give 1 or one per prompt set)");
  const at::Tensor src = image_embeddings.expand({b, -1, -1, -1}) + dense;
  const at::Tensor pos = image_pe.expand({b, -1, -1, -1});
  const int64_t c = src.size(1), h = src.size(2), w = src.size(3);
  auto [hs, img] = transformer->forward(src, pos, tokens);
  const at::Tensor iou_out = hs.select(1, 0), mask_out = hs.narrow(1, 1, num_mask_tokens);
  const at::Tensor up = output_upscaling->forward(img.transpose(1, 2).reshape({b, c, h, w}));
  std::vector<at::Tensor> hyper;
  for (int64_t i = 0; i < num_mask_tokens; ++i)
    hyper.push_back(output_hypernetworks_mlps[i]->as<SamMLP>()->forward(mask_out.select(1, i)));
  const at::Tensor hyper_in = at::stack(hyper, 1);  // (B, M, C/8)
  const int64_t uc = up.size(1), uh = up.size(2), uw = up.size(3);
  const at::Tensor masks = at::matmul(hyper_in, up.reshape({b, uc, uh * uw})).view({b, -1, uh, uw});
  return {masks, iou_prediction_head->forward(iou_out)};
}

std::pair<at::Tensor, at::Tensor> MaskDecoderImpl::forward(const at::Tensor& image_embeddings, const at::Tensor& image_pe,
                                                           const at::Tensor& sparse, const at::Tensor& dense, bool multimask) {
  auto [masks, iou] = predict_masks(image_embeddings, image_pe, sparse, dense);
  if (multimask) return {masks.narrow(1, 1, num_mask_tokens - 1), iou.narrow(1, 1, num_mask_tokens - 1)};
  return {masks.narrow(1, 0, 1), iou.narrow(1, 0, 1)};
}

// ---------------------------------------------------------------------------------------
// Memory across slices

MemoryBankImpl::MemoryBankImpl(int64_t dim, int64_t slots, int64_t heads) : capacity_(slots), heads_(heads) {
  value_proj = register_module("value_proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 1)));
  // The predicted mask (sigmoid of the 4x-resolution logits) down to the embedding grid, as
  // the prompt encoder's mask_downscaling (own weights).
  mask_encoder = register_module("mask_encoder", Chain());
  mask_encoder->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 2).stride(2)));
  mask_encoder->push_back(LayerNorm2d(4));
  mask_encoder->push_back(torch::nn::GELU());
  mask_encoder->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 16, 2).stride(2)));
  mask_encoder->push_back(LayerNorm2d(16));
  mask_encoder->push_back(torch::nn::GELU());
  mask_encoder->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(16, dim, 1)));
  query_norm = register_module("query_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  q_proj = register_module("q_proj", torch::nn::Linear(dim, dim));
  k_proj = register_module("k_proj", torch::nn::Linear(dim, dim));
  v_proj = register_module("v_proj", torch::nn::Linear(dim, dim));
  out_proj = register_module("out_proj", torch::nn::Linear(dim, dim));
  torch::NoGradGuard no_grad;
  out_proj->weight.zero_();
  out_proj->bias.zero_();
  slot_embed = register_parameter("slot_embed", at::randn({slots, dim}) * 0.02);
}

void MemoryBankImpl::write(const at::Tensor& emb, const at::Tensor& mask_logits) {
  // Several classes: their masks are summed into one foreground map per slice.
  const at::Tensor fg = at::sigmoid(mask_logits).sum(1, /*keepdim=*/true).clamp_max(1.0);
  at::Tensor mem = value_proj->forward(emb) + mask_encoder->forward(fg.to(emb.scalar_type()));
  // Inference keeps no graph; training back-propagates through the memories of the slices
  // of one forward() (reset_memory() starts every volume / patch).
  if (!is_training() || !at::GradMode::is_enabled()) mem = mem.detach();
  slots_.insert(slots_.begin(), mem);
  if (static_cast<int64_t>(slots_.size()) > capacity_) slots_.pop_back();
}

at::Tensor MemoryBankImpl::read(const at::Tensor& emb, const at::Tensor& pe) {
  if (slots_.empty()) return emb;
  const int64_t b = emb.size(0), c = emb.size(1), h = emb.size(2), w = emb.size(3);
  const std::vector<int64_t> pooled{(h + 1) / 2, (w + 1) / 2};
  const at::Tensor pe_tok = pe.flatten(2).transpose(1, 2);                              // (1, hw, C)
  const at::Tensor pe_pool = at::adaptive_avg_pool2d(pe, pooled).flatten(2).transpose(1, 2);  // (1, hw/4, C)
  const at::Tensor q = q_proj->forward(query_norm->forward(emb.flatten(2).transpose(1, 2)) + pe_tok);
  std::vector<at::Tensor> keys, values;
  for (size_t k = 0; k < slots_.size(); ++k) {
    const at::Tensor m = at::adaptive_avg_pool2d(slots_[k], pooled).flatten(2).transpose(1, 2);  // (B, hw/4, C)
    keys.push_back(m + pe_pool + slot_embed[static_cast<int64_t>(k)]);
    values.push_back(m);
  }
  const at::Tensor kk = k_proj->forward(at::cat(keys, 1)), vv = v_proj->forward(at::cat(values, 1));
  const at::Tensor o = at::scaled_dot_product_attention(separate_heads(q, heads_), separate_heads(kk, heads_),
                                                        separate_heads(vv.to(q.scalar_type()), heads_));
  const at::Tensor read_out = out_proj->forward(recombine_heads(o));  // (B, hw, C)
  return emb + read_out.transpose(1, 2).reshape({b, c, h, w}).to(emb.scalar_type());
}

// ---------------------------------------------------------------------------------------
// The model

SamImpl::SamImpl(const SamOptions& o) : options(o) {
  image_encoder = register_module("image_encoder", ImageEncoderViT(o));
  prompt_encoder = register_module("prompt_encoder", PromptEncoder(o));
  mask_decoder = register_module("mask_decoder", MaskDecoder(o));
  const int64_t classes = o.out_channels() - 1, c = o.prompt_embed_dim();
  // nn.Embedding's N(0, 1), as SAM's own point embeddings.
  prompt_tokens = register_parameter("prompt_tokens", at::randn({classes, o.prompt_tokens(), c}));
  if (o.two_stage()) prompt_tokens_stage2 = register_parameter("prompt_tokens_stage2", at::randn({classes, o.prompt_tokens(), c}));
  if (o.lora_rank() > 0) {
    adapters::AdapterOptions lora;
    lora.kind = adapters::AdapterKind::kLoraC;  // a Linear: plain LoRA, h = W0 x + s·B A x
    lora.rank = o.lora_rank();
    lora.alpha = o.lora_alpha() > 0 ? o.lora_alpha() : static_cast<double>(o.lora_rank());
    for (const auto& blk : *image_encoder->blocks) blk->as<ViTBlock>()->attn->add_lora(lora);
  }
  if (o.freeze_encoder())
    for (const auto& p : image_encoder->named_parameters())
      if (!is_adapter_key(p.key())) p.value().set_requires_grad(false);
  if (o.memory_slots() > 0) memory = register_module("memory", MemoryBank(c, o.memory_slots(), o.decoder_heads()));
}

bool SamImpl::is_adapter_key(const std::string& name) {
  return name.find("lora_q.") != std::string::npos || name.find("lora_v.") != std::string::npos ||
         name.rfind("prompt_tokens", 0) == 0 || name.rfind("memory.", 0) == 0;
}

at::Tensor SamImpl::prepare(const at::Tensor& slice) const {
  if (slice.dim() != 4 || slice.size(1) != options.in_channels())
    throw io::Error("model 'sam_vit_b'", "expects (B, " + std::to_string(options.in_channels()) + ", H, W) slices");
  at::Tensor x = slice.size(1) == 1 ? slice.expand({-1, 3, -1, -1}) : slice;
  const int64_t s = options.image_size();
  if (x.size(2) != s || x.size(3) != s) x = at::upsample_bilinear2d(x, {s, s}, /*align_corners=*/false);
  return x.contiguous();
}

std::pair<at::Tensor, at::Tensor> SamImpl::predict(const at::Tensor& emb, const std::optional<at::Tensor>& points,
                                                   const std::optional<at::Tensor>& labels, const std::optional<at::Tensor>& boxes,
                                                   const std::optional<at::Tensor>& mask_input, bool multimask) {
  const int64_t g = emb.size(-1), image_size = g * options.patch_size();
  auto [sparse, dense] = prompt_encoder->forward(points, labels, boxes, mask_input, g, image_size);
  return mask_decoder->forward(emb, prompt_encoder->dense_pe(g), sparse, dense, multimask);
}

std::vector<at::Tensor> SamImpl::segment_slice(const at::Tensor& slice) {
  const int64_t b = slice.size(0), h = slice.size(2), w = slice.size(3), k = options.out_channels() - 1;
  at::Tensor emb = image_encoder->forward(prepare(slice));
  const int64_t g = emb.size(-1);
  const at::Tensor pe = prompt_encoder->dense_pe(g).to(emb.scalar_type());
  const at::Tensor raw = emb;
  if (memory) emb = memory->read(emb, pe);
  // One prompt set per (image, class), image-major: [img0 cls1, img0 cls2, img1 cls1, ...].
  const at::Tensor emb_k = emb.repeat_interleave(k, 0);
  auto tokens = [&](const at::Tensor& p) { return p.unsqueeze(0).expand({b, -1, -1, -1}).reshape({b * k, p.size(1), p.size(2)}); };
  // Stage 1: learned sparse prompts, no mask (no_mask_embed); mask token 0 (single-mask output).
  const at::Tensor m1 = mask_decoder->predict_masks(emb_k, pe, tokens(prompt_tokens), prompt_encoder->no_mask(b * k, g)).first.narrow(1, 0, 1);
  at::Tensor final_masks = m1;
  at::Tensor m2;
  if (options.two_stage()) {
    // Stage 2: the stage-1 logits as SAM's dense mask prompt (SamPredictor's mask_input).
    m2 = mask_decoder->predict_masks(emb_k, pe, tokens(prompt_tokens_stage2), prompt_encoder->embed_masks(m1)).first.narrow(1, 0, 1);
    final_masks = m2;
  }
  if (memory) memory->write(raw, final_masks.reshape({b, k, final_masks.size(2), final_masks.size(3)}));
  auto to_logits = [&](const at::Tensor& m) {
    const at::Tensor up = at::upsample_bilinear2d(m.reshape({b, k, m.size(2), m.size(3)}), {h, w}, /*align_corners=*/false);
    return at::cat({at::zeros({b, 1, h, w}, up.options()), up}, 1);  // background logit 0: softmax = sigmoid
  };
  std::vector<at::Tensor> out{to_logits(final_masks)};
  if (m2.defined()) out.push_back(to_logits(m1));
  return out;
}

at::Tensor SamImpl::forward_slice(const at::Tensor& slice, int64_t) { return segment_slice(slice)[0]; }

std::vector<at::Tensor> SamImpl::forward_deep_supervision(const at::Tensor& x) {
  if (!options.two_stage()) return {forward(x)};
  check_input(x);
  reset_memory();
  std::vector<at::Tensor> s2, s1;
  for (int64_t z = 0; z < x.size(2); ++z) {
    auto out = segment_slice(x.select(2, z));
    s2.push_back(out[0]);
    s1.push_back(out[1]);
  }
  return {at::stack(s2, 2), at::stack(s1, 2)};
}

void SamImpl::reset_memory() {
  if (memory) memory->reset();
}

void SamImpl::merge_lora() {
  for (const auto& blk : *image_encoder->blocks) blk->as<ViTBlock>()->attn->merge_lora();
}

int64_t SamImpl::lora_parameters() const {
  int64_t n = 0;
  for (const auto& blk : *image_encoder->blocks) {
    const auto& a = blk->as<ViTBlock>()->attn;
    if (a->lora_q) n += a->lora_q->trainable_parameters() + a->lora_v->trainable_parameters();
  }
  return n;
}

void load_sam_weights(SamImpl& sam, const std::string& path) {
  std::map<std::string, at::Tensor> tensors;
  try {
    tensors = read_state_dict(path);
  } catch (const io::Error& e) {
    const std::string why = std::string(e.what()).find("GenericDict") != std::string::npos
                                ? "a pickled OrderedDict, as official SAM / MedSAM .pth files are, which LibTorch cannot read"
                                : "not a torch.save file of a dict of tensors";
    throw io::Error(path, "cannot be loaded as SAM weights (" + why + "); convert it first: python scripts/convert_sam_checkpoint.py " +
                              path + " converted.pt");
  }
  // The adapter's own parameters are not in a SAM file: they keep their initialisation.
  for (const auto& p : sam.named_parameters())
    if (SamImpl::is_adapter_key(p.key()) && !tensors.count(p.key())) tensors[p.key()] = p.value().detach().clone();
  load_state_dict(sam, std::move(tensors), {}, path);
}

std::pair<SegmentationModel, nlohmann::json> prepare_sam4em(const LoadedModel& base, int64_t rank, double alpha,
                                                            int64_t memory_slots, bool train_decoder) {
  if (base.meta.model != "sam_vit_b")
    throw io::Error("--adapter sam4em", "needs a sam_vit_b base checkpoint, not '" + base.meta.model + "'");
  nlohmann::json args = base.meta.args;
  args["lora_rank"] = rank;
  args["lora_alpha"] = alpha;
  args["freeze_encoder"] = true;
  if (memory_slots >= 0) args["memory_slots"] = memory_slots;
  auto sam = Sam(SamOptions::from_json(args));
  args = sam->options.to_json();
  args["deep_supervision"] = sam->options.two_stage();
  sam->options.deep_supervision(sam->options.two_stage());
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : base.model->named_parameters()) tensors[p.key()] = p.value().detach();
  for (const auto& b : base.model->named_buffers()) tensors[b.key()] = b.value().detach();
  const auto mine = sam->named_parameters();
  for (auto it = tensors.begin(); it != tensors.end();)  // adapter parts the new model has not (e.g. memory off)
    it = SamImpl::is_adapter_key(it->first) && !mine.contains(it->first) ? tensors.erase(it) : std::next(it);
  for (const auto& p : mine)
    if (SamImpl::is_adapter_key(p.key()) && !tensors.count(p.key())) tensors[p.key()] = p.value().detach().clone();
  // A base with LoRA of another rank cannot continue: its factors do not fit.
  load_state_dict(*sam, std::move(tensors), {}, "base checkpoint");
  if (!train_decoder) {
    for (const auto& p : sam->prompt_encoder->parameters()) p.set_requires_grad(false);
    for (const auto& p : sam->mask_decoder->parameters()) p.set_requires_grad(false);
  }
  return {sam.ptr(), args};
}

}  // namespace neuroseg::models
