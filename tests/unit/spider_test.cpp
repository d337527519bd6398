// metrics/spider (the official SPIDER evaluation.py reproduced) on hand-computed cases and on
// the fixture cases whose numbers the official script produced (tests/fixtures/spider, see
// its make_cases.py and run_official.py); pipelines/spine_instances on a synthetic stack.
// The CLI end to end, with bad input, is tests/slow/spider_vs_official.py.
#include <cmath>
#include <fstream>
#include <limits>

#include <doctest/doctest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "io/error.h"
#include "io/volume_io.h"
#include "metrics/spider.h"
#include "pipelines/spine_instances.h"

using namespace neuroseg;

namespace {

const std::string kFixtures = std::string(NEUROSEG_SOURCE_DIR) + "/tests/fixtures/spider";

at::Tensor row(const std::vector<int64_t>& values) {
  return at::tensor(values, at::kLong).reshape({1, 1, static_cast<int64_t>(values.size())});
}

bool same(double got, double want, double tol = 1e-6) {
  if (std::isnan(want)) return std::isnan(got);
  return std::abs(got - want) <= tol;
}

}  // namespace

TEST_SUITE("metrics_spider") {
  TEST_CASE("max-overlap matching: ties to the smallest label, not one-to-one") {
    // GT 1 holds predicted 5, 5, 3, 3 (a tie: 3 wins); GT 2 holds 3, 3, 0, 0 (also 3).
    const at::Tensor gt = row({1, 1, 1, 1, 2, 2, 2, 2, 0, 0});
    const at::Tensor pred = row({5, 5, 3, 3, 3, 3, 0, 0, 0, 0});
    const auto s = metrics::spider_score_case(gt, pred, {1, 1, 1});
    REQUIRE(s.labels.size() == 2);
    CHECK(s.labels[0].match == 3);
    CHECK(s.labels[1].match == 3);
    CHECK(s.labels[0].dice == doctest::Approx(0.5));  // 2*2 / (4 + 4)
    CHECK(s.labels[1].dice == doctest::Approx(0.5));
    CHECK(s.values[metrics::kDiceScoreVertebrae] == doctest::Approx(0.5));
    CHECK(s.values[metrics::kDiceScoreSpinalCanal] == metrics::kSpiderNoCanal);
    CHECK(s.values[metrics::kASDSpinalCanal] == metrics::kSpiderNoCanal);
    // No disc in the GT: the script divides by zero; here NaN and a note.
    CHECK(std::isnan(s.values[metrics::kDetectionRateDiscs]));
    CHECK(std::isnan(s.values[metrics::kDiceScoreDiscs]));
    CHECK(s.notes.size() == 1);
    CHECK(s.values[metrics::kDetectionRateVertebrae] == 1.0);
  }

  TEST_CASE("detection threshold: Dice exactly 0.1 is detected, just below is missed") {
    // Disc 201: 180 voxels, prediction 7 covers 10 of them + 10 outside: Dice = 20/200 = 0.1.
    // Disc 202: 181 voxels, prediction 8 the same: 20/201 < 0.1, missed (still matched: ASD).
    std::vector<int64_t> g(400, 0), p(400, 0);
    for (int i = 0; i < 180; ++i) g[i] = 201;
    for (int i = 200; i < 381; ++i) g[i] = 202;
    for (int i = 0; i < 10; ++i) p[i] = 7;
    for (int i = 180; i < 190; ++i) p[i] = 7;
    for (int i = 200; i < 210; ++i) p[i] = 8;
    for (int i = 381; i < 391; ++i) p[i] = 8;
    const auto s = metrics::spider_score_case(row(g), row(p), {1, 1, 1});
    CHECK(s.labels[0].dice == 0.1);
    CHECK(s.labels[0].detected());
    CHECK_FALSE(s.labels[1].detected());
    CHECK(s.values[metrics::kDiceScoreDiscs] == 0.1);
    CHECK(s.values[metrics::kDetectionRateDiscs] == 0.5);
    CHECK(s.values[metrics::kOveralDiceScore] == doctest::Approx((0.1 + 20.0 / 201) / 2));
    CHECK(std::isfinite(s.labels[1].asd));
    CHECK(std::isfinite(s.values[metrics::kASDDiscs]));
  }

  TEST_CASE("categories, unmatched labels and the overall means") {
    // 1 vertebra (matched), 2 vertebra (unmatched), 100 canal, 110 partial (other), 200 other.
    const at::Tensor gt = row({1, 1, 2, 2, 100, 100, 110, 110, 200, 200, 0});
    const at::Tensor pred = row({4, 4, 0, 0, 9, 0, 6, 6, 6, 6, 0});
    const auto s = metrics::spider_score_case(gt, pred, {1, 1, 1});
    CHECK(metrics::spider_category(99) == metrics::SpiderCategory::kVertebra);
    CHECK(metrics::spider_category(100) == metrics::SpiderCategory::kCanal);
    CHECK(metrics::spider_category(125) == metrics::SpiderCategory::kOther);
    CHECK(metrics::spider_category(200) == metrics::SpiderCategory::kOther);
    CHECK(metrics::spider_category(201) == metrics::SpiderCategory::kDisc);
    CHECK(s.labels[1].match == 0);
    CHECK(s.labels[1].dice == 0);
    CHECK(std::isnan(s.labels[1].asd));
    CHECK(s.values[metrics::kDiceScoreVertebrae] == 1.0);        // the unmatched one is missed
    CHECK(s.values[metrics::kDetectionRateVertebrae] == 0.5);
    CHECK(std::isnan(s.values[metrics::kASDVertebrae]));          // np.mean with a NaN
    CHECK(std::isnan(s.values[metrics::kOveralASD]));
    CHECK(s.values[metrics::kDiceScoreSpinalCanal] == doctest::Approx(2.0 / 3));
    // Labels 110 and 200 both match 6 (|6| = 4): Dice 2*2/(2+4) each.
    CHECK(s.values[metrics::kOveralDiceScore] == doctest::Approx((1.0 + 0 + 2.0 / 3 + 2.0 / 3 + 2.0 / 3) / 5));
  }

  TEST_CASE("border: the full 3x3x3 erosion, the image edge counting as background") {
    at::Tensor m = at::zeros({5, 5, 5}, at::kByte);
    m.slice(0, 1, 4).slice(1, 1, 4).slice(2, 1, 4).fill_(1);
    CHECK(metrics::spider_border(m).sum().item<int64_t>() == 26);  // all but the centre
    const at::Tensor full = at::ones({3, 4, 5}, at::kByte);
    CHECK(metrics::spider_border(full).sum().item<int64_t>() == 3 * 4 * 5 - 1 * 2 * 3);  // interior: 1 x 2 x 3
    // A plus-shaped (6-connected) neighbourhood is not enough to stay inside the erosion.
    at::Tensor plus = at::zeros({3, 3, 3}, at::kByte);
    plus[1].fill_(1);
    CHECK(metrics::spider_border(plus).sum().item<int64_t>() == 9);
  }

  TEST_CASE("ASD by hand and the spacing conventions") {
    at::Tensor a = at::zeros({3, 1, 1}, at::kByte), b = at::zeros({3, 1, 1}, at::kByte);
    a[0] = 1;
    b[2] = 1;
    CHECK(metrics::spider_average_surface_distance(a, b, {3.0, 1.0, 1.0}) == doctest::Approx(6.0));
    CHECK_THROWS(metrics::spider_average_surface_distance(a, at::zeros_like(a), {1, 1, 1}));
    const std::array<double, 3> xyz = {3.3, 0.6, 0.5};
    CHECK(metrics::spider_edt_spacing(xyz, metrics::SpiderSpacing::kOfficial) == std::array<double, 3>{3.3, 0.6, 0.5});
    CHECK(metrics::spider_edt_spacing(xyz, metrics::SpiderSpacing::kCorrect) == std::array<double, 3>{0.5, 0.6, 3.3});
    // GT {z=0}, prediction {z=0, z=2} along z: distances 0, 0 and 2 voxels, ASD = 2 s / 3 with
    // s = the spacing used along z: x's 3.3 mm (official) or z's 0.5 mm (correct).
    const at::Tensor g = at::tensor({1, 0, 0}, at::kLong).reshape({3, 1, 1}), p = at::tensor({1, 0, 1}, at::kLong).reshape({3, 1, 1});
    CHECK(metrics::spider_score_case(g, p, xyz, metrics::SpiderSpacing::kOfficial).labels[0].asd == doctest::Approx(2 * 3.3 / 3));
    CHECK(metrics::spider_score_case(g, p, xyz, metrics::SpiderSpacing::kCorrect).labels[0].asd == doctest::Approx(2 * 0.5 / 3));
  }

  TEST_CASE("per-label crops are exact: same ASD as on the whole volume") {
    at::manual_seed(7);
    // Random blobs: smoothed noise thresholded into a few labels, GT and a perturbed prediction.
    const at::Tensor noise = at::avg_pool3d(at::rand({1, 1, 22, 26, 30}), 5, 1, 2).squeeze();
    const at::Tensor gt = at::bucketize(noise, at::tensor({0.46, 0.5, 0.54})).to(at::kLong);
    at::Tensor pred = at::roll(gt, {1, -2}, {0, 2}) * 3;
    pred.slice(1, 0, 5).zero_();
    const std::array<double, 3> xyz = {0.7, 1.1, 3.3};
    for (auto mode : {metrics::SpiderSpacing::kOfficial, metrics::SpiderSpacing::kCorrect}) {
      const auto s = metrics::spider_score_case(gt, pred, xyz, mode);
      REQUIRE(s.labels.size() == 3);
      for (const auto& l : s.labels) {
        REQUIRE(l.match > 0);
        const double whole =
            metrics::spider_average_surface_distance(gt == l.label, pred == l.match, metrics::spider_edt_spacing(xyz, mode));
        CHECK(l.asd == doctest::Approx(whole).epsilon(1e-12));
      }
    }
  }

  TEST_CASE("aggregate: pandas mean and std (NaN skipped, ddof = 1)") {
    std::vector<metrics::SpiderCaseScores> cases(3);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double v[3] = {1.0, nan, 3.0};
    for (int i = 0; i < 3; ++i) {
      cases[i].values.fill(nan);
      cases[i].values[metrics::kDiceScoreVertebrae] = v[i];
    }
    cases[0].values[metrics::kDiceScoreDiscs] = 0.5;
    const auto s = metrics::spider_aggregate(cases);
    CHECK(s.mean[metrics::kDiceScoreVertebrae] == 2.0);
    CHECK(s.std[metrics::kDiceScoreVertebrae] == doctest::Approx(std::sqrt(2.0)));
    CHECK(s.mean[metrics::kDiceScoreDiscs] == 0.5);
    CHECK(std::isnan(s.std[metrics::kDiceScoreDiscs]));  // one value
    CHECK(std::isnan(s.mean[metrics::kOveralASD]));      // none
  }

  TEST_CASE("fixture cases: the official script's numbers to 1e-6, both spacings") {
    for (const char* mode : {"official", "correct"}) {
      std::ifstream f(kFixtures + "/expected_" + mode + ".json");
      REQUIRE(f.good());
      const nlohmann::json expected = nlohmann::json::parse(f);
      std::vector<metrics::SpiderCaseScores> all;
      for (const auto& [name, want] : expected["cases"].items()) {
        const io::Volume gt = io::read_volume(kFixtures + "/gt/masks/" + name + ".mha");
        const io::Volume pred = io::read_volume(kFixtures + "/pred/" + name + ".mha");
        all.push_back(metrics::spider_score_case(gt.data[0], pred.data[0], gt.geometry.spacing,
                                                 metrics::parse_spider_spacing(mode)));
        for (int k = 0; k < metrics::kSpiderMetricCount; ++k) {
          const auto& w = want[metrics::spider_metric_names()[k]];
          const double want_v = w.is_null() ? std::nan("") : w.get<double>();
          INFO(mode << " " << name << " " << metrics::spider_metric_names()[k] << ": " << all.back().values[k] << " vs "
                    << want_v);
          CHECK(same(all.back().values[k], want_v));
        }
      }
      const auto s = metrics::spider_aggregate(all);
      for (int k = 0; k < metrics::kSpiderMetricCount; ++k) {
        const auto& w = expected["aggregate"][metrics::spider_metric_names()[k]];
        for (const char* stat : {"mean", "std"}) {
          const double want_v = w[stat].is_null() ? std::nan("") : w[stat].get<double>();
          const double got = std::string(stat) == "mean" ? s.mean[k] : s.std[k];
          INFO(mode << " aggregate " << metrics::spider_metric_names()[k] << " " << stat << ": " << got << " vs " << want_v);
          CHECK(same(got, want_v));
        }
      }
    }
  }
}

namespace {

// A semantic spine along index axis y (1 vertebra, 2 disc, 3 canal) in (D, H, W) = (8, 40, 8),
// 1.5 mm voxels, with a one-voxel vertebra fragment and a small canal fragment:
//   y 1-2 disc | 3-8 vertebra | 9-10 disc | 11-16 vertebra | 17-18 disc | 19-24 vertebra |
//   25-26 disc | 27-39 vertebra (touching the y = 39 end of the field of view).
io::Volume semantic_stack(bool flipped) {
  at::Tensor t = at::zeros({8, 40, 8}, at::kByte);
  auto body = [&](int64_t y0, int64_t y1, int value) { t.slice(0, 1, 7).slice(1, y0, y1).slice(2, 1, 6).fill_(value); };
  body(1, 3, 2);
  body(3, 9, 1);
  body(9, 11, 2);
  body(11, 17, 1);
  body(17, 19, 2);
  body(19, 25, 1);
  body(25, 27, 2);
  body(27, 40, 1);
  t.slice(0, 1, 7).slice(1, 0, 40).slice(2, 7, 8).fill_(3);  // canal along the whole y range
  t[0][20][0] = 1;                                             // vertebra fragment
  t[7][5][0] = 3;                                              // canal fragment
  io::Volume v;
  v.geometry.spacing = {1.5, 1.5, 1.5};
  v.geometry.origin = {10, -20, 35};
  // Index x -> L, index y -> S (or I when flipped), index z -> P.
  v.geometry.direction = {1, 0, 0, 0, 0, 1, 0, flipped ? -1.0 : 1.0, 0};
  if (flipped) t = t.flip({1}).contiguous();
  v.data = t.unsqueeze(0);
  v.source.dtype = io::DType::UInt8;
  return v;
}

}  // namespace

TEST_SUITE("pipelines_spine_instances") {
  TEST_CASE("numbering from the bottom, discs below their vertebra, partial and fragments") {
    pipelines::SpineInstanceSummary s;
    const io::Volume out = pipelines::spine_instances(semantic_stack(false), {}, &s);
    const at::Tensor l = out.data[0];
    CHECK((out.data.scalar_type() == at::kByte));
    auto at_y = [&](int64_t y) { return l[3][y][3].item<int64_t>(); };
    CHECK(at_y(1) == 201);   // the lowest disc (sacrum below): L5/S1
    CHECK(at_y(5) == 1);     // the lowest vertebra
    CHECK(at_y(10) == 202);  // below vertebra 2
    CHECK(at_y(14) == 2);
    CHECK(at_y(18) == 203);
    CHECK(at_y(22) == 3);
    CHECK(at_y(26) == 204);
    CHECK(at_y(30) == 104);  // cut by the field of view: partial, 100 + 4
    CHECK(l[3][20][7].item<int64_t>() == 100);
    CHECK(l[0][20][0].item<int64_t>() == 0);  // fragments dropped
    CHECK(l[7][5][0].item<int64_t>() == 0);
    CHECK(s.vertebrae == 4);
    CHECK(s.partial_vertebrae == 1);
    CHECK(s.discs == 4);
    CHECK(s.dropped_components == 2);
    CHECK(s.canal);
  }

  TEST_CASE("a flipped direction matrix still numbers from the physical bottom") {
    // The same anatomy stored upside down (index y runs inferior): flipping the result back
    // gives the same labels.
    const io::Volume up = pipelines::spine_instances(semantic_stack(false));
    const io::Volume down = pipelines::spine_instances(semantic_stack(true));
    CHECK(at::equal(down.data.flip({2}), up.data));
    pipelines::SpineInstanceOptions o;
    o.mark_partial = false;
    CHECK(pipelines::spine_instances(semantic_stack(true), o).data[0][3][39 - 30][3].item<int64_t>() == 4);
  }

  TEST_CASE("labels other than the three classes are an error naming the volume") {
    io::Volume v = semantic_stack(false);
    v.source.path = "case7_seg.nii.gz";
    v.data[0][2][2][2] = 7;
    std::string message;
    try {
      pipelines::spine_instances(v);
    } catch (const io::Error& e) {
      message = e.what();
    }
    CHECK(message.find("case7_seg.nii.gz") == 0);
    CHECK(message.find("found 7") != std::string::npos);
  }
}
