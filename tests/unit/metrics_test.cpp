// metrics/overlap and metrics/surface_distance on hand-computed cases; pipelines/evaluate's
// case matching and bad input. (The agreement with MONAI on real atlases is
// tests/slow/evaluate_vs_monai.py.)
#include <cmath>
#include <fstream>

#include <doctest/doctest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "io/volume_io.h"
#include "metrics/connected_components.h"
#include "metrics/overlap.h"
#include "metrics/surface_distance.h"
#include "pipelines/evaluate.h"
#include "support/test_support.h"

using namespace neuroseg;

TEST_SUITE("metrics_overlap") {
  TEST_CASE("confusion counts and ratios, by hand") {
    // pred: 1 1 2 2 0 0 ; ref: 1 2 2 0 0 1
    const at::Tensor pred = at::tensor({1, 1, 2, 2, 0, 0}, at::kByte).reshape({1, 2, 3});
    const at::Tensor ref = at::tensor({1, 2, 2, 0, 0, 1}, at::kByte).reshape({1, 2, 3});
    const auto c = metrics::label_counts(pred, ref, {1, 2, 7});
    CHECK(c[0].tp == 1); CHECK(c[0].fp == 1); CHECK(c[0].fn == 1); CHECK(c[0].tn == 3);
    CHECK(c[1].tp == 1); CHECK(c[1].fp == 1); CHECK(c[1].fn == 1);
    CHECK(c[2].tp == 0); CHECK(c[2].fp == 0); CHECK(c[2].fn == 0); CHECK(c[2].tn == 6);
    const auto m = metrics::overlap_metrics(c[0]);
    CHECK(m.dice == doctest::Approx(0.5));
    CHECK(m.iou == doctest::Approx(1.0 / 3));
    CHECK(m.precision == doctest::Approx(0.5));
    CHECK(m.recall == doctest::Approx(0.5));
    CHECK(m.volume_difference == doctest::Approx(0.0));
    const auto absent = metrics::overlap_metrics(c[2]);  // nnU-Net: undefined, not 0 or 1
    CHECK(std::isnan(absent.dice));
    CHECK(std::isnan(absent.recall));
    CHECK(metrics::present_labels(ref) == std::vector<int64_t>{1, 2});
  }

  TEST_CASE("the dense one-pass counts equal the per-label tensor path (huge label values)") {
    at::manual_seed(3);
    const at::Tensor a = at::randint(0, 4, {6, 7, 8}, at::kInt), b = at::randint(0, 4, {6, 7, 8}, at::kInt);
    const auto dense = metrics::label_counts(a, b, {1, 2, 3});
    // Shifting every non-zero label by 2^30 forces the range-independent path.
    const int64_t big = int64_t{1} << 30;
    const auto sparse = metrics::label_counts(at::where(a > 0, a + big, a), at::where(b > 0, b + big, b),
                                              {1 + big, 2 + big, 3 + big});
    for (size_t i = 0; i < 3; ++i) {
      CHECK(dense[i].tp == sparse[i].tp);
      CHECK(dense[i].fp == sparse[i].fp);
      CHECK(dense[i].fn == sparse[i].fn);
      CHECK(dense[i].tp == ((a == int64_t(i + 1)) & (b == int64_t(i + 1))).sum().item<int64_t>());
    }
  }
}

TEST_SUITE("metrics_surface") {
  TEST_CASE("surface voxels: 6-connected erosion, the image border counts as outside; both paths agree") {
    at::Tensor m = at::zeros({5, 5, 5}, at::kByte);
    m.slice(0, 1, 4).slice(1, 1, 4).slice(2, 1, 4).fill_(1);  // 3x3x3 cube: all but the centre
    const at::Tensor s = metrics::surface_voxels(m);
    CHECK(s.sum().item<int64_t>() == 26);
    CHECK_FALSE(s[2][2][2].item<bool>());
    const at::Tensor full = metrics::surface_voxels(at::ones({3, 4, 5}));
    CHECK(full.sum().item<int64_t>() == 3 * 4 * 5 - 1 * 2 * 3);  // the border shell
    at::manual_seed(5);
    for (int t = 0; t < 3; ++t) {
      const at::Tensor r = at::rand({7 + t, 6, 9 - t}) > 0.3;
      CHECK(at::equal(metrics::detail::surface_voxels_cpu(r), metrics::detail::surface_voxels_tensor_ops(r)));
    }
  }

  TEST_CASE("distances, HD, HD95, ASSD, NSD by hand, anisotropic") {
    // Two single voxels 3 voxels apart along x with spacing 2 mm: every distance is 6 mm.
    at::Tensor a = at::zeros({3, 3, 8}, at::kByte), b = at::zeros({3, 3, 8}, at::kByte);
    a[1][1][1] = 1;
    b[1][1][4] = 1;
    const auto d = metrics::surface_distances(a, b, {1.0, 1.0, 2.0});
    REQUIRE(d.pred_to_ref.numel() == 1);
    CHECK(d.pred_to_ref[0].item<float>() == doctest::Approx(6.0));
    auto m = metrics::surface_metrics(d, 5.0);
    CHECK(m.hd == doctest::Approx(6.0));
    CHECK(m.hd95 == doctest::Approx(6.0));
    CHECK(m.assd == doctest::Approx(6.0));
    CHECK(m.nsd == doctest::Approx(0.0));
    CHECK(metrics::surface_metrics(d, 6.0).nsd == doctest::Approx(1.0));
    // A 1x1x2 bar against one of its voxels: pred->ref {0, 1.5}, ref->pred {0}.
    at::Tensor bar = at::zeros({2, 2, 2}, at::kByte);
    bar[0][0][0] = 1;
    bar[1][0][0] = 1;
    at::Tensor one = at::zeros({2, 2, 2}, at::kByte);
    one[0][0][0] = 1;
    m = metrics::surface_metrics(metrics::surface_distances(bar, one, {1.5, 1.0, 1.0}), 1.0);
    CHECK(m.hd == doctest::Approx(1.5));
    CHECK(m.hd95 == doctest::Approx(1.5 * 0.95));  // numpy: 0 + (1.5 - 0) * 0.95
    CHECK(m.assd == doctest::Approx(0.5));
    CHECK(m.nsd == doctest::Approx(2.0 / 3));
  }

  TEST_CASE("the CPU nearest-neighbour search (grid, k-d tree, both) equals the EDT path, near and far, anisotropic") {
    at::manual_seed(9);
    for (int t = 0; t < 6; ++t) {
      const int64_t D = 9 + 7 * t, H = 20 - t, W = 11 + 3 * t;
      at::Tensor a = at::rand({D, H, W}) > (t % 2 ? 0.97 : 0.5);
      at::Tensor b = at::roll(a, {t}, {0}) & (at::rand({D, H, W}) > 0.2);
      if (t == 5) b = at::zeros({D, H, W}, at::kBool), b[D - 1][H - 1][W - 1] = true;  // one far target
      const at::Tensor sa = metrics::surface_voxels(a), sb = metrics::surface_voxels(b);
      if (sa.sum().item<int64_t>() == 0 || sb.sum().item<int64_t>() == 0) continue;
      const std::array<double, 3> sp{0.9, 2.1, 1.3};
      const auto e = metrics::detail::surface_distances_edt(sa, sb, sp);
      for (const double search_mm : {-1.0, 0.0, 2.5}) {  // default radius, k-d tree only, a short radius
        CAPTURE(search_mm);
        const auto g = metrics::detail::surface_distances_search(sa, sb, sp, search_mm);
        CHECK(at::allclose(e.pred_to_ref, g.pred_to_ref, 1e-6, 1e-6));
        CHECK(at::allclose(e.ref_to_pred, g.ref_to_pred, 1e-6, 1e-6));
      }
      // The public entry (CPU: search over coordinates from the fused pass) on the masks.
      const auto f = metrics::surface_distances(a, b, sp);
      CHECK(at::allclose(e.pred_to_ref, f.pred_to_ref, 1e-6, 1e-6));
      CHECK(at::allclose(e.ref_to_pred, f.ref_to_pred, 1e-6, 1e-6));
    }
  }

  TEST_CASE("CPU surfaces from the fused pass: counts and raster order match surface_voxels, any width") {
    // Widths below and above the 8-voxel word path, masks touching every image face, full.
    at::manual_seed(11);
    for (const int64_t W : {1, 5, 9, 10, 17, 33}) {
      for (const double density : {0.3, 0.8, 1.1}) {
        CAPTURE(W);
        CAPTURE(density);
        const at::Tensor a = at::rand({6, 7, W}) < density, b = at::rand({6, 7, W}) < density;
        const auto d = metrics::surface_distances(a, b, {1.0, 1.0, 1.0});
        const at::Tensor sa = metrics::surface_voxels(a), sb = metrics::surface_voxels(b);
        CHECK(d.pred_to_ref.numel() == sa.sum().item<int64_t>());
        CHECK(d.ref_to_pred.numel() == sb.sum().item<int64_t>());
        const auto e = metrics::detail::surface_distances_edt(sa, sb, {1.0, 1.0, 1.0});
        CHECK(at::allclose(e.pred_to_ref, d.pred_to_ref, 1e-6, 1e-6));
        CHECK(at::allclose(e.ref_to_pred, d.ref_to_pred, 1e-6, 1e-6));
      }
    }
  }

  TEST_CASE("DeepMind surfels: one voxel by hand; the CPU fused pass equals its tensor-ops twin") {
    using metrics::SurfaceConvention;
    // One voxel: its 8 surrounding cubes each hold one set corner, a corner triangle of area
    // |(1, 1, 1) / 8| = sqrt(3) / 8 at unit spacing.
    at::Tensor a = at::zeros({3, 3, 3}, at::kByte);
    a[1][1][1] = 1;
    auto d = metrics::surface_distances(a, a, {1, 1, 1}, SurfaceConvention::kDeepMind);
    REQUIRE(d.pred_areas.numel() == 8);
    CHECK(d.pred_areas.sum().item<double>() == doctest::Approx(std::sqrt(3.0)));
    CHECK(d.pred_to_ref.abs().max().item<double>() == 0.0);
    auto m = metrics::surface_metrics(d, 1.0);
    CHECK(m.hd == 0.0);
    CHECK(m.nsd == 1.0);
    // Two voxels 2 apart along x at 1.5 mm: in box lattice coordinates b's cubes sit at x in
    // {0, 1} and c's at {2, 3}, so half the elements are 1 step away and half 2.
    at::Tensor b = at::zeros({3, 3, 5}, at::kByte), c = at::zeros({3, 3, 5}, at::kByte);
    b[1][1][1] = 1;
    c[1][1][3] = 1;
    d = metrics::surface_distances(b, c, {1, 1, 1.5}, SurfaceConvention::kDeepMind);
    CHECK(d.pred_to_ref.min().item<double>() == doctest::Approx(1.5));
    CHECK(d.pred_to_ref.max().item<double>() == doctest::Approx(3.0));
    m = metrics::surface_metrics(d, 1.5);
    CHECK(m.hd == doctest::Approx(3.0));
    CHECK(m.assd == doctest::Approx(2.25));
    CHECK(m.nsd == doctest::Approx(0.5));
    at::manual_seed(13);
    for (int t = 0; t < 6; ++t) {
      const int64_t D = 5 + t, H = 9 - t % 3, W = 4 + 3 * t;
      const at::Tensor p = at::rand({D, H, W}) > (t % 2 ? 0.9 : 0.4);
      const at::Tensor r = at::roll(p, {1}, {2}) | (at::rand({D, H, W}) > 0.95);
      const std::array<double, 3> sp{0.7, 1.9, 1.1};
      const auto fused = metrics::surface_distances(p, r, sp, SurfaceConvention::kDeepMind);
      const auto twin = metrics::detail::surfel_distances_tensor_ops(p, r, sp);
      CHECK(at::allclose(fused.pred_areas, twin.pred_areas, 0, 1e-12));
      CHECK(at::allclose(fused.ref_areas, twin.ref_areas, 0, 1e-12));
      CHECK(at::allclose(fused.pred_to_ref, twin.pred_to_ref, 1e-6, 1e-6));
      CHECK(at::allclose(fused.ref_to_pred, twin.ref_to_pred, 1e-6, 1e-6));
    }
    // Empty masks, as the package.
    const at::Tensor empty = at::zeros({3, 3, 3}, at::kByte);
    m = metrics::surface_metrics(metrics::surface_distances(empty, empty, {1, 1, 1}, SurfaceConvention::kDeepMind));
    CHECK(std::isinf(m.hd));
    CHECK(std::isinf(m.hd95));
    CHECK(std::isnan(m.assd));
    CHECK(std::isnan(m.nsd));
    m = metrics::surface_metrics(metrics::surface_distances(a, empty, {1, 1, 1}, SurfaceConvention::kDeepMind));
    CHECK(std::isinf(m.hd));
    CHECK(std::isinf(m.hd95));
    CHECK(std::isinf(m.assd));
    CHECK(m.nsd == 0.0);
    CHECK(metrics::parse_surface_convention("deepmind") == SurfaceConvention::kDeepMind);
    CHECK_THROWS(metrics::parse_surface_convention("nnunet"));
  }

  TEST_CASE("empty masks: MONAI's conventions") {
    at::Tensor a = at::zeros({4, 4, 4}, at::kByte);
    const at::Tensor empty = at::zeros({4, 4, 4}, at::kByte);
    auto m = metrics::surface_metrics(metrics::surface_distances(empty, empty, {1, 1, 1}));
    CHECK(std::isnan(m.hd));
    CHECK(std::isnan(m.assd));
    CHECK(std::isnan(m.nsd));
    a[1][1][1] = 1;
    for (const auto& d : {metrics::surface_distances(a, empty, {1, 1, 1}), metrics::surface_distances(empty, a, {1, 1, 1})}) {
      m = metrics::surface_metrics(d);
      CHECK(std::isinf(m.hd));
      CHECK(std::isinf(m.hd95));
      CHECK(std::isinf(m.assd));
      CHECK(m.nsd == 0.0);
    }
  }

  TEST_CASE("percentile_linear is numpy's default") {
    CHECK(metrics::percentile_linear({4, 1, 3, 2}, 95) == doctest::Approx(3.85));  // np.percentile([1,2,3,4],95)
    CHECK(metrics::percentile_linear({5}, 95) == 5);
    CHECK(std::isnan(metrics::percentile_linear({}, 95)));
    CHECK(metrics::percentile_linear({1, 2, 3, 4, 5}, 50) == 3);
  }
}

TEST_SUITE("pipelines_evaluate") {
  TEST_CASE("folders are matched by case name; missing cases and bad geometry are reported, not fatal") {
    testing::ScratchDir dir("evaluate");
    std::filesystem::create_directories(dir.path() / "pred");
    std::filesystem::create_directories(dir.path() / "ref");
    io::Volume v = testing::make_volume(io::DType::UInt8, 1, 5, 6, 7);
    v.data = (v.data.remainder(3)).to(at::kByte);
    io::write_volume(v, dir.file("ref/a.nii.gz"));
    io::write_volume(v, dir.file("ref/b.nii.gz"));
    io::write_volume(v, dir.file("ref/c.nii.gz"));
    io::write_volume(v, dir.file("pred/a_seg.nii.gz"));  // neuroseg segment's name
    io::Volume shifted = v;
    shifted.geometry.origin[0] += 1.0;
    io::write_volume(shifted, dir.file("pred/b.nii.gz"));
    io::write_volume(v, dir.file("pred/extra.nii.gz"));
    std::vector<std::string> problems;
    const auto pairs = pipelines::match_cases(dir.file("pred"), dir.file("ref"), problems);
    REQUIRE(pairs.size() == 2);
    CHECK(pairs[0].name == "a");
    CHECK(problems.size() == 2);  // c has no prediction, extra has no reference
    const auto results = pipelines::evaluate_cases(pairs, {});
    CHECK(results[0].error.empty());
    CHECK(results[0].labels.at(1).at("Dice") == doctest::Approx(1.0));
    CHECK(results[0].labels.at(2).at("HD95") == doctest::Approx(0.0));
    CHECK(results[1].error.find("b.nii.gz") != std::string::npos);
    const nlohmann::json s = pipelines::summarize_evaluation(results, {});
    CHECK(s["metric_per_case"].size() == 1);
    CHECK(s["failed"].size() == 1);
    CHECK(s["mean"]["1"]["Dice"].get<double>() == doctest::Approx(1.0));
    pipelines::write_evaluation(s, results, dir.file("out/summary.json"));
    std::ifstream csv(dir.file("out/summary.csv"));
    std::string header;
    std::getline(csv, header);
    CHECK(header.rfind("case,label,status,seconds,", 0) == 0);
  }
}

TEST_SUITE("metrics_components") {
  TEST_CASE("26-connectivity: the (dz, dy) = (-1, +1) neighbour of a slice's last row does not wrap") {
    // The previous-slice offset (-1, +1, 0) from (1, 2, 1) would land, unchecked, on (1, 0, 1).
    at::Tensor m = at::zeros({2, 3, 3}, at::kByte);
    m[1][2][1] = 1;
    m[1][0][1] = 1;
    CHECK(metrics::connected_components(m, 26).count == 2);
    m[0][1][1] = 1;  // a real neighbour of both
    CHECK(metrics::connected_components(m, 26).count == 1);
  }
}
