#pragma once
// A registry model with low-rank updates injected into the layers whose module names match
// glob patterns ("decoder.*", "*.conv", "*": every Conv2d/Conv3d/Linear). The base model is
// frozen and unchanged; before each forward the adapted layers are pointed at their
// effective weights (W0 + s·ΔW, adapters/low_rank.h), so any model built from torch::nn
// layers can be adapted without knowing its structure.
//
// Adapter files (.nsa) hold only the updates (kilobytes) plus the adapter settings and the
// base model's identity (registry name, arguments and a fingerprint of its weights), checked
// when loaded: one base checkpoint serves many sites, one small file per site.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapters/low_rank.h"
#include "models/checkpoint.h"
#include "models/segmentation_model.h"

namespace neuroseg::adapters {

struct AdaptedLayer {
  std::string name, type;            ///< module name in the base model; "Conv3d", "Conv2d", "Linear"
  std::vector<int64_t> weight_shape;
  at::Tensor base_weight;            ///< the layer's registered weight parameter (W0)
  LowRankUpdate update{nullptr};
};

/// A normalisation layer whose affine parameters the adapter trains (AdapterOptions::
/// train_norms): the base's own weight/bias stay untouched; trainable copies, registered here
/// and saved in the adapter file, are bound before each forward like the low-rank weights.
struct AdaptedNorm {
  std::string name;
  at::Tensor base_weight, base_bias;  ///< the layer's registered parameters
  at::Tensor weight, bias;            ///< the trainable copies
  at::Tensor saved_weight, saved_bias;  ///< base values while merged
};

class AdaptedModelImpl : public models::SegmentationModelImpl {
 public:
  /// Injects updates into every Conv2d/Conv3d/Linear of `base` whose name matches one of
  /// `targets` (fnmatch globs). io::Error when nothing matches (the message lists names).
  AdaptedModelImpl(models::SegmentationModel base, std::string base_name, nlohmann::json base_args,
                   const AdapterOptions& options, const std::vector<std::string>& targets);

  at::Tensor forward(const at::Tensor& x) override;
  std::vector<at::Tensor> forward_deep_supervision(const at::Tensor& x) override;
  std::string model_name() const override { return base_->model_name(); }
  int64_t in_channels() const override { return base_->in_channels(); }
  int64_t out_channels() const override { return base_->out_channels(); }
  std::array<int64_t, 3> size_divisor() const override { return base_->size_divisor(); }

  /// Folds the updates into the base weights (undone bit for bit by unmerge); either leaves
  /// the base model runnable on its own.
  void merge();
  void unmerge();
  models::SegmentationModel base() const { return base_; }
  const std::vector<AdaptedLayer>& layers() const { return layers_; }
  const std::vector<AdaptedNorm>& norms() const { return norms_; }
  const AdapterOptions& options() const { return options_; }
  const std::vector<std::string>& targets() const { return targets_; }
  int64_t trainable_parameters() const;
  int64_t base_parameters() const;
  /// The adapted layers, their shapes and parameter counts, and the totals with the
  /// trainable fraction.
  void print_table(std::FILE* out) const;

  /// Writes the updates and settings (atomically).
  void save(const std::string& path) const;
  /// Loads an adapter file's updates; io::Error if it was made for another base model or
  /// other layers/settings than this model's.
  void load(const std::string& path);

  /// Model name, arguments and a hash of the weights: what an adapter file is bound to.
  nlohmann::json base_identity() const;

 private:
  void bind() const;  ///< points every adapted layer at its effective weight
  models::SegmentationModel base_;
  std::string base_name_;
  nlohmann::json base_args_;
  AdapterOptions options_;
  std::vector<std::string> targets_;
  std::vector<AdaptedLayer> layers_;
  std::vector<std::function<void(const at::Tensor&)>> set_weight_;
  std::vector<AdaptedNorm> norms_;
  std::vector<std::function<void(const at::Tensor&, const at::Tensor&)>> set_norm_;
};
TORCH_MODULE(AdaptedModel);

/// Builds the adapted model from a base checkpoint and an adapter file's own settings.
AdaptedModel load_adapted(const models::LoadedModel& base, const std::string& adapter_path);

/// fnmatch-style match of a module name against a glob ("*" also crosses dots).
bool name_matches(const std::string& name, const std::string& pattern);

}  // namespace neuroseg::adapters
