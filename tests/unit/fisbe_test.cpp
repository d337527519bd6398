// metrics/fisbe (the official FISBe evaluator reproduced) on hand-checkable cases and
// identities, pooling arithmetic, and pipelines/neuron_instances on a synthetic stack. The
// agreement with the official evaluator on purpose-built volumes is
// tests/slow/fisbe_vs_official.py.
#include <cmath>

#include <doctest/doctest.h>

#include <ATen/ATen.h>

#include "io/error.h"
#include "metrics/fisbe.h"
#include "pipelines/neuron_instances.h"

using namespace neuroseg;

namespace {

/// A straight 5x5 tube along x: 2000 voxels (clears the 800-voxel filter).
at::Tensor tube(int64_t Z = 9, int64_t Y = 9, int64_t X = 80) {
  at::Tensor t = at::zeros({Z, Y, X}, at::kByte);
  t.slice(0, 2, 7).slice(1, 2, 7).fill_(1);
  return t;
}

double f(const metrics::FisbeVolumeResult& r, const std::vector<float>& m, int64_t g, int64_t p) {
  return m[g * (r.num_pred + 1) + p];
}

}  // namespace

TEST_SUITE("metrics_fisbe") {
  TEST_CASE("a perfect prediction scores 1 everywhere") {
    const at::Tensor gt = tube().unsqueeze(0);
    const auto r = metrics::evaluate_fisbe_volume(gt.clone(), (tube().to(at::kInt) * 7), {});
    CHECK(r.num_gt == 1);
    CHECK(r.num_pred == 1);
    CHECK(r.thresholds.size() == 14);
    for (const auto& t : r.thresholds) CHECK(t.tp == 1);
    CHECK(r.av_f1 == doctest::Approx(1.0));
    CHECK(r.avg_gt_coverage == doctest::Approx(1.0));
    CHECK(r.avg_f1_cov_score == doctest::Approx(1.0));
    CHECK(r.tp_05_cldice.size() == 1);
    CHECK(r.tp_05_cldice[0] == doctest::Approx(1.0));
    CHECK(r.false_splits == 0);
    CHECK(r.false_merges == 0);
  }

  TEST_CASE("a split neuron: clRecall rows sum to 1, one false split, full coverage") {
    const at::Tensor gt = tube().unsqueeze(0);
    at::Tensor pred = tube().to(at::kInt);
    pred.slice(2, 40, 80).mul_(2);  // two halves of 1000 voxels: ids 1 and 2
    const auto r = metrics::evaluate_fisbe_volume(gt, pred, {});
    REQUIRE(r.num_pred == 2);
    const double sum = f(r, r.recall, 1, 0) + f(r, r.recall, 1, 1) + f(r, r.recall, 1, 2);
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
    CHECK(f(r, r.recall, 1, 0) == 0.0);  // the halves cover the whole skeleton
    CHECK(f(r, r.precision, 1, 1) == doctest::Approx(1.0));
    CHECK(r.false_splits == 1);
    CHECK(r.false_merges == 0);
    CHECK(r.gt_coverage.size() == 1);
    CHECK(r.gt_coverage[0] == doctest::Approx(1.0).epsilon(1e-6));
    CHECK(r.thresholds[0].tp == 1);  // th 0.1: one half matches, the other is a FP
    CHECK(r.thresholds[0].fp == 1);
  }

  TEST_CASE("the 800-voxel filter counts a value over all channels, <= 800 is dropped") {
    at::Tensor pred = at::zeros({2, 9, 9, 80}, at::kInt);
    pred[0].slice(0, 0, 4).slice(1, 0, 5).slice(2, 0, 40).fill_(3);  // 800 voxels: dropped
    pred[0].slice(0, 5, 9).slice(1, 0, 5).slice(2, 0, 20).fill_(4);  // 400 ...
    pred[1].slice(0, 5, 9).slice(1, 5, 9).slice(2, 0, 26).fill_(4);  // ... + 416 in channel 1: kept
    const auto r = metrics::evaluate_fisbe_volume(tube().unsqueeze(0), pred, {});
    CHECK(r.removed_small == 1);
    CHECK(r.num_pred == 2);  // value 4 in two channels: two instances
  }

  TEST_CASE("empty prediction; partly-labelled FP rule") {
    const at::Tensor gt = tube().unsqueeze(0);
    const auto empty = metrics::evaluate_fisbe_volume(gt, at::zeros({9, 9, 80}, at::kInt), {});
    CHECK(empty.num_pred == 0);
    CHECK(empty.avg_f1_cov_score == 0.0);
    CHECK(empty.thresholds[4].fn == 1);
    // A prediction where the GT has nothing (an unlabelled neuron): FP only when completely labelled.
    at::Tensor pred = at::zeros({18, 9, 80}, at::kInt);
    pred.slice(0, 0, 9).copy_(tube());
    pred.slice(0, 11, 16).slice(1, 2, 7).fill_(5);
    at::Tensor gt2 = at::zeros({1, 18, 9, 80}, at::kByte);
    gt2[0].slice(0, 0, 9).copy_(tube());
    metrics::FisbeOptions partly;
    partly.partly = true;
    const auto c = metrics::evaluate_fisbe_volume(gt2, pred, {});
    const auto p = metrics::evaluate_fisbe_volume(gt2, pred, partly);
    CHECK(c.thresholds[4].fp == 1);
    CHECK(p.thresholds[4].fp == 0);
    CHECK(p.thresholds[4].false_split == 0);
    CHECK(c.thresholds[4].false_split == -1);
  }

  TEST_CASE("bad input: incompatible shapes, negative and non-integer labels") {
    CHECK_THROWS_AS(metrics::evaluate_fisbe_volume(at::zeros({1, 9, 9, 80}, at::kByte), at::zeros({10, 8, 80}, at::kInt)),
                    io::Error);
    CHECK_THROWS_AS(metrics::evaluate_fisbe_volume(tube().unsqueeze(0), at::full({9, 9, 80}, -1, at::kInt)), io::Error);
    CHECK_THROWS_AS(metrics::evaluate_fisbe_volume(tube().unsqueeze(0), at::full({9, 9, 80}, 0.5, at::kFloat)), io::Error);
    // A larger prediction is centre-cropped, with a warning.
    at::Tensor big = at::zeros({11, 11, 80}, at::kInt);
    big.slice(0, 1, 10).slice(1, 1, 10).copy_(tube());
    const auto r = metrics::evaluate_fisbe_volume(tube().unsqueeze(0), big);
    CHECK(r.avg_f1_cov_score == doctest::Approx(1.0));
    CHECK(r.warnings.size() == 1);
  }

  TEST_CASE("pooling a set and combining two sets (summarize.py)") {
    metrics::FisbeVolumeResult a, b;
    for (double th : metrics::fisbe_thresholds()) {
      a.thresholds.push_back({th, 1, 0, 1});  // TP 1, FP 0, FN 1
      b.thresholds.push_back({th, 0, 1, 1});
    }
    a.num_gt = 2, b.num_gt = 1, a.tp_05 = 1;
    a.gt_coverage = {1.0, 0.0};
    b.gt_coverage = {0.5};
    a.tp_05_cldice = {0.8};
    a.false_splits = 2, b.false_merges = 3;
    const metrics::FisbeSetScores s = metrics::pool_fisbe_volumes({&a, &b});
    CHECK(s.fscore[0] == doctest::Approx(2.0 / (2.0 + 1.0 + 2.0)));  // 2 TP / (2 TP + FP + FN)
    CHECK(s.coverage == doctest::Approx(0.5));                       // over instances, not volumes
    CHECK(s.score == doctest::Approx(0.5 * 0.4 + 0.5 * 0.5));
    CHECK(s.tp_05_rel == doctest::Approx(1.0 / 3.0));
    CHECK(s.cldice_tp == doctest::Approx(0.8));
    const metrics::FisbeSetScores t = metrics::pool_fisbe_volumes({&b});
    const metrics::FisbeCombinedScores c = metrics::combine_fisbe_sets(s, t);
    CHECK(c.score == doctest::Approx(0.5 * (s.score + t.score)));
    CHECK(c.coverage == doctest::Approx(0.5 * (0.5 + 0.5)));
    CHECK(c.pooled.false_merges == 6);
    CHECK(c.pooled.false_splits == 2);
    CHECK(c.cldice_tp_pooled == doctest::Approx(0.8));
    CHECK(c.cldice_tp_mean_of_sets == doctest::Approx(0.4));  // the empty set's clDice_TP is 0
  }
}

TEST_SUITE("pipelines_neuron_instances") {
  TEST_CASE("crossing neurons of different colours separate; same colour splits by connectivity") {
    const int64_t Z = 12, Y = 60, X = 60;
    at::Tensor fg = at::zeros({Z, Y, X}, at::kByte);
    at::Tensor raw = at::full({3, Z, Y, X}, 100.0f);
    auto paint = [&](at::Tensor region, std::vector<float> rgb) {
      fg.masked_fill_(region, 1);
      for (int c = 0; c < 3; ++c) raw[c].masked_fill_(region, 100.0f + rgb[c]);
    };
    at::Tensor a = at::zeros({Z, Y, X}, at::kBool), b = a.clone(), c = a.clone(), d = a.clone();
    a.slice(0, 3, 9).slice(1, 27, 33).fill_(true);                      // along x, red
    b.slice(0, 3, 9).slice(1, 0, 40).slice(2, 27, 33).fill_(true);     // along y, green, crossing a
    c.slice(0, 3, 9).slice(1, 50, 56).slice(2, 5, 55).fill_(true);      // far away, red again
    d.slice(0, 0, 2).slice(1, 0, 3).slice(2, 0, 3).fill_(true);         // a tiny fragment
    paint(a, {900, 100, 100});
    paint(b & a.logical_not(), {100, 900, 100});
    paint(c, {900, 100, 100});
    paint(d, {100, 100, 900});
    pipelines::NeuronInstanceOptions o;
    o.min_voxels = 100;
    const at::Tensor ids = pipelines::neuron_instances(fg, raw, o);
    CHECK((ids.scalar_type() == at::kInt));
    CHECK(ids.masked_select(d).eq(0).all().item<bool>());  // under min_voxels
    // Each structure is (almost) one instance: colours mix only within a voxel of the crossing.
    auto dominant = [&](const at::Tensor& region) {
      const at::Tensor v = ids.masked_select(region);
      const int id = std::get<0>(v.mode()).item<int>();
      return std::make_pair(id, v.eq(id).to(at::kFloat).mean().item<double>());
    };
    const auto [a_id, a_share] = dominant(a);
    const auto [c_id, c_share] = dominant(c);
    const auto [b_id, b_share] = dominant(b & a.logical_not());
    CHECK(a_share > 0.9);
    CHECK(c_share > 0.99);
    CHECK(a_id != 0);
    CHECK(a_id != c_id);  // same colour, not connected
    CHECK(b_id != a_id);  // crossing, different colour
    CHECK(b_id != 0);
    CHECK(ids.max().item<int>() >= 4);  // a, c and b cut in two by a
    // One channel: connected components only; c is 10 voxels from b's end, beyond the bridge.
    const at::Tensor cc = pipelines::neuron_instances(fg, raw.slice(0, 0, 1), o);
    CHECK(cc.max().item<int>() == 2);  // a+b, and c (d too small)
    o.bridge = 5;  // ... and within this one: one neuron broken by the foreground
    CHECK(pipelines::neuron_instances(fg, raw.slice(0, 0, 1), o).max().item<int>() == 1);
    CHECK_THROWS_AS(pipelines::neuron_instances(fg, raw.slice(1, 0, 5), o), io::Error);
  }
}
