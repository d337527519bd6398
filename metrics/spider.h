#pragma once
// SPIDER lumbar-spine benchmark scores (van der Graaf et al., Sci Data 11:264, 2024): the
// official evaluation.py of github.com/DIAGNijmegen/SPIDER-Evaluation @052300b
// (Spider.score_case and Spider.compute_metrics) reproduced, numbers included.
//
// Labels (SPIDER masks): 1-25 vertebrae, 100 spinal canal, 101-125 partially visible
// vertebrae, 201-225 intervertebral discs; values <= 0 are background (the script only
// looks at values > 0).
//
// Per case (score_case):
//  1. Matching: every GT label g (sorted) is matched to the predicted label with the largest
//     overlap inside GT == g, `np.bincount(pred[(GT == g) & (pred > 0)]).argmax()`, so a tie
//     goes to the smallest predicted label. Not one-to-one (two GT vertebrae can share one
//     merged prediction), label identity never checked, predictions overlapping no GT ignored.
//  2. Dice(g) = 2|G & P| / (|G| + |P|) with P = (pred == match[g]); 0 when unmatched.
//  3. Categories: 0 < g < 100 vertebra, g > 200 disc, g == 100 canal; 101-125 (partial
//     vertebrae) are in no category but are part of the overall means.
//  4. Detection: Dice < 0.1 is "missed": counted in DetectionRate = (total - missed) / total
//     and left out of DiceScoreVertebrae/Discs (the mean over detected labels only; NaN when
//     none is detected, np.mean([])).
//  5. OveralDiceScore: mean Dice over all GT labels, unmatched ones counting 0.
//  6. ASD (average_surface_distance, symmetric): border = mask XOR binary_erosion(mask) with
//     the full 3x3x3 structure (generate_binary_structure(3, 3)), outside the image counting as
//     background; the EDT of the complement of one border (with the spacing) sampled at the
//     other border, both directions pooled, then averaged. Computed for every matched label,
//     missed ones included; unmatched -> NaN, which makes the class mean NaN (np.mean).
//  7. DiceScoreSpinalCanal / ASDSpinalCanal are 999 when the GT has no label 100.
//  8. The spacing (SpiderSpacing): the script passes image.GetSpacing(), which is (x, y, z),
//     as `sampling` to an array indexed (z, y, x), so the z and x spacings are swapped
//     (kOfficial replicates this, for leaderboard-comparable ASD); kCorrect uses the true
//     spacing of each axis. Dice and detection do not depend on it.
// Aggregation (compute_metrics): mean and std over cases per metric with pandas' defaults:
// NaN skipped, std with ddof = 1 (NaN with fewer than two values); the 999 sentinels are
// averaged like any other number.
//
// Where the script stops: a GT with no vertebra (or no disc) raises ZeroDivisionError in the
// detection rate; here that rate is NaN and the case says so in `notes`. An empty GT also
// leaves every mean NaN (np.mean([])).
//
// Speed: one pass over both images counts every (GT, prediction) label pair; the borders and
// EDTs of each matched pair run on the union of the two masks' bounding boxes plus one voxel.
// That is exact: the erosion of a voxel only sees its 26 neighbours (the margin, or the image
// border, which is background for both), and the EDT of a border's complement, sampled at the
// other border, only needs the positions of both borders' voxels, all inside the box.
// Distances come from metrics/distance_transform.h (exact, float64 inside, float32 out: a
// relative error below 6e-8 per distance).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::metrics {

enum class SpiderSpacing { kOfficial, kCorrect };

/// "official" or "correct"; std::invalid_argument otherwise.
SpiderSpacing parse_spider_spacing(const std::string& name);
const char* to_string(SpiderSpacing spacing);

/// The EDT spacing along the array axes (D, H, W) for an image whose ITK spacing is
/// `spacing_xyz`: official {sx, sy, sz} (the script's), correct {sz, sy, sx}.
std::array<double, 3> spider_edt_spacing(const std::array<double, 3>& spacing_xyz, SpiderSpacing spacing);

/// The ten metrics, in the order (and with the spelling) of the script's metric_columns.
enum SpiderMetric : int {
  kDiceScoreVertebrae,
  kDiceScoreDiscs,
  kDiceScoreSpinalCanal,
  kOveralDiceScore,
  kDetectionRateVertebrae,
  kDetectionRateDiscs,
  kASDVertebrae,
  kASDDiscs,
  kASDSpinalCanal,
  kOveralASD,
  kSpiderMetricCount
};
/// "DiceScoreVertebrae", ... , "OveralASD".
const std::array<const char*, kSpiderMetricCount>& spider_metric_names();

constexpr double kSpiderDetectionThreshold = 0.1;  ///< detection_threshold
constexpr double kSpiderNoCanal = 999;             ///< canal scores when the GT has no label 100

enum class SpiderCategory { kVertebra, kDisc, kCanal, kOther };
/// 0 < g < 100 vertebra, g > 200 disc, 100 canal, anything else (101..200) other.
SpiderCategory spider_category(int64_t gt_label);
const char* to_string(SpiderCategory category);

/// One GT label of a case.
struct SpiderLabelScore {
  int64_t label = 0;        ///< GT label
  int64_t match = 0;        ///< predicted label with the largest overlap; 0 = unmatched
  int64_t gt_voxels = 0, pred_voxels = 0, overlap = 0;  ///< |G|, |P| (P = pred == match), |G & P|
  double dice = 0;          ///< 0 when unmatched
  double asd = 0;           ///< mm; NaN when unmatched
  bool detected() const { return dice >= kSpiderDetectionThreshold; }
};

struct SpiderCaseScores {
  std::vector<SpiderLabelScore> labels;  ///< every GT label > 0, ascending
  std::array<double, kSpiderMetricCount> values{};  ///< indexed by SpiderMetric
  std::vector<std::string> notes;        ///< where the script would have stopped (see above)
};

/// Scores one case. `gt`, `pred`: (D, H, W) integer label images of the same shape on the CPU,
/// indexed (z, y, x) like SimpleITK's GetArrayFromImage; `spacing_xyz`: the GT's ITK spacing
/// (GetSpacing()). Runs at::get_num_threads() threads over the labels.
SpiderCaseScores spider_score_case(const at::Tensor& gt, const at::Tensor& pred, const std::array<double, 3>& spacing_xyz,
                                   SpiderSpacing spacing = SpiderSpacing::kOfficial);

struct SpiderSummary {
  std::array<double, kSpiderMetricCount> mean{}, std{};  ///< pandas: NaN skipped, ddof = 1
  int64_t cases = 0;
};

/// compute_metrics' aggregate over the cases.
SpiderSummary spider_aggregate(const std::vector<SpiderCaseScores>& cases);

/// The script's border of a (D, H, W) mask (non-zero = inside): mask XOR its binary erosion
/// by the 3x3x3 cube, voxels outside the image counting as background. Returns bool.
at::Tensor spider_border(const at::Tensor& mask);

/// average_surface_distance(a, b, spacing_zyx) of the script: the mean of the pooled
/// distances of b's border voxels to a's border and of a's to b's, in mm. Both masks must be
/// non-empty (std::invalid_argument otherwise, as the script's ValueError).
double spider_average_surface_distance(const at::Tensor& a, const at::Tensor& b,
                                       const std::array<double, 3>& spacing_zyx);

}  // namespace neuroseg::metrics
