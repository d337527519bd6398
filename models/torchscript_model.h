#pragma once
// A TorchScript file as a registry model, so networks exported from Python
// (torch.jit.script / trace + save) run through the same CLI and pipelines.
#include <string>

#include <nlohmann/json_fwd.hpp>
#include <torch/script.h>

#include "models/segmentation_model.h"

namespace neuroseg::models {

class TorchScriptModelImpl : public SegmentationModelImpl {
 public:
  /// args: {"path": "...", "in_channels": 1, "out_channels": 2, "size_divisor": [16, 16, 16]}
  explicit TorchScriptModelImpl(const nlohmann::json& args);
  at::Tensor forward(const at::Tensor& x) override;
  std::string model_name() const override { return "torchscript"; }
  int64_t in_channels() const override { return in_channels_; }
  int64_t out_channels() const override { return out_channels_; }
  std::array<int64_t, 3> size_divisor() const override { return divisor_; }
  void train(bool on = true) override;
  /// Moves the scripted module (its parameters are not registered with this wrapper).
  using SegmentationModelImpl::to;
  void to(torch::Device device, bool non_blocking = false) override;

 private:
  torch::jit::Module module_;
  std::string path_;
  int64_t in_channels_ = 1, out_channels_ = 1;
  std::array<int64_t, 3> divisor_{1, 1, 1};
};

}  // namespace neuroseg::models
