#pragma once
// Sliding-window inference over a whole volume (MONAI's sliding_window_inference /
// nnU-Net's predict_sliding_window_return_logits): windows of `roi` voxels, stepping
// roi * (1 - overlap), the last window flush with the far edge; windows are run in
// batches and their outputs blended with a Gaussian importance map (sigma = roi/8), so
// window borders, where context is poorest, count least and no seams appear.
// Window placement follows MONAI exactly, so both give the same output.
#include <array>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "models/segmentation_model.h"

namespace neuroseg::pipelines {

struct SlidingWindowOptions {
  std::array<int64_t, 3> roi{128, 128, 128};  ///< window (D, H, W); clipped to the volume
  double overlap = 0.5;                       ///< fraction of the window shared by neighbours
  int64_t batch = 2;                          ///< windows per forward pass
  bool gaussian = true;                       ///< false: constant weights
  double sigma_scale = 0.125;
  bool mirror_tta = false;                    ///< average the 8 flips along D, H, W (nnU-Net's mirroring)
  c10::Device device = c10::Device(c10::kCPU);
  bool amp = false;                           ///< bf16/fp16 autocast on the device
  /// Where the full-size output buffers live. "auto": on a CUDA device as fp16 when they fit
  /// in half of its free memory, else float32 in host memory (so GPU memory does not grow
  /// with the volume); "host" or "device" force one.
  std::string buffers = "auto";
};

/// Gaussian importance map of a window (D, H, W), float32, >= 1e-3 (MONAI's exactly).
at::Tensor gaussian_importance(const std::array<int64_t, 3>& roi, double sigma_scale);

/// Window start positions along one axis (MONAI's _get_scan_interval + dense_patch_slices).
std::vector<int64_t> window_starts(int64_t size, int64_t roi, double overlap);

/// `image`: float (C, D, H, W), kept where it is (host memory for big volumes): only the
/// windows of a batch travel to the device. Returns the blended network output
/// (K, D, H, W) float32 on the CPU. The model must be in eval mode; runs under InferenceMode.
at::Tensor sliding_window_inference(models::SegmentationModelImpl& model, const at::Tensor& image,
                                    const SlidingWindowOptions& options);

}  // namespace neuroseg::pipelines
