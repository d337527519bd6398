#pragma once
// Self-describing checkpoints and Python weights.
//
// A neuroseg checkpoint is one file (torch's pickle format: torch.load() in Python reads
// it as a dict) holding everything `neuroseg segment --model FILE` needs:
//   {"format": "neuroseg-checkpoint", "version": 1,
//    "meta": "<JSON: model name + args, preprocessing, labels, patch size, training>",
//    "state_dict": {name: tensor}}
// A newer version than this build understands is refused with a clear message.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/ivalue.h>
#include <nlohmann/json.hpp>

#include "models/segmentation_model.h"

namespace neuroseg::models {

inline constexpr int kCheckpointVersion = 1;

/// What a checkpoint says besides the weights.
struct CheckpointMeta {
  std::string model;                 ///< registry name
  nlohmann::json args = nlohmann::json::object();
  /// {"target_spacing": [x,y,z], "orientation": "RAS",
  ///  "normalization": {"scheme": "zscore"|"percentile"|"ct", ...statistics}}
  nlohmann::json preprocessing = nlohmann::json::object();
  /// {"background": 0, "tumour": 1, ...}
  nlohmann::json labels = nlohmann::json::object();
  std::vector<int64_t> patch_size;   ///< (D, H, W)
  /// {"largest_component": true, "fill_holes": true, "connectivity": 26}
  nlohmann::json postprocessing = nlohmann::json::object();
  nlohmann::json training = nlohmann::json::object();  ///< free-form provenance (epochs, data, ...)

  nlohmann::json to_json() const;
  static CheckpointMeta from_json(const nlohmann::json& j, const std::string& path);
};

/// A torch.save-compatible file (Python's torch.load reads it) holding `root`, written
/// atomically; and its reader (io::Error naming the file when it is unreadable). Checkpoints
/// and adapter files (adapters/adapted_model.h) are both such files.
void write_pickle(const std::string& path, const c10::IValue& root);
c10::IValue read_pickle(const std::string& path);

struct LoadedModel {
  SegmentationModel model;
  CheckpointMeta meta;
};

/// Writes model weights + meta atomically (temporary file, then rename).
void save_checkpoint(const std::string& path, SegmentationModelImpl& model, const CheckpointMeta& meta);
/// Builds the model named in the file through the registry and loads its weights strictly.
LoadedModel load_checkpoint(const std::string& path);

/// Options for loading a plain state dict saved by Python (torch.save(model.state_dict())).
struct StateDictOptions {
  /// Key renames applied in order, each a (regex, replacement) pair, e.g.
  /// {"^module\\.", ""} strips DataParallel's prefix.
  std::vector<std::pair<std::string, std::string>> key_map;
  bool strict = true;  ///< missing or unexpected keys are errors (shape mismatches always are)
};

/// Reads a file written by torch.save(dict) and returns its tensors by name. Accepts a
/// plain dict of tensors, or a dict with a "state_dict" entry (Lightning-style).
std::map<std::string, at::Tensor> read_state_dict(const std::string& path);

/// Copies `tensors` into the module's parameters and buffers. Throws io::Error naming the
/// file with every missing, unexpected and mis-shaped key (and both shapes).
void load_state_dict(torch::nn::Module& module, std::map<std::string, at::Tensor> tensors,
                     const StateDictOptions& options, const std::string& path);

}  // namespace neuroseg::models
