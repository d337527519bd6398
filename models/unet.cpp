#include "models/unet.h"

#include <nlohmann/json.hpp>
#include <torch/nn/functional/upsampling.h>

#include "io/error.h"
#include "models/layers.h"
#include "io/json_args.h"

namespace neuroseg::models {
namespace {

std::vector<int64_t> axes_of(const std::vector<int64_t>& v, int spatial_dims) {
  // 2D models keep the last two (H, W) of a per-axis triple.
  return spatial_dims == 3 ? v : std::vector<int64_t>(v.end() - 2, v.end());
}

Chain make_block(int dims, int64_t in, int64_t out, const std::vector<int64_t>& kernel,
                                 const std::vector<int64_t>& stride, const UNetOptions& o) {
  ConvSpec s;
  s.spatial_dims = dims;
  s.in = in;
  s.out = out;
  s.kernel = kernel;
  s.stride = stride;
  s.dilation.assign(kernel.size(), 1);
  return conv_norm_act(s, o.norm(), o.act(), o.num_groups());
}

}  // namespace

UNetOptions UNetOptions::from_json(const nlohmann::json& json, int spatial_dims) {
  UNetOptions o;
  io::JsonArgs a(spatial_dims == 3 ? "model 'unet'" : "model 'unet2d'", json);
  o.spatial_dims(spatial_dims);
  o.in_channels(a.get_int("in_channels", o.in_channels(), 1));
  o.out_channels(a.get_int("out_channels", o.out_channels(), 1));
  o.channels(a.get_int_list("channels", o.channels(), 1));
  const std::size_t depth = o.channels().size();
  // Defaults scale with the depth given: stage 0 stride 1, then 2; kernels 3.
  std::vector<std::vector<int64_t>> strides(depth, {2, 2, 2}), kernels(depth, {3, 3, 3});
  strides[0] = {1, 1, 1};
  o.strides(a.get_per_axis_list("strides", strides, 3, 1));
  o.kernel_sizes(a.get_per_axis_list("kernel_sizes", kernels, 3, 1));
  o.convs_per_stage(a.get_int("convs_per_stage", o.convs_per_stage(), 1));
  o.block(a.get_choice("block", o.block(), {"plain", "residual"}));
  o.norm(a.get_choice("norm", o.norm(), {"instance", "batch", "group"}));
  o.num_groups(a.get_int("num_groups", o.num_groups(), 1));
  o.act(a.get_choice("act", o.act(), {"leakyrelu", "relu"}));
  o.upsample(a.get_choice("upsample", o.upsample(), {"transposed", "interpolate"}));
  o.deep_supervision(a.get_bool("deep_supervision", o.deep_supervision()));
  a.finish();
  o.validate(spatial_dims == 3 ? "unet" : "unet2d");
  return o;
}

nlohmann::json UNetOptions::to_json() const {
  return {{"in_channels", in_channels()}, {"out_channels", out_channels()}, {"channels", channels()},
          {"strides", strides()}, {"kernel_sizes", kernel_sizes()}, {"convs_per_stage", convs_per_stage()},
          {"block", block()}, {"norm", norm()}, {"num_groups", num_groups()}, {"act", act()},
          {"upsample", upsample()}, {"deep_supervision", deep_supervision()}};
}

void UNetOptions::validate(const std::string& model) const {
  auto fail = [&](const std::string& key, const std::string& problem) {
    throw io::Error("model '" + model + "'", "argument '" + key + "': " + problem);
  };
  const std::size_t depth = channels().size();
  if (depth < 2) fail("channels", "needs at least 2 stages");
  if (strides().size() != depth)
    fail("strides", "has " + std::to_string(strides().size()) + " entries; needs one per stage (" + std::to_string(depth) + ")");
  if (kernel_sizes().size() != depth)
    fail("kernel_sizes", "has " + std::to_string(kernel_sizes().size()) + " entries; needs one per stage (" +
                             std::to_string(depth) + ")");
  for (const auto& k : kernel_sizes())
    for (int64_t x : k)
      if (x % 2 == 0) fail("kernel_sizes", "must be odd, got " + std::to_string(x));
  for (int64_t c : channels())
    if (c < 1) fail("channels", "must be positive");
  if (norm() == "group")
    for (int64_t c : channels())
      if (c % num_groups() != 0)
        fail("num_groups", std::to_string(c) + " channels are not divisible into " + std::to_string(num_groups()) + " groups");
}

ResidualBlockImpl::ResidualBlockImpl(int dims, int64_t in, int64_t out, const std::vector<int64_t>& kernel,
                                     const std::vector<int64_t>& stride, const UNetOptions& o) {
  conv1 = register_module("conv1", make_block(dims, in, out, kernel, stride, o));
  ConvSpec s;
  s.spatial_dims = dims;
  s.in = out;
  s.out = out;
  s.kernel = kernel;
  s.stride.assign(kernel.size(), 1);
  s.dilation.assign(kernel.size(), 1);
  Chain c2;
  c2->push_back("conv", make_conv(s));
  c2->push_back("norm", make_norm(o.norm(), dims, out, o.num_groups()));
  conv2 = register_module("conv2", c2);
  bool strided = false;
  for (int64_t x : stride) strided = strided || x != 1;
  if (in != out || strided) {
    ConvSpec k;
    k.spatial_dims = dims;
    k.in = in;
    k.out = out;
    k.kernel.assign(kernel.size(), 1);
    k.stride = stride;
    k.dilation.assign(kernel.size(), 1);
    k.bias = false;
    Chain sk;
    sk->push_back("conv", make_conv(k));
    sk->push_back("norm", make_norm(o.norm(), dims, out, o.num_groups()));
    skip = register_module("skip", sk);
  }
  act = make_act(o.act());
}

at::Tensor ResidualBlockImpl::forward(const at::Tensor& x) {
  at::Tensor y = conv2->forward(conv1->forward(x));
  y = y + (skip ? skip->forward(x) : x);
  return act.forward(y);
}

UNetImpl::UNetImpl(const UNetOptions& o) : options(o) {
  o.validate(o.spatial_dims() == 3 ? "unet" : "unet2d");
  const int dims = o.spatial_dims();
  const auto& ch = o.channels();
  const std::size_t depth = ch.size();
  encoder = register_module("encoder", torch::nn::ModuleList());
  for (std::size_t s = 0; s < depth; ++s) {
    Chain stage;
    const auto kernel = axes_of(o.kernel_sizes()[s], dims);
    const auto stride = axes_of(o.strides()[s], dims);
    const std::vector<int64_t> one(kernel.size(), 1);
    for (int64_t b = 0; b < o.convs_per_stage(); ++b) {
      const int64_t in = b == 0 ? (s == 0 ? o.in_channels() : ch[s - 1]) : ch[s];
      if (o.block() == "residual") stage->push_back(ResidualBlock(dims, in, ch[s], kernel, b == 0 ? stride : one, o));
      else stage->push_back(make_block(dims, in, ch[s], kernel, b == 0 ? stride : one, o));
    }
    encoder->push_back(stage);
  }
  decoder_up = register_module("decoder_up", torch::nn::ModuleList());
  decoder_blocks = register_module("decoder_blocks", torch::nn::ModuleList());
  heads = register_module("heads", torch::nn::ModuleList());
  for (std::size_t s = 0; s + 1 < depth; ++s) {  // decoder stage s brings s+1 up to s
    const auto stride = axes_of(o.strides()[s + 1], dims);
    const auto kernel = axes_of(o.kernel_sizes()[s], dims);
    const std::vector<int64_t> one(kernel.size(), 1);
    Chain up;
    if (o.upsample() == "transposed") {
      up->push_back("conv", make_transposed_conv(dims, ch[s + 1], ch[s], stride));
    } else {
      ConvSpec k;
      k.spatial_dims = dims;
      k.in = ch[s + 1];
      k.out = ch[s];
      k.kernel = one;
      k.stride = one;
      k.dilation = one;
      up->push_back("conv", make_conv(k));  // applied after interpolation, see decode()
    }
    decoder_up->push_back(up);
    Chain blocks;
    for (int64_t b = 0; b < o.convs_per_stage(); ++b) {
      const int64_t in = b == 0 ? 2 * ch[s] : ch[s];
      if (o.block() == "residual") blocks->push_back(ResidualBlock(dims, in, ch[s], kernel, one, o));
      else blocks->push_back(make_block(dims, in, ch[s], kernel, one, o));
    }
    decoder_blocks->push_back(blocks);
    ConvSpec h;
    h.spatial_dims = dims;
    h.in = ch[s];
    h.out = o.out_channels();
    h.kernel = one;
    h.stride = one;
    h.dilation = one;
    Chain head;
    head->push_back("conv", make_conv(h));
    if (s == 0 || o.deep_supervision()) heads->push_back(head);
  }
}

std::array<int64_t, 3> UNetImpl::size_divisor() const {
  std::array<int64_t, 3> d{1, 1, 1};
  for (const auto& s : options.strides())
    for (int a = 0; a < 3; ++a) d[a] *= s[a];
  if (options.spatial_dims() == 2) d[0] = 1;
  return d;
}

std::vector<at::Tensor> UNetImpl::decode(const at::Tensor& x) {
  std::vector<at::Tensor> skips;
  at::Tensor h = x;
  for (std::size_t s = 0; s < encoder->size(); ++s) {
    h = encoder[s]->as<Chain>()->forward(h);
    if (after_encoder_stage) h = after_encoder_stage(s, h);
    skips.push_back(h);
  }
  std::vector<at::Tensor> features(skips.size() - 1);
  for (std::size_t s = skips.size() - 1; s-- > 0;) {
    auto up = decoder_up[s]->as<Chain>();
    if (options.upsample() == "interpolate") {
      namespace F = torch::nn::functional;
      std::vector<int64_t> size(skips[s].sizes().begin() + 2, skips[s].sizes().end());
      auto opts = F::InterpolateFuncOptions().size(size).align_corners(false);
      if (options.spatial_dims() == 3) opts.mode(torch::kTrilinear);
      else opts.mode(torch::kBilinear);
      h = F::interpolate(h, opts);
    }
    h = up->forward(h);
    h = decoder_blocks[s]->as<Chain>()->forward(at::cat({h, skips[s]}, 1));
    features[s] = h;
  }
  return features;
}

at::Tensor UNetImpl::forward(const at::Tensor& x) {
  if (options.spatial_dims() == 3) check_input(x);
  return heads[0]->as<Chain>()->forward(decode(x)[0]);
}

std::vector<at::Tensor> UNetImpl::forward_deep_supervision(const at::Tensor& x) {
  if (options.spatial_dims() == 3) check_input(x);
  const auto features = decode(x);
  std::vector<at::Tensor> out;
  const std::size_t n = options.deep_supervision() ? features.size() : 1;
  for (std::size_t s = 0; s < n; ++s) out.push_back(heads[s]->as<Chain>()->forward(features[s]));
  return out;
}

UNet2dSlicesImpl::UNet2dSlicesImpl(const UNetOptions& o) {
  UNetOptions two = o;
  two.spatial_dims(2);
  net = register_module("net", UNet(two));
}

at::Tensor UNet2dSlicesImpl::forward_slice(const at::Tensor& slice, int64_t) { return net->forward(slice); }

std::array<int64_t, 3> UNet2dSlicesImpl::size_divisor() const { return net->size_divisor(); }

}  // namespace neuroseg::models
