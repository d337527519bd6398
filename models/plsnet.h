#pragma once
// PLS-Net (Lee et al. 2019, arXiv 1909.07474) as re-implemented by Bouget et al. 2021 for
// meningioma segmentation (github.com/dbouget/mri_brain_tumor_segmentation,
// github.com/andreped/PLS-Net). Layer by layer from shared/specs/spine_sfda_plsnet_lora.md §C:
//
//   L1  ds1 = DSConv(1->16, s2) ; cat(input at 1/2)    -> 17 @ 1/2 ; drdb1 x1  -> out_l1
//   L2  ds2 = DSConv(17->64, s2); cat(input at 1/4)    -> 65 @ 1/4 ; drdb2 x2  -> out_l2
//   L3  ds3 = DSConv(65->128,s2); cat(input at 1/8)    -> 129 @ 1/8; drdb3 x4
//   dec3 = DSConv(129->2C) + up2                        -> 2C @ 1/4
//   dec2 = DSConv(4C->2C) + up2 on cat(dec3, skip2 = DSConv(65->2C)(out_l2))  -> 2C @ 1/2
//   dec1 = DSConv(4C->2C) + up2 on cat(dec2, skip1 = DSConv(17->2C)(out_l1))  -> 2C @ 1/1
//   head = Conv3d(2C->C, 1x1x1)  (the reference adds a softmax; we return logits)
//
// DSConv = depthwise 3x3x3 (dilation d, groups=in, no bias) -> pointwise 1x1x1 (no bias)
// -> BatchNorm -> ReLU (BN applied, as Bouget's version; andreped's skips it).
// DRDB = 4 DSConvs (growth 12, dilations 1..4) densely concatenated, 1x1x1 fusion, residual.
#include <nlohmann/json_fwd.hpp>
#include <torch/arg.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "models/segmentation_model.h"

namespace neuroseg::models {

struct PLSNetOptions {
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, out_channels) = 2;
  TORCH_ARG(std::vector<int64_t>, channels) = std::vector<int64_t>{16, 64, 128};
  TORCH_ARG(int64_t, growth_rate) = 12;
  TORCH_ARG(std::vector<int64_t>, drdb_blocks) = std::vector<int64_t>{1, 2, 4};
  /// Bouget et al. set track_running_stats = False before inference: BatchNorm then
  /// normalises with the statistics of the volume being segmented.
  TORCH_ARG(bool, batch_stats_at_inference) = false;

 public:
  static PLSNetOptions from_json(const nlohmann::json& args);
  nlohmann::json to_json() const;
};

/// BatchNorm3d that can use batch statistics in eval mode (without touching running stats).
class PLSBatchNormImpl : public torch::nn::Module {
 public:
  PLSBatchNormImpl(int64_t channels, bool batch_stats_at_inference);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::BatchNorm3d bn{nullptr};
  bool batch_stats_at_inference;
};
TORCH_MODULE(PLSBatchNorm);

class DSConvImpl : public torch::nn::Module {
 public:
  DSConvImpl(int64_t in, int64_t out, int64_t dilation, int64_t stride, bool batch_stats_at_inference);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv3d depthwise{nullptr}, pointwise{nullptr};
  PLSBatchNorm norm{nullptr};
};
TORCH_MODULE(DSConv);

class DRDBImpl : public torch::nn::Module {
 public:
  DRDBImpl(int64_t channels, int64_t growth, bool batch_stats_at_inference);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::ModuleList layers{nullptr};
  torch::nn::Conv3d fuse{nullptr};
};
TORCH_MODULE(DRDB);

class PLSNetImpl : public SegmentationModelImpl {
 public:
  explicit PLSNetImpl(const PLSNetOptions& options);
  at::Tensor forward(const at::Tensor& x) override;
  std::string model_name() const override { return "plsnet"; }
  int64_t in_channels() const override { return options.in_channels(); }
  int64_t out_channels() const override { return options.out_channels(); }
  std::array<int64_t, 3> size_divisor() const override { return {8, 8, 8}; }

  PLSNetOptions options;

 private:
  DSConv down1{nullptr}, down2{nullptr}, down3{nullptr};
  torch::nn::ModuleList drdb1{nullptr}, drdb2{nullptr}, drdb3{nullptr};
  DSConv dec3{nullptr}, skip2{nullptr}, dec2{nullptr}, skip1{nullptr}, dec1{nullptr};
  torch::nn::Conv3d head{nullptr};
};
TORCH_MODULE(PLSNet);

}  // namespace neuroseg::models
