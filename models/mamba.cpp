#include "models/mamba.h"

#include <cmath>

#include <nlohmann/json.hpp>
#include <torch/nn/functional/activation.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/instancenorm.h>

#include "io/error.h"
#include "io/json_args.h"
#include "models/selective_scan.h"

namespace neuroseg::models {
namespace {

ConvSpec conv_spec(int64_t in, int64_t out, int64_t kernel, bool bias) {
  ConvSpec s;
  s.in = in;
  s.out = out;
  s.kernel.assign(3, kernel);
  s.bias = bias;
  return s;
}

// InstanceNorm3d with torch's defaults (affine false), as SegMamba's and MONAI's blocks use.
torch::nn::AnyModule plain_instance_norm(int64_t channels) {
  return torch::nn::AnyModule(torch::nn::InstanceNorm3d(torch::nn::InstanceNorm3dOptions(channels)));
}

}  // namespace

MambaImpl::MambaImpl(const MambaOptions& o) : options(o) {
  if (o.d_model() < 1 || o.d_state() < 1 || o.d_conv() < 1 || o.expand() < 1)
    throw io::Error("Mamba", "d_model, d_state, d_conv and expand must be >= 1");
  if (o.directions() != 1 && o.directions() != 3) throw io::Error("Mamba", "directions must be 1 or 3");
  const int64_t E = o.d_inner(), N = o.d_state(), R = o.rank();
  in_proj = register_module("in_proj", torch::nn::Linear(torch::nn::LinearOptions(o.d_model(), 2 * E).bias(false)));
  const char* suffix[] = {"", "_b", "_s"};
  for (int64_t i = 0; i < o.directions(); ++i) {
    const std::string sfx = suffix[i];
    Scan s;
    // Depthwise causal conv: padding K - 1 on both sides, the first L outputs kept.
    s.conv1d = register_module("conv1d" + sfx, torch::nn::Conv1d(torch::nn::Conv1dOptions(E, E, o.d_conv())
                                                                     .groups(E)
                                                                     .padding(o.d_conv() - 1)
                                                                     .bias(true)));
    s.x_proj = register_module("x_proj" + sfx, torch::nn::Linear(torch::nn::LinearOptions(E, R + 2 * N).bias(false)));
    s.dt_proj = register_module("dt_proj" + sfx, torch::nn::Linear(torch::nn::LinearOptions(R, E).bias(true)));
    {
      at::NoGradGuard no_grad;
      // mamba_simple.py: weight ~ U(+-dt_scale / sqrt(R)); bias = softplus^-1(dt) with dt
      // log-uniform in [dt_min, dt_max] (floored), so softplus(bias) starts as that dt.
      const double w = std::pow(static_cast<double>(R), -0.5) * o.dt_scale();
      s.dt_proj->weight.uniform_(-w, w);
      const at::Tensor dt =
          at::exp(at::rand({E}) * (std::log(o.dt_max()) - std::log(o.dt_min())) + std::log(o.dt_min()))
              .clamp_min(o.dt_init_floor());
      s.dt_proj->bias.copy_(dt + at::log(-at::expm1(-dt)));
    }
    // S4D-real: A_n = -(n + 1) for every channel, stored as log.
    s.A_log = register_parameter(i == 0 ? "A_log" : "A" + sfx + "_log",
                                 at::log(at::arange(1, N + 1, at::kFloat)).repeat({E, 1}).contiguous());
    s.D = register_parameter("D" + sfx, at::ones({E}));
    scans_.push_back(s);
  }
  out_proj = register_module("out_proj", torch::nn::Linear(torch::nn::LinearOptions(E, o.d_model()).bias(false)));
}

at::Tensor MambaImpl::scan(Scan& s, const at::Tensor& x_in, const at::Tensor& z) {
  // x_in, z: (B, E, L).
  const int64_t L = x_in.size(2), N = options.d_state(), R = options.rank();
  const at::Tensor x = at::silu(s.conv1d->forward(x_in).narrow(2, 0, L));
  const at::Tensor x_dbl = s.x_proj->forward(x.transpose(1, 2));  // (B, L, R + 2N)
  const at::Tensor dt = at::linear(x_dbl.narrow(2, 0, R), s.dt_proj->weight).transpose(1, 2);  // (B, E, L)
  const at::Tensor B = x_dbl.narrow(2, R, N).transpose(1, 2);  // (B, N, L)
  const at::Tensor C = x_dbl.narrow(2, R + N, N).transpose(1, 2);
  const at::Tensor A = -at::exp(s.A_log.to(at::kFloat));
  return selective_scan(x, dt, A, B, C, s.D.to(at::kFloat), z, s.dt_proj->bias.to(at::kFloat),
                        /*delta_softplus=*/true)
      .out;
}

at::Tensor MambaImpl::forward(const at::Tensor& h, int64_t slices) {
  TORCH_CHECK(h.dim() == 3 && h.size(2) == options.d_model(), "Mamba: expects (batch, L, ", options.d_model(),
              "), got ", h.sizes());
  const int64_t batch = h.size(0), L = h.size(1), E = options.d_inner();
  const at::Tensor xz = in_proj->forward(h).transpose(1, 2);  // (B, 2E, L)
  const auto run = [&](Scan& s, const at::Tensor& v) { return scan(s, v.narrow(1, 0, E), v.narrow(1, E, E)); };
  at::Tensor y = run(scans_[0], xz);
  if (options.directions() == 3) {
    y = y + run(scans_[1], xz.flip(-1)).flip(-1);
    TORCH_CHECK(slices >= 1 && L % slices == 0, "Mamba: ", slices, " slices do not divide L = ", L);
    // (B, 2E, S, L/S) -> (B, 2E, L/S, S): all slices of one in-plane position in a row.
    const at::Tensor xs = xz.reshape({batch, 2 * E, slices, L / slices}).transpose(2, 3).reshape({batch, 2 * E, L});
    y = y + run(scans_[2], xs).reshape({batch, E, L / slices, slices}).transpose(2, 3).reshape({batch, E, L});
  }
  return out_proj->forward(y.transpose(1, 2));
}

MambaLayerImpl::MambaLayerImpl(int64_t channels, const MambaOptions& m, bool residual_, bool channel_tokens_)
    : residual(residual_), channel_tokens(channel_tokens_) {
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({m.d_model()})));
  mamba = register_module("mamba", Mamba(m));
  if (!channel_tokens && m.d_model() != channels)
    throw io::Error("Mamba layer", "d_model must equal the channels (" + std::to_string(channels) + ")");
}

at::Tensor MambaLayerImpl::forward(const at::Tensor& x) {
  // (B, C, D, H, W): tokens = voxels in raster order (or the C channels), features = C (or voxels).
  const at::Tensor flat = x.flatten(2);  // (B, C, L)
  at::Tensor y;
  if (channel_tokens) {
    TORCH_CHECK(flat.size(2) == mamba->options.d_model(), "Mamba layer (channel tokens): built for ",
                mamba->options.d_model(), " voxels, got ", flat.size(2), " (this stage's size is fixed by patch_size)");
    y = mamba->forward(norm->forward(flat));
  } else {
    y = mamba->forward(norm->forward(flat.transpose(1, 2)), x.size(2)).transpose(1, 2);
  }
  y = y.reshape(x.sizes());
  return residual ? y + x : y;
}

UMambaOptions UMambaOptions::from_json(const nlohmann::json& json, bool encoder_layers) {
  const std::string name = encoder_layers ? "umamba_enc" : "umamba_bot";
  const std::string subject = "model '" + name + "'";
  if (!json.is_null() && !json.is_object()) throw io::Error(subject, "arguments must be a JSON object");
  nlohmann::json rest = json.is_null() ? nlohmann::json::object() : json, mine = nlohmann::json::object();
  for (const char* key : {"d_state", "d_conv", "expand", "patch_size"})
    if (rest.contains(key)) {
      mine[key] = rest[key];
      rest.erase(key);
    }
  if (!rest.contains("block")) rest["block"] = "residual";
  UMambaOptions o;
  o.unet(UNetOptions::from_json(rest, 3));
  o.encoder_layers(encoder_layers);
  io::JsonArgs a(subject, mine);
  o.d_state(a.get_int("d_state", o.d_state(), 1));
  o.d_conv(a.get_int("d_conv", o.d_conv(), 1));
  o.expand(a.get_int("expand", o.expand(), 1));
  o.patch_size(a.get_int_list("patch_size", {}, 1));
  if (!o.patch_size().empty() && o.patch_size().size() != 3) a.fail("patch_size", "needs 3 sizes (D, H, W)");
  a.finish();
  return o;
}

nlohmann::json UMambaOptions::to_json() const {
  nlohmann::json j = unet().to_json();
  j["d_state"] = d_state();
  j["d_conv"] = d_conv();
  j["expand"] = expand();
  if (!patch_size().empty()) j["patch_size"] = patch_size();
  return j;
}

UMambaImpl::UMambaImpl(const UMambaOptions& o) : options(o) {
  net = register_module("net", UNet(o.unet()));
  mamba = register_module("mamba", torch::nn::ModuleList());
  const auto& ch = o.unet().channels();
  const int64_t depth = static_cast<int64_t>(ch.size());
  std::array<int64_t, 3> size{0, 0, 0};
  if (!o.patch_size().empty()) size = {o.patch_size()[0], o.patch_size()[1], o.patch_size()[2]};
  for (int64_t s = 0; s < depth; ++s) {
    for (int a = 0; a < 3; ++a) size[a] /= o.unet().strides()[s][a];
    if (!o.encoder_layers() && s != depth - 1) continue;
    const int64_t voxels = size[0] * size[1] * size[2];
    // U-Mamba_Enc: a stage with no more voxels than channels scans the channels instead.
    const bool channel_tokens = o.encoder_layers() && voxels > 0 && voxels <= ch[s];
    const MambaOptions m =
        MambaOptions(channel_tokens ? voxels : ch[s]).d_state(o.d_state()).d_conv(o.d_conv()).expand(o.expand());
    mamba->push_back(MambaLayer(ch[s], m, /*residual=*/false, channel_tokens));
    stages.push_back(s);
  }
  net->after_encoder_stage = [this](std::size_t s, const at::Tensor& h) {
    for (std::size_t i = 0; i < stages.size(); ++i)
      if (stages[i] == static_cast<int64_t>(s)) return mamba[i]->as<MambaLayer>()->forward(h);
    return h;
  };
}

at::Tensor UMambaImpl::forward(const at::Tensor& x) { return net->forward(x); }

std::vector<at::Tensor> UMambaImpl::forward_deep_supervision(const at::Tensor& x) {
  return net->forward_deep_supervision(x);
}

SegMambaOptions SegMambaOptions::from_json(const nlohmann::json& json) {
  SegMambaOptions o;
  io::JsonArgs a("model 'segmamba'", json);
  o.in_channels(a.get_int("in_channels", o.in_channels(), 1));
  o.out_channels(a.get_int("out_channels", o.out_channels(), 1));
  o.dims(a.get_int_list("dims", o.dims(), 1));
  o.depths(a.get_int_list("depths", o.depths(), 0));
  o.hidden_size(a.get_int("hidden_size", o.hidden_size(), 1));
  o.d_state(a.get_int("d_state", o.d_state(), 1));
  o.d_conv(a.get_int("d_conv", o.d_conv(), 1));
  o.expand(a.get_int("expand", o.expand(), 1));
  if (o.dims().size() != 4) a.fail("dims", "SegMamba has exactly 4 stages, e.g. [48, 96, 192, 384]");
  if (o.depths().size() != 4) a.fail("depths", "needs one count per stage (4)");
  a.finish();
  return o;
}

nlohmann::json SegMambaOptions::to_json() const {
  return {{"in_channels", in_channels()}, {"out_channels", out_channels()}, {"dims", dims()},   {"depths", depths()},
          {"hidden_size", hidden_size()}, {"d_state", d_state()},           {"d_conv", d_conv()}, {"expand", expand()}};
}

GatedSpatialConvImpl::GatedSpatialConvImpl(int64_t c) {
  const auto cna = [&](int64_t kernel) {
    Chain ch;
    ch->push_back("conv", make_conv(conv_spec(c, c, kernel, true)));
    ch->push_back("norm", plain_instance_norm(c));
    ch->push_back("act", torch::nn::AnyModule(torch::nn::ReLU(torch::nn::ReLUOptions(true))));
    return ch;
  };
  proj = register_module("proj", cna(3));
  proj2 = register_module("proj2", cna(3));
  proj3 = register_module("proj3", cna(1));
  proj4 = register_module("proj4", cna(1));
}

at::Tensor GatedSpatialConvImpl::forward(const at::Tensor& x) {
  return proj4->forward(proj2->forward(proj->forward(x)) + proj3->forward(x)) + x;
}

UnetResBlockImpl::UnetResBlockImpl(int64_t in, int64_t out) {
  const auto lrelu = [] {
    return torch::nn::AnyModule(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.01).inplace(true)));
  };
  Chain c1, c2;
  c1->push_back("conv", make_conv(conv_spec(in, out, 3, false)));
  c1->push_back("norm", plain_instance_norm(out));
  c1->push_back("act", lrelu());
  c2->push_back("conv", make_conv(conv_spec(out, out, 3, false)));
  c2->push_back("norm", plain_instance_norm(out));
  conv1 = register_module("conv1", c1);
  conv2 = register_module("conv2", c2);
  if (in != out) {
    Chain sk;
    sk->push_back("conv", make_conv(conv_spec(in, out, 1, false)));
    sk->push_back("norm", plain_instance_norm(out));
    skip = register_module("skip", sk);
  }
}

at::Tensor UnetResBlockImpl::forward(const at::Tensor& x) {
  const at::Tensor y = conv2->forward(conv1->forward(x)) + (skip ? skip->forward(x) : x);
  return at::leaky_relu(y, 0.01);
}

SegMambaImpl::SegMambaImpl(const SegMambaOptions& o) : options(o) {
  const auto& d = o.dims();
  downsample = register_module("downsample", torch::nn::ModuleList());
  gsc = register_module("gsc", torch::nn::ModuleList());
  stages = register_module("stages", torch::nn::ModuleList());
  out_norm = register_module("out_norm", torch::nn::ModuleList());
  out_mlp = register_module("out_mlp", torch::nn::ModuleList());
  for (int s = 0; s < 4; ++s) {
    Chain down;
    if (s == 0) {
      down->push_back("conv", torch::nn::AnyModule(torch::nn::Conv3d(
                                  torch::nn::Conv3dOptions(o.in_channels(), d[0], 7).stride(2).padding(3))));
    } else {
      down->push_back("norm", plain_instance_norm(d[s - 1]));
      down->push_back("conv", torch::nn::AnyModule(torch::nn::Conv3d(torch::nn::Conv3dOptions(d[s - 1], d[s], 2).stride(2))));
    }
    downsample->push_back(down);
    gsc->push_back(GatedSpatialConv(d[s]));
    torch::nn::ModuleList layers;
    const MambaOptions m = MambaOptions(d[s]).d_state(o.d_state()).d_conv(o.d_conv()).expand(o.expand()).directions(3);
    for (int64_t i = 0; i < o.depths()[s]; ++i) layers->push_back(MambaLayer(d[s], m, /*residual=*/true));
    stages->push_back(layers);
    out_norm->push_back(plain_instance_norm(d[s]).ptr());
    Chain mlp;  // MlpChannel: 1x1 conv C -> 2C, GELU, 2C -> C
    mlp->push_back("fc1", make_conv(conv_spec(d[s], 2 * d[s], 1, true)));
    mlp->push_back("act", torch::nn::AnyModule(torch::nn::GELU()));
    mlp->push_back("fc2", make_conv(conv_spec(2 * d[s], d[s], 1, true)));
    out_mlp->push_back(mlp);
  }
  // Decoder (UNETR blocks): encoders[0] on the input, encoders[1..3] on the stage outputs
  // 0..2; the bottleneck on stage 3; ups[k] brings level k+1 up to k and fuses skip k.
  encoders = register_module("encoders", torch::nn::ModuleList());
  encoders->push_back(UnetResBlock(o.in_channels(), d[0]));
  for (int s = 0; s < 3; ++s) encoders->push_back(UnetResBlock(d[s], d[s + 1]));
  bottleneck = register_module("bottleneck", UnetResBlock(d[3], o.hidden_size()));
  ups = register_module("ups", torch::nn::ModuleList());
  decoders = register_module("decoders", torch::nn::ModuleList());
  const std::vector<int64_t> level{d[0], d[1], d[2], d[3], o.hidden_size()};
  for (int k = 0; k < 4; ++k) {
    ups->push_back(torch::nn::ConvTranspose3d(torch::nn::ConvTranspose3dOptions(level[k + 1], level[k], 2).stride(2).bias(false)));
    decoders->push_back(UnetResBlock(2 * level[k], level[k]));
  }
  final_block = register_module("final_block", UnetResBlock(d[0], d[0]));
  head = register_module("head", torch::nn::Conv3d(torch::nn::Conv3dOptions(d[0], o.out_channels(), 1)));
}

std::array<int64_t, 3> SegMambaImpl::size_divisor() const { return {16, 16, 16}; }

at::Tensor SegMambaImpl::forward(const at::Tensor& x) {
  check_input(x);
  std::vector<at::Tensor> skips{encoders[0]->as<UnetResBlock>()->forward(x)};  // full resolution
  at::Tensor h = x;
  for (int s = 0; s < 4; ++s) {
    h = downsample[s]->as<Chain>()->forward(h);
    h = gsc[s]->as<GatedSpatialConv>()->forward(h);
    for (const auto& layer : *stages[s]->as<torch::nn::ModuleList>()) h = layer->as<MambaLayer>()->forward(h);
    const at::Tensor out = out_mlp[s]->as<Chain>()->forward(out_norm[s]->as<torch::nn::InstanceNorm3d>()->forward(h));
    skips.push_back(s < 3 ? encoders[s + 1]->as<UnetResBlock>()->forward(out) : bottleneck->forward(out));
  }
  // skips: levels 0 (full) .. 3 (1/8) and the bottleneck at 1/16.
  at::Tensor y = skips[4];
  for (int k = 3; k >= 0; --k) {
    y = ups[k]->as<torch::nn::ConvTranspose3d>()->forward(y);
    y = decoders[k]->as<UnetResBlock>()->forward(at::cat({y, skips[k]}, 1));
  }
  return head->forward(final_block->forward(y));
}

}  // namespace neuroseg::models
