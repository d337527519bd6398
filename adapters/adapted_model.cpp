#include "adapters/adapted_model.h"

#include <fnmatch.h>

#include <algorithm>

#include <ATen/ATen.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/instancenorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/serialize.h>

#include "io/error.h"

namespace neuroseg::adapters {
namespace {

constexpr int kAdapterVersion = 2;  // 2: optional trained norm parameters

// FNV-1a over the bytes of every base parameter and buffer in name order.
std::string weights_fingerprint(torch::nn::Module& m) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  };
  std::vector<std::pair<std::string, at::Tensor>> all;
  for (const auto& p : m.named_parameters()) all.emplace_back(p.key(), p.value());
  for (const auto& b : m.named_buffers()) all.emplace_back(b.key(), b.value());
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [name, t] : all) {
    mix(name.data(), name.size());
    const at::Tensor c = t.detach().to(at::kCPU).contiguous();
    mix(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size());
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}


nlohmann::json read_meta(const std::string& path, c10::impl::GenericDict& dict) {
  const c10::IValue root = models::read_pickle(path);
  if (!root.isGenericDict()) throw io::Error(path, "not a neuroseg adapter file");
  dict = root.toGenericDict();
  if (!dict.contains("format") || !dict.at("format").isString() || dict.at("format").toStringRef() != "neuroseg-adapter")
    throw io::Error(path, "not a neuroseg adapter file (a checkpoint? use --model for those)");
  if (dict.at("version").toInt() > kAdapterVersion)
    throw io::Error(path, "adapter format version " + std::to_string(dict.at("version").toInt()) +
                              " is newer than this neuroseg reads (" + std::to_string(kAdapterVersion) + ")");
  try {
    return nlohmann::json::parse(dict.at("meta").toStringRef());
  } catch (const std::exception&) {
    throw io::Error(path, "corrupt adapter metadata");
  }
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

}  // namespace

bool name_matches(const std::string& name, const std::string& pattern) {
  return fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

AdaptedModelImpl::AdaptedModelImpl(models::SegmentationModel base, std::string base_name, nlohmann::json base_args,
                                   const AdapterOptions& options, const std::vector<std::string>& targets)
    : base_(register_module("base", std::move(base))),
      base_name_(std::move(base_name)),
      base_args_(std::move(base_args)),
      options_(options),
      targets_(targets) {
  for (const auto& p : base_->parameters()) p.set_requires_grad(false);
  std::vector<std::string> candidates;
  for (const auto& item : base_->named_modules("", /*include_self=*/false)) {
    const std::string& name = item.key();
    torch::nn::Module* m = item.value().get();
    std::string type;
    at::Tensor weight;
    std::function<void(const at::Tensor&)> set;
    if (auto* c = dynamic_cast<torch::nn::Conv3dImpl*>(m)) {
      type = "Conv3d", weight = c->weight;
      set = [c](const at::Tensor& w) { c->weight = w; };
    } else if (auto* c2 = dynamic_cast<torch::nn::Conv2dImpl*>(m)) {
      type = "Conv2d", weight = c2->weight;
      set = [c2](const at::Tensor& w) { c2->weight = w; };
    } else if (auto* l = dynamic_cast<torch::nn::LinearImpl*>(m)) {
      type = "Linear", weight = l->weight;
      set = [l](const at::Tensor& w) { l->weight = w; };
    } else {
      continue;
    }
    // The registered parameter, not the member: an adapted model bound earlier may have
    // pointed the member at its own effective weight.
    weight = *m->named_parameters(/*recurse=*/false).find("weight");
    candidates.push_back(name);
    if (!std::any_of(targets.begin(), targets.end(), [&](const std::string& t) { return name_matches(name, t); })) continue;
    AdaptedLayer layer;
    layer.name = name;
    layer.type = type;
    layer.weight_shape = weight.sizes().vec();
    layer.base_weight = weight;
    layer.update = register_module("update" + std::to_string(layers_.size()), LowRankUpdate(options, weight));
    layers_.push_back(std::move(layer));
    set_weight_.push_back(std::move(set));
  }
  if (layers_.empty()) {
    std::string some;
    for (size_t i = 0; i < candidates.size() && i < 6; ++i) some += (i ? ", " : "") + candidates[i];
    std::string pats;
    for (const auto& t : targets) pats += (pats.empty() ? "" : " ") + t;
    throw io::Error("--target " + pats, "matches no Conv2d/Conv3d/Linear layer of " + base_name_ + " (layers are named like: " +
                                            some + (candidates.size() > 6 ? ", ..." : "") + ")");
  }
  if (options.train_norms) {
    for (const auto& item : base_->named_modules("", /*include_self=*/false)) {
      torch::nn::Module* m = item.value().get();
      std::function<void(const at::Tensor&, const at::Tensor&)> set;
      // The members the layers' forward reads; rebinding them is what bind() does.
      if (auto* n3 = dynamic_cast<torch::nn::InstanceNorm3dImpl*>(m)) set = [n3](const at::Tensor& w, const at::Tensor& b) { n3->weight = w, n3->bias = b; };
      else if (auto* n2 = dynamic_cast<torch::nn::InstanceNorm2dImpl*>(m)) set = [n2](const at::Tensor& w, const at::Tensor& b) { n2->weight = w, n2->bias = b; };
      else if (auto* b3 = dynamic_cast<torch::nn::BatchNorm3dImpl*>(m)) set = [b3](const at::Tensor& w, const at::Tensor& b) { b3->weight = w, b3->bias = b; };
      else if (auto* b2 = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m)) set = [b2](const at::Tensor& w, const at::Tensor& b) { b2->weight = w, b2->bias = b; };
      else if (auto* g = dynamic_cast<torch::nn::GroupNormImpl*>(m)) set = [g](const at::Tensor& w, const at::Tensor& b) { g->weight = w, g->bias = b; };
      else if (auto* l = dynamic_cast<torch::nn::LayerNormImpl*>(m)) set = [l](const at::Tensor& w, const at::Tensor& b) { l->weight = w, l->bias = b; };
      else continue;
      const auto own = m->named_parameters(/*recurse=*/false);
      if (!own.contains("weight") || !own.contains("bias")) continue;  // not affine
      AdaptedNorm n;
      n.name = item.key();
      n.base_weight = own["weight"];
      n.base_bias = own["bias"];
      const std::string k = "norm" + std::to_string(norms_.size());
      n.weight = register_parameter(k + "_weight", n.base_weight.detach().clone());
      n.bias = register_parameter(k + "_bias", n.base_bias.detach().clone());
      norms_.push_back(std::move(n));
      set_norm_.push_back(std::move(set));
    }
  }
  base_args_["__fingerprint"] = weights_fingerprint(*base_);
}

void AdaptedModelImpl::bind() const {
  for (size_t i = 0; i < layers_.size(); ++i) set_weight_[i](layers_[i].update->effective_weight());
  for (size_t i = 0; i < norms_.size(); ++i) set_norm_[i](norms_[i].weight, norms_[i].bias);
}

at::Tensor AdaptedModelImpl::forward(const at::Tensor& x) {
  bind();
  return base_->forward(x);
}

std::vector<at::Tensor> AdaptedModelImpl::forward_deep_supervision(const at::Tensor& x) {
  bind();
  return base_->forward_deep_supervision(x);
}

// After merge or unmerge the layers run with their own parameter W0 (merged or original), so
// the base model can be called directly (segment does, without per-forward rebinding);
// forward() rebinds to the effective weights anyway.
void AdaptedModelImpl::merge() {
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i].update->merge();
    set_weight_[i](layers_[i].update->effective_weight());
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < norms_.size(); ++i) {
    AdaptedNorm& n = norms_[i];
    if (!n.saved_weight.defined()) n.saved_weight = n.base_weight.detach().clone(), n.saved_bias = n.base_bias.detach().clone();
    n.base_weight.copy_(n.weight);
    n.base_bias.copy_(n.bias);
    set_norm_[i](n.base_weight, n.base_bias);
  }
}

void AdaptedModelImpl::unmerge() {
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i].update->unmerge();
    set_weight_[i](layers_[i].base_weight);
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < norms_.size(); ++i) {
    AdaptedNorm& n = norms_[i];
    if (n.saved_weight.defined()) {
      n.base_weight.copy_(n.saved_weight);
      n.base_bias.copy_(n.saved_bias);
      n.saved_weight = n.saved_bias = at::Tensor();
    }
    set_norm_[i](n.base_weight, n.base_bias);
  }
}

int64_t AdaptedModelImpl::trainable_parameters() const {
  int64_t n = 0;
  for (const auto& l : layers_) n += l.update->trainable_parameters();
  for (const auto& nm : norms_) n += nm.weight.numel() + nm.bias.numel();
  return n;
}

int64_t AdaptedModelImpl::base_parameters() const {
  int64_t n = 0;
  for (const auto& p : base_->parameters()) n += p.numel();
  return n;
}

void AdaptedModelImpl::print_table(std::FILE* out) const {
  std::fprintf(out, "%-40s %-7s %-18s %10s\n", "adapted layer", "type", "weight", "params");
  for (const auto& l : layers_)
    std::fprintf(out, "%-40s %-7s %-18s %10lld\n", l.name.c_str(), l.type.c_str(), shape_str(l.weight_shape).c_str(),
                 static_cast<long long>(l.update->trainable_parameters()));
  if (!norms_.empty()) {
    int64_t np = 0;
    for (const auto& nm : norms_) np += nm.weight.numel() + nm.bias.numel();
    std::fprintf(out, "%-40s %-7s %-18s %10lld\n", ("+ " + std::to_string(norms_.size()) + " norm layers").c_str(), "norm",
                 "weight, bias", static_cast<long long>(np));
  }
  const int64_t t = trainable_parameters(), b = base_parameters();
  std::fprintf(out, "%s rank %lld alpha %g%s: %zu layer(s), %lld trainable parameters = %.3f%% of the base model's %lld\n",
               to_string(options_.kind).c_str(), static_cast<long long>(options_.rank), options_.alpha,
               options_.rslora ? " (rsLoRA)" : "", layers_.size(), static_cast<long long>(t),
               100.0 * static_cast<double>(t) / static_cast<double>(b), static_cast<long long>(b));
}

nlohmann::json AdaptedModelImpl::base_identity() const {
  nlohmann::json args = base_args_;
  const std::string fp = args["__fingerprint"];
  args.erase("__fingerprint");
  return {{"model", base_name_}, {"args", args}, {"weights_fnv1a", fp}};
}

void AdaptedModelImpl::save(const std::string& path) const {
  nlohmann::json layers = nlohmann::json::array();
  c10::Dict<std::string, at::Tensor> weights;
  for (const auto& l : layers_) {
    layers.push_back({{"name", l.name}, {"type", l.type}, {"shape", l.weight_shape}});
    for (const auto& p : l.update->named_parameters()) weights.insert(l.name + ":" + p.key(), p.value().detach().to(at::kCPU).contiguous());
  }
  nlohmann::json meta = {{"adapter", to_string(options_.kind)}, {"rank", options_.rank},  {"alpha", options_.alpha},
                         {"rslora", options_.rslora},           {"targets", targets_},    {"layers", layers},
                         {"base", base_identity()}};
  if (!norms_.empty()) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& n : norms_) {
      names.push_back(n.name);
      weights.insert(n.name + ":norm.weight", n.weight.detach().to(at::kCPU).contiguous());
      weights.insert(n.name + ":norm.bias", n.bias.detach().to(at::kCPU).contiguous());
    }
    meta["norms"] = names;
  }
  c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
  root.insert(std::string("format"), std::string("neuroseg-adapter"));
  // Version 2 only when the file holds norm parameters: older readers refuse those files
  // instead of silently ignoring the norms.
  root.insert(std::string("version"), int64_t(norms_.empty() ? 1 : kAdapterVersion));
  root.insert(std::string("meta"), meta.dump());
  root.insert(std::string("state_dict"), weights);
  models::write_pickle(path, c10::IValue(root));
}

void AdaptedModelImpl::load(const std::string& path) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  const nlohmann::json meta = read_meta(path, dict);
  const nlohmann::json mine = base_identity();
  if (meta.at("base").at("model") != mine.at("model") || meta.at("base").at("args") != mine.at("args"))
    throw io::Error(path, "was made for base model " + meta.at("base").at("model").get<std::string>() + " " +
                              meta.at("base").at("args").dump() + ", not " + mine.at("model").get<std::string>() + " " +
                              mine.at("args").dump());
  if (meta.at("base").at("weights_fnv1a") != mine.at("weights_fnv1a"))
    throw io::Error(path, "was made for other weights of " + mine.at("model").get<std::string>() +
                              " (fingerprint " + meta.at("base").at("weights_fnv1a").get<std::string>() + ", this base " +
                              mine.at("weights_fnv1a").get<std::string>() + ")");
  if (meta.at("adapter") != to_string(options_.kind) || meta.at("rank") != options_.rank)
    throw io::Error(path, "holds a " + meta.at("adapter").get<std::string>() + " rank " + meta.at("rank").dump() +
                              " adapter, not " + to_string(options_.kind) + " rank " + std::to_string(options_.rank));
  if (meta.at("layers").size() != layers_.size())
    throw io::Error(path, "adapts " + std::to_string(meta.at("layers").size()) + " layers, this model " +
                              std::to_string(layers_.size()));
  const auto state = dict.at("state_dict").toGenericDict();
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (meta.at("layers")[i].at("name") != layers_[i].name)
      throw io::Error(path, "layer " + std::to_string(i) + " is " + meta.at("layers")[i].at("name").get<std::string>() +
                                ", this model's is " + layers_[i].name);
    for (auto& p : layers_[i].update->named_parameters()) {
      const std::string key = layers_[i].name + ":" + p.key();
      if (!state.contains(key)) throw io::Error(path, "lacks " + key);
      const at::Tensor t = state.at(key).toTensor();
      if (t.sizes() != p.value().sizes()) throw io::Error(path, key + " has another shape than this model's");
      p.value().copy_(t);
    }
  }
  const size_t file_norms = meta.contains("norms") ? meta.at("norms").size() : 0;
  if (file_norms != norms_.size())
    throw io::Error(path, "trains " + std::to_string(file_norms) + " norm layers, this model " + std::to_string(norms_.size()));
  for (size_t i = 0; i < norms_.size(); ++i) {
    if (meta.at("norms")[i] != norms_[i].name)
      throw io::Error(path, "norm layer " + std::to_string(i) + " is " + meta.at("norms")[i].get<std::string>() +
                                ", this model's is " + norms_[i].name);
    for (const auto& [suffix, param] : {std::make_pair("weight", norms_[i].weight), std::make_pair("bias", norms_[i].bias)}) {
      const std::string key = norms_[i].name + ":norm." + suffix;
      if (!state.contains(key)) throw io::Error(path, "lacks " + key);
      const at::Tensor t = state.at(key).toTensor();
      if (t.sizes() != param.sizes()) throw io::Error(path, key + " has another shape than this model's");
      param.copy_(t);
    }
  }
}

AdaptedModel load_adapted(const models::LoadedModel& base, const std::string& adapter_path) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  const nlohmann::json meta = read_meta(adapter_path, dict);
  AdapterOptions o;
  try {
    o.kind = parse_adapter_kind(meta.at("adapter").get<std::string>());
    o.rank = meta.at("rank").get<int64_t>();
    o.alpha = meta.at("alpha").get<double>();
    o.rslora = meta.at("rslora").get<bool>();
    o.train_norms = meta.contains("norms") && !meta.at("norms").empty();
  } catch (const nlohmann::json::exception&) {
    throw io::Error(adapter_path, "corrupt adapter metadata");
  }
  // The layer list of the file, not its patterns: exactly the layers it was trained on.
  std::vector<std::string> names;
  for (const auto& l : meta.at("layers")) names.push_back(l.at("name").get<std::string>());
  AdaptedModel m(base.model, base.meta.model, base.meta.args, o, names);
  m->load(adapter_path);
  return m;
}

}  // namespace neuroseg::adapters
