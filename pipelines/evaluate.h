#pragma once
// Evaluation of predicted label images against references, per case and per label, with
// nnU-Net's summary.json layout (nnunetv2/evaluation/evaluate_predictions.py):
//   {"metric_per_case": [{"metrics": {"1": {"Dice": ..}}, "prediction_file": .., "reference_file": ..}],
//    "mean": {"1": {..}}, "foreground_mean": {..}}
// plus "std" and "median" per label, and a CSV with one row per case and label.
// Overlap metrics come from metrics/overlap.h, surface metrics from metrics/surface_distance.h
// (MONAI's convention). NaN means "undefined" (e.g. Dice of a label absent from both) and is
// left out of the aggregates, as nnU-Net does.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json_fwd.hpp>

#include "metrics/surface_distance.h"

namespace neuroseg::pipelines {

/// Metric names accepted by --metrics (the confusion counts TP FP FN TN n_pred n_ref are
/// always reported).
const std::vector<std::string>& evaluation_metric_names();

struct EvaluateOptions {
  std::vector<int64_t> labels;        ///< empty: every non-zero label in any prediction or reference
  std::vector<std::string> metrics;   ///< empty: all of evaluation_metric_names()
  double tolerance_mm = 1.0;          ///< NSD tolerance
  double percentile = 95.0;           ///< the "HD95" percentile
  metrics::SurfaceConvention surface = metrics::SurfaceConvention::kMonai;  ///< see metrics/surface_distance.h
  c10::Device device = c10::kCPU;
};

struct CasePair {
  std::string name, prediction, reference;
};

/// Pairs a prediction file/folder with a reference file/folder by case name (a prediction
/// named <case>_seg, as `neuroseg segment` writes, matches reference <case>). Unmatched
/// predictions and references are described in `problems`; pairs come sorted by name.
std::vector<CasePair> match_cases(const std::string& prediction, const std::string& reference,
                                  std::vector<std::string>& problems);

struct CaseEvaluation {
  CasePair pair;
  std::map<int64_t, std::map<std::string, double>> labels;  ///< label -> metric -> value
  std::vector<std::string> warnings;  ///< e.g. labels of the prediction absent from the reference
  std::string error;                  ///< set when the case could not be evaluated
  int64_t voxels = 0;
  double seconds = 0;
};

/// Reads one pair, checks that the grids agree, computes the metrics; never throws for bad
/// input (the result's error says why).
CaseEvaluation evaluate_case(const CasePair& pair, const EvaluateOptions& options);

/// Evaluates every pair (a bad one does not stop the others); `on_done` after each.
std::vector<CaseEvaluation> evaluate_cases(const std::vector<CasePair>& pairs, const EvaluateOptions& options,
                                           const std::function<void(const CaseEvaluation&)>& on_done = {});

/// nnU-Net-shaped summary of the evaluated cases (failed cases are listed under "failed").
nlohmann::json summarize_evaluation(const std::vector<CaseEvaluation>& cases, const EvaluateOptions& options);

/// Writes the summary as JSON (`json_path`, NaN/Infinity written as Python's json does, like
/// nnU-Net's files) and the per-case CSV beside it (<stem>.csv), each atomically.
void write_evaluation(const nlohmann::json& summary, const std::vector<CaseEvaluation>& cases,
                      const std::string& json_path);

}  // namespace neuroseg::pipelines
