#pragma once
// The preprocessing a model was trained with, read from its checkpoint, applied to a case
// and undone on the prediction, so that outputs land exactly on the input's grid.
//
//   input volume --reorient(orientation)--> --resample(target_spacing, linear)-->
//   --normalise--> (C, D, H, W) float network input
//   prediction (K, D, H, W) --resample back (linear)--> --reorient back--> input grid
//
// checkpoint meta "preprocessing" (all keys optional, unknown keys are errors):
//   {"orientation": "RAS", "target_spacing": [x, y, z],
//    "normalization": {"scheme": "zscore", "mean": m, "std": s}          fixed statistics
//                   | {"scheme": "zscore_case", "foreground_only": true}   per image (nnU-Net MRI)
//                   | {"scheme": "percentile", "low": l, "high": h, "mean": m, "std": s}  (nnU-Net CT;
//                      `train` computes them from the training foreground when absent)
//                   | {"scheme": "window", "low": l, "high": h}            clip, scale to [0, 1]
//                   | {"scheme": "none"}}
#include <array>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "io/volume.h"

namespace neuroseg::pipelines {

struct Normalization {
  std::string scheme = "zscore_case";
  double mean = 0, std = 1, low = 0, high = 1;
  bool foreground_only = false;
};

struct Preprocessing {
  std::string orientation;                      ///< "" keeps the input's
  std::optional<std::array<double, 3>> target_spacing;
  Normalization normalization;

  static Preprocessing from_json(const nlohmann::json& j);  ///< strict; throws io::Error
  nlohmann::json to_json() const;
};

/// A case ready for the network, and what is needed to map predictions back.
struct PreparedCase {
  at::Tensor image;              ///< float32 (C, D, H, W) on the CPU
  io::Volume input_grid;         ///< the input's geometry, shape and source (no voxels)
  io::Geometry reoriented_geometry;
  std::array<int64_t, 3> reoriented_size{};
  io::Geometry network_geometry;  ///< grid the network sees
};

PreparedCase prepare_case(const io::Volume& input, const Preprocessing& p);

/// Intensity normalisation of a (C, D, H, W) float tensor (in place semantics, returns it).
at::Tensor normalize(at::Tensor image, const Normalization& n);

/// Maps a (K, D, H, W) float prediction on the network grid back onto the input grid
/// (linear resampling, exact reorientation); the result's geometry is the input's, bit for bit.
io::Volume restore_to_input(const at::Tensor& prediction, const PreparedCase& c);

}  // namespace neuroseg::pipelines
