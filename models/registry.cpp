#include "models/registry.h"

#include <algorithm>
#include <cctype>

#include "io/error.h"
#include "io/json_args.h"

namespace neuroseg::models {
namespace {
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
}  // namespace

ModelRegistry& ModelRegistry::instance() {
  static ModelRegistry registry = [] {
    ModelRegistry r;
    register_builtin_models(r);
    return r;
  }();
  return registry;
}

void ModelRegistry::add(ModelEntry entry) {
  for (const auto& e : entries_)
    if (lower(e.name) == lower(entry.name)) throw io::Error("model registry", "duplicate model name '" + entry.name + "'");
  entries_.push_back(std::move(entry));
}

const ModelEntry& ModelRegistry::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (lower(e.name) == lower(name)) return e;
  const std::string near = io::closest_match(lower(name), names());
  std::string list;
  for (const auto& n : names()) list += (list.empty() ? "" : ", ") + n;
  throw io::Error("model '" + name + "'", std::string("unknown model") +
                                              (near.empty() ? "" : "; did you mean '" + near + "'?") +
                                              " (available: " + list + ")");
}

SegmentationModel ModelRegistry::create(const std::string& name, const nlohmann::json& args) const {
  return find(name).factory(args);
}

std::vector<std::string> ModelRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e.name);
  return out;
}

int64_t count_parameters(const torch::nn::Module& module, bool trainable_only) {
  int64_t n = 0;
  for (const auto& p : module.parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

}  // namespace neuroseg::models
