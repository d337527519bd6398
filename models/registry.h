#pragma once
// Name -> model factory. Factories (not instances) are registered, explicitly, in one
// place (builtin_models.cpp), so nothing is built before it is asked for and a static
// library never drops a model silently. Lookup is case-insensitive with did-you-mean.
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/segmentation_model.h"

namespace neuroseg::models {

struct ModelEntry {
  std::string name;
  std::string summary;
  std::function<SegmentationModel(const nlohmann::json& args)> factory;
  nlohmann::json example_args;  ///< arguments that build a representative instance (list-models --verbose)
};

class ModelRegistry {
 public:
  /// The registry holding the built-in models.
  static ModelRegistry& instance();
  void add(ModelEntry entry);  ///< throws on a duplicate name
  /// Builds a model; unknown names and bad arguments throw io::Error with the key named.
  SegmentationModel create(const std::string& name, const nlohmann::json& args) const;
  const ModelEntry& find(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::vector<ModelEntry>& entries() const { return entries_; }

 private:
  std::vector<ModelEntry> entries_;
};

/// Adds every model neuroseg ships (models/builtin_models.cpp): the one list of them.
void register_builtin_models(ModelRegistry& registry);

/// Number of parameters (all, or trainable only).
int64_t count_parameters(const torch::nn::Module& module, bool trainable_only = false);

}  // namespace neuroseg::models
