#include "pipelines/slice_inference.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "io/error.h"
#include "pipelines/autocast_guard.h"

namespace neuroseg::pipelines {

int parse_slice_axis(const std::string& name) {
  if (name == "z") return 1;
  if (name == "y") return 2;
  if (name == "x") return 3;
  throw io::Error("--axis " + name, "expected z, y or x");
}

at::Tensor slice_inference(models::SliceModelImpl& model, const at::Tensor& image, int axis, const c10::Device& device,
                           bool amp) {
  if (image.dim() != 4) throw io::Error("slice inference", "expects a (C, D, H, W) volume");
  if (axis < 1 || axis > 3) throw io::Error("slice inference", "axis must be 1, 2 or 3");
  c10::InferenceMode inference;
  // The slicing axis becomes D; the slice plane is (A, B).
  const at::Tensor vol = image.movedim(axis, 1);
  const int64_t n = vol.size(1), a = vol.size(2), b = vol.size(3);
  const auto div = model.size_divisor();
  const int64_t pa = (div[1] - a % div[1]) % div[1], pb = (div[2] - b % div[2]) % div[2];
  const at::ScalarType amp_type = device.is_cuda() ? at::kHalf : at::kBFloat16;
  model.reset_memory();
  at::Tensor out;
  for (int64_t s = 0; s < n; ++s) {
    at::Tensor x = vol.select(1, s).unsqueeze(0).to(device, at::kFloat);  // (1, C, A, B)
    if (pa || pb) x = at::constant_pad_nd(x, {0, pb, 0, pa});
    at::Tensor y;
    {
      AutocastGuard guard(device.type(), amp_type, amp);
      y = model.forward_slice(x, s);
    }
    y = y.slice(2, 0, a).slice(3, 0, b).squeeze(0).to(at::kCPU, at::kFloat);  // (K, A, B)
    if (!out.defined()) out = at::empty({y.size(0), n, a, b}, y.options());
    out.select(1, s).copy_(y);
  }
  return out.movedim(1, axis).contiguous();
}

}  // namespace neuroseg::pipelines
