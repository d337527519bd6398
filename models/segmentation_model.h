#pragma once
// The interface every network implements, so that pipelines never depend on a concrete
// model. Two shapes of model exist:
//  * dense volumetric models: (N, Cin, D, H, W) -> (N, Cout, D, H, W) logits;
//  * slice models (2D U-Net, SAM adapter): run slice by slice along z, optionally with
//    memory carried across slices and prompts; SliceModelImpl turns them into the dense
//    interface, so the pipelines see one kind.
// Custom ops (e.g. Mamba's selective scan) live inside the models that use them.
#include <array>
#include <string>
#include <vector>

#include <torch/nn/module.h>

namespace neuroseg::models {

/// \brief Base of every segmentation network.
class SegmentationModelImpl : public torch::nn::Module {
 public:
  /// (N, in_channels, D, H, W) -> (N, out_channels, D, H, W) logits. Every model returns
  /// logits (PLS-Net's reference ends in a softmax: the pipelines apply it uniformly).
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  /// Deep-supervision outputs, full resolution first; models without heads return {forward(x)}.
  virtual std::vector<at::Tensor> forward_deep_supervision(const at::Tensor& x) { return {forward(x)}; }
  /// The registry name, used in messages ("model 'unet': ...").
  virtual std::string model_name() const = 0;
  virtual int64_t in_channels() const = 0;
  virtual int64_t out_channels() const = 0;
  /// Each spatial input size (D, H, W) must be a multiple of this (the pipelines pad).
  virtual std::array<int64_t, 3> size_divisor() const = 0;
  /// Throws io::Error explaining how to pad when x's spatial size does not fit.
  void check_input(const at::Tensor& x) const;
};
using SegmentationModel = std::shared_ptr<SegmentationModelImpl>;

/// \brief A 2D model run over a volume slice by slice along z (D). Subclasses implement
/// forward_slice; reset_memory() is called before each volume so that models with memory
/// across slices (SAM4EM-style) start clean. Prompts, when a model takes them, are set
/// on the model before forward().
class SliceModelImpl : public SegmentationModelImpl {
 public:
  /// (N, Cin, H, W) -> (N, Cout, H, W) for slice index z.
  virtual at::Tensor forward_slice(const at::Tensor& slice, int64_t z) = 0;
  virtual void reset_memory() {}
  at::Tensor forward(const at::Tensor& x) override;
};

}  // namespace neuroseg::models
