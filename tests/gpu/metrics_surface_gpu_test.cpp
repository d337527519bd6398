// Surface distances (MONAI and DeepMind conventions) and overlap counts: the CUDA path
// (tensor-op surfaces, CUDA EDT, device reductions) against the CPU path (fused pass and
// nearest-surface search), random and real masks, odd and even sizes, empty and full.
#include <doctest/doctest.h>

#include <ATen/ATen.h>

#include "io/volume_io.h"
#include "metrics/overlap.h"
#include "metrics/surface_distance.h"

using namespace neuroseg;

TEST_SUITE("gpu_metrics_surface") {
  TEST_CASE("surface distances and counts: CUDA equals CPU") {
    at::manual_seed(2);
    const io::Volume aal = io::read_volume("/usr/share/mricron/templates/aal.nii.gz");
    const at::Tensor atlas = aal.data[0].to(at::kInt);
    std::vector<std::pair<at::Tensor, at::Tensor>> pairs = {
        {at::rand({31, 40, 27}) > 0.6, at::rand({31, 40, 27}) > 0.6},
        {at::rand({32, 32, 32}) > 0.95, at::rand({32, 32, 32}) > 0.5},
        {at::zeros({8, 9, 10}), at::rand({8, 9, 10}) > 0.5},
        {at::ones({8, 9, 10}), at::ones({8, 9, 10})},
        {at::zeros({4, 5, 6}), at::zeros({4, 5, 6})},
        {atlas == 37, at::roll(atlas, {2}, {0}) == 37}};
    for (const auto& [p, r] : pairs) {
      CHECK(at::equal(metrics::detail::surface_voxels_cpu(p), metrics::surface_voxels(p.cuda()).cpu()));
      for (const auto& sp : {std::array<double, 3>{1, 1, 1}, std::array<double, 3>{2.5, 0.7, 1.1}}) {
        const auto c = metrics::surface_distances(p, r, sp);
        const auto g = metrics::surface_distances(p.cuda(), r.cuda(), sp);
        REQUIRE(c.pred_to_ref.numel() == g.pred_to_ref.numel());
        CHECK(at::allclose(c.pred_to_ref, g.pred_to_ref, 1e-5, 1e-5));
        CHECK(at::allclose(c.ref_to_pred, g.ref_to_pred, 1e-5, 1e-5));
        // DeepMind's surfels: CUDA tensor ops + CUDA EDT vs the CPU fused pass + search.
        const auto cd = metrics::surface_distances(p, r, sp, metrics::SurfaceConvention::kDeepMind);
        const auto gd = metrics::surface_distances(p.cuda(), r.cuda(), sp, metrics::SurfaceConvention::kDeepMind);
        REQUIRE(cd.pred_areas.numel() == gd.pred_areas.numel());
        REQUIRE(cd.ref_areas.numel() == gd.ref_areas.numel());
        CHECK(at::allclose(cd.pred_areas, gd.pred_areas, 1e-12, 1e-12));
        CHECK(at::allclose(cd.pred_to_ref, gd.pred_to_ref, 1e-5, 1e-5));
        CHECK(at::allclose(cd.ref_to_pred, gd.ref_to_pred, 1e-5, 1e-5));
      }
    }
    const std::vector<int64_t> labels = metrics::present_labels(atlas);
    CHECK(labels == metrics::present_labels(atlas.cuda()));
    const at::Tensor moved = at::roll(atlas, {1, -2}, {1, 2});
    const auto cc = metrics::label_counts(atlas, moved, labels);
    const auto gc = metrics::label_counts(atlas.cuda(), moved.cuda(), labels);
    for (size_t i = 0; i < labels.size(); ++i) {
      CHECK(cc[i].tp == gc[i].tp);
      CHECK(cc[i].fp == gc[i].fp);
      CHECK(cc[i].fn == gc[i].fn);
    }
  }
}
