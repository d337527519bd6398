#include "pipelines/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "io/atomic_output.h"
#include "io/error.h"
#include "io/volume_io.h"
#include "metrics/cldice.h"
#include "metrics/overlap.h"
#include "metrics/surface_distance.h"
#include "pipelines/cases.h"

namespace fs = std::filesystem;

namespace neuroseg::pipelines {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// --metrics name -> summary key (nnU-Net's spelling where nnU-Net has the metric).
const std::vector<std::pair<std::string, std::string>>& metric_keys() {
  static const std::vector<std::pair<std::string, std::string>> keys = {
      {"dice", "Dice"}, {"iou", "IoU"}, {"precision", "precision"}, {"recall", "recall"},
      {"volume_difference", "volume_difference"}, {"hd", "HD"}, {"hd95", "HD95"}, {"assd", "ASSD"}, {"nsd", "NSD"},
      {"cldice", "clDice"}};
  return keys;
}
const char* kCountKeys[] = {"TP", "FP", "FN", "TN", "n_pred", "n_ref"};

// clDice (skeletons) is opt-in: everything else is on by default.
bool wants(const EvaluateOptions& o, const std::string& name) {
  if (o.metrics.empty()) return name != "cldice";
  return std::find(o.metrics.begin(), o.metrics.end(), name) != o.metrics.end();
}
bool wants_surface(const EvaluateOptions& o) {
  return wants(o, "hd") || wants(o, "hd95") || wants(o, "assd") || wants(o, "nsd");
}

// Every metric of one label from its counts and (when asked) its surface distances.
std::map<std::string, double> label_metrics(const metrics::LabelCounts& c, const metrics::SurfaceMetrics* s,
                                            const EvaluateOptions& o, double cl_dice = kNaN) {
  const metrics::OverlapMetrics m = metrics::overlap_metrics(c);
  const std::map<std::string, double> all = {
      {"dice", m.dice}, {"iou", m.iou}, {"precision", m.precision}, {"recall", m.recall},
      {"volume_difference", m.volume_difference}, {"hd", s ? s->hd : kNaN}, {"hd95", s ? s->hd95 : kNaN},
      {"assd", s ? s->assd : kNaN}, {"nsd", s ? s->nsd : kNaN}, {"cldice", cl_dice}};
  std::map<std::string, double> out;
  for (const auto& [name, key] : metric_keys())
    if (wants(o, name)) out[key] = all.at(name);
  out["TP"] = static_cast<double>(c.tp);
  out["FP"] = static_cast<double>(c.fp);
  out["FN"] = static_cast<double>(c.fn);
  out["TN"] = static_cast<double>(c.tn);
  out["n_pred"] = static_cast<double>(c.n_pred());
  out["n_ref"] = static_cast<double>(c.n_ref());
  return out;
}

// A label absent from both images of a case: zero counts, every ratio undefined.
std::map<std::string, double> absent_label_metrics(int64_t voxels, const EvaluateOptions& o) {
  metrics::LabelCounts c;
  c.tn = voxels;
  const metrics::SurfaceMetrics s{kNaN, kNaN, kNaN, kNaN};
  return label_metrics(c, wants_surface(o) ? &s : nullptr, o);
}

// JSON numbers; NaN and infinities as markers that write_evaluation turns into the tokens
// Python's json module writes (NaN, Infinity), as in nnU-Net's summary.json.
nlohmann::json number(double v) {
  if (std::isnan(v)) return "__NaN__";
  if (std::isinf(v)) return v > 0 ? "__Infinity__" : "__-Infinity__";
  return v;
}

std::string csv_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

struct Aggregate {
  double mean, std, median;
};

// NaN left out (np.nanmean / np.nanstd / np.nanmedian); all NaN -> NaN.
Aggregate aggregate(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  if (v.empty()) return {kNaN, kNaN, kNaN};
  double sum = 0;
  for (double x : v) sum += x;
  const double mean = sum / static_cast<double>(v.size());
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return {mean, std::isinf(mean) ? kNaN : std::sqrt(var / static_cast<double>(n)), median};
}

std::vector<int64_t> label_union(const std::vector<CaseEvaluation>& cases) {
  std::set<int64_t> all;
  for (const auto& c : cases)
    for (const auto& [l, m] : c.labels) all.insert(l);
  return {all.begin(), all.end()};
}

}  // namespace

const std::vector<std::string>& evaluation_metric_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& [name, key] : metric_keys()) n.push_back(name);
    return n;
  }();
  return names;
}

std::vector<CasePair> match_cases(const std::string& prediction, const std::string& reference,
                                  std::vector<std::string>& problems) {
  const std::vector<std::string> preds = list_cases(prediction), refs = list_cases(reference);
  if (preds.size() == 1 && refs.size() == 1 && !fs::is_directory(prediction) && !fs::is_directory(reference))
    return {{case_name(refs[0]), preds[0], refs[0]}};
  std::map<std::string, std::string> pred_of;
  for (const auto& p : preds) {
    std::string name = case_name(p);
    pred_of[name] = p;
  }
  std::vector<CasePair> pairs;
  std::set<std::string> used;
  for (const auto& r : refs) {
    const std::string name = case_name(r);
    auto it = pred_of.find(name);
    if (it == pred_of.end()) it = pred_of.find(name + "_seg");
    if (it == pred_of.end()) {
      problems.push_back(r + ": no prediction for case '" + name + "' in " + prediction);
      continue;
    }
    used.insert(it->first);
    pairs.push_back({name, it->second, r});
  }
  for (const auto& [name, p] : pred_of)
    if (!used.count(name)) problems.push_back(p + ": no reference for this prediction in " + reference);
  return pairs;
}

CaseEvaluation evaluate_case(const CasePair& pair, const EvaluateOptions& o) {
  CaseEvaluation r;
  r.pair = pair;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    const io::Volume ref = io::read_volume(pair.reference);
    const io::Volume pred = io::read_volume(pair.prediction);
    if (ref.channels() != 1) throw io::Error(pair.reference, "a label image must have one channel, got " + std::to_string(ref.channels()));
    if (pred.channels() != 1) throw io::Error(pair.prediction, "a label image must have one channel, got " + std::to_string(pred.channels()));
    io::require_same_grid(ref, pred);
    if (pred.data.is_floating_point() && !at::equal(pred.data, pred.data.round()))
      throw io::Error(pair.prediction, "holds non-integer values; expected a label image");
    if (ref.data.is_floating_point() && !at::equal(ref.data, ref.data.round()))
      throw io::Error(pair.reference, "holds non-integer values; expected a label image");
    const at::Tensor p = pred.data[0].to(o.device), g = ref.data[0].to(o.device);
    r.voxels = g.numel();
    const std::vector<int64_t> in_pred = metrics::present_labels(p), in_ref = metrics::present_labels(g);
    std::vector<int64_t> labels = o.labels;
    if (labels.empty()) {
      std::set<int64_t> u(in_pred.begin(), in_pred.end());
      u.insert(in_ref.begin(), in_ref.end());
      labels.assign(u.begin(), u.end());
      std::string extra;
      for (int64_t l : in_pred)
        if (!std::binary_search(in_ref.begin(), in_ref.end(), l)) extra += (extra.empty() ? "" : ",") + std::to_string(l);
      if (!extra.empty()) r.warnings.push_back(pair.prediction + ": labels " + extra + " are absent from the reference");
    }
    const std::vector<metrics::LabelCounts> counts = metrics::label_counts(p, g, labels);
    const auto& sp = ref.geometry.spacing;  // x, y, z
    std::vector<metrics::LabelBox> pred_boxes, ref_boxes;
    const bool crops = wants_surface(o) || wants(o, "cldice");
    if (crops) {
      pred_boxes = metrics::label_boxes(p, labels);
      ref_boxes = metrics::label_boxes(g, labels);
    }
    for (size_t i = 0; i < labels.size(); ++i) {
      if (!crops) {
        r.labels[labels[i]] = label_metrics(counts[i], nullptr, o);
        continue;
      }
      // Surfaces and distances only depend on the union's box + 1 voxel (the image border
      // stays where it is: a clipped margin means the box touches it).
      const metrics::LabelBox box = pred_boxes[i].merged(ref_boxes[i]);
      at::Tensor pc = p, gc = g;
      if (!box.empty())
        for (int a = 0; a < 3; ++a) {
          const int64_t b = std::max<int64_t>(box.lo[a] - 1, 0), e = std::min<int64_t>(box.hi[a] + 2, p.size(a));
          pc = pc.slice(a, b, e);
          gc = gc.slice(a, b, e);
        }
      const at::Tensor pm = pc == labels[i], gm = gc == labels[i];
      metrics::SurfaceMetrics s{kNaN, kNaN, kNaN, kNaN};
      if (wants_surface(o))
        s = metrics::surface_metrics(metrics::surface_distances(pm, gm, {sp[2], sp[1], sp[0]}, o.surface), o.tolerance_mm,
                                     o.percentile);
      const double cl = wants(o, "cldice") ? metrics::cl_dice(pm.cpu(), gm.cpu()) : kNaN;
      r.labels[labels[i]] = label_metrics(counts[i], wants_surface(o) ? &s : nullptr, o, cl);
    }
  } catch (const std::exception& e) {
    r.error = e.what();
    r.labels.clear();
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<CaseEvaluation> evaluate_cases(const std::vector<CasePair>& pairs, const EvaluateOptions& o,
                                           const std::function<void(const CaseEvaluation&)>& on_done) {
  std::vector<CaseEvaluation> out;
  out.reserve(pairs.size());
  for (const auto& pair : pairs) {
    out.push_back(evaluate_case(pair, o));
    if (on_done) on_done(out.back());
  }
  // Labels some cases lack (absent from both images there) get their undefined values, so
  // that every case reports the same label set.
  const std::vector<int64_t> all = label_union(out);
  for (auto& c : out)
    if (c.error.empty())
      for (int64_t l : all)
        if (!c.labels.count(l)) c.labels[l] = absent_label_metrics(c.voxels, o);
  return out;
}

nlohmann::json summarize_evaluation(const std::vector<CaseEvaluation>& cases, const EvaluateOptions& o) {
  nlohmann::json j;
  j["metric_per_case"] = nlohmann::json::array();
  j["failed"] = nlohmann::json::array();
  for (const auto& c : cases) {
    if (!c.error.empty()) {
      j["failed"].push_back({{"case", c.pair.name}, {"prediction_file", c.pair.prediction},
                             {"reference_file", c.pair.reference}, {"error", c.error}});
      continue;
    }
    nlohmann::json m = nlohmann::json::object();
    for (const auto& [l, values] : c.labels)
      for (const auto& [k, v] : values) m[std::to_string(l)][k] = number(v);
    j["metric_per_case"].push_back({{"metrics", m}, {"prediction_file", c.pair.prediction},
                                    {"reference_file", c.pair.reference}, {"seconds", c.seconds}});
  }
  const std::vector<int64_t> labels = label_union(cases);
  std::vector<std::string> keys;
  for (const auto& [name, key] : metric_keys())
    if (wants(o, name)) keys.push_back(key);
  keys.insert(keys.end(), std::begin(kCountKeys), std::end(kCountKeys));
  nlohmann::json mean = nlohmann::json::object(), std_ = nlohmann::json::object(), median = nlohmann::json::object(),
                 foreground = nlohmann::json::object();
  std::map<std::string, std::vector<double>> label_means;
  for (int64_t l : labels)
    for (const auto& k : keys) {
      std::vector<double> v;
      for (const auto& c : cases)
        if (c.error.empty()) v.push_back(c.labels.at(l).at(k));
      const Aggregate a = aggregate(v);
      mean[std::to_string(l)][k] = number(a.mean);
      std_[std::to_string(l)][k] = number(a.std);
      median[std::to_string(l)][k] = number(a.median);
      label_means[k].push_back(a.mean);
    }
  // nnU-Net: the foreground mean is the plain mean of the per-label means.
  for (const auto& [k, v] : label_means) {
    double s = 0;
    for (double x : v) s += x;
    foreground[k] = number(v.empty() ? kNaN : s / static_cast<double>(v.size()));
  }
  j["mean"] = mean;
  j["std"] = std_;
  j["median"] = median;
  j["foreground_mean"] = foreground;
  j["settings"] = {{"tolerance_mm", o.tolerance_mm}, {"percentile", o.percentile}, {"surface", metrics::to_string(o.surface)},
                   {"labels", labels}};
  return j;
}

void write_evaluation(const nlohmann::json& summary, const std::vector<CaseEvaluation>& cases,
                      const std::string& json_path) {
  std::string text = summary.dump(4);
  for (const auto& [marker, token] : std::vector<std::pair<std::string, std::string>>{
           {"\"__NaN__\"", "NaN"}, {"\"__Infinity__\"", "Infinity"}, {"\"__-Infinity__\"", "-Infinity"}}) {
    for (size_t pos = text.find(marker); pos != std::string::npos; pos = text.find(marker, pos))
      text.replace(pos, marker.size(), token);
  }
  {
    io::AtomicOutput out(json_path);
    std::ofstream f(out.path());
    f << text << "\n";
    if (!f) throw io::Error(json_path, "cannot write");
    f.close();
    out.commit();
  }
  fs::path csv_path = fs::path(json_path);
  csv_path.replace_extension(".csv");
  io::AtomicOutput out(csv_path.string());
  std::ofstream f(out.path());
  std::vector<std::string> keys;
  for (const auto& c : cases)
    if (c.error.empty() && !c.labels.empty()) {
      for (const auto& [k, v] : c.labels.begin()->second) keys.push_back(k);
      break;
    }
  f << "case,label,status,seconds";
  for (const auto& k : keys) f << "," << k;
  f << "\n";
  for (const auto& c : cases) {
    if (!c.error.empty()) {
      f << c.pair.name << ",,failed," << csv_number(c.seconds) << std::string(keys.size(), ',') << "\n";
      continue;
    }
    for (const auto& [l, values] : c.labels) {
      f << c.pair.name << "," << l << ",ok," << csv_number(c.seconds);
      for (const auto& k : keys) f << "," << csv_number(values.at(k));
      f << "\n";
    }
  }
  if (!f) throw io::Error(csv_path.string(), "cannot write");
  f.close();
  out.commit();
}

}  // namespace neuroseg::pipelines
