#include "pipelines/sliding_window.h"

#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#ifdef NEUROSEG_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

#include "io/error.h"
#include "pipelines/autocast_guard.h"

namespace neuroseg::pipelines {
namespace {

// Free memory of a CUDA device (0 when unknown).
int64_t device_free_bytes(const c10::Device& device) {
#ifdef NEUROSEG_WITH_CUDA
  size_t free = 0, total = 0;
  c10::cuda::CUDAGuard guard(device);
  if (cudaMemGetInfo(&free, &total) == cudaSuccess) return static_cast<int64_t>(free);
#endif
  return 0;
}

}  // namespace

at::Tensor gaussian_importance(const std::array<int64_t, 3>& roi, double sigma_scale) {
  // MONAI's compute_importance_map, exactly: a sampled, unnormalised separable Gaussian in
  // float32 with sigma = roi * sigma_scale, floored at max(min, 1e-3) so that voxels seen
  // only by window corners still get weight. (Only relative weights matter: the blend
  // divides by the summed weights.)
  std::array<at::Tensor, 3> g;
  for (int a = 0; a < 3; ++a) {
    const double sigma = roi[a] * sigma_scale;
    const at::Tensor x = at::arange(roi[a], at::kFloat) - static_cast<float>((roi[a] - 1) / 2.0);
    g[a] = at::exp(x * x / static_cast<float>(-2.0 * sigma * sigma));
  }
  at::Tensor map = g[0].view({-1, 1, 1}) * g[1].view({1, -1, 1}) * g[2].view({1, 1, -1});
  const double floor = std::max(map.min().item<double>(), 1e-3);
  return map.clamp_min(floor).contiguous();
}

std::vector<int64_t> window_starts(int64_t size, int64_t roi, double overlap) {
  // MONAI: interval = int(roi * (1 - overlap)) (>= 1), or roi when the window fills the axis.
  const int64_t interval = roi == size ? roi : std::max<int64_t>(1, static_cast<int64_t>(roi * (1.0 - overlap)));
  const int64_t n = roi >= size ? 1 : (size - roi + interval - 1) / interval + 1;
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = std::max<int64_t>(0, std::min(i * interval, size - roi));
    if (starts.empty() || starts.back() != s) starts.push_back(s);
  }
  return starts;
}

at::Tensor sliding_window_inference(models::SegmentationModelImpl& model, const at::Tensor& image,
                                    const SlidingWindowOptions& o) {
  if (image.dim() != 4) throw io::Error("sliding window", "expects a (C, D, H, W) image");
  if (!(o.overlap >= 0 && o.overlap < 1)) throw io::Error("--overlap", "must be in [0, 1)");
  c10::InferenceMode inference;
  // Pad (symmetrically, zeros) to at least one window, as MONAI does.
  std::array<int64_t, 3> roi = o.roi, pad_lo{}, size{};
  std::vector<int64_t> pad;
  for (int a = 2; a >= 0; --a) {
    const int64_t s = image.size(1 + a);
    const int64_t diff = std::max<int64_t>(0, roi[a] - s);
    pad_lo[a] = diff / 2;
    pad.push_back(diff / 2);
    pad.push_back(diff - diff / 2);
  }
  at::Tensor x = at::constant_pad_nd(image.to(at::kFloat), pad, 0.0);  // stays on the host
  for (int a = 0; a < 3; ++a) size[a] = x.size(1 + a);
  const auto div = model.size_divisor();
  for (int a = 0; a < 3; ++a)
    if (roi[a] % div[a] != 0)
      throw io::Error("--roi", "window " + std::to_string(roi[a]) + " is not a multiple of the model's stride " + std::to_string(div[a]));

  // Output buffers: fp16 on the GPU when they fit (nnU-Net keeps them on the device), else
  // float32 in host memory; windows are blended into them batch by batch.
  const int64_t voxels = size[0] * size[1] * size[2];
  const int64_t channels_guess = std::max<int64_t>(2, model.out_channels());
  bool on_device = o.device.is_cuda() && o.buffers != "host";
  if (on_device && o.buffers == "auto") on_device = device_free_bytes(o.device) / 2 > (channels_guess + 1) * voxels * 2;
  const auto buffer_options = on_device ? at::TensorOptions().device(o.device).dtype(at::kHalf)
                                        : at::TensorOptions().dtype(at::kFloat);
  const at::Tensor weight_dev =
      (o.gaussian ? gaussian_importance(roi, o.sigma_scale) : at::ones({roi[0], roi[1], roi[2]})).to(o.device);
  const at::Tensor weight_buf = weight_dev.to(buffer_options);
  at::Tensor out, norm = at::zeros({size[0], size[1], size[2]}, buffer_options);
  std::vector<std::array<int64_t, 3>> windows;
  for (int64_t z : window_starts(size[0], roi[0], o.overlap))
    for (int64_t y : window_starts(size[1], roi[1], o.overlap))
      for (int64_t w : window_starts(size[2], roi[2], o.overlap)) windows.push_back({z, y, w});

  const at::ScalarType amp_type = o.device.is_cuda() ? at::kHalf : at::kBFloat16;
  for (std::size_t first = 0; first < windows.size(); first += o.batch) {
    const std::size_t last = std::min(windows.size(), first + static_cast<std::size_t>(o.batch));
    std::vector<at::Tensor> crops;
    for (std::size_t k = first; k < last; ++k) {
      const auto& s = windows[k];
      crops.push_back(x.slice(1, s[0], s[0] + roi[0]).slice(2, s[1], s[1] + roi[1]).slice(3, s[2], s[2] + roi[2]));
    }
    at::Tensor batch = at::stack(crops);
    if (o.device.is_cuda()) batch = batch.pin_memory().to(o.device, /*non_blocking=*/true);
    at::Tensor pred;
    {
      AutocastGuard amp(o.device.type(), amp_type, o.amp);
      if (!o.mirror_tta) {
        pred = model.forward(batch).to(at::kFloat);
      } else {
        // All 8 combinations of flips along D, H, W, each flipped back before averaging.
        pred = at::zeros({0});
        const std::vector<std::vector<int64_t>> flips = {{}, {2}, {3}, {4}, {2, 3}, {2, 4}, {3, 4}, {2, 3, 4}};
        for (const auto& f : flips) {
          at::Tensor p = f.empty() ? model.forward(batch) : model.forward(batch.flip(f)).flip(f);
          pred = pred.numel() == 0 ? p.to(at::kFloat) : pred + p.to(at::kFloat);
        }
        pred = pred / static_cast<double>(flips.size());
      }
    }
    if (!out.defined()) out = at::zeros({pred.size(1), size[0], size[1], size[2]}, buffer_options);
    const at::Tensor weighted = (pred * weight_dev).to(buffer_options);
    for (std::size_t k = first; k < last; ++k) {
      const auto& s = windows[k];
      out.slice(1, s[0], s[0] + roi[0]).slice(2, s[1], s[1] + roi[1]).slice(3, s[2], s[2] + roi[2]).add_(weighted[k - first]);
      norm.slice(0, s[0], s[0] + roi[0]).slice(1, s[1], s[1] + roi[1]).slice(2, s[2], s[2] + roi[2]).add_(weight_buf);
    }
  }
  out = out.to(at::kFloat) / norm.to(at::kFloat);
  // Crop the padding away.
  out = out.slice(1, pad_lo[0], pad_lo[0] + image.size(1))
            .slice(2, pad_lo[1], pad_lo[1] + image.size(2))
            .slice(3, pad_lo[2], pad_lo[2] + image.size(3));
  return out.to(at::kCPU).contiguous();
}

}  // namespace neuroseg::pipelines
