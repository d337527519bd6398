// neuroseg evaluate --benchmark spider --pred P --gt G -o OUTDIR [--spacing official|correct]:
// the SPIDER lumbar-spine benchmark's official scores (metrics/spider.h, evaluation.py of
// DIAGNijmegen/SPIDER-Evaluation @052300b). P and G are .mha files or folders of them (a
// folder holding a masks/ folder, the SPIDER layout, means its masks/), paired by case name
// (<id>_<sequence>). Writes, each atomically:
//   OUTDIR/metrics.json  the script's metrics.json: {"<metric>": {"mean": m, "std": s}} for
//                        its ten metrics (NaN written as Python's json writes it)
//   OUTDIR/cases.json    settings, per case the ten metrics and every GT label's match, Dice
//                        and ASD, failed and unmatched cases
//   OUTDIR/cases.csv     one row per case with the ten metrics
// A bad case (missing, corrupt, other grid, non-integer labels) is reported on one line and
// the others are scored; the run then exits non-zero. Nothing is written when no case scores.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include <unistd.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "cli/benchmarks.h"
#include "io/atomic_output.h"
#include "io/error.h"
#include "io/volume_io.h"
#include "metrics/spider.h"
#include "pipelines/evaluate.h"
#include "pipelines/progress.h"

namespace fs = std::filesystem;

namespace neuroseg::cli {
namespace {

using OrderedJson = nlohmann::ordered_json;

// NaN as a marker that write_json turns into Python json's NaN token (the script's
// metrics.json is written by json.dump, which writes NaN for a class no case could score).
OrderedJson number(double v) {
  if (std::isnan(v)) return "__NaN__";
  return v;
}

std::string csv_number(double v) {
  if (std::isnan(v)) return "nan";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

void write_json(const std::string& path, const OrderedJson& j) {
  std::string text = j.dump(2);
  const std::string marker = "\"__NaN__\"";
  for (size_t pos = text.find(marker); pos != std::string::npos; pos = text.find(marker, pos))
    text.replace(pos, marker.size(), "NaN");
  io::write_text_atomic(path, text + "\n");
}

// The SPIDER layout: images/ and masks/ side by side; the masks are what is scored.
std::string masks_folder(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec) && fs::is_directory(fs::path(path) / "masks", ec)) return (fs::path(path) / "masks").string();
  return path;
}

struct CaseResult {
  pipelines::CasePair pair;
  metrics::SpiderCaseScores scores;
  std::string error;
  double seconds = 0;
};

// Reads and checks one pair, then scores it; never throws (the error says why).
CaseResult score_pair(const pipelines::CasePair& pair, metrics::SpiderSpacing spacing) {
  CaseResult r;
  r.pair = pair;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    const io::Volume gt = io::read_volume(pair.reference);
    const io::Volume pred = io::read_volume(pair.prediction);
    for (const io::Volume* v : {&gt, &pred}) {
      if (v->channels() != 1)
        throw io::Error(v->name(), "a SPIDER mask has one channel, got " + std::to_string(v->channels()));
      if (v->data.is_floating_point() && !at::equal(v->data, v->data.round()))
        throw io::Error(v->name(), "holds non-integer values; expected a label image");
    }
    io::require_same_grid(gt, pred);
    // (z, y, x) arrays as GetArrayFromImage gives them; the spacing is the GT's, as in the script.
    r.scores = metrics::spider_score_case(gt.data[0], pred.data[0], gt.geometry.spacing, spacing);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

OrderedJson case_json(const CaseResult& c) {
  const auto& names = metrics::spider_metric_names();
  OrderedJson j;
  j["case"] = c.pair.name;
  j["prediction"] = c.pair.prediction;
  j["reference"] = c.pair.reference;
  j["seconds"] = c.seconds;
  OrderedJson m = OrderedJson::object();
  for (int k = 0; k < metrics::kSpiderMetricCount; ++k) m[names[k]] = number(c.scores.values[k]);
  j["metrics"] = m;
  j["notes"] = c.scores.notes;
  OrderedJson labels = OrderedJson::array();
  for (const auto& s : c.scores.labels)
    labels.push_back({{"label", s.label},
                      {"category", metrics::to_string(metrics::spider_category(s.label))},
                      {"match", s.match},
                      {"dice", s.dice},
                      {"detected", s.detected()},
                      {"asd", number(s.asd)},
                      {"gt_voxels", s.gt_voxels},
                      {"pred_voxels", s.pred_voxels},
                      {"overlap", s.overlap}});
  j["labels"] = labels;
  return j;
}

}  // namespace

void evaluate_spider_benchmark(const BenchmarkArgs& args) {
  const metrics::SpiderSpacing spacing = metrics::parse_spider_spacing(args.spacing);
  if (args.device != "cpu" && args.device != "auto")
    io::warn("--device " + args.device + ": the SPIDER evaluation runs on the CPU (its per-label crops are small)");
  const std::string pred = masks_folder(args.pred), gt = masks_folder(args.gt);
  std::vector<std::string> problems;
  const std::vector<pipelines::CasePair> pairs = pipelines::match_cases(pred, gt, problems);
  for (const auto& p : problems) io::warn(p);
  if (pairs.empty()) throw io::Error(pred, "no prediction matches a ground truth in " + gt);

  // One pair (two files): its error is the run's one-line error. A batch reports each bad
  // case, scores the rest and fails at the end.
  const bool batch = pairs.size() > 1 || !problems.empty();
  if (batch)
    std::fprintf(stderr, "neuroseg evaluate: SPIDER, %zu case(s), %s spacing\n", pairs.size(), metrics::to_string(spacing));
  const char* clear = isatty(2) ? "\r\033[K" : "";
  pipelines::ProgressBar bar(static_cast<int64_t>(pairs.size()), "spider");
  std::vector<CaseResult> results;
  std::vector<metrics::SpiderCaseScores> scored;
  int64_t failed = 0;
  for (const auto& pair : pairs) {
    results.push_back(score_pair(pair, spacing));
    const CaseResult& r = results.back();
    if (!r.error.empty()) {
      if (!batch) throw std::runtime_error(r.error);
      ++failed;
      std::fprintf(stderr, "%sneuroseg: error: %s\n", clear, r.error.c_str());
    } else {
      scored.push_back(r.scores);
      for (const auto& n : r.scores.notes) io::warn(r.pair.reference + ": " + n);
    }
    char note[256];
    std::snprintf(note, sizeof(note), "%s %.2f s", r.pair.name.c_str(), r.seconds);
    if (batch) bar.update(static_cast<int64_t>(results.size()), note);
  }
  if (scored.empty()) throw io::Error(args.pred, "no case could be scored (see the messages above); nothing written");

  // metrics.json: the script's aggregate, key for key.
  const metrics::SpiderSummary summary = metrics::spider_aggregate(scored);
  const auto& names = metrics::spider_metric_names();
  OrderedJson aggregate = OrderedJson::object();
  for (int k = 0; k < metrics::kSpiderMetricCount; ++k)
    aggregate[names[k]] = {{"mean", number(summary.mean[k])}, {"std", number(summary.std[k])}};

  OrderedJson cases = OrderedJson::object();
  cases["benchmark"] = "spider";
  cases["evaluation"] = "DIAGNijmegen/SPIDER-Evaluation evaluation.py @052300b";
  cases["spacing"] = metrics::to_string(spacing);
  cases["prediction"] = pred;
  cases["ground_truth"] = gt;
  cases["aggregate"] = aggregate;
  cases["cases"] = OrderedJson::array();
  cases["failed"] = OrderedJson::array();
  std::string csv = "case,prediction,reference,status,seconds";
  for (const char* n : names) csv += std::string(",") + n;
  csv += "\n";
  for (const auto& r : results) {
    csv += r.pair.name + ",\"" + r.pair.prediction + "\",\"" + r.pair.reference + "\"," + (r.error.empty() ? "ok" : "failed") +
           "," + csv_number(r.seconds);
    if (!r.error.empty()) {
      cases["failed"].push_back({{"case", r.pair.name}, {"prediction", r.pair.prediction}, {"reference", r.pair.reference},
                                 {"error", r.error}});
      csv += std::string(metrics::kSpiderMetricCount, ',') + "\n";
      continue;
    }
    cases["cases"].push_back(case_json(r));
    for (int k = 0; k < metrics::kSpiderMetricCount; ++k) csv += "," + csv_number(r.scores.values[k]);
    csv += "\n";
  }
  cases["unmatched"] = problems;
  const fs::path out(args.out);
  write_json((out / "cases.json").string(), cases);
  io::write_text_atomic((out / "cases.csv").string(), csv);
  write_json((out / "metrics.json").string(), aggregate);  // last: its presence means the rest is there

  std::printf("%-24s %12s %12s\n", "metric", "mean", "std");
  for (int k = 0; k < metrics::kSpiderMetricCount; ++k)
    std::printf("%-24s %12.6f %12.6f\n", names[k], summary.mean[k], summary.std[k]);
  std::printf("scored %zu of %zu case(s) (%s spacing) -> %s\n", scored.size(), pairs.size(), metrics::to_string(spacing),
              (out / "metrics.json").c_str());
  if (failed > 0 || !problems.empty())
    throw io::Error(args.out, std::to_string(failed) + " case(s) failed and " + std::to_string(problems.size()) +
                                  " unmatched (see the messages above; metrics.json aggregates the scored cases)");
}

}  // namespace neuroseg::cli
