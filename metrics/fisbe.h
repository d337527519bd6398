#pragma once
// FISBe instance metrics for thin neurons in light microscopy (Mais et al., CVPR 2024),
// number for number what the official evaluator computes with `--app flylight`
// (Kainmueller-Lab/evaluate-instance-segmentation @cc34f4d; shared/specs/fisbe.md §2):
//   * prediction label values with <= 800 voxels (over all channels) are dropped; ids are
//     renumbered per channel, channel by channel, in ascending order of the stored values;
//   * clRecall / clPrecision matrices from Lee skeletons (metrics/skeleton.h), stored as
//     float32, clDice = nan_to_num(2PR / (P + R)) in float32;
//   * greedy one-to-one matching at 14 thresholds (strict >, ties by gt id then pred id);
//   * GT coverage through each prediction's argmax clPrecision; FS/FM from a many-to-many
//     matching with consumption when instances overlap; partly-labelled FP rules;
//   * the "dim" and "overlap" diagnostic subsets;
//   * pooling over a set of volumes and the combined completely + partly leaderboard.
//
// The cost is what differs: every instance is skeletonized once, cropped to its bounding
// box, instances in parallel; the matrices come from skeleton voxel lists, never from
// whole-volume masks (the reference builds int64 copies and re-skeletonizes full volumes).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::metrics {

struct FisbeOptions {
  bool partly = false;                  ///< only some neurons are labelled (FP rule of §2.4)
  int64_t remove_small_components = 800;  ///< prediction values with <= this many voxels are dropped
  std::vector<int64_t> dim_instances;   ///< stored GT ids of dim neurons (zarr attribute "dim_neurons")
};

/// The evaluator's 14 thresholds in its order: 0.1 ... 0.9, then 0.55 ... 0.95.
const std::vector<double>& fisbe_thresholds();

struct FisbeThresholdCounts {
  double threshold = 0;
  int64_t tp = 0, fp = 0, fn = 0;
  double precision = 0, recall = 0, ap = 0, fscore = 0;
  /// Per-threshold diagnostics the reference writes for partly-labelled samples only
  /// (-1 = not computed).
  int64_t false_split = -1, false_merge = -1;
};

/// A diagnostic subset of GT instances (dim neurons, or neurons that overlap another).
struct FisbeSubset {
  int64_t count = 0;
  int64_t tp_05 = 0;
  double tp_05_rel = 0;
  std::vector<double> coverage;
  double avg_coverage = 0;
};

struct FisbeVolumeResult {
  int64_t num_gt = 0, num_pred = 0;  ///< after the size filter and renumbering
  int64_t removed_small = 0;         ///< prediction label values dropped by the size filter
  std::vector<FisbeThresholdCounts> thresholds;  ///< fisbe_thresholds() order
  double av_f1 = 0;    ///< avFscore = avFscore19: mean F1 over 0.1 ... 0.9
  double av_f1_59 = 0, av_ap = 0, av_ap19 = 0;
  int64_t tp_05 = 0;
  double tp_05_rel = 0;
  std::vector<double> tp_05_cldice;  ///< clDice of the matches at 0.5 (float32 values)
  double avg_tp_05_cldice = 0;
  std::vector<double> gt_coverage;   ///< per GT instance
  double avg_gt_coverage = 0;        ///< C of this volume
  double avg_f1_cov_score = 0;       ///< S of this volume: 0.5 avF1 + 0.5 C
  int64_t false_merges = 0, false_splits = 0;  ///< FM (th 0.1), FS (th 0.05)
  FisbeSubset dim, overlap;
  bool gt_overlaps = false, pred_overlaps = false;
  std::vector<std::string> warnings;
  /// (num_gt + 1) x (num_pred + 1) row-major, row/column 0 = background.
  std::vector<float> recall, precision, localization;
};

/// \brief Scores one volume. `gt` and `pred`: (C, Z, Y, X) or (Z, Y, X) integer (or
/// integral-valued floating) label tensors on the CPU; several channels may hold overlapping
/// instances (FISBe stores one neuron per GT channel). Spatial shapes that differ are
/// centre-cropped to the smaller one, as the reference does. Tensors are taken by value so
/// that the caller can move them in and the memory is released early.
FisbeVolumeResult evaluate_fisbe_volume(at::Tensor gt, at::Tensor pred, const FisbeOptions& options = {});

/// One set (completely or partly labelled volumes) pooled over instances, as
/// summarize.py: average_flylight_score_over_instances.
struct FisbeSetScores {
  int64_t volumes = 0, num_gt = 0, num_pred = 0;
  std::array<int64_t, 9> tp{}, fp{}, fn{};  ///< summed at 0.1 ... 0.9
  std::array<double, 9> fscore{};           ///< pooled F1 = 2 TP / (2 TP + FP + FN)
  double av_f1 = 0;                         ///< mean of fscore
  std::vector<double> coverages;            ///< every GT instance's coverage (float32 values)
  double coverage = 0;                      ///< C
  double score = 0;                         ///< S = 0.5 avF1 + 0.5 C
  int64_t tp_05 = 0, false_splits = 0, false_merges = 0;
  double tp_05_rel = 0;                     ///< "tp" of the leaderboard
  std::vector<double> tp_05_cldice;
  double cldice_tp = 0;                     ///< mean of the pooled clDice of matches at 0.5
  int64_t gt_dim = 0, tp_05_dim = 0, gt_overlap = 0, tp_05_overlap = 0;
  double tp_05_rel_dim = 0, avg_gt_cov_dim = 0, tp_05_rel_overlap = 0, avg_gt_cov_overlap = 0;
};

FisbeSetScores pool_fisbe_volumes(const std::vector<const FisbeVolumeResult*>& volumes);

/// The combined leaderboard over a completely and a partly set (summarize.py: average_sets).
struct FisbeCombinedScores {
  FisbeSetScores pooled;            ///< counts summed, lists concatenated
  double score = 0, av_f1 = 0, coverage = 0;  ///< means of the two set values
  std::array<double, 9> fscore{};   ///< means of the two sets' F1
  /// clDice_TP two ways (spec §2.8): the evaluator's HEAD pools the two lists; the published
  /// leaderboard averaged the two set values.
  double cldice_tp_pooled = 0, cldice_tp_mean_of_sets = 0;
};

FisbeCombinedScores combine_fisbe_sets(const FisbeSetScores& completely, const FisbeSetScores& partly);

}  // namespace neuroseg::metrics
