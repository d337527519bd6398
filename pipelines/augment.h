#pragma once
// Training-time augmentation of a batch, on the batch's device (the GPU when training on
// CUDA): random parameters come from a CPU generator (so runs are reproducible), the
// work is tensor ops. The set and ranges follow nnU-Net's default pipeline:
//   spatial:   rotation, scaling, mirroring, elastic deformation (one grid_sample)
//   intensity: Gaussian noise, Gaussian blur, multiplicative bias field, contrast, gamma;
//   optional:  random Bézier intensity curves (cross-modality style augmentation).
#include <array>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

namespace neuroseg::pipelines {

struct AugmentOptions {
  double probability = 0.2;              ///< chance of each intensity/spatial transform per sample
  bool flip = true;                      ///< mirror each axis with p = 0.5
  double rotate_degrees = 15;            ///< uniform in +-, each axis
  std::array<double, 2> scale{0.85, 1.25};
  double elastic = 0;                    ///< displacement magnitude in voxels (0 = off)
  double noise_std = 0.1;                ///< max std of additive Gaussian noise
  std::array<double, 2> blur_sigma{0.5, 1.0};
  double bias_field = 0.3;               ///< max log-amplitude of a smooth multiplicative field
  std::array<double, 2> contrast{0.75, 1.25};
  std::array<double, 2> gamma{0.7, 1.5};
  /// Chance per sample of a random Bézier intensity curve, increasing or (half of the time)
  /// decreasing: cross-modality style augmentation (Zhou et al., CVPR 2022, after Models
  /// Genesis' non-linear transform). 0 = off (nnU-Net's default set has none).
  double intensity_curve = 0;
  bool enabled = true;

  static AugmentOptions from_json(const nlohmann::json& j);  ///< strict
};

/// Augments image (N, C, D, H, W) float and label (N, D, H, W) int64 in place of copies.
void augment_batch(at::Tensor& image, at::Tensor& label, const AugmentOptions& o, at::Generator& gen);

}  // namespace neuroseg::pipelines
