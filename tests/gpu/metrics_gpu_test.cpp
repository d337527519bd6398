// metrics/ CUDA kernels against their CPU twins on random and real masks, odd and even
// sizes, empty and full.
#include <doctest/doctest.h>

#include <ATen/ATen.h>

#include "io/volume_io.h"
#include "metrics/distance_transform.h"

using namespace neuroseg;

TEST_SUITE("gpu_metrics") {
  TEST_CASE("EDT: CUDA equals CPU") {
    at::manual_seed(1);
    std::vector<at::Tensor> masks = {at::rand({31, 40, 27}) > 0.3, at::rand({64, 64, 64}) > 0.9, at::zeros({8, 9, 10}),
                                     at::ones({8, 9, 10}), at::rand({1, 50, 61}) > 0.5};
    const io::Volume brain = io::read_volume("/usr/share/mricron/templates/ch2bet.nii.gz");
    masks.push_back(brain.data[0] > 0);
    for (const auto& m : masks) {
      for (const auto& sp : {std::array<double, 3>{1, 1, 1}, std::array<double, 3>{2.5, 0.7, 1.1}}) {
        const at::Tensor c = metrics::distance_transform_edt(m, sp);
        const at::Tensor g = metrics::distance_transform_edt(m.cuda(), sp).cpu();
        CHECK(at::allclose(c, g, 1e-5, 1e-5, /*equal_nan=*/true));
        CHECK(at::equal(at::isinf(c), at::isinf(g)));
      }
    }
  }
}
