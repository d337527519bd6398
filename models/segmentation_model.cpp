#include "models/segmentation_model.h"

#include <ATen/ATen.h>

#include "io/error.h"

namespace neuroseg::models {

void SegmentationModelImpl::check_input(const at::Tensor& x) const {
  if (x.dim() != 5)
    throw io::Error("model '" + model_name() + "'", "expects a 5D (N, C, D, H, W) input, got " + std::to_string(x.dim()) + "D");
  if (x.size(1) != in_channels())
    throw io::Error("model '" + model_name() + "'", "expects " + std::to_string(in_channels()) + " input channels, got " +
                                std::to_string(x.size(1)));
  const auto div = size_divisor();
  bool ok = true;
  std::string got, pad;
  for (int a = 0; a < 3; ++a) {
    const int64_t s = x.size(2 + a), d = div[a];
    ok = ok && s % d == 0 && s > 0;
    got += (a ? "x" : "") + std::to_string(s);
    pad += (a ? "x" : "") + std::to_string((s + d - 1) / d * d);
  }
  if (!ok) {
    std::string divs = std::to_string(div[0]) + "x" + std::to_string(div[1]) + "x" + std::to_string(div[2]);
    throw io::Error("model '" + model_name() + "'", "input size " + got + " (DxHxW) is not a multiple of the total stride " + divs +
                                "; pad it to " + pad);
  }
}

at::Tensor SliceModelImpl::forward(const at::Tensor& x) {
  check_input(x);
  reset_memory();
  std::vector<at::Tensor> slices;
  slices.reserve(x.size(2));
  for (int64_t z = 0; z < x.size(2); ++z) slices.push_back(forward_slice(x.select(2, z), z));
  return at::stack(slices, 2);
}

}  // namespace neuroseg::models
