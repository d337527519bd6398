#include "metrics/spider.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "metrics/distance_transform.h"
#include "metrics/overlap.h"

namespace neuroseg::metrics {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// np.mean of a list: NaN for an empty list and whenever one value is NaN.
double numpy_mean(const std::vector<double>& v) {
  if (v.empty()) return kNaN;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

// Index of `value` in the ascending `labels`, or -1.
int64_t index_of(const std::vector<int64_t>& labels, int64_t value) {
  const auto it = std::lower_bound(labels.begin(), labels.end(), value);
  return it != labels.end() && *it == value ? it - labels.begin() : -1;
}

// The non-zero labels of an image the script sees (values > 0), ascending.
std::vector<int64_t> foreground_labels(const at::Tensor& image) {
  std::vector<int64_t> l = present_labels(image);
  l.erase(l.begin(), std::upper_bound(l.begin(), l.end(), int64_t{0}));
  return l;
}

}  // namespace

SpiderSpacing parse_spider_spacing(const std::string& name) {
  if (name == "official") return SpiderSpacing::kOfficial;
  if (name == "correct") return SpiderSpacing::kCorrect;
  throw std::invalid_argument("unknown SPIDER spacing '" + name + "' (official or correct)");
}

const char* to_string(SpiderSpacing spacing) { return spacing == SpiderSpacing::kOfficial ? "official" : "correct"; }

std::array<double, 3> spider_edt_spacing(const std::array<double, 3>& sp, SpiderSpacing spacing) {
  // evaluation.py: spacing = np.array(image.GetSpacing()) -> (x, y, z), used as `sampling`
  // of distance_transform_edt on the (z, y, x) array.
  if (spacing == SpiderSpacing::kOfficial) return {sp[0], sp[1], sp[2]};
  return {sp[2], sp[1], sp[0]};
}

const std::array<const char*, kSpiderMetricCount>& spider_metric_names() {
  static const std::array<const char*, kSpiderMetricCount> names = {
      "DiceScoreVertebrae",     "DiceScoreDiscs",     "DiceScoreSpinalCanal", "OveralDiceScore", "DetectionRateVertebrae",
      "DetectionRateDiscs",     "ASDVertebrae",       "ASDDiscs",             "ASDSpinalCanal",  "OveralASD"};
  return names;
}

SpiderCategory spider_category(int64_t g) {
  if (g > 0 && g < 100) return SpiderCategory::kVertebra;
  if (g > 200) return SpiderCategory::kDisc;
  if (g == 100) return SpiderCategory::kCanal;
  return SpiderCategory::kOther;
}

const char* to_string(SpiderCategory c) {
  switch (c) {
    case SpiderCategory::kVertebra: return "vertebra";
    case SpiderCategory::kDisc: return "disc";
    case SpiderCategory::kCanal: return "canal";
    default: return "other";
  }
}

at::Tensor spider_border(const at::Tensor& mask_in) {
  TORCH_CHECK(mask_in.dim() == 3, "spider_border: a (D, H, W) mask");
  const at::Tensor mask = (mask_in.cpu() != 0).contiguous();
  const int64_t D = mask.size(0), H = mask.size(1), W = mask.size(2);
  at::Tensor border = at::zeros_like(mask);
  const bool* m = mask.data_ptr<bool>();
  bool* b = border.data_ptr<bool>();
  // A set voxel stays after the erosion by the 3x3x3 cube only when all 26 neighbours are set
  // and inside the image (scipy's binary_erosion, border_value = 0): the border is the rest.
  at::parallel_for(0, D, 1, [&](int64_t z0, int64_t z1) {
    for (int64_t z = z0; z < z1; ++z)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const int64_t i = (z * H + y) * W + x;
          if (!m[i]) continue;
          bool interior = z > 0 && z < D - 1 && y > 0 && y < H - 1 && x > 0 && x < W - 1;
          for (int64_t dz = -1; interior && dz <= 1; ++dz)
            for (int64_t dy = -1; interior && dy <= 1; ++dy)
              for (int64_t dx = -1; interior && dx <= 1; ++dx)
                if (!m[i + (dz * H + dy) * W + dx]) interior = false;
          b[i] = !interior;
        }
  });
  return border;
}

double spider_average_surface_distance(const at::Tensor& a, const at::Tensor& b, const std::array<double, 3>& spacing_zyx) {
  TORCH_CHECK(a.sizes() == b.sizes(), "spider_average_surface_distance: masks differ in shape");
  const at::Tensor border_a = spider_border(a), border_b = spider_border(b);
  if (!border_a.any().item<bool>() || !border_b.any().item<bool>())
    throw std::invalid_argument("Cannot compute surface distance if there are no foreground pixels in the image");
  // surface_distances(manual, automatic): EDT of ~manual_border, read at automatic_border;
  // the symmetric ASD pools both directions: float(np.concatenate((sd1, sd2)).mean()).
  double sum = 0;
  int64_t count = 0;
  for (const auto& [from, to] : {std::pair{&border_a, &border_b}, std::pair{&border_b, &border_a}}) {
    const at::Tensor dt = distance_transform_edt(from->logical_not(), spacing_zyx).contiguous();
    const float* d = dt.data_ptr<float>();
    const bool* at_border = to->data_ptr<bool>();
    const int64_t n = dt.numel();
    for (int64_t i = 0; i < n; ++i)
      if (at_border[i]) {
        sum += d[i];
        ++count;
      }
  }
  return sum / static_cast<double>(count);
}

SpiderCaseScores spider_score_case(const at::Tensor& gt_in, const at::Tensor& pred_in, const std::array<double, 3>& spacing_xyz,
                                   SpiderSpacing spacing) {
  if (gt_in.dim() != 3 || pred_in.dim() != 3 || gt_in.sizes() != pred_in.sizes())
    throw std::invalid_argument("spider_score_case: GT and prediction must be (D, H, W) images of one shape");
  const at::Tensor gt = gt_in.cpu().to(at::kLong).contiguous(), pred = pred_in.cpu().to(at::kLong).contiguous();
  const std::vector<int64_t> gt_labels = foreground_labels(gt), pred_labels = foreground_labels(pred);
  const size_t ng = gt_labels.size(), np_ = pred_labels.size();

  // One pass: |G_g|, |P_m| and |G_g & P_m| for every GT label g and predicted label m.
  std::vector<int64_t> gt_size(ng, 0), pred_size(np_, 0), overlap(ng * np_, 0);
  {
    const int64_t* g = gt.data_ptr<int64_t>();
    const int64_t* p = pred.data_ptr<int64_t>();
    const int64_t n = gt.numel();
    int64_t last_g = 0, last_p = 0, gi = -1, pi = -1;  // runs of one label are the common case
    for (int64_t i = 0; i < n; ++i) {
      const int64_t gv = g[i], pv = p[i];
      if (gv > 0) {
        if (gv != last_g) { last_g = gv; gi = index_of(gt_labels, gv); }
        ++gt_size[static_cast<size_t>(gi)];
      }
      if (pv > 0) {
        if (pv != last_p) { last_p = pv; pi = index_of(pred_labels, pv); }
        ++pred_size[static_cast<size_t>(pi)];
        if (gv > 0) ++overlap[static_cast<size_t>(gi) * np_ + static_cast<size_t>(pi)];
      }
    }
  }

  SpiderCaseScores out;
  out.labels.resize(ng);
  std::vector<int64_t> match_index(ng, -1);
  for (size_t i = 0; i < ng; ++i) {
    SpiderLabelScore& s = out.labels[i];
    s.label = gt_labels[i];
    s.gt_voxels = gt_size[i];
    // bincount(...).argmax(): the first (smallest) label among the largest overlaps.
    int64_t best = 0;
    for (size_t j = 0; j < np_; ++j)
      if (overlap[i * np_ + j] > best) {
        best = overlap[i * np_ + j];
        match_index[i] = static_cast<int64_t>(j);
      }
    if (match_index[i] < 0) {
      s.dice = 0;
      s.asd = kNaN;
      continue;
    }
    const size_t j = static_cast<size_t>(match_index[i]);
    s.match = pred_labels[j];
    s.pred_voxels = pred_size[j];
    s.overlap = best;
    // dice_score: 2 * count(m1 & m2) / float(count(m1) + count(m2)), the same two roundings.
    s.dice = static_cast<double>(2 * best) / static_cast<double>(gt_size[i] + pred_size[j]);
  }

  // ASD of every matched label on the union of both boxes + 1 voxel (exact, see the header).
  std::vector<int64_t> matched_pred;
  for (size_t i = 0; i < ng; ++i)
    if (match_index[i] >= 0) matched_pred.push_back(out.labels[i].match);
  std::sort(matched_pred.begin(), matched_pred.end());
  matched_pred.erase(std::unique(matched_pred.begin(), matched_pred.end()), matched_pred.end());
  const std::vector<LabelBox> gt_boxes = label_boxes(gt, gt_labels);
  const std::vector<LabelBox> pred_boxes = label_boxes(pred, matched_pred);
  const std::array<double, 3> edt_spacing = spider_edt_spacing(spacing_xyz, spacing);
  at::parallel_for(0, static_cast<int64_t>(ng), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      SpiderLabelScore& s = out.labels[static_cast<size_t>(i)];
      if (s.match == 0) continue;
      const LabelBox box =
          gt_boxes[static_cast<size_t>(i)].merged(pred_boxes[static_cast<size_t>(index_of(matched_pred, s.match))]);
      at::Tensor gc = gt, pc = pred;
      for (int a = 0; a < 3; ++a) {
        const int64_t b = std::max<int64_t>(box.lo[a] - 1, 0), e = std::min<int64_t>(box.hi[a] + 2, gt.size(a));
        gc = gc.slice(a, b, e);
        pc = pc.slice(a, b, e);
      }
      s.asd = spider_average_surface_distance(gc == s.label, pc == s.match, edt_spacing);
    }
  });

  // The per-case numbers, in the script's order of operations.
  std::vector<double> dice_vert, dice_discs, all_dice, asd_vert, asd_discs, all_asd;
  int64_t total_vert = 0, total_discs = 0, missed_vert = 0, missed_discs = 0;
  double dice_canal = kSpiderNoCanal, asd_canal = kSpiderNoCanal;
  for (const SpiderLabelScore& s : out.labels) {
    switch (spider_category(s.label)) {
      case SpiderCategory::kVertebra:
        ++total_vert;
        if (s.detected()) dice_vert.push_back(s.dice); else ++missed_vert;
        asd_vert.push_back(s.asd);
        break;
      case SpiderCategory::kDisc:
        ++total_discs;
        if (s.detected()) dice_discs.push_back(s.dice); else ++missed_discs;
        asd_discs.push_back(s.asd);
        break;
      case SpiderCategory::kCanal:
        dice_canal = s.dice;
        asd_canal = s.asd;
        break;
      case SpiderCategory::kOther:
        break;
    }
    all_dice.push_back(s.dice);
    all_asd.push_back(s.asd);
  }
  auto rate = [&](int64_t total, int64_t missed, const char* what) {
    if (total > 0) return static_cast<double>(total - missed) / static_cast<double>(total);
    out.notes.push_back(std::string("the ground truth has no ") + what +
                        " (evaluation.py stops here with ZeroDivisionError); its detection rate is NaN");
    return kNaN;
  };
  auto& v = out.values;
  v[kDiceScoreVertebrae] = numpy_mean(dice_vert);
  v[kDiceScoreDiscs] = numpy_mean(dice_discs);
  v[kDiceScoreSpinalCanal] = dice_canal;
  v[kOveralDiceScore] = numpy_mean(all_dice);
  v[kDetectionRateVertebrae] = rate(total_vert, missed_vert, "vertebra");
  v[kDetectionRateDiscs] = rate(total_discs, missed_discs, "disc");
  v[kASDVertebrae] = numpy_mean(asd_vert);
  v[kASDDiscs] = numpy_mean(asd_discs);
  v[kASDSpinalCanal] = asd_canal;
  v[kOveralASD] = numpy_mean(all_asd);
  return out;
}

SpiderSummary spider_aggregate(const std::vector<SpiderCaseScores>& cases) {
  SpiderSummary s;
  s.cases = static_cast<int64_t>(cases.size());
  for (int k = 0; k < kSpiderMetricCount; ++k) {
    // pandas Series.mean() / .std(): NaN skipped; var = sum((x - mean)^2) / (n - 1).
    std::vector<double> x;
    for (const auto& c : cases)
      if (!std::isnan(c.values[static_cast<size_t>(k)])) x.push_back(c.values[static_cast<size_t>(k)]);
    const double mean = numpy_mean(x);
    double var = kNaN;
    if (x.size() > 1) {
      double ss = 0;
      for (double xi : x) ss += (xi - mean) * (xi - mean);
      var = ss / static_cast<double>(x.size() - 1);
    }
    s.mean[static_cast<size_t>(k)] = mean;
    s.std[static_cast<size_t>(k)] = std::sqrt(var);
  }
  return s;
}

}  // namespace neuroseg::metrics
