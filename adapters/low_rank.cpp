#include "adapters/low_rank.h"

#include <cmath>

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include "io/error.h"

namespace neuroseg::adapters {
namespace {

const std::vector<std::pair<std::string, AdapterKind>>& kinds() {
  static const std::vector<std::pair<std::string, AdapterKind>> k = {
      {"lora-c", AdapterKind::kLoraC}, {"convlora", AdapterKind::kConvLora}, {"cp-lora", AdapterKind::kCpLora},
      {"dora-c", AdapterKind::kDoraC}, {"convdora", AdapterKind::kConvDora}, {"cp-dora", AdapterKind::kCpDora}};
  return k;
}

// The factorisation under a DoRA kind.
AdapterKind base_kind(AdapterKind k) {
  switch (k) {
    case AdapterKind::kDoraC: return AdapterKind::kLoraC;
    case AdapterKind::kConvDora: return AdapterKind::kConvLora;
    case AdapterKind::kCpDora: return AdapterKind::kCpLora;
    default: return k;
  }
}

// Per-output-channel L2 norm, broadcastable against the weight.
at::Tensor channel_norm(const at::Tensor& w) {
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < w.dim(); ++d) dims.push_back(d);
  return w.norm(2, dims, /*keepdim=*/true);
}

}  // namespace

AdapterKind parse_adapter_kind(const std::string& name) {
  for (const auto& [n, k] : kinds())
    if (n == name) return k;
  std::string known;
  for (const auto& n : adapter_kind_names()) known += (known.empty() ? "" : ", ") + n;
  throw io::Error("--adapter " + name, "unknown adapter (known: " + known + ")");
}

std::string to_string(AdapterKind kind) {
  for (const auto& [n, k] : kinds())
    if (k == kind) return n;
  return "?";
}

const std::vector<std::string>& adapter_kind_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& [n, k] : kinds()) v.push_back(n);
    return v;
  }();
  return names;
}

bool is_dora(AdapterKind kind) { return base_kind(kind) != kind; }

double AdapterOptions::scaling() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

LowRankUpdateImpl::LowRankUpdateImpl(const AdapterOptions& options, at::Tensor base_weight)
    : options_(options), w0_(std::move(base_weight)) {
  if (options_.rank < 1) throw io::Error("--rank " + std::to_string(options_.rank), "must be at least 1");
  const auto opts = w0_.options().requires_grad(false);
  const int64_t c_out = w0_.size(0), c_in = w0_.size(1), r = options_.rank;
  std::vector<int64_t> kernel(w0_.sizes().begin() + 2, w0_.sizes().end());
  int64_t k_all = 1;
  for (int64_t k : kernel) k_all *= k;
  AdapterKind kind = base_kind(options_.kind);
  if (kernel.empty() && kind != AdapterKind::kLoraC) kind = AdapterKind::kLoraC;  // Linear: all are LoRA
  torch::NoGradGuard no_grad;
  if (kind == AdapterKind::kLoraC || kind == AdapterKind::kConvLora) {
    int64_t rows = c_out, cols = c_in * k_all, inner = r;
    if (kind == AdapterKind::kConvLora) {
      const int64_t last = kernel.back();
      rows = c_out * k_all / last;
      cols = c_in * last;
      inner = r * last;
    }
    b_ = register_parameter("B", at::zeros({rows, inner}, opts));
    a_ = register_parameter("A", at::empty({inner, cols}, opts));
    torch::nn::init::kaiming_uniform_(a_, std::sqrt(5.0));
  } else {  // CP: u zero, the other factors uniform(±1/sqrt(n))
    std::vector<int64_t> sizes{c_out, c_in};
    sizes.insert(sizes.end(), kernel.begin(), kernel.end());
    for (size_t j = 0; j < sizes.size(); ++j) {
      at::Tensor f = j == 0 ? at::zeros({sizes[j], r}, opts)
                            : at::empty({sizes[j], r}, opts).uniform_(-1.0 / std::sqrt(double(sizes[j])), 1.0 / std::sqrt(double(sizes[j])));
      cp_.push_back(register_parameter("cp" + std::to_string(j), f));
    }
  }
  if (is_dora(options_.kind)) magnitude_ = register_parameter("magnitude", channel_norm(w0_).reshape({-1}).clone());
}

at::Tensor LowRankUpdateImpl::delta() const {
  const double s = options_.scaling();
  if (a_.defined()) return at::matmul(b_, a_).reshape(w0_.sizes()) * s;
  // CP: contract the factors one mode at a time: (C_out·R) -> (C_out, C_in, R) -> ...
  at::Tensor t = cp_[0];  // (n0, R)
  std::vector<int64_t> shape{cp_[0].size(0)};
  for (size_t j = 1; j < cp_.size(); ++j) {
    t = t.unsqueeze(-2) * cp_[j];  // (..., n_j, R)
    shape.push_back(cp_[j].size(0));
  }
  return t.sum(-1).reshape(shape) * s;
}

at::Tensor LowRankUpdateImpl::adapted_weight() const {
  const at::Tensor v = w0_ + delta();
  if (!magnitude_.defined()) return v;
  std::vector<int64_t> shape(static_cast<size_t>(v.dim()), 1);
  shape[0] = -1;
  return magnitude_.reshape(shape) * (v / channel_norm(v).detach());
}

at::Tensor LowRankUpdateImpl::effective_weight() const { return merged_ ? w0_ : adapted_weight(); }

void LowRankUpdateImpl::merge() {
  if (merged_) return;
  torch::NoGradGuard no_grad;
  w0_before_merge_ = w0_.clone();
  w0_.copy_(adapted_weight());
  merged_ = true;
}

void LowRankUpdateImpl::unmerge() {
  if (!merged_) return;
  torch::NoGradGuard no_grad;
  merged_ = false;
  w0_.copy_(w0_before_merge_);
  w0_before_merge_ = at::Tensor();
}

int64_t LowRankUpdateImpl::trainable_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

}  // namespace neuroseg::adapters
