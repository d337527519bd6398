#include "models/torchscript_model.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "io/error.h"
#include "io/json_args.h"

namespace neuroseg::models {

TorchScriptModelImpl::TorchScriptModelImpl(const nlohmann::json& json) {
  io::JsonArgs a("model 'torchscript'", json);
  path_ = a.get_string("path", "");
  if (path_.empty()) a.fail("path", "the TorchScript file to load is required, e.g. {\"path\": \"net.pt\"}");
  in_channels_ = a.get_int("in_channels", 1, 1);
  out_channels_ = a.get_int("out_channels", 2, 1);
  const auto div = a.get_int_list("size_divisor", {1, 1, 1}, 1);
  if (div.size() != 3) a.fail("size_divisor", "needs 3 values (D, H, W)");
  divisor_ = {div[0], div[1], div[2]};
  a.finish();
  if (!std::filesystem::exists(path_)) throw io::Error(path_, "no such TorchScript file");
  try {
    module_ = torch::jit::load(path_);
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    throw io::Error(path_, "not a loadable TorchScript file (" + msg + ")");
  }
  module_.eval();
}

at::Tensor TorchScriptModelImpl::forward(const at::Tensor& x) {
  check_input(x);
  return module_.forward({x}).toTensor();
}

void TorchScriptModelImpl::train(bool on) {
  SegmentationModelImpl::train(on);
  module_.train(on);
}

void TorchScriptModelImpl::to(torch::Device device, bool non_blocking) { module_.to(device, non_blocking); }

}  // namespace neuroseg::models
