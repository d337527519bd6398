#pragma once
// Mamba-1 blocks (Gu & Dao 2023, arXiv 2312.00752; state-spaces/mamba
// mamba_ssm/modules/mamba_simple.py) and the 3D segmentation networks built on them
// (shared/specs/mamba_sam.md §A):
//
//   MambaImpl       one Mamba mixer, (batch, L, d_model) -> same; with directions = 3 it is
//                   SegMamba's tri-orientated Mamba (ToM: forward, reverse, inter-slice
//                   scans, shared in/out projections; ge-xing/SegMamba, bimamba_type "v3").
//   MambaLayerImpl  LayerNorm + Mamba over a raster-flattened (B, C, D, H, W) map (W fastest),
//                   optionally residual, or over channel tokens (U-Mamba's tiny stages).
//   UMambaImpl      U-Mamba_Bot / U-Mamba_Enc (Ma, Li & Wang 2024, arXiv 2401.04722) on our
//                   U-Net with residual blocks: one MambaLayer after the bottleneck stage
//                   (Bot) or after every encoder stage (Enc).
//   SegMambaImpl    SegMamba (Xing et al. 2024, arXiv 2401.13560): stem 7^3/2, stages of
//                   gated spatial conv + 2 ToM layers, dims 48/96/192/384, UNETR-style
//                   residual decoder.
//
// Parameter names follow the Python modules (in_proj, conv1d, x_proj, dt_proj, A_log, D,
// out_proj; the ToM's extra sets end in _b and _s), so their state dicts map onto ours.
#include <array>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <torch/arg.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "models/layers.h"
#include "models/segmentation_model.h"
#include "models/unet.h"

namespace neuroseg::models {

struct MambaOptions {
  explicit MambaOptions(int64_t d_model) : d_model_(d_model) {}
  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(int64_t, d_state) = 16;
  TORCH_ARG(int64_t, d_conv) = 4;
  TORCH_ARG(int64_t, expand) = 2;
  TORCH_ARG(int64_t, dt_rank) = 0;  ///< 0: ceil(d_model / 16), the reference's "auto"
  TORCH_ARG(double, dt_min) = 0.001;
  TORCH_ARG(double, dt_max) = 0.1;
  TORCH_ARG(double, dt_init_floor) = 1e-4;
  TORCH_ARG(double, dt_scale) = 1.0;
  /// 1: one causal scan; 3: SegMamba's ToM (forward + reverse + inter-slice, summed).
  TORCH_ARG(int64_t, directions) = 1;

 public:
  int64_t d_inner() const { return expand() * d_model(); }
  int64_t rank() const { return dt_rank() > 0 ? dt_rank() : (d_model() + 15) / 16; }
};

/// \brief One Mamba mixer. forward((B, L, d_model)) -> (B, L, d_model); `slices` (ToM only)
/// is the number of depth slices the sequence is made of (the inter-slice scan visits the
/// slices of one in-plane position consecutively), and must divide L.
class MambaImpl : public torch::nn::Module {
 public:
  explicit MambaImpl(const MambaOptions& options);
  at::Tensor forward(const at::Tensor& x, int64_t slices = 1);

  MambaOptions options;
  torch::nn::Linear in_proj{nullptr}, out_proj{nullptr};

 private:
  // One scan's own parameters (the reference's conv1d / x_proj / dt_proj / A_log / D, with
  // suffix "", "_b" or "_s").
  struct Scan {
    torch::nn::Conv1d conv1d{nullptr};
    torch::nn::Linear x_proj{nullptr}, dt_proj{nullptr};
    at::Tensor A_log, D;
  };
  at::Tensor scan(Scan& s, const at::Tensor& x, const at::Tensor& z);
  std::vector<Scan> scans_;
};
TORCH_MODULE(Mamba);

/// \brief LayerNorm(C) + Mamba on a (B, C, D, H, W) map seen as D*H*W tokens of C features
/// (raster order, W fastest), + x when residual (SegMamba) or not (U-Mamba). With
/// channel_tokens the sequence is the C channels and d_model the D*H*W voxels (U-Mamba_Enc's
/// stages with fewer voxels than channels); the spatial size is then fixed.
class MambaLayerImpl : public torch::nn::Module {
 public:
  MambaLayerImpl(int64_t channels, const MambaOptions& mamba, bool residual, bool channel_tokens = false);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::LayerNorm norm{nullptr};
  Mamba mamba{nullptr};
  bool residual, channel_tokens;
};
TORCH_MODULE(MambaLayer);

struct UMambaOptions {
  /// The U-Net underneath (block "residual" unless given otherwise).
  TORCH_ARG(UNetOptions, unet);
  TORCH_ARG(bool, encoder_layers) = false;  ///< false: U-Mamba_Bot; true: U-Mamba_Enc
  TORCH_ARG(int64_t, d_state) = 16;
  TORCH_ARG(int64_t, d_conv) = 4;
  TORCH_ARG(int64_t, expand) = 2;
  /// Training patch (D, H, W); U-Mamba_Enc turns stages with at most `channels` voxels
  /// into channel-token layers. Empty: spatial tokens everywhere.
  TORCH_ARG(std::vector<int64_t>, patch_size);

 public:
  static UMambaOptions from_json(const nlohmann::json& args, bool encoder_layers);
  nlohmann::json to_json() const;
};

class UMambaImpl : public SegmentationModelImpl {
 public:
  explicit UMambaImpl(const UMambaOptions& options);
  at::Tensor forward(const at::Tensor& x) override;
  std::vector<at::Tensor> forward_deep_supervision(const at::Tensor& x) override;
  std::string model_name() const override { return options.encoder_layers() ? "umamba_enc" : "umamba_bot"; }
  int64_t in_channels() const override { return options.unet().in_channels(); }
  int64_t out_channels() const override { return options.unet().out_channels(); }
  std::array<int64_t, 3> size_divisor() const override { return net->size_divisor(); }

  UMambaOptions options;
  UNet net{nullptr};
  /// One layer per encoder stage that has one (stage index in `stages`).
  torch::nn::ModuleList mamba{nullptr};
  std::vector<int64_t> stages;
};
TORCH_MODULE(UMamba);

struct SegMambaOptions {
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, out_channels) = 2;
  TORCH_ARG(std::vector<int64_t>, dims) = std::vector<int64_t>{48, 96, 192, 384};
  TORCH_ARG(std::vector<int64_t>, depths) = std::vector<int64_t>{2, 2, 2, 2};  ///< ToM layers per stage
  TORCH_ARG(int64_t, hidden_size) = 768;  ///< bottleneck block after the last stage
  TORCH_ARG(int64_t, d_state) = 16;
  TORCH_ARG(int64_t, d_conv) = 4;
  TORCH_ARG(int64_t, expand) = 2;

 public:
  static SegMambaOptions from_json(const nlohmann::json& args);
  nlohmann::json to_json() const;
};

/// \brief SegMamba's gated spatial convolution: (2 x conv3-IN-ReLU) + (conv1-IN-ReLU),
/// summed, conv1-IN-ReLU, + x.
class GatedSpatialConvImpl : public torch::nn::Module {
 public:
  explicit GatedSpatialConvImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);
  Chain proj{nullptr}, proj2{nullptr}, proj3{nullptr}, proj4{nullptr};
};
TORCH_MODULE(GatedSpatialConv);

/// \brief MONAI's UnetResBlock (SegMamba's decoder unit): conv3-IN-LReLU, conv3-IN, + x (1x1
/// conv-IN when channels change), LReLU.
class UnetResBlockImpl : public torch::nn::Module {
 public:
  UnetResBlockImpl(int64_t in, int64_t out);
  at::Tensor forward(const at::Tensor& x);
  Chain conv1{nullptr}, conv2{nullptr}, skip{nullptr};
};
TORCH_MODULE(UnetResBlock);

class SegMambaImpl : public SegmentationModelImpl {
 public:
  explicit SegMambaImpl(const SegMambaOptions& options);
  at::Tensor forward(const at::Tensor& x) override;
  std::string model_name() const override { return "segmamba"; }
  int64_t in_channels() const override { return options.in_channels(); }
  int64_t out_channels() const override { return options.out_channels(); }
  std::array<int64_t, 3> size_divisor() const override;

  SegMambaOptions options;

 private:
  torch::nn::ModuleList downsample{nullptr}, gsc{nullptr}, stages{nullptr}, out_norm{nullptr}, out_mlp{nullptr};
  torch::nn::ModuleList encoders{nullptr}, ups{nullptr}, decoders{nullptr};
  UnetResBlock bottleneck{nullptr}, final_block{nullptr};
  torch::nn::Conv3d head{nullptr};
};
TORCH_MODULE(SegMamba);

}  // namespace neuroseg::models
