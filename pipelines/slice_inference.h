#pragma once
// Whole-slice inference of a 2D slice model over a volume (`neuroseg segment --axis z|y|x`):
// the slices along the chosen axis go through the model one after the other, in order, so a
// model with memory across slices (the SAM adapter, models/sam.h) carries it along the whole
// stack instead of restarting in every sliding window. Each slice is seen whole (padded to
// the model's divisor and cropped back), so there are no window seams either.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "models/segmentation_model.h"

namespace neuroseg::pipelines {

/// "z", "y" or "x" -> the tensor axis of a (C, D, H, W) volume (1, 2, 3); io::Error otherwise.
int parse_slice_axis(const std::string& name);

/// `image`: float (C, D, H, W) on the CPU; `axis` 1, 2 or 3. The model must be in eval mode.
/// Returns the (K, D, H, W) float32 logits on the CPU. Runs under InferenceMode; `amp`:
/// bf16 (CPU) / fp16 (CUDA) autocast.
at::Tensor slice_inference(models::SliceModelImpl& model, const at::Tensor& image, int axis, const c10::Device& device,
                           bool amp);

}  // namespace neuroseg::pipelines
