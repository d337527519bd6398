// Geometry math and the Volume checks (require_3d, require_same_grid, non-finite count).
#include <doctest/doctest.h>

#include <cmath>

#include "io/error.h"
#include "io/finite_stats.h"
#include "io/volume.h"
#include "support/test_support.h"

using namespace neuroseg;

TEST_SUITE("io_volume") {
  TEST_CASE("RAS affine round trip and index <-> point") {
    const io::Volume v = testing::make_volume(io::DType::Float32);
    const auto a = v.geometry.affine_ras();
    double shear = -1;
    const io::Geometry g = io::Geometry::from_affine_ras(a, &shear);
    CHECK(shear < 1e-12);
    CHECK(g.approx_equal(v.geometry, 1e-12, 1e-12));
    const auto p = v.geometry.index_to_point({1.5, -2.0, 3.25});
    const auto ijk = v.geometry.point_to_index(p);
    CHECK(ijk[0] == doctest::Approx(1.5));
    CHECK(ijk[1] == doctest::Approx(-2.0));
    CHECK(ijk[2] == doctest::Approx(3.25));
    // RAS = LPS with x and y negated.
    const auto lps = v.geometry.affine_lps();
    CHECK(a[3] == doctest::Approx(-lps[3]));
    CHECK(a[7] == doctest::Approx(-lps[7]));
    CHECK(a[11] == doctest::Approx(lps[11]));
  }

  TEST_CASE("orientation codes follow nibabel's convention") {
    io::Geometry g;  // identity in LPS: i->L, j->P, k->S
    CHECK(g.orientation_code() == "LPS");
    g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};
    CHECK(g.orientation_code() == "RAS");
    g.direction = {0, 0, -1, -1, 0, 0, 0, 1, 0};  // i->A, j->S, k->R  (a sagittal stack)
    CHECK(g.orientation_code() == "ASR");
  }

  TEST_CASE("a sheared affine becomes its nearest rotation, with the residual reported") {
    std::array<double, 16> a{2, 0.3, 0, 5, 0, 2, 0, 6, 0, 0, 3, 7, 0, 0, 0, 1};
    double shear = 0;
    const io::Geometry g = io::Geometry::from_affine_ras(a, &shear);
    CHECK(shear > 0.05);
    // Orthonormal result.
    for (int c1 = 0; c1 < 3; ++c1)
      for (int c2 = 0; c2 < 3; ++c2) {
        double dot = 0;
        for (int r = 0; r < 3; ++r) dot += g.dir(r, c1) * g.dir(r, c2);
        CHECK(dot == doctest::Approx(c1 == c2 ? 1.0 : 0.0).epsilon(1e-12));
      }
    CHECK(g.origin[0] == doctest::Approx(-5));
    CHECK(g.spacing[1] == doctest::Approx(std::sqrt(2 * 2 + 0.3 * 0.3)));
  }

  TEST_CASE("require_3d refuses 2D images and one-slice volumes") {
    io::Volume v = testing::make_volume(io::DType::UInt8, 1, 1, 6, 7);
    v.source.path = "slice.png";
    CHECK_THROWS_WITH_AS(io::require_3d(v, "segmentation"),
                         "slice.png: segmentation needs a 3D volume, got a 2D image of 7x6x1 voxels", io::Error);
    io::Volume w = testing::make_volume(io::DType::UInt8, 1, 4, 6, 7);
    CHECK_NOTHROW(io::require_3d(w, "segmentation"));
    w.source.spatial_dims = 2;
    CHECK_THROWS_AS(io::require_3d(w, "segmentation"), io::Error);
  }

  TEST_CASE("require_same_grid names the label file and the disagreement") {
    io::Volume image = testing::make_volume(io::DType::Int16);
    image.source.path = "case1_img.nii.gz";
    io::Volume label = image;
    label.source.path = "case1_seg.nii.gz";
    CHECK_NOTHROW(io::require_same_grid(image, label));
    label.geometry.origin[2] += 0.5;
    CHECK_THROWS_WITH_AS(io::require_same_grid(image, label), doctest::Contains("case1_seg.nii.gz: geometry differs"),
                         io::Error);
    label = testing::make_volume(io::DType::Int16, 1, 5, 6, 8);
    label.source.path = "case1_seg.nii.gz";
    CHECK_THROWS_WITH_AS(io::require_same_grid(image, label), doctest::Contains("size 8x6x5 differs"), io::Error);
  }

  TEST_CASE("finite_stats: counts, extremes and sums of the finite voxels, any dtype") {
    at::Tensor x = at::arange(200000, at::kFloat) - 1000;  // several chunks
    x[5] = NAN;
    x[150000] = -INFINITY;
    const io::FiniteStats s = io::finite_stats(x);
    CHECK(s.non_finite == 2);
    CHECK(s.finite == 199998);
    CHECK(s.min == -1000);
    CHECK(s.max == 198999);
    CHECK(s.sum == doctest::Approx((at::arange(200000, at::kDouble) - 1000).sum().item<double>() - (5 - 1000) - (150000 - 1000)));
    const io::FiniteStats i = io::finite_stats(at::tensor({-7, 3, 12}, at::kShort));
    CHECK(i.non_finite == 0);
    CHECK(i.min == -7);
    CHECK(i.max == 12);
    CHECK(io::finite_stats(at::full({3}, NAN)).finite == 0);
    CHECK(io::finite_stats(at::empty({0})).finite == 0);
  }

  TEST_CASE("non-finite voxels are counted") {
    io::Volume v = testing::make_volume(io::DType::Float32);
    v.data[0][0][0][0] = NAN;
    v.data[0][1][2][3] = INFINITY;
    CHECK(io::count_non_finite(v) == 2);
    CHECK(io::count_non_finite(testing::make_volume(io::DType::Int16)) == 0);
  }
}
