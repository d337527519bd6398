// Sliding window, preprocessing round trip, postprocessing and one case end to end.
#include <doctest/doctest.h>

#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <torch/nn/init.h>

#include "io/volume_io.h"
#include "metrics/connected_components.h"
#include "metrics/distance_transform.h"
#include "models/checkpoint.h"
#include "models/registry.h"
#include "pipelines/augment.h"
#include "pipelines/preprocess.h"
#include "pipelines/segment.h"
#include "pipelines/sliding_window.h"
#include "support/test_support.h"

using namespace neuroseg;
using nlohmann::json;

namespace {
models::SegmentationModel tiny_unet() {
  torch::manual_seed(21);
  auto m = models::ModelRegistry::instance().create("unet", {{"channels", {4, 8}}, {"out_channels", 2}});
  m->eval();
  return m;
}
}  // namespace

TEST_SUITE("pipelines_window") {
  TEST_CASE("window positions follow MONAI") {
    CHECK(pipelines::window_starts(10, 4, 0.5) == std::vector<int64_t>{0, 2, 4, 6});
    CHECK(pipelines::window_starts(11, 4, 0.5) == std::vector<int64_t>{0, 2, 4, 6, 7});
    CHECK(pipelines::window_starts(8, 8, 0.5) == std::vector<int64_t>{0});
    CHECK(pipelines::window_starts(5, 8, 0.5) == std::vector<int64_t>{0});
    CHECK(pipelines::window_starts(9, 4, 0.0) == std::vector<int64_t>{0, 4, 5});
  }

  TEST_CASE("one window equals a plain forward pass") {
    auto m = tiny_unet();
    const at::Tensor x = at::randn({1, 8, 12, 10});
    pipelines::SlidingWindowOptions o;
    o.roi = {8, 12, 10};
    const at::Tensor sw = pipelines::sliding_window_inference(*m, x, o);
    c10::InferenceMode guard;
    CHECK(at::allclose(sw, m->forward(x.unsqueeze(0))[0], 1e-5, 1e-5));
  }

  TEST_CASE("Gaussian blending of a constant-output model leaves no seams") {
    auto m = tiny_unet();
    {
      torch::NoGradGuard no_grad;
      for (auto& p : m->parameters()) p.zero_();
      m->named_parameters()["heads.0.conv.bias"].copy_(at::tensor({0.25f, -1.5f}));
    }
    pipelines::SlidingWindowOptions o;
    o.roi = {8, 8, 8};
    o.overlap = 0.5;
    const at::Tensor out = pipelines::sliding_window_inference(*m, at::randn({1, 13, 17, 11}), o);
    CHECK((out.sizes() == at::IntArrayRef{2, 13, 17, 11}));
    CHECK((out[0] - 0.25).abs().max().item<double>() < 1e-5);
    CHECK((out[1] + 1.5).abs().max().item<double>() < 1e-5);
    o.mirror_tta = true;  // the same with mirroring
    CHECK((pipelines::sliding_window_inference(*m, at::randn({1, 9, 9, 9}), o)[1] + 1.5).abs().max().item<double>() < 1e-5);
  }

  TEST_CASE("the Gaussian importance map peaks in the centre, floored at 1e-3 (MONAI's)") {
    const at::Tensor g = pipelines::gaussian_importance({8, 16, 12}, 0.125);
    // sigma = roi / 8 = (1, 2, 1.5); even sizes put the peak half a voxel off each centre.
    const double peak = std::exp(-0.25 / 2.0) * std::exp(-0.25 / 8.0) * std::exp(-0.25 / 4.5);
    CHECK(g.max().item<float>() == doctest::Approx(peak).epsilon(1e-6));
    CHECK(g.min().item<float>() == doctest::Approx(1e-3));
    CHECK(g[0][0][0].item<float>() < g[4][8][6].item<float>());
    CHECK(g[3][7][5].item<float>() == g.max().item<float>());
  }
}

TEST_SUITE("pipelines_preprocess") {
  TEST_CASE("reorient + resample + restore lands exactly on the input grid") {
    io::Volume v = testing::make_volume(io::DType::Int16, 1, 9, 10, 11);
    pipelines::Preprocessing p = pipelines::Preprocessing::from_json(
        {{"orientation", "RAS"}, {"target_spacing", {1.0, 1.0, 1.0}}, {"normalization", {{"scheme", "none"}}}});
    const pipelines::PreparedCase c = pipelines::prepare_case(v, p);
    CHECK(c.network_geometry.orientation_code() == "RAS");
    const io::Volume back = pipelines::restore_to_input(c.image, c);
    CHECK(back.size_xyz() == v.size_xyz());
    CHECK(back.geometry.approx_equal(v.geometry, 0, 0));  // bit-exact
    // Without resampling the round trip is exact in the values too.
    p.target_spacing.reset();
    const pipelines::PreparedCase c2 = pipelines::prepare_case(v, p);
    CHECK(at::equal(pipelines::restore_to_input(c2.image, c2).data, v.data.to(at::kFloat)));
  }

  TEST_CASE("normalisation schemes") {
    const at::Tensor x = at::tensor({0.f, 2.f, 4.f, 6.f}).view({1, 1, 2, 2});
    pipelines::Normalization n;
    n.scheme = "window";
    n.low = 1;
    n.high = 5;
    CHECK(at::allclose(pipelines::normalize(x.clone(), n), at::tensor({0.f, 0.25f, 0.75f, 1.f}).view({1, 1, 2, 2})));
    n.scheme = "zscore_case";
    const at::Tensor z = pipelines::normalize(x.clone(), n);
    CHECK(z.mean().item<double>() == doctest::Approx(0).epsilon(1e-6));
    n.foreground_only = true;
    CHECK(pipelines::normalize(x.clone(), n)[0][0][0][1].item<double>() == doctest::Approx(-1.0));
  }

  TEST_CASE("unknown preprocessing keys are errors") {
    CHECK_THROWS_WITH(pipelines::Preprocessing::from_json({{"target_spacin", {1, 1, 1}}}),
                      doctest::Contains("unknown argument 'target_spacin'; did you mean 'target_spacing'?"));
    CHECK_THROWS_WITH(pipelines::Preprocessing::from_json({{"normalization", {{"scheme", "zscor"}}}}),
                      doctest::Contains("did you mean 'zscore'?"));
    CHECK_THROWS_WITH(pipelines::Preprocessing::from_json({{"orientation", "XYZ"}}), doctest::Contains("invalid orientation code"));
  }
}

TEST_SUITE("pipelines_postprocess") {
  TEST_CASE("connected components: raster-order labels, connectivity, largest component, holes") {
    at::Tensor x = at::zeros({3, 4, 4}, at::kByte);
    x[0][0][0] = 1;
    x[1][1][1] = 1;  // 26-connected to (0,0,0) only through a corner
    x[2][3][3] = 2;
    x[2][3][2] = 2;
    auto c26 = metrics::connected_components(x, 26);
    CHECK(c26.count == 2);
    CHECK(c26.sizes == std::vector<int64_t>{2, 2});
    auto c6 = metrics::connected_components(x, 6);
    CHECK(c6.count == 3);
    CHECK(c6.labels[1][1][1].item<int>() == 2);
    CHECK(c6.labels[2][3][2].item<int>() == 3);
    const at::Tensor largest = metrics::keep_largest_component_per_label(x, 6);
    CHECK(largest.sum().item<int64_t>() == 1 + 4);  // one voxel of label 1 kept, both of label 2
    at::Tensor shell = at::ones({5, 5, 5}, at::kByte);
    shell[2][2][2] = 0;
    CHECK(metrics::fill_holes_per_label(shell).sum().item<int64_t>() == 125);
    at::Tensor open = shell.clone();
    open[0][2][2] = 0;  // a hole opening to the border is not a hole... but (2,2,2) is still enclosed
    CHECK(metrics::fill_holes_per_label(open).sum().item<int64_t>() == 124);
  }
}

TEST_SUITE("pipelines_segment") {
  TEST_CASE("one case end to end: input geometry kept, deterministic") {
    testing::ScratchDir dir("segment_case");
    auto m = tiny_unet();
    models::CheckpointMeta meta;
    meta.model = "unet";
    meta.args = {{"channels", {4, 8}}, {"out_channels", 2}};
    meta.preprocessing = {{"orientation", "RAS"}, {"target_spacing", {1.5, 1.5, 1.5}}, {"normalization", {{"scheme", "zscore_case"}}}};
    meta.labels = {{"background", 0}, {"thing", 7}};
    meta.patch_size = {8, 8, 8};
    meta.postprocessing = {{"largest_component", true}, {"fill_holes", true}};
    models::save_checkpoint(dir.file("model.pt"), *m, meta);
    io::Volume v = testing::make_volume(io::DType::Int16, 1, 9, 10, 11);
    io::write_volume(v, dir.file("case.nii.gz"));
    pipelines::Segmenter s = pipelines::Segmenter::load(dir.file("model.pt"), c10::Device(c10::kCPU));
    const auto r = pipelines::segment_case(s, dir.file("case.nii.gz"), dir.file("out"), {});
    REQUIRE(r.status == "ok");
    const io::Volume seg = io::read_volume(r.output);
    CHECK(seg.size_xyz() == v.size_xyz());
    CHECK(seg.geometry.approx_equal(io::read_volume(dir.file("case.nii.gz")).geometry, 0, 0));
    CHECK(((seg.data == 0) | (seg.data == 7)).all().item<bool>());
    CHECK(std::filesystem::exists(dir.file("out/qc/case.png")));
    const auto again = pipelines::segment_case(s, dir.file("case.nii.gz"), dir.file("out2"), {});
    CHECK(at::equal(io::read_volume(again.output).data, seg.data));
    pipelines::SegmentOptions resume;
    resume.resume = true;
    CHECK(pipelines::segment_case(s, dir.file("case.nii.gz"), dir.file("out"), resume).status == "skipped");
    const auto bad = pipelines::segment_case(s, dir.file("missing.nii.gz"), dir.file("out"), {});
    CHECK(bad.status == "failed");
    CHECK(bad.error.find("missing.nii.gz: no such file") != std::string::npos);
  }
}

TEST_SUITE("metrics_distance") {
  TEST_CASE("exact EDT equals brute force, anisotropic, with scipy's conventions") {
    at::manual_seed(4);
    for (int trial = 0; trial < 4; ++trial) {
      const at::Tensor mask = at::rand({5, 7, 6}) > (trial == 3 ? 0.97 : 0.4);
      const std::array<double, 3> sp{2.5, 0.7, 1.3};  // (D, H, W)
      const at::Tensor d = metrics::distance_transform_edt(mask, sp);
      // Brute force: distance of every voxel to the nearest zero voxel.
      const at::Tensor zeros = (mask == 0).nonzero().to(at::kDouble);
      const at::Tensor all = at::ones({5, 7, 6}).nonzero().to(at::kDouble);
      const at::Tensor scale = at::tensor({sp[0], sp[1], sp[2]}, at::kDouble);
      at::Tensor expect;
      if (zeros.size(0) == 0) {
        expect = at::full({5, 7, 6}, INFINITY, at::kDouble);
      } else {
        const at::Tensor diff = (all.unsqueeze(1) - zeros.unsqueeze(0)) * scale;
        expect = std::get<0>(diff.pow(2).sum(-1).min(1)).sqrt().reshape({5, 7, 6});
      }
      CHECK(at::allclose(d.to(at::kDouble), expect, 1e-6, 1e-6));
    }
    CHECK(std::isinf(metrics::distance_transform_edt(at::ones({2, 3, 4})).max().item<float>()));
    CHECK(metrics::distance_transform_edt(at::zeros({2, 3, 4})).max().item<float>() == 0);
    const at::Tensor one = at::ones({1, 1, 9});
    one[0][0][4] = 0;
    CHECK(metrics::distance_transform_edt(one, {1, 1, 0.5})[0][0][0].item<float>() == doctest::Approx(2.0));
  }
}

TEST_SUITE("pipelines_augment") {
  TEST_CASE("random intensity curves: monotonic, increasing or decreasing, air kept, range kept, parsed strictly") {
    pipelines::AugmentOptions o;
    o.probability = 0;  // every other transform off
    o.flip = false;
    o.intensity_curve = 1;
    at::Tensor base = at::rand({1, 1, 6, 7, 8}, at::kFloat) * 3 + 1;
    base.index_put_({0, 0, 0}, -2.0f);  // "air": the minimum, one plane
    const at::Tensor order = base.reshape({-1}).argsort();
    int increasing = 0, decreasing = 0;
    for (uint64_t seed = 0; seed < 12; ++seed) {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
      at::Tensor image = base.clone(), label = at::zeros({1, 6, 7, 8}, at::kLong);
      pipelines::augment_batch(image, label, o, gen);
      CHECK(at::equal(image.index({0, 0, 0}), base.index({0, 0, 0})));  // air untouched
      CHECK(image.min().item<float>() >= -2.0f - 1e-5f);
      CHECK(image.max().item<float>() <= base.max().item<float>() + 1e-5f);
      // A monotonic map of the non-air voxels: sorted by the input, the output never turns.
      const at::Tensor v = image.reshape({-1}).index({order}).slice(0, 56);
      const at::Tensor step = v.slice(0, 1) - v.slice(0, 0, -1);
      const bool up = (step >= -1e-5).all().item<bool>(), down = (step <= 1e-5).all().item<bool>();
      CHECK((up || down));
      increasing += up && !down;
      decreasing += down && !up;
    }
    CHECK(increasing > 0);
    CHECK(decreasing > 0);
    CHECK_THROWS_WITH_AS(pipelines::AugmentOptions::from_json(json{{"intensity_curve", 1.5}}),
                         doctest::Contains("intensity_curve"), std::exception);
  }
}
