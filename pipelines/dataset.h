#pragma once
// Training data: image/label pairs, preprocessed once onto the network grid and held in
// memory, and the patch sampler (nnU-Net's: a fraction of patches centred on foreground,
// class-balanced so small structures are seen; the rest uniform).
#include <array>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "pipelines/preprocess.h"

namespace neuroseg::pipelines {

struct TrainingCase {
  std::string name;
  at::Tensor image;  ///< float32 (C, D, H, W), normalised, network grid
  at::Tensor label;  ///< uint8 (D, H, W) class indices 0..K-1
  /// Voxel indices (flat) of each foreground class, for class-balanced sampling.
  std::vector<at::Tensor> class_voxels;
};

/// Reads, checks (same grid, known label values) and preprocesses every pair. Label files
/// are reoriented like the image and resampled with nearest neighbour onto its network grid.
std::vector<TrainingCase> load_training_cases(const std::vector<std::pair<std::string, std::string>>& pairs,
                                              const Preprocessing& p, const std::vector<int64_t>& label_values);

/// The median spacing (x, y, z) of the images after reorientation: nnU-Net's default target.
std::array<double, 3> median_spacing(const std::vector<std::pair<std::string, std::string>>& pairs,
                                     const std::string& orientation);

struct Batch {
  at::Tensor image;  ///< (N, C, D, H, W) float32
  at::Tensor label;  ///< (N, D, H, W) int64
};

/// Draws `batch` patches of `patch` (D, H, W); each patch is centred on a random
/// foreground voxel with probability `foreground_fraction` (class chosen uniformly among
/// the classes present), else placed uniformly. Volumes smaller than the patch are padded
/// (image 0, label 0). Deterministic for a given generator state.
Batch sample_batch(const std::vector<TrainingCase>& cases, const std::array<int64_t, 3>& patch, int64_t batch,
                   double foreground_fraction, at::Generator& gen);

}  // namespace neuroseg::pipelines
