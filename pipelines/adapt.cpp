#include "pipelines/adapt.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/instancenorm.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/adam.h>

#include "io/error.h"
#include "io/volume_io.h"
#include "losses/entropy_kl.h"
#include "models/checkpoint.h"
#include "pipelines/dataset.h"
#include "pipelines/preprocess.h"
#include "pipelines/progress.h"
#include "pipelines/qc.h"
#include "pipelines/sliding_window.h"

namespace neuroseg::pipelines {
namespace {

// The affine parameters of every normalisation layer (tent's trainable set).
std::vector<at::Tensor> norm_parameters(torch::nn::Module& model) {
  std::vector<at::Tensor> out;
  for (const auto& item : model.named_modules("", false)) {
    torch::nn::Module* m = item.value().get();
    const bool norm = dynamic_cast<torch::nn::InstanceNorm3dImpl*>(m) || dynamic_cast<torch::nn::InstanceNorm2dImpl*>(m) ||
                      dynamic_cast<torch::nn::BatchNorm3dImpl*>(m) || dynamic_cast<torch::nn::BatchNorm2dImpl*>(m) ||
                      dynamic_cast<torch::nn::GroupNormImpl*>(m) || dynamic_cast<torch::nn::LayerNormImpl*>(m);
    if (!norm) continue;
    for (const auto& p : m->parameters(false)) out.push_back(p);
  }
  return out;
}

// Class fractions (K) from the JSON prior, by label name.
std::vector<double> json_fractions(const std::string& path, const nlohmann::json& labels) {
  std::ifstream f(path);
  if (!f) throw io::Error(path, "cannot read the prior");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception&) {
    throw io::Error(path, "not valid JSON");
  }
  if (!j.is_object() || !j.contains("fractions") || !j["fractions"].is_object() || j.size() != 1)
    throw io::Error(path, "expected {\"fractions\": {\"<label name>\": fraction, ...}}");
  // Class k <-> k-th smallest label value (as training).
  std::vector<std::pair<int64_t, std::string>> by_value;
  for (const auto& item : labels.items()) by_value.emplace_back(item.value().get<int64_t>(), item.key());
  std::sort(by_value.begin(), by_value.end());
  std::vector<double> fr;
  for (const auto& [value, name] : by_value) {
    if (!j["fractions"].contains(name)) throw io::Error(path, "no fraction for label '" + name + "'");
    const auto& v = j["fractions"][name];
    if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1)
      throw io::Error(path, "fraction of '" + name + "' must be a number in [0, 1]");
    fr.push_back(v.get<double>());
  }
  for (const auto& item : j["fractions"].items())
    if (std::none_of(by_value.begin(), by_value.end(), [&](const auto& p) { return p.second == item.key(); }))
      throw io::Error(path, "unknown label '" + item.key() + "' (the checkpoint's labels: " + labels.dump() + ")");
  return fr;
}

// Foreground fractions × factor, background = the rest (at least 0), rows summing to 1.
at::Tensor overestimated(at::Tensor fractions /* (N, K) */, double factor) {
  at::Tensor f = fractions.clone();
  f.narrow(1, 1, f.size(1) - 1).mul_(factor);
  at::Tensor fg = f.narrow(1, 1, f.size(1) - 1).sum(1);
  f.select(1, 0).copy_((1.0 - fg).clamp_min(0.0));
  return f / f.sum(1, true);
}

}  // namespace

at::Tensor volume_prior(const std::vector<double>& fractions, const at::Tensor& covered, double overestimate) {
  const int64_t n = covered.size(0), k = static_cast<int64_t>(fractions.size());
  at::Tensor prior = overestimated(at::tensor(fractions, at::kDouble).unsqueeze(0).expand({n, k}), overestimate);
  prior = at::cat({at::zeros({n, 1}, at::kDouble), prior.narrow(1, 1, k - 1) * covered.to(at::kDouble).unsqueeze(1)}, 1);
  prior.select(1, 0).copy_(1.0 - prior.narrow(1, 1, k - 1).sum(1));
  return prior;
}

double adapt(const std::string& checkpoint, const std::vector<std::string>& targets, const std::string& output,
             const AdaptOptions& o) {
  if (o.method != "entropy-kl" && o.method != "tent" && o.method != "none")
    throw io::Error("--method " + o.method, "expected entropy-kl, tent or none");
  if (targets.empty()) throw io::Error("--input", "no target images");
  models::LoadedModel loaded = models::load_checkpoint(checkpoint);
  auto& model = loaded.model;
  const int64_t classes = model->out_channels();
  if (classes < 2) throw io::Error(checkpoint, "adaptation needs a model with at least 2 classes");
  std::vector<double> weights = o.entropy_weights;
  if (weights.empty()) {
    weights.assign(static_cast<size_t>(classes), 0.9);
    weights[0] = 0.1;
  }
  if (static_cast<int64_t>(weights.size()) != classes)
    throw io::Error("--entropy-weights", "needs one weight per class (" + std::to_string(classes) + ")");
  std::vector<double> prior_fractions;
  if (!o.prior_json.empty()) prior_fractions = json_fractions(o.prior_json, loaded.meta.labels);
  const Preprocessing pp = Preprocessing::from_json(loaded.meta.preprocessing);
  // A JSON prior holds the class fractions of whole volumes, so by default each "patch" is a
  // whole target volume (padded to the largest one), as the authors' prior is per image:
  // on random patches one volume-level fraction is wrong for most of them (docs/adaptation.md).
  const bool whole_volume = !o.prior_json.empty() && o.patch.empty();
  std::array<int64_t, 3> patch{};
  const std::vector<int64_t> ps = o.patch.empty() ? loaded.meta.patch_size : o.patch;
  if (!whole_volume && ps.size() != 3) throw io::Error(checkpoint, "has no patch size; pass --patch D H W");
  if (!whole_volume)
    for (int a = 0; a < 3; ++a) patch[a] = ps[static_cast<size_t>(a)];
  model->to(o.device);

  // Target volumes on the network grid; with no JSON prior, each with the source model's
  // prediction (the labels the per-patch prior is cropped from).
  std::vector<TrainingCase> cases;
  SlidingWindowOptions sw;
  if (!whole_volume) sw.roi = patch;
  sw.device = o.device;
  model->eval();
  for (const auto& path : targets) {
    const io::Volume v = io::read_volume(path);
    io::require_3d(v, "adaptation");
    TrainingCase c;
    c.name = path;
    c.image = prepare_case(v, pp).image;
    if (prior_fractions.empty()) {
      torch::NoGradGuard no_grad;
      c.label = sliding_window_inference(*model, c.image, sw).argmax(0).to(at::kByte);
    } else {  // ones: a patch's mean label is the share of it the volume covers (padding is 0)
      c.label = at::ones({c.image.size(1), c.image.size(2), c.image.size(3)}, at::kByte);
    }
    cases.push_back(std::move(c));
  }
  if (whole_volume) {
    const auto divisor = model->size_divisor();
    for (int a = 0; a < 3; ++a) {
      for (const auto& c : cases) patch[a] = std::max(patch[a], c.label.size(a));
      patch[a] = (patch[a] + divisor[a] - 1) / divisor[a] * divisor[a];
    }
    std::fprintf(stderr, "adapting on whole volumes (%lld x %lld x %lld on the network grid): the prior's fractions describe volumes\n",
                 static_cast<long long>(patch[0]), static_cast<long long>(patch[1]), static_cast<long long>(patch[2]));
  }

  std::vector<at::Tensor> trainable;
  if (o.method == "tent") {
    trainable = norm_parameters(*model);
    if (trainable.empty()) throw io::Error(checkpoint, "has no normalisation layers with affine parameters for tent");
  } else {
    trainable = model->parameters();
  }
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  for (auto& p : trainable) p.set_requires_grad(true);
  torch::optim::Adam optimizer(trainable, torch::optim::AdamOptions(o.lr));
  losses::EntropyKLOptions lo;
  lo.class_weights = weights;

  std::ofstream log(output + ".log.csv");
  log << "iteration,loss\n";
  std::vector<double> history;
  const int64_t iterations = o.method == "none" ? 0 : o.iterations;
  ProgressBar bar(std::max<int64_t>(iterations, 1), "adapt (" + o.method + ")");
  model->train();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t it = 0; it < iterations; ++it) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed * 1000003ULL + static_cast<uint64_t>(it));
    const Batch b = sample_batch(cases, patch, o.batch, /*foreground_fraction=*/0.0, gen);
    const at::Tensor image = b.image.to(o.device);
    at::Tensor prior;
    if (prior_fractions.empty()) {  // class fractions of the source prediction in each patch
      prior = at::one_hot(b.label.reshape({b.label.size(0), -1}), classes).to(at::kDouble).mean(1);
      prior = overestimated(prior, o.overestimate);
    } else {
      prior = volume_prior(prior_fractions, b.label.reshape({b.label.size(0), -1}).to(at::kDouble).mean(1), o.overestimate);
    }
    optimizer.zero_grad();
    const at::Tensor logits = model->forward(image);
    const at::Tensor loss = o.method == "tent" ? losses::entropy_loss(logits) : losses::entropy_kl_loss(logits, prior.to(o.device), lo);
    loss.backward();
    optimizer.step();
    const double l = loss.item<double>();
    if (!std::isfinite(l)) throw io::Error("adaptation", "the loss became " + std::to_string(l) + " at iteration " + std::to_string(it + 1));
    history.push_back(l);
    log << it + 1 << "," << l << "\n";
    char note[96];
    std::snprintf(note, sizeof(note), "loss %.4f  %.2f it/s", l,
                  (it + 1) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    bar.update(it + 1, note);
  }
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(true);
  loaded.meta.training["adaptation"] = {
      {"method", o.method},          {"prior", o.prior_json.empty() ? "source predictions" : o.prior_json},
      {"overestimate", o.overestimate}, {"entropy_weights", weights}, {"iterations", iterations},
      {"batch", o.batch},            {"lr", o.lr},  {"seed", o.seed}, {"targets", static_cast<int64_t>(targets.size())},
      {"patch", whole_volume ? nlohmann::json("whole volume") : nlohmann::json(patch)},
      {"source_checkpoint", checkpoint}};
  models::save_checkpoint(output, *model, loaded.meta);
  if (!history.empty()) {
    std::vector<double> steps(history.size());
    for (size_t i = 0; i < steps.size(); ++i) steps[i] = static_cast<double>(i + 1);
    write_curves_png(output + ".loss.png", {{"adaptation loss (" + o.method + ")", "iteration", steps, history}});
  }
  if (history.empty()) return 0.0;
  const size_t tail = std::max<size_t>(1, history.size() / 10);
  double sum = 0;
  for (size_t i = history.size() - tail; i < history.size(); ++i) sum += history[i];
  return sum / static_cast<double>(tail);
}

}  // namespace neuroseg::pipelines
