// The synthetic benchmark generators (pipelines/synth_fisbe.h, pipelines/synth_spine.h):
// same seed -> same bytes (whatever the thread count), FISBe's array layout and instance
// values, overlapping instances, the "partly" mode, SPIDER's label scheme ordered along the
// physical superior axis, and T1/T2 sharing the anatomy but not the contrast.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "io/error.h"
#include "io/volume_io.h"
#include "pipelines/synth_fisbe.h"
#include "pipelines/synth_spine.h"
#include "support/test_support.h"

using namespace neuroseg;
namespace fs = std::filesystem;

namespace {

pipelines::FisbeSynthOptions tiny_fisbe(uint64_t seed) {
  pipelines::FisbeSynthOptions o;
  o.shape = {24, 48, 40};
  o.seed = seed;
  return o;
}

pipelines::SpineSynthOptions tiny_spine(uint64_t seed) {
  pipelines::SpineSynthOptions o;
  o.size = {6, 64, 100};
  o.spacing = {3.3, 2.4, 2.6};  // 260 mm superior-inferior
  o.seed = seed;
  return o;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(f), {}));
}

}  // namespace

TEST_SUITE("pipelines_synth") {
  TEST_CASE("fisbe: deterministic for a seed, whatever the thread count; another seed differs") {
    const auto a = pipelines::synth_fisbe_sample(tiny_fisbe(5), 1);
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    const auto b = pipelines::synth_fisbe_sample(tiny_fisbe(5), 1);
    at::set_num_threads(threads);
    CHECK(at::equal(a.raw, b.raw));
    CHECK(at::equal(a.gt, b.gt));
    CHECK(a.dim_neurons == b.dim_neurons);
    const auto c = pipelines::synth_fisbe_sample(tiny_fisbe(6), 1);
    CHECK_FALSE(at::equal(a.raw, c.raw));
    const auto d = pipelines::synth_fisbe_sample(tiny_fisbe(5), 2);  // another sample of the run
    CHECK_FALSE(at::equal(a.raw, d.raw));
    CHECK(pipelines::fisbe_sample_name(5, 1) == "synth_s5_001");
  }

  TEST_CASE("fisbe: shapes, dtypes, instance values, overlaps") {
    int64_t with_overlap = 0;
    for (uint64_t seed = 0; seed < 6; ++seed) {
      const auto s = pipelines::synth_fisbe_sample(tiny_fisbe(seed), 0);
      REQUIRE(s.raw.sizes() == at::IntArrayRef({3, 24, 48, 40}));
      CHECK((s.raw.scalar_type() == at::kShort));
      CHECK(s.raw.min().item<int>() >= 0);
      CHECK(s.raw.max().item<int>() <= 4095);
      REQUIRE(s.gt.dim() == 4);
      CHECK((s.gt.scalar_type() == at::kByte));
      CHECK(s.gt.sizes().slice(1) == at::IntArrayRef({24, 48, 40}));
      CHECK(s.gt.size(0) == s.neurons);
      CHECK(s.neurons >= 3);
      CHECK(s.neurons <= 10);
      for (int64_t k = 0; k < s.gt.size(0); ++k) {
        const at::Tensor ch = s.gt[k];
        CHECK(ch.max().item<int>() == k + 1);  // every neuron is visible, with value k+1
        CHECK(at::logical_or(ch == 0, ch == k + 1).all().item<bool>());
      }
      const int64_t overlap = ((s.gt > 0).sum(0) >= 2).sum().item<int64_t>();
      CHECK(overlap == s.overlap_voxels);
      with_overlap += overlap > 0;
      // Neurons are brighter than the background: mean raw inside GT > outside.
      const at::Tensor fg = (s.gt > 0).any(0), total = s.raw.sum(0).to(at::kDouble);
      CHECK(total.masked_select(fg).mean().item<double>() > 1.5 * total.masked_select(fg.logical_not()).mean().item<double>());
      for (int64_t id : s.dim_neurons) CHECK((id >= 1 && id <= s.gt.size(0)));
    }
    CHECK(with_overlap >= 2);
  }

  TEST_CASE("fisbe: partly drops neurons from gt only") {
    auto o = tiny_fisbe(11);
    for (int64_t index = 0; index < 3; ++index) {
      o.partly = false;
      const auto full = pipelines::synth_fisbe_sample(o, index);
      o.partly = true;
      const auto part = pipelines::synth_fisbe_sample(o, index);
      CHECK(at::equal(full.raw, part.raw));  // the image is the same
      CHECK(part.neurons == full.neurons);
      CHECK(part.gt.size(0) < full.gt.size(0));
      CHECK(part.gt.size(0) >= 2);
      // Each kept channel is one of the full channels, in order, relabelled k+1.
      int64_t j = 0;
      for (int64_t k = 0; k < part.gt.size(0); ++k) {
        const at::Tensor m = part.gt[k] > 0;
        CHECK(part.gt[k].max().item<int>() == k + 1);
        while (j < full.gt.size(0) && !at::equal(full.gt[j] > 0, m)) ++j;
        CHECK(j < full.gt.size(0));
        ++j;
      }
    }
  }

  TEST_CASE("fisbe: the written zarr reads back; the run writes the split file; bad input leaves nothing") {
    testing::ScratchDir dir("synth_fisbe");
    auto o = tiny_fisbe(2);
    o.partly = true;
    pipelines::synth_fisbe(dir.file("out"), 3, o);
    const fs::path out = dir.path() / "out";
    for (int64_t i = 0; i < 3; ++i) {
      const fs::path z = out / (pipelines::fisbe_sample_name(2, i) + ".zarr");
      CHECK(fs::exists(z / ".zgroup"));
      CHECK(fs::exists(z / "volumes" / ".zgroup"));
      const auto sample = pipelines::synth_fisbe_sample(o, i);
      const io::Volume raw = io::read_volume((z / "volumes" / "raw").string());
      CHECK(raw.source.dtype == io::DType::UInt16);
      CHECK(at::equal(raw.data, sample.raw.to(at::kInt)));  // uint16 reads as int32
      const auto gt_meta = read_json(z / "volumes" / "gt_instances" / ".zarray");
      CHECK(gt_meta["dtype"].get<std::string>() == "|u1");
      CHECK(gt_meta["shape"].size() == 4);
      CHECK(read_json(z / "volumes" / "raw" / ".zarray")["dtype"].get<std::string>() == "<u2");
      const io::Volume gt = io::read_volume((z / "volumes" / "gt_instances").string());
      CHECK(at::equal(gt.data, sample.gt));
      CHECK(read_json(z / "volumes" / "gt_instances" / ".zattrs")["dim_neurons"].get<std::vector<int64_t>>() ==
            sample.dim_neurons);
    }
    std::ifstream f(out / "sample_list_per_split.txt");
    const std::string split(std::istreambuf_iterator<char>(f), {});
    CHECK(split ==
          "(1) samples for FlyLight completely:\n\ntrain:\n\nval:\n\ntest:\n\n"
          "(2) samples for FlyLight partly:\n\ntrain:\nsynth_s2_000\nsynth_s2_001\n\nval:\nsynth_s2_002\n\ntest:\n\n");
    int64_t entries = 0;
    for (const auto& e : fs::directory_iterator(out)) entries += e.exists() ? 1 : 0;
    CHECK(entries == 4);  // three samples and the split file, no temporary left

    CHECK_THROWS_AS(pipelines::synth_fisbe(dir.file("bad"), 0, o), io::Error);
    CHECK_FALSE(fs::exists(dir.path() / "bad"));
    auto big = o;
    big.shape = {4, 48, 48};
    CHECK_THROWS_AS(pipelines::synth_fisbe(dir.file("bad"), 1, big), io::Error);
    CHECK_FALSE(fs::exists(dir.path() / "bad"));
    std::ofstream(dir.file("a_file")) << "x";
    CHECK_THROWS_AS(pipelines::synth_fisbe(dir.file("a_file/sub"), 1, o), io::Error);
  }

  TEST_CASE("spine: SPIDER labels, numbered bottom-up along the physical superior axis") {
    for (uint64_t seed = 0; seed < 4; ++seed) {
      const auto c = pipelines::synth_spine_case(tiny_spine(seed), 0);
      REQUIRE(c.mask.data.sizes() == at::IntArrayRef({1, 100, 64, 6}));
      CHECK((c.mask.data.scalar_type() == at::kByte));
      CHECK(c.mask.source.dtype == io::DType::UInt8);
      CHECK(c.t1.source.dtype == io::DType::UInt16);
      // Geometry: thick left-right slices along index x, a proper rotation.
      CHECK(c.mask.geometry.spacing[0] == doctest::Approx(3.3));
      CHECK(std::abs(c.mask.geometry.dir(0, 0)) == doctest::Approx(1.0));
      const auto& d = c.mask.geometry.direction;
      const double det = d[0] * (d[4] * d[8] - d[5] * d[7]) - d[1] * (d[3] * d[8] - d[5] * d[6]) + d[2] * (d[3] * d[7] - d[4] * d[6]);
      CHECK(det == doctest::Approx(1.0));

      // Centroid of each label -> LPS z (superior).
      const at::Tensor m = c.mask.data[0];
      const at::Tensor labels = std::get<0>(at::_unique(m));
      std::map<int, double> z_of;
      for (int64_t i = 0; i < labels.numel(); ++i) {
        const int l = labels[i].item<int>();
        if (l == 0) continue;
        CHECK(((l >= 1 && l <= 25) || l == 100 || (l >= 101 && l <= 125) || (l >= 201 && l <= 225)));
        const at::Tensor idx = at::nonzero(m == l).to(at::kDouble).mean(0);  // (k, j, i)
        const auto p = c.mask.geometry.index_to_point({idx[2].item<double>(), idx[1].item<double>(), idx[0].item<double>()});
        z_of[l] = p[2];
      }
      CHECK(z_of.count(100) == 1);  // the canal
      int complete = 0;
      while (z_of.count(complete + 1)) ++complete;
      CHECK(complete == c.complete_vertebrae);
      CHECK(complete >= 5);
      CHECK(complete <= 7);
      for (int k = 2; k <= complete; ++k) CHECK(z_of[k] > z_of[k - 1]);
      for (const auto& [l, z] : z_of) {
        if (l > 100 && l < 200) {
          CHECK(l > 100 + complete);  // only vertebrae above the complete ones are cut (the sacrum is below)
          CHECK(z > z_of[complete]);
        }
        if (l < 100) CHECK(l <= complete);
      }
      // Disc 200 + k lies below vertebra k and above vertebra k - 1 (L5/S1 = 201 below L5).
      CHECK(z_of.count(201) == 1);
      for (int k = 1; k <= complete; ++k) {
        REQUIRE(z_of.count(200 + k) == 1);
        CHECK(z_of[200 + k] < z_of[k]);
        if (k > 1) CHECK(z_of[200 + k] > z_of[k - 1]);
      }
    }
  }

  TEST_CASE("spine: deterministic; T1 and T2 share the mask, not the contrast; files in SPIDER layout") {
    const auto a = pipelines::synth_spine_case(tiny_spine(3), 2);
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    const auto b = pipelines::synth_spine_case(tiny_spine(3), 2);
    at::set_num_threads(threads);
    CHECK(at::equal(a.t1.data, b.t1.data));
    CHECK(at::equal(a.t2.data, b.t2.data));
    CHECK(at::equal(a.mask.data, b.mask.data));
    CHECK(a.id == "3");
    CHECK_FALSE(at::equal(pipelines::synth_spine_case(tiny_spine(4), 2).mask.data, a.mask.data));

    // Contrast: T1 marrow brighter than CSF, T2 the other way round; T2 discs brighter
    // than on T1 relative to the vertebrae.
    const at::Tensor m = a.mask.data;
    auto mean_in = [&](const io::Volume& v, const at::Tensor& sel) { return v.data.to(at::kDouble).masked_select(sel).mean().item<double>(); };
    const at::Tensor vert = at::logical_and(m >= 1, m < 100), canal = m == 100, disc = m > 200;
    CHECK(mean_in(a.t1, vert) > 1.5 * mean_in(a.t1, canal));
    CHECK(mean_in(a.t2, canal) > 1.5 * mean_in(a.t2, vert));
    CHECK(mean_in(a.t2, disc) / mean_in(a.t2, vert) > mean_in(a.t1, disc) / mean_in(a.t1, vert));

    testing::ScratchDir dir("synth_spine");
    auto o = tiny_spine(3);
    pipelines::synth_spine(dir.file("spider"), 2, o);
    const fs::path out = dir.path() / "spider";
    for (const char* id : {"1", "2"}) {
      const io::Volume t1m = io::read_volume((out / "masks" / (std::string(id) + "_t1.mha")).string());
      const io::Volume t2m = io::read_volume((out / "masks" / (std::string(id) + "_t2.mha")).string());
      CHECK(at::equal(t1m.data, t2m.data));
      CHECK(t1m.source.dtype == io::DType::UInt8);
      const io::Volume t1 = io::read_volume((out / "images" / (std::string(id) + "_t1.mha")).string());
      CHECK(t1.source.dtype == io::DType::UInt16);
      CHECK(t1.geometry.approx_equal(t1m.geometry));
      CHECK(t1.geometry.spacing[0] == doctest::Approx(3.3));
    }
    const auto c2 = pipelines::synth_spine_case(o, 1);
    CHECK(at::equal(io::read_volume((out / "images" / "2_t2.mha").string()).data, c2.t2.data));
    CHECK(fs::exists(out / "synth_spine.csv"));
    o.contrast = "t1";
    pipelines::synth_spine(dir.file("t1only"), 1, o);
    CHECK(fs::exists(dir.path() / "t1only" / "images" / "1_t1.mha"));
    CHECK_FALSE(fs::exists(dir.path() / "t1only" / "images" / "1_t2.mha"));

    o.contrast = "pd";
    CHECK_THROWS_AS(pipelines::synth_spine(dir.file("bad"), 1, o), io::Error);
    o.contrast = "both";
    o.size = {6, 64, 40};  // 104 mm: too short for the lumbar spine
    CHECK_THROWS_AS(pipelines::synth_spine(dir.file("bad"), 1, o), io::Error);
    CHECK_FALSE(fs::exists(dir.path() / "bad"));
  }
}
