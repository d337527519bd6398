#include "models/layers.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/instancenorm.h>
#include <torch/nn/modules/normalization.h>

#include "io/error.h"

namespace neuroseg::models {
namespace {

template <std::size_t D>
torch::ExpandingArray<D> arr(const std::vector<int64_t>& v) {
  std::vector<int64_t> x(v.begin(), v.begin() + D);
  return torch::ExpandingArray<D>(x);
}

}  // namespace

torch::nn::AnyModule make_conv(const ConvSpec& s) {
  std::vector<int64_t> pad(s.kernel.size());
  for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = (s.kernel[i] / 2) * s.dilation[i];
  if (s.spatial_dims == 3)
    return torch::nn::AnyModule(torch::nn::Conv3d(torch::nn::Conv3dOptions(s.in, s.out, arr<3>(s.kernel))
                                                      .stride(arr<3>(s.stride))
                                                      .padding(arr<3>(pad))
                                                      .dilation(arr<3>(s.dilation))
                                                      .groups(s.groups)
                                                      .bias(s.bias)));
  return torch::nn::AnyModule(torch::nn::Conv2d(torch::nn::Conv2dOptions(s.in, s.out, arr<2>(s.kernel))
                                                    .stride(arr<2>(s.stride))
                                                    .padding(arr<2>(pad))
                                                    .dilation(arr<2>(s.dilation))
                                                    .groups(s.groups)
                                                    .bias(s.bias)));
}

torch::nn::AnyModule make_transposed_conv(int spatial_dims, int64_t in, int64_t out, const std::vector<int64_t>& stride) {
  if (spatial_dims == 3)
    return torch::nn::AnyModule(torch::nn::ConvTranspose3d(
        torch::nn::ConvTranspose3dOptions(in, out, arr<3>(stride)).stride(arr<3>(stride)).bias(true)));
  return torch::nn::AnyModule(torch::nn::ConvTranspose2d(
      torch::nn::ConvTranspose2dOptions(in, out, arr<2>(stride)).stride(arr<2>(stride)).bias(true)));
}

torch::nn::AnyModule make_norm(const std::string& kind, int spatial_dims, int64_t channels, int64_t num_groups) {
  if (kind == "instance") {
    if (spatial_dims == 3)
      return torch::nn::AnyModule(torch::nn::InstanceNorm3d(torch::nn::InstanceNorm3dOptions(channels).affine(true).eps(1e-5)));
    return torch::nn::AnyModule(torch::nn::InstanceNorm2d(torch::nn::InstanceNorm2dOptions(channels).affine(true).eps(1e-5)));
  }
  if (kind == "batch") {
    if (spatial_dims == 3) return torch::nn::AnyModule(torch::nn::BatchNorm3d(channels));
    return torch::nn::AnyModule(torch::nn::BatchNorm2d(channels));
  }
  if (channels % num_groups != 0)
    throw io::Error("group norm", std::to_string(channels) + " channels are not divisible into " +
                                      std::to_string(num_groups) + " groups (set num_groups)");
  return torch::nn::AnyModule(torch::nn::GroupNorm(torch::nn::GroupNormOptions(num_groups, channels)));
}

torch::nn::AnyModule make_act(const std::string& kind) {
  if (kind == "relu") return torch::nn::AnyModule(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
  return torch::nn::AnyModule(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.01).inplace(true)));
}

Chain conv_norm_act(const ConvSpec& s, const std::string& norm, const std::string& act, int64_t num_groups) {
  Chain seq;
  seq->push_back("conv", make_conv(s));
  seq->push_back("norm", make_norm(norm, s.spatial_dims, s.out, num_groups));
  seq->push_back("act", make_act(act));
  return seq;
}

}  // namespace neuroseg::models
