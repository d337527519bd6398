// Device round trips of the io layer: resampling and reorientation run on CUDA tensors
// and must match the CPU results.
#include <doctest/doctest.h>

#include "io/orientation.h"
#include "io/resample.h"
#include "support/test_support.h"

using namespace neuroseg;

TEST_SUITE("gpu_io") {
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
