#pragma once
// FISBe files and reports around metrics/fisbe.h: reading samples (zarr v2 groups with
// volumes/gt_instances, or prediction label volumes in any format), the official split file,
// and the evaluator's outputs (per-volume TOML, summary CSV with the official columns,
// leaderboard). shared/specs/fisbe.md §1, §2.7, §2.8, §5.
#include <set>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "metrics/fisbe.h"

namespace neuroseg::pipelines {

/// A label array of a FISBe sample and its "dim_neurons" attribute (GT only).
struct FisbeLabels {
  at::Tensor labels;  ///< (C, Z, Y, X)
  std::vector<int64_t> dim_neurons;
  std::string path;   ///< the array actually read
};

/// Reads `path`: a zarr array (folder with .zarray), a zarr group/sample (`keys` are tried in
/// order under it, e.g. volumes/gt_instances), or any volume io::read_volume reads.
FisbeLabels read_fisbe_labels(const std::string& path, const std::vector<std::string>& keys);
/// Keys tried for predictions stored in a zarr sample.
const std::vector<std::string>& fisbe_prediction_keys();

/// Sample name as the reference derives it: the file name up to its first '.'.
std::string fisbe_sample_name(const std::string& path);
/// The ground truth of a prediction in a GT folder: <folder>/<sample>.zarr.
std::string fisbe_gt_for(const std::string& pred_path, const std::string& gt_folder);
/// Predictions in a folder: its *.zarr samples and label volumes, sorted naturally.
std::vector<std::string> list_fisbe_predictions(const std::string& folder);

/// util.py: load_partly_config: the sample names of the "(2) samples for FlyLight partly"
/// section of sample_list_per_split.txt. Throws io::Error naming the file if unreadable.
std::set<std::string> read_partly_samples(const std::string& split_file);

/// The per-volume TOML of the reference (tables general, confusion_matrix.th_X_Y).
std::string fisbe_volume_toml(const metrics::FisbeVolumeResult& r);

struct FisbeCase {
  std::string name;
  bool partly = false;
  metrics::FisbeVolumeResult result;
  double seconds = 0;
};

/// summary.csv as the reference writes it (';'-separated; per-volume rows, mean, sum, and
/// avg_inst = the pooled scores passed in), for the cases given.
std::string fisbe_summary_csv(const std::vector<const FisbeCase*>& cases, const metrics::FisbeSetScores& pooled,
                              const metrics::FisbeCombinedScores* combined);

/// Shortest round-trip decimal of a double, as Python's repr (1 -> "1.0", NaN -> "nan").
std::string python_float(double v);

}  // namespace neuroseg::pipelines
