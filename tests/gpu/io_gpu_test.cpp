// Device round trips of the io layer: resampling and reorientation run on CUDA tensors
// and must match the CPU results.
#include <doctest/doctest.h>

#include "io/finite_stats.h"
#include "io/orientation.h"
#include "io/resample.h"
#include "support/test_support.h"

using namespace neuroseg;

TEST_SUITE("gpu_io") {
  TEST_CASE("finite_stats: the CUDA kernel equals its CPU twin") {
    for (int64_t n : {1, 255, 256, 257, 1000003}) {
      for (auto type : {at::kFloat, at::kDouble}) {
        at::Tensor x = at::randn({n}, type) * 100;
        if (n > 10) {
          x[3] = NAN;
          x[n - 1] = INFINITY;
        }
        const io::FiniteStats c = io::finite_stats(x), g = io::finite_stats(x.cuda());
        CHECK(c.finite == g.finite);
        CHECK(c.non_finite == g.non_finite);
        CHECK(c.min == g.min);
        CHECK(c.max == g.max);
        CHECK(g.sum == doctest::Approx(c.sum).epsilon(1e-9));
      }
    }
    const io::FiniteStats all_nan = io::finite_stats(at::full({1000}, NAN, at::kCUDA));
    CHECK(all_nan.finite == 0);
    CHECK(all_nan.non_finite == 1000);
  }

  TEST_CASE("resample and reorient on CUDA match the CPU") {
    io::Volume cpu = testing::make_volume(io::DType::Float32, 1, 9, 10, 11);
    io::Volume gpu = cpu;
    gpu.data = cpu.data.to(at::kCUDA);
    const auto a = io::resample_to_spacing(cpu, {0.5, 0.9, 1.7}, io::Interpolation::Linear);
    const auto b = io::resample_to_spacing(gpu, {0.5, 0.9, 1.7}, io::Interpolation::Linear);
    CHECK(at::allclose(a.data, b.data.cpu(), 1e-5, 1e-5));
    const auto c = io::reorient(gpu, "RAS");
    CHECK(at::equal(io::reorient(cpu, "RAS").data, c.data.cpu()));
  }
}
