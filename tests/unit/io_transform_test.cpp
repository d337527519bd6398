// Reorientation, resampling and the zero-copy ITK bridge.
#include <doctest/doctest.h>

#include "io/error.h"
#include "io/itk_bridge.h"
#include "io/orientation.h"
#include "io/resample.h"
#include "io/volume_io.h"
#include "support/test_support.h"

using namespace neuroseg;

namespace {
// LPS point of voxel (i, j, k) and its value: the pair reorientation must preserve.
double value_at(const io::Volume& v, int64_t i, int64_t j, int64_t k) { return v.data[0][k][j][i].item<double>(); }
}  // namespace

TEST_SUITE("io_orientation") {
  TEST_CASE("reorienting keeps every voxel at its physical point, and the inverse is exact") {
    for (const char* code : {"RAS", "LPS", "ASR", "IPL", "SAR"}) {
      INFO(code);
      const io::Volume v = testing::make_volume(io::DType::Int16);
      const io::Volume r = io::reorient(v, code);
      CHECK(r.geometry.orientation_code() == code);
      // A few voxels: same value at the same LPS point.
      for (auto ijk : {std::array<int64_t, 3>{0, 0, 0}, {6, 5, 4}, {2, 3, 1}}) {
        const auto p = v.geometry.index_to_point({double(ijk[0]), double(ijk[1]), double(ijk[2])});
        const auto q = r.geometry.point_to_index(p);
        const auto qi = std::array<int64_t, 3>{std::llround(q[0]), std::llround(q[1]), std::llround(q[2])};
        CHECK(std::abs(q[0] - qi[0]) < 1e-9);
        CHECK(value_at(r, qi[0], qi[1], qi[2]) == value_at(v, ijk[0], ijk[1], ijk[2]));
      }
      const io::Volume back = io::reorient(r, v.geometry.orientation_code());
      CHECK(at::equal(back.data, v.data));
      CHECK(back.geometry.approx_equal(v.geometry, 1e-12, 1e-12));
    }
    CHECK_THROWS_WITH_AS(io::reorient(testing::make_volume(io::DType::UInt8), "RRS"), doctest::Contains("invalid orientation code"),
                         io::Error);
  }

  TEST_CASE("a real atlas in LAS-like orientation goes to RAS and back") {
    const io::Volume v = io::read_volume(testing::mricron("JHU-WhiteMatter-labels-2mm.nii.gz"));
    const io::Volume c = io::to_canonical(v);
    CHECK(c.geometry.orientation_code() == "RAS");
    const io::Volume back = io::reorient(c, v.geometry.orientation_code());
    CHECK(at::equal(back.data, v.data));
    CHECK(back.geometry.approx_equal(v.geometry, 1e-9, 1e-12));
  }
}

TEST_SUITE("io_resample") {
  TEST_CASE("the inverse lands exactly on the original grid; nearest labels survive 2x up and down") {
    const io::Volume labels = testing::make_volume(io::DType::UInt8);
    const auto sp = labels.geometry.spacing;
    const io::Volume up = io::resample_to_spacing(labels, {sp[0] / 2, sp[1] / 2, sp[2] / 2}, io::Interpolation::Nearest);
    CHECK(up.size_xyz() == std::array<int64_t, 3>{14, 12, 10});
    CHECK((up.data.scalar_type() == at::kByte));
    const io::Volume back = io::resample_to_grid(up, labels.geometry, labels.size_xyz(), io::Interpolation::Nearest);
    CHECK(back.geometry.approx_equal(labels.geometry, 1e-12, 1e-12));
    CHECK(at::equal(back.data, labels.data));
  }

  TEST_CASE("linear interpolation reproduces a linear field exactly inside the volume") {
    io::Volume v = testing::make_volume(io::DType::Float64, 1, 8, 9, 10);
    auto z = at::arange(8, at::kDouble).view({1, 8, 1, 1}), y = at::arange(9, at::kDouble).view({1, 1, 9, 1}),
         x = at::arange(10, at::kDouble).view({1, 1, 1, 10});
    v.data = (2.0 * x - 3.0 * y + 0.5 * z + 1.0).contiguous();
    const io::Volume r = io::resample_to_spacing(v, {0.5, 0.9, 1.1}, io::Interpolation::Linear);
    // Expected: the same linear function of the continuous source index of each output voxel.
    const auto s = r.size_xyz();
    for (auto ijk : {std::array<int64_t, 3>{3, 4, 5}, {s[0] / 2, s[1] / 2, s[2] / 2}, {5, 3, 2}}) {
      const auto p = r.geometry.index_to_point({double(ijk[0]), double(ijk[1]), double(ijk[2])});
      const auto src = v.geometry.point_to_index(p);
      const double expect = 2.0 * src[0] - 3.0 * src[1] + 0.5 * src[2] + 1.0;
      CHECK(r.data[0][ijk[2]][ijk[1]][ijk[0]].item<double>() == doctest::Approx(expect).epsilon(1e-9));
    }
  }

  TEST_CASE("resampling across directions is refused") {
    const io::Volume v = testing::make_volume(io::DType::Float32);
    io::Geometry g = v.geometry;
    g.direction = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    CHECK_THROWS_WITH_AS(io::resample_to_grid(v, g, v.size_xyz(), io::Interpolation::Linear),
                         doctest::Contains("reorient first"), io::Error);
  }
}

TEST_SUITE("io_bridge") {
  TEST_CASE("Volume <-> itk::Image share memory") {
    io::Volume v = testing::make_volume(io::DType::Float32);
    auto image = io::to_itk_image<float>(v);
    CHECK(static_cast<void*>(image->GetBufferPointer()) == v.data.data_ptr());
    CHECK(image->GetSpacing()[2] == doctest::Approx(2.5));
    CHECK(image->GetDirection()(1, 1) == doctest::Approx(v.geometry.dir(1, 1)));
    const io::Volume back = io::to_volume<float>(image);
    CHECK(back.data.data_ptr() == v.data.data_ptr());
    CHECK(back.geometry.approx_equal(v.geometry, 1e-12, 1e-12));
    // The view keeps the image alive after the last SmartPointer goes away.
    auto owned = itk::Image<short, 3>::New();
    itk::Image<short, 3>::RegionType region;
    itk::Image<short, 3>::SizeType size;
    size.Fill(3);
    region.SetSize(size);
    owned->SetRegions(region);
    owned->Allocate();
    owned->FillBuffer(42);
    io::Volume view = io::to_volume<short>(owned);
    owned = nullptr;
    CHECK(view.data.sum().item<int64_t>() == 42 * 27);
  }
}
