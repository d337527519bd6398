#include "pipelines/adapt.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

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

// The JSON prior: class fractions (K, background first; class k <-> the k-th smallest label
// value, as training) and, optionally, slice tags per case.
struct JsonPrior {
  std::vector<double> fractions;
  int tag_axis = -1;  ///< input index axis the tags run along (0 = i, 1 = j, 2 = k); -1: no tags
  std::map<std::string, std::vector<std::vector<uint8_t>>> tags;  ///< file name -> foreground class -> slice
};

JsonPrior read_prior(const std::string& path, const nlohmann::json& labels) {
  std::ifstream f(path);
  if (!f) throw io::Error(path, "cannot read the prior");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception&) {
    throw io::Error(path, "not valid JSON");
  }
  if (!j.is_object() || !j.contains("fractions") || !j["fractions"].is_object())
    throw io::Error(path, "expected {\"fractions\": {\"<label name>\": fraction, ...}[, \"slice_tags\": {...}]}");
  for (const auto& item : j.items())
    if (item.key() != "fractions" && item.key() != "slice_tags")
      throw io::Error(path, "unknown key '" + item.key() + "' (expected fractions, slice_tags)");
  std::vector<std::pair<int64_t, std::string>> by_value;
  for (const auto& item : labels.items()) by_value.emplace_back(item.value().get<int64_t>(), item.key());
  std::sort(by_value.begin(), by_value.end());
  const auto unknown_label = [&](const nlohmann::json& object) {
    for (const auto& item : object.items())
      if (std::none_of(by_value.begin(), by_value.end(), [&](const auto& p) { return p.second == item.key(); }))
        throw io::Error(path, "unknown label '" + item.key() + "' (the checkpoint's labels: " + labels.dump() + ")");
  };
  JsonPrior prior;
  for (const auto& [value, name] : by_value) {
    if (!j["fractions"].contains(name)) throw io::Error(path, "no fraction for label '" + name + "'");
    const auto& v = j["fractions"][name];
    if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1)
      throw io::Error(path, "fraction of '" + name + "' must be a number in [0, 1]");
    prior.fractions.push_back(v.get<double>());
  }
  unknown_label(j["fractions"]);
  if (!j.contains("slice_tags")) return prior;

  const auto& t = j["slice_tags"];
  const std::string shape = "slice_tags must be {\"axis\": \"i\"|\"j\"|\"k\", \"cases\": {\"<file name>\": {\"<label>\": [0 or 1 per slice]}}}";
  if (!t.is_object() || t.size() != 2 || !t.contains("axis") || !t.contains("cases") || !t["axis"].is_string() ||
      !t["cases"].is_object())
    throw io::Error(path, shape);
  const std::string axis = t["axis"].get<std::string>();
  if (axis != "i" && axis != "j" && axis != "k") throw io::Error(path, shape);
  prior.tag_axis = axis[0] - 'i';
  if (by_value.size() > 8) throw io::Error(path, "slice_tags support at most 7 foreground classes");
  for (const auto& item : t["cases"].items()) {
    if (!item.value().is_object()) throw io::Error(path, shape);
    unknown_label(item.value());
    std::vector<std::vector<uint8_t>> per_class;
    for (size_t k = 1; k < by_value.size(); ++k) {
      const std::string& name = by_value[k].second;
      if (!item.value().contains(name)) throw io::Error(path, "case '" + item.key() + "' has no slice tags for label '" + name + "'");
      const auto& list = item.value()[name];
      std::vector<uint8_t> tags;
      if (!list.is_array()) throw io::Error(path, shape);
      for (const auto& v : list) {
        if (!v.is_number_integer() || (v.get<int64_t>() != 0 && v.get<int64_t>() != 1))
          throw io::Error(path, "slice tags of '" + name + "' in case '" + item.key() + "' must be 0 or 1");
        tags.push_back(static_cast<uint8_t>(v.get<int64_t>()));
      }
      per_class.push_back(std::move(tags));
    }
    prior.tags[item.key()] = std::move(per_class);
  }
  return prior;
}

// The slice tags of one case from the prior, checked against its image.
at::Tensor case_slice_codes(const std::string& prior_path, const JsonPrior& prior, const std::string& file,
                            const io::Volume& input, const PreparedCase& prepared, int64_t& dim) {
  const std::string name = std::filesystem::path(file).filename().string();
  const auto found = prior.tags.find(name);
  if (found == prior.tags.end()) throw io::Error(prior_path, "slice_tags has no case '" + name + "'");
  const int a = prior.tag_axis;
  const int64_t slices = input.size_xyz()[static_cast<size_t>(a)];
  for (const auto& tags : found->second)
    if (static_cast<int64_t>(tags.size()) != slices)
      throw io::Error(prior_path, "case '" + name + "' has " + std::to_string(tags.size()) + " slice tags, its image " +
                                      std::to_string(slices) + " slices along " + std::string(1, static_cast<char>('i' + a)));
  return slice_tag_codes(found->second, a, input.geometry, prepared, dim);
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

at::Tensor slice_tag_codes(const std::vector<std::vector<uint8_t>>& tags, int axis, const io::Geometry& input,
                           const PreparedCase& prepared, int64_t& dim) {
  // The network index axis that runs along the input's tag axis (reorientation permutes axes).
  const io::Geometry& net = prepared.network_geometry;
  int along = 0;
  double best = -1;
  for (int b = 0; b < 3; ++b) {
    double dot = 0;
    for (int r = 0; r < 3; ++r) dot += net.dir(r, b) * input.dir(r, axis);
    if (std::abs(dot) > best) best = std::abs(dot), along = b;
  }
  dim = 2 - along;  // (D, H, W) = (z, y, x)
  const int64_t n = prepared.image.size(1 + dim);
  at::Tensor code = at::empty({n}, at::kByte);
  for (int64_t s = 0; s < n; ++s) {
    std::array<double, 3> ijk{0, 0, 0};
    ijk[static_cast<size_t>(along)] = static_cast<double>(s);
    const int64_t i = std::llround(input.point_to_index(net.index_to_point(ijk))[static_cast<size_t>(axis)]);
    uint8_t c = 1;
    for (size_t k = 0; k < tags.size(); ++k)
      if (i >= 0 && i < static_cast<int64_t>(tags[k].size()) && tags[k][static_cast<size_t>(i)])
        c |= static_cast<uint8_t>(1u << (k + 1));
    code[s] = c;
  }
  std::vector<int64_t> view{1, 1, 1};
  view[static_cast<size_t>(dim)] = n;
  return code.view(view).expand({prepared.image.size(1), prepared.image.size(2), prepared.image.size(3)}).contiguous();
}

at::Tensor region_prior(const std::vector<double>& fractions, const at::Tensor& covered, const at::Tensor& tags,
                        double overestimate) {
  const int64_t n = covered.size(0), k = static_cast<int64_t>(fractions.size());
  at::Tensor prior = overestimated(at::tensor(fractions, at::kDouble).unsqueeze(0).expand({n, k}), overestimate);
  at::Tensor fg = prior.narrow(1, 1, k - 1) * covered.to(at::kDouble).unsqueeze(1);
  if (tags.defined()) fg = fg * tags.to(at::kDouble);
  prior = at::cat({at::zeros({n, 1}, at::kDouble), fg}, 1);
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
  JsonPrior json_prior;
  if (!o.prior_json.empty()) json_prior = read_prior(o.prior_json, loaded.meta.labels);
  const std::vector<double>& prior_fractions = json_prior.fractions;
  const bool tagged = json_prior.tag_axis >= 0;
  // A tagged slice's fraction describes the whole slice, which a random patch crops.
  if (tagged && !o.patch.empty())
    throw io::Error(o.prior_json, "slice tags describe whole slices: adapt on whole volumes (drop --patch)");
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
  int64_t slice_dim = -1;  // with slice tags: the dimension of (D, H, W) the tagged slices run along
  model->eval();
  for (const auto& path : targets) {
    const io::Volume v = io::read_volume(path);
    io::require_3d(v, "adaptation");
    TrainingCase c;
    c.name = path;
    const PreparedCase prepared = prepare_case(v, pp);
    c.image = prepared.image;
    if (prior_fractions.empty()) {
      torch::NoGradGuard no_grad;
      c.label = sliding_window_inference(*model, c.image, sw).argmax(0).to(at::kByte);
    } else if (tagged) {  // bit 0: inside the volume, bit c: class c tagged in this slice
      int64_t dim = 0;
      c.label = case_slice_codes(o.prior_json, json_prior, path, v, prepared, dim);
      if (slice_dim >= 0 && dim != slice_dim)
        throw io::Error(path, "its tagged slices run along another network axis than the other cases'");
      slice_dim = dim;
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
    std::fprintf(stderr, "adapting on whole volumes (%lld x %lld x %lld on the network grid): the prior's fractions describe %s\n",
                 static_cast<long long>(patch[0]), static_cast<long long>(patch[1]), static_cast<long long>(patch[2]), tagged ? "tagged slices" : "volumes");
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
  lo.size_power = o.size_power;

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
    optimizer.zero_grad();
    at::Tensor logits = model->forward(image);
    if (prior_fractions.empty()) {  // class fractions of the source prediction in each patch
      prior = at::one_hot(b.label.reshape({b.label.size(0), -1}), classes).to(at::kDouble).mean(1);
      prior = overestimated(prior, o.overestimate);
    } else if (tagged) {  // one prior per slice, as the authors' per-slice csv: each slice a sample of the loss
      const at::Tensor code = b.label.movedim(1 + slice_dim, 1).flatten(2).flatten(0, 1);  // (N·S, voxels of a slice)
      at::Tensor tags = at::empty({code.size(0), classes - 1}, at::kDouble);
      for (int64_t k = 1; k < classes; ++k) tags.select(1, k - 1).copy_(code.bitwise_right_shift(k).bitwise_and(1).amax(1));
      prior = region_prior(prior_fractions, code.bitwise_and(1).to(at::kDouble).mean(1), tags, o.overestimate);
      logits = logits.movedim(2 + slice_dim, 1).flatten(0, 1);  // (N·S, K, a, b)
    } else {
      prior = region_prior(prior_fractions, b.label.reshape({b.label.size(0), -1}).to(at::kDouble).mean(1), {}, o.overestimate);
    }
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
      {"slice_tags", tagged ? nlohmann::json(std::string(1, static_cast<char>('i' + json_prior.tag_axis))) : nlohmann::json(nullptr)},
      {"overestimate", o.overestimate}, {"size_power", o.size_power}, {"entropy_weights", weights}, {"iterations", iterations},
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
