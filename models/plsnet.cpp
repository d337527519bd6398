#include "models/plsnet.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/nn/functional/upsampling.h>

#include "io/json_args.h"

namespace neuroseg::models {
namespace {

namespace F = torch::nn::functional;

// Trilinear resize by `scale` (exact sizes: inputs are multiples of 8).
at::Tensor resize(const at::Tensor& x, double scale) {
  std::vector<int64_t> size;
  for (int a = 2; a < 5; ++a) size.push_back(static_cast<int64_t>(std::llround(x.size(a) * scale)));
  return F::interpolate(x, F::InterpolateFuncOptions().size(size).mode(torch::kTrilinear).align_corners(false));
}

}  // namespace

PLSNetOptions PLSNetOptions::from_json(const nlohmann::json& json) {
  PLSNetOptions o;
  io::JsonArgs a("model 'plsnet'", json);
  o.in_channels(a.get_int("in_channels", o.in_channels(), 1));
  o.out_channels(a.get_int("out_channels", o.out_channels(), 1));
  o.channels(a.get_int_list("channels", o.channels(), 1));
  if (o.channels().size() != 3) a.fail("channels", "PLS-Net has exactly 3 stages, e.g. [16, 64, 128]");
  o.growth_rate(a.get_int("growth_rate", o.growth_rate(), 1));
  o.drdb_blocks(a.get_int_list("drdb_blocks", o.drdb_blocks(), 0));
  if (o.drdb_blocks().size() != 3) a.fail("drdb_blocks", "needs one count per stage, e.g. [1, 2, 4]");
  o.batch_stats_at_inference(a.get_bool("batch_stats_at_inference", o.batch_stats_at_inference()));
  a.finish();
  return o;
}

nlohmann::json PLSNetOptions::to_json() const {
  return {{"in_channels", in_channels()}, {"out_channels", out_channels()}, {"channels", channels()},
          {"growth_rate", growth_rate()}, {"drdb_blocks", drdb_blocks()},
          {"batch_stats_at_inference", batch_stats_at_inference()}};
}

PLSBatchNormImpl::PLSBatchNormImpl(int64_t channels, bool batch_stats)
    : batch_stats_at_inference(batch_stats) {
  bn = register_module("bn", torch::nn::BatchNorm3d(torch::nn::BatchNorm3dOptions(channels).momentum(0.01)));
}

at::Tensor PLSBatchNormImpl::forward(const at::Tensor& x) {
  if (is_training() || !batch_stats_at_inference) return bn->forward(x);
  // Batch statistics without updating the running ones (track_running_stats = False).
  return at::batch_norm(x, bn->weight, bn->bias, /*running_mean=*/{}, /*running_var=*/{}, /*training=*/true,
                        /*momentum=*/0.0, bn->options.eps(), /*cudnn_enabled=*/true);
}

DSConvImpl::DSConvImpl(int64_t in, int64_t out, int64_t dilation, int64_t stride, bool batch_stats) {
  depthwise = register_module("depthwise", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, in, 3)
                                                                 .stride(stride)
                                                                 .padding(dilation)
                                                                 .dilation(dilation)
                                                                 .groups(in)
                                                                 .bias(false)));
  pointwise = register_module("pointwise", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, 1).bias(false)));
  norm = register_module("norm", PLSBatchNorm(out, batch_stats));
}

at::Tensor DSConvImpl::forward(const at::Tensor& x) { return at::relu(norm->forward(pointwise->forward(depthwise->forward(x)))); }

DRDBImpl::DRDBImpl(int64_t channels, int64_t growth, bool batch_stats) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t k = 0; k < 4; ++k)
    layers->push_back(DSConv(channels + k * growth, growth, /*dilation=*/k + 1, /*stride=*/1, batch_stats));
  fuse = register_module("fuse", torch::nn::Conv3d(torch::nn::Conv3dOptions(channels + 4 * growth, channels, 1)));
}

at::Tensor DRDBImpl::forward(const at::Tensor& x) {
  at::Tensor dense = x;
  for (const auto& layer : *layers) dense = at::cat({dense, layer->as<DSConv>()->forward(dense)}, 1);
  return fuse->forward(dense) + x;
}

PLSNetImpl::PLSNetImpl(const PLSNetOptions& o) : options(o) {
  const bool bs = o.batch_stats_at_inference();
  const int64_t in = o.in_channels(), c2 = 2 * o.out_channels();
  const int64_t l1 = o.channels()[0] + in, l2 = o.channels()[1] + in, l3 = o.channels()[2] + in;
  down1 = register_module("down1", DSConv(in, o.channels()[0], 1, 2, bs));
  down2 = register_module("down2", DSConv(l1, o.channels()[1], 1, 2, bs));
  down3 = register_module("down3", DSConv(l2, o.channels()[2], 1, 2, bs));
  auto blocks = [&](const char* name, int64_t n, int64_t ch) {
    torch::nn::ModuleList list;
    for (int64_t i = 0; i < n; ++i) list->push_back(DRDB(ch, o.growth_rate(), bs));
    return register_module(name, list);
  };
  drdb1 = blocks("drdb1", o.drdb_blocks()[0], l1);
  drdb2 = blocks("drdb2", o.drdb_blocks()[1], l2);
  drdb3 = blocks("drdb3", o.drdb_blocks()[2], l3);
  dec3 = register_module("dec3", DSConv(l3, c2, 1, 1, bs));
  skip2 = register_module("skip2", DSConv(l2, c2, 1, 1, bs));
  dec2 = register_module("dec2", DSConv(2 * c2, c2, 1, 1, bs));
  skip1 = register_module("skip1", DSConv(l1, c2, 1, 1, bs));
  dec1 = register_module("dec1", DSConv(2 * c2, c2, 1, 1, bs));
  head = register_module("head", torch::nn::Conv3d(torch::nn::Conv3dOptions(c2, o.out_channels(), 1)));
}

at::Tensor PLSNetImpl::forward(const at::Tensor& x) {
  check_input(x);
  auto run = [](torch::nn::ModuleList& list, at::Tensor h) {
    for (const auto& m : *list) h = m->as<DRDB>()->forward(h);
    return h;
  };
  const at::Tensor out_l1 = run(drdb1, at::cat({down1->forward(x), resize(x, 0.5)}, 1));
  const at::Tensor out_l2 = run(drdb2, at::cat({down2->forward(out_l1), resize(x, 0.25)}, 1));
  const at::Tensor out_l3 = run(drdb3, at::cat({down3->forward(out_l2), resize(x, 0.125)}, 1));
  at::Tensor h = resize(dec3->forward(out_l3), 2.0);
  h = resize(dec2->forward(at::cat({h, skip2->forward(out_l2)}, 1)), 2.0);
  h = resize(dec1->forward(at::cat({h, skip1->forward(out_l1)}, 1)), 2.0);
  return head->forward(h);
}

}  // namespace neuroseg::models
