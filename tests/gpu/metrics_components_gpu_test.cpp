// Connected components: the CUDA twin against the CPU one (identical label images, sizes,
// bounds, first voxels and values) on random binary and multi-label volumes of odd and even
// sizes, every connectivity, several dtypes, empty and full volumes, and real data (the
// ch2bet brain mask and the AAL atlas); labels only (ComponentStats::kNone) alike.
#include <doctest/doctest.h>

#include <ATen/ATen.h>

#include "io/volume_io.h"
#include "metrics/connected_components.h"

using namespace neuroseg;

namespace {

void check_same(const at::Tensor& image, int connectivity) {
  const metrics::Components c = metrics::connected_components(image, connectivity);
  const metrics::Components g = metrics::connected_components(image.cuda(), connectivity);
  CHECK(g.labels.is_cuda());
  CHECK(g.labels.dtype() == at::kInt);
  CHECK(g.labels.sizes() == image.sizes());
  CHECK(at::equal(c.labels, g.labels.cpu()));
  CHECK(c.count == g.count);
  CHECK(c.sizes == g.sizes);
  CHECK(c.first_voxel == g.first_voxel);
  CHECK(at::equal(c.values, g.values));
  REQUIRE(c.boxes.size() == g.boxes.size());
  for (size_t k = 0; k < c.boxes.size(); ++k) {
    INFO("component ", k + 1);
    CHECK(c.boxes[k].z0 == g.boxes[k].z0);
    CHECK(c.boxes[k].y0 == g.boxes[k].y0);
    CHECK(c.boxes[k].x0 == g.boxes[k].x0);
    CHECK(c.boxes[k].z1 == g.boxes[k].z1);
    CHECK(c.boxes[k].y1 == g.boxes[k].y1);
    CHECK(c.boxes[k].x1 == g.boxes[k].x1);
  }
  const metrics::Components bare = metrics::connected_components(image.cuda(), connectivity, metrics::ComponentStats::kNone);
  CHECK(at::equal(bare.labels.cpu(), c.labels));
  CHECK(bare.count == c.count);
  CHECK(bare.sizes.empty());
}

at::Tensor random_labels(at::IntArrayRef shape, int64_t values, double background) {
  const at::Tensor v = at::randint(1, values + 1, shape, at::kLong);
  return at::where(at::rand(shape) < background, at::zeros_like(v), v);
}

}  // namespace

TEST_SUITE("gpu_metrics_components") {
  TEST_CASE("CUDA equals CPU on random volumes, every connectivity") {
    at::manual_seed(5);
    const std::vector<std::vector<int64_t>> shapes = {{31, 40, 27}, {64, 64, 64}, {7, 1, 129}, {2, 33, 1}, {45, 17, 60}};
    for (const auto& shape : shapes)
      for (int64_t values : {1, 5})
        for (double bg : {0.2, 0.5, 0.9}) {
          const at::Tensor x = random_labels(shape, values, bg);
          for (int k : {6, 18, 26}) {
            INFO("shape ", shape[0], "x", shape[1], "x", shape[2], " values ", values, " background ", bg, " k ", k);
            check_same(x.to(at::kByte), k);
          }
        }
  }

  TEST_CASE("CUDA equals CPU on slices (4 / 8) and for every dtype") {
    at::manual_seed(6);
    const at::Tensor slice = random_labels({1, 97, 64}, 3, 0.4);
    for (int k : {4, 8}) {
      check_same(slice, k);
      check_same(slice[0], k);  // (H, W)
    }
    const at::Tensor x = random_labels({20, 21, 22}, 4, 0.3);
    for (auto t : {at::kBool, at::kByte, at::kChar, at::kShort, at::kInt, at::kLong, at::kFloat, at::kDouble, at::kHalf})
      for (int k : {6, 26}) check_same(x.to(t), k);
  }

  TEST_CASE("CUDA equals CPU on empty, full and smooth volumes") {
    for (int k : {6, 18, 26}) {
      check_same(at::zeros({8, 9, 10}, at::kByte), k);
      check_same(at::ones({8, 9, 10}, at::kByte), k);
      check_same(at::full({33, 1, 5}, 7, at::kInt), k);
    }
    CHECK(metrics::connected_components(at::zeros({0, 3, 4}, at::kByte).cuda(), 26).count == 0);
    // Smooth blobs: long runs and large components (deep union-find trees).
    at::manual_seed(8);
    at::Tensor noise = at::rand({1, 1, 96, 96, 96});
    for (int i = 0; i < 3; ++i) noise = at::avg_pool3d(noise, 5, 1, 2);
    const at::Tensor blobs = noise[0][0];
    for (int k : {6, 18, 26}) {
      check_same(blobs > blobs.median(), k);
      check_same((blobs * 40).to(at::kLong) % 4, k);
    }
  }

  TEST_CASE("CUDA equals CPU on real data: ch2bet brain mask and the AAL atlas") {
    const at::Tensor brain = io::read_volume("/usr/share/mricron/templates/ch2bet.nii.gz").data[0] > 0;
    const at::Tensor aal = io::read_volume("/usr/share/mricron/templates/aal.nii.gz").data[0];
    for (int k : {6, 18, 26}) {
      check_same(brain, k);
      check_same(aal, k);
    }
  }
}
