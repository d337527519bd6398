#pragma once
// A configurable U-Net, 3D or 2D, whose defaults follow nnU-Net's PlainConvUNet
// (Isensee et al., Nat. Methods 2021): 2 conv-norm-act per stage, instance norm,
// LeakyReLU(0.01), strided-conv downsampling, transposed-conv upsampling, 1x1 heads.
//
//   encoder.s   : stage s, `convs_per_stage` blocks; the first has strides[s]
//   decoder.s.up: from stage s+1 to s (transposed conv, or interpolate + 1x1 conv)
//   decoder.s.blocks: `convs_per_stage` blocks on cat(up, skip_s)  (2*ch[s] -> ch[s])
//   heads.s     : 1x1 conv ch[s] -> out_channels (heads.0 is the full-resolution output;
//                 heads.1.. exist only with deep_supervision, as they are trained only then)
#include <array>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <torch/arg.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include "models/layers.h"
#include "models/segmentation_model.h"

namespace neuroseg::models {

struct UNetOptions {
  TORCH_ARG(int, spatial_dims) = 3;
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, out_channels) = 2;
  /// Feature channels per stage; depth = channels.size().
  TORCH_ARG(std::vector<int64_t>, channels) = std::vector<int64_t>{32, 64, 128, 256, 320};
  /// Per-stage, per-axis (D, H, W) strides; stage 0 is usually 1. Anisotropic: {1,2,2}.
  TORCH_ARG(std::vector<std::vector<int64_t>>, strides) =
      std::vector<std::vector<int64_t>>{{1, 1, 1}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}};
  /// Per-stage, per-axis kernel sizes (odd).
  TORCH_ARG(std::vector<std::vector<int64_t>>, kernel_sizes) =
      std::vector<std::vector<int64_t>>{{3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  TORCH_ARG(int64_t, convs_per_stage) = 2;
  TORCH_ARG(std::string, block) = "plain";       ///< "plain" or "residual"
  TORCH_ARG(std::string, norm) = "instance";     ///< "instance", "batch" or "group"
  TORCH_ARG(int64_t, num_groups) = 8;            ///< for group norm
  TORCH_ARG(std::string, act) = "leakyrelu";     ///< "leakyrelu" or "relu"
  TORCH_ARG(std::string, upsample) = "transposed";  ///< "transposed" or "interpolate"
  TORCH_ARG(bool, deep_supervision) = false;

 public:
  /// Strict parse of registry arguments (unknown keys rejected with did-you-mean).
  static UNetOptions from_json(const nlohmann::json& args, int spatial_dims);
  nlohmann::json to_json() const;
  /// Throws io::Error naming the argument that is wrong.
  void validate(const std::string& model_name) const;
};

/// \brief Residual block: conv-norm-act, conv-norm, + skip (1x1 conv-norm when the shape
/// changes), act.
class ResidualBlockImpl : public torch::nn::Module {
 public:
  ResidualBlockImpl(int spatial_dims, int64_t in, int64_t out, const std::vector<int64_t>& kernel,
                    const std::vector<int64_t>& stride, const UNetOptions& o);
  at::Tensor forward(const at::Tensor& x);

 private:
  Chain conv1{nullptr}, conv2{nullptr}, skip{nullptr};
  torch::nn::AnyModule act;
};
TORCH_MODULE(ResidualBlock);

class UNetImpl : public SegmentationModelImpl {
 public:
  explicit UNetImpl(const UNetOptions& options);
  at::Tensor forward(const at::Tensor& x) override;
  std::vector<at::Tensor> forward_deep_supervision(const at::Tensor& x) override;
  std::string model_name() const override { return options.spatial_dims() == 3 ? "unet" : "unet2d"; }
  int64_t in_channels() const override { return options.in_channels(); }
  int64_t out_channels() const override { return options.out_channels(); }
  std::array<int64_t, 3> size_divisor() const override;
  /// Runs encoder and decoder; returns the decoder features per stage (full res first).
  std::vector<at::Tensor> decode(const at::Tensor& x);

  UNetOptions options;
  /// When set, applied to each encoder stage's output before it is the skip and the next
  /// stage's input (U-Mamba inserts its Mamba layers here).
  std::function<at::Tensor(std::size_t stage, const at::Tensor& features)> after_encoder_stage;

 private:
  torch::nn::ModuleList encoder{nullptr}, decoder_up{nullptr}, decoder_blocks{nullptr}, heads{nullptr};
};
TORCH_MODULE(UNet);

/// \brief The 2D twin: the same U-Net with spatial_dims = 2, run slice by slice over a
/// volume (no memory across slices) behind the volumetric interface.
class UNet2dSlicesImpl : public SliceModelImpl {
 public:
  explicit UNet2dSlicesImpl(const UNetOptions& options);
  at::Tensor forward_slice(const at::Tensor& slice, int64_t z) override;
  std::string model_name() const override { return "unet2d"; }
  int64_t in_channels() const override { return net->in_channels(); }
  int64_t out_channels() const override { return net->out_channels(); }
  std::array<int64_t, 3> size_divisor() const override;

  UNet net{nullptr};
};
TORCH_MODULE(UNet2dSlices);

}  // namespace neuroseg::models
