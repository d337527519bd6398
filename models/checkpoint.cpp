#include "models/checkpoint.h"

#include <fstream>
#include <regex>

#include <ATen/ATen.h>
#include <torch/serialize.h>

#include "io/atomic_output.h"
#include "io/compression.h"
#include "io/error.h"
#include "models/registry.h"

namespace neuroseg::models {
namespace {

// Parameters and buffers by their state-dict name.
std::map<std::string, at::Tensor> module_tensors(torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : m.named_parameters(/*recurse=*/true)) out[p.key()] = p.value();
  for (const auto& b : m.named_buffers(/*recurse=*/true)) out[b.key()] = b.value();
  return out;
}

std::string shape_str(const at::Tensor& t) {
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + ")";
}


}  // namespace

c10::IValue read_pickle(const std::string& path) {
  const io::Bytes bytes = io::read_file_bytes(path);
  try {
    return torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    throw io::Error(path, "not a readable torch.save file (" + msg + ")");
  }
}

void write_pickle(const std::string& path, const c10::IValue& root) {
  const std::vector<char> bytes = torch::pickle_save(root);
  io::AtomicOutput out(path);
  {
    std::ofstream f(out.path(), std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) throw io::Error(path, "write failed (disk full or not writable)");
  }
  out.commit();
}

nlohmann::json CheckpointMeta::to_json() const {
  return {{"model", model}, {"args", args}, {"preprocessing", preprocessing}, {"labels", labels},
          {"patch_size", patch_size}, {"postprocessing", postprocessing}, {"training", training}};
}

CheckpointMeta CheckpointMeta::from_json(const nlohmann::json& j, const std::string& path) {
  static const std::vector<std::string> kKeys = {"model",      "args",           "preprocessing", "labels",
                                                 "patch_size", "postprocessing", "training"};
  for (const auto& item : j.items())
    if (std::find(kKeys.begin(), kKeys.end(), item.key()) == kKeys.end())
      throw io::Error(path, "unknown checkpoint meta key '" + item.key() + "'");
  CheckpointMeta m;
  try {
    m.model = j.value("model", std::string());
    m.args = j.value("args", nlohmann::json::object());
    m.preprocessing = j.value("preprocessing", nlohmann::json::object());
    m.labels = j.value("labels", nlohmann::json::object());
    m.patch_size = j.value("patch_size", std::vector<int64_t>{});
    m.postprocessing = j.value("postprocessing", nlohmann::json::object());
    m.training = j.value("training", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    throw io::Error(path, std::string("corrupt checkpoint meta (") + e.what() + ")");
  }
  return m;
}

void save_checkpoint(const std::string& path, SegmentationModelImpl& model, const CheckpointMeta& meta) {
  c10::Dict<std::string, at::Tensor> weights;
  for (const auto& [name, t] : module_tensors(model)) weights.insert(name, t.detach().to(at::kCPU).contiguous());
  c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
  root.insert(std::string("format"), std::string("neuroseg-checkpoint"));
  root.insert(std::string("version"), int64_t(kCheckpointVersion));
  root.insert(std::string("meta"), meta.to_json().dump());
  root.insert(std::string("state_dict"), weights);
  write_pickle(path, c10::IValue(root));
}

LoadedModel load_checkpoint(const std::string& path) {
  const c10::IValue root = read_pickle(path);
  if (!root.isGenericDict()) throw io::Error(path, "not a neuroseg checkpoint (expected a dict)");
  const auto dict = root.toGenericDict();
  auto get = [&](const char* key) -> c10::IValue {
    if (!dict.contains(key)) throw io::Error(path, std::string("not a neuroseg checkpoint (no \"") + key + "\")");
    return dict.at(key);
  };
  if (!dict.contains("format") || !get("format").isString() || get("format").toStringRef() != "neuroseg-checkpoint")
    throw io::Error(path, "not a neuroseg checkpoint; for weights saved from Python use `neuroseg import-weights`");
  const int64_t version = get("version").toInt();
  if (version > kCheckpointVersion || version < 1)
    throw io::Error(path, "checkpoint format version " + std::to_string(version) + " is not supported by this neuroseg (reads up to " +
                              std::to_string(kCheckpointVersion) + "); upgrade neuroseg");
  nlohmann::json meta_json;
  try {
    meta_json = nlohmann::json::parse(get("meta").toStringRef());
  } catch (const std::exception& e) {
    throw io::Error(path, std::string("corrupt checkpoint meta (") + e.what() + ")");
  }
  LoadedModel out;
  out.meta = CheckpointMeta::from_json(meta_json, path);
  if (out.meta.model.empty()) throw io::Error(path, "checkpoint meta names no model");
  out.model = ModelRegistry::instance().create(out.meta.model, out.meta.args);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& item : get("state_dict").toGenericDict()) tensors[item.key().toStringRef()] = item.value().toTensor();
  load_state_dict(*out.model, std::move(tensors), {}, path);
  out.model->eval();
  return out;
}

std::map<std::string, at::Tensor> read_state_dict(const std::string& path) {
  c10::IValue root = read_pickle(path);
  if (!root.isGenericDict())
    throw io::Error(path, "expected a dict of tensors; save with torch.save(dict(model.state_dict()), path)");
  auto dict = root.toGenericDict();
  if (dict.contains("state_dict") && dict.at("state_dict").isGenericDict()) dict = dict.at("state_dict").toGenericDict();
  std::map<std::string, at::Tensor> out;
  for (const auto& item : dict) {
    if (!item.key().isString()) throw io::Error(path, "state dict keys must be strings");
    if (!item.value().isTensor()) continue;  // e.g. Lightning's extra entries
    out[item.key().toStringRef()] = item.value().toTensor();
  }
  if (out.empty()) throw io::Error(path, "holds no tensors");
  return out;
}

void load_state_dict(torch::nn::Module& module, std::map<std::string, at::Tensor> tensors,
                     const StateDictOptions& options, const std::string& path) {
  if (!options.key_map.empty()) {
    std::map<std::string, at::Tensor> renamed;
    for (auto& [key, t] : tensors) {
      std::string k = key;
      for (const auto& [pattern, replacement] : options.key_map) {
        try {
          k = std::regex_replace(k, std::regex(pattern), replacement);
        } catch (const std::regex_error&) {
          throw io::Error("key map", "invalid regular expression '" + pattern + "'");
        }
      }
      renamed[k] = t;
    }
    tensors = std::move(renamed);
  }
  const auto targets = module_tensors(module);
  std::vector<std::string> missing, unexpected, misshaped;
  for (const auto& [name, target] : targets) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      // BatchNorm's num_batches_tracked is bookkeeping, absent from many exports.
      if (name.size() < 19 || name.compare(name.size() - 19, 19, "num_batches_tracked") != 0) missing.push_back(name);
    } else if (it->second.sizes() != target.sizes()) {
      misshaped.push_back(name + " " + shape_str(it->second) + " vs model " + shape_str(target));
    }
  }
  for (const auto& [name, t] : tensors)
    if (!targets.count(name)) unexpected.push_back(name);
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 8) s += ", ... (" + std::to_string(v.size()) + " in all)";
    return s;
  };
  std::string problem;
  if (!misshaped.empty()) problem += "mis-shaped: " + join(misshaped);
  if (options.strict && !missing.empty()) problem += std::string(problem.empty() ? "" : "; ") + "missing: " + join(missing);
  if (options.strict && !unexpected.empty())
    problem += std::string(problem.empty() ? "" : "; ") + "unexpected: " + join(unexpected);
  if (!problem.empty()) throw io::Error(path, "weights do not fit the model: " + problem);
  torch::NoGradGuard no_grad;
  for (const auto& [name, target] : targets) {
    auto it = tensors.find(name);
    if (it != tensors.end()) const_cast<at::Tensor&>(target).copy_(it->second.to(target.device(), target.scalar_type()));
  }
}

}  // namespace neuroseg::models
