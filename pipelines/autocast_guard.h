#pragma once
// RAII mixed precision for LibTorch >= 2.4 (device-generic autocast API): enables
// autocast for one device type with a dtype, restores the previous state on exit and
// clears the cast cache when the outermost guard ends (otherwise fp16 copies of the
// weights stay alive, pytorch/pytorch#46649).
#include <ATen/autocast_mode.h>

namespace neuroseg::pipelines {

class AutocastGuard {
 public:
  /// dtype: at::kHalf or at::kBFloat16; enabled=false makes the guard a no-op.
  AutocastGuard(c10::DeviceType device, at::ScalarType dtype, bool enabled = true)
      : device_(device), enabled_(enabled) {
    if (!enabled_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(device_);
    prev_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::set_autocast_dtype(device_, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, prev_enabled_);
    at::autocast::set_autocast_dtype(device_, prev_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_;
  bool enabled_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kFloat;
};

}  // namespace neuroseg::pipelines
