// Connected components (metrics/connected_components): hand cases per connectivity, 2D,
// multi-label, sizes and bounds, raster-order numbering, thread-count invariance, dtypes,
// empty and full volumes; a flood-fill reference on random volumes; and cc3d itself (run
// through NEUROSEG_PYTHON on volumes written here).
#include <doctest/doctest.h>

#include <cstdlib>
#include <deque>
#include <fstream>
#include <ostream>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "io/error.h"
#include "io/volume_io.h"
#include "metrics/connected_components.h"
#include "support/test_support.h"

using namespace neuroseg;

namespace neuroseg::metrics {
std::ostream& operator<<(std::ostream& os, const BoundingBox& b) {
  return os << "[" << b.z0 << "," << b.y0 << "," << b.x0 << " .. " << b.z1 << "," << b.y1 << "," << b.x1 << "]";
}
}  // namespace neuroseg::metrics

namespace {

// Breadth-first flood fill in raster order: the obvious definition of cc3d's output.
at::Tensor flood_fill_labels(const at::Tensor& image, int connectivity) {
  const at::Tensor x = image.to(at::kLong).contiguous();
  const int64_t D = x.size(0), H = x.size(1), W = x.size(2);
  const int limit = connectivity == 6 || connectivity == 4 ? 1 : (connectivity == 18 ? 2 : 3);
  const int64_t* v = x.data_ptr<int64_t>();
  at::Tensor out = at::zeros({D, H, W}, at::kInt);
  int32_t* o = out.data_ptr<int32_t>();
  int32_t next = 0;
  for (int64_t start = 0; start < x.numel(); ++start) {
    if (v[start] == 0 || o[start] != 0) continue;
    o[start] = ++next;
    std::deque<int64_t> queue{start};
    while (!queue.empty()) {
      const int64_t i = queue.front();
      queue.pop_front();
      const int64_t z = i / (H * W), y = i / W % H, xx = i % W;
      for (int dz = -1; dz <= 1; ++dz)
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            if ((dz != 0) + (dy != 0) + (dx != 0) > limit || (dz == 0 && dy == 0 && dx == 0)) continue;
            if (D == 1 && dz != 0) continue;
            const int64_t zz = z + dz, yy = y + dy, x2 = xx + dx;
            if (zz < 0 || yy < 0 || x2 < 0 || zz >= D || yy >= H || x2 >= W) continue;
            const int64_t j = (zz * H + yy) * W + x2;
            if (v[j] != v[i] || o[j] != 0) continue;
            o[j] = next;
            queue.push_back(j);
          }
    }
  }
  return out;
}

at::Tensor random_labels(at::IntArrayRef shape, int64_t values, double background) {
  const at::Tensor v = at::randint(1, values + 1, shape, at::kLong);
  return at::where(at::rand(shape) < background, at::zeros_like(v), v).to(at::kByte);
}

// Sizes, bounds, first voxels and values recomputed from a label image.
void check_statistics(const metrics::Components& c, const at::Tensor& image) {
  const at::Tensor labels = c.labels.reshape({-1, c.labels.size(-2), c.labels.size(-1)}).cpu();
  const at::Tensor flat_image = image.reshape({-1}).cpu().to(at::kDouble);
  REQUIRE(c.sizes.size() == static_cast<size_t>(c.count));
  REQUIRE(c.boxes.size() == static_cast<size_t>(c.count));
  REQUIRE(c.first_voxel.size() == static_cast<size_t>(c.count));
  REQUIRE(c.values.numel() == c.count);
  CHECK(std::string(c10::toString(c.values.scalar_type())) == c10::toString(image.scalar_type()));
  for (int64_t k = 1; k <= c.count; ++k) {
    const at::Tensor where = at::nonzero(labels == k);  // (n, 3), raster order
    REQUIRE(where.size(0) > 0);
    CHECK(c.sizes[k - 1] == where.size(0));
    const at::Tensor lo = std::get<0>(where.min(0)), hi = std::get<0>(where.max(0));
    const metrics::BoundingBox expected{lo[0].item<int64_t>(), lo[1].item<int64_t>(), lo[2].item<int64_t>(),
                                        hi[0].item<int64_t>(), hi[1].item<int64_t>(), hi[2].item<int64_t>()};
    CHECK(c.boxes[k - 1] == expected);
    const int64_t first = (where[0][0].item<int64_t>() * labels.size(1) + where[0][1].item<int64_t>()) * labels.size(2) +
                          where[0][2].item<int64_t>();
    CHECK(c.first_voxel[k - 1] == first);
    CHECK(c.values[k - 1].item<double>() == flat_image[first].item<double>());
    if (k > 1) CHECK(c.first_voxel[k - 2] < c.first_voxel[k - 1]);
  }
}

// The same checks in one pass over the labels, for volumes with thousands of components.
void check_statistics_one_pass(const metrics::Components& c, const at::Tensor& image) {
  const at::Tensor labels = c.labels.contiguous().cpu();
  const at::Tensor values = image.to(at::kDouble).contiguous().cpu();
  const int64_t H = labels.size(1), W = labels.size(2);
  const int32_t* l = labels.data_ptr<int32_t>();
  const double* v = values.data_ptr<double>();
  std::vector<int64_t> sizes(c.count, 0), first(c.count, -1);
  std::vector<metrics::BoundingBox> boxes(c.count);
  for (int64_t i = 0; i < labels.numel(); ++i) {
    if (l[i] == 0) continue;
    const int64_t k = l[i] - 1, z = i / (H * W), y = i / W % H, x = i % W;
    metrics::BoundingBox& b = boxes[k];
    if (sizes[k]++ == 0) {
      first[k] = i;
      b = {z, y, x, z, y, x};
    }
    b.z0 = std::min(b.z0, z), b.y0 = std::min(b.y0, y), b.x0 = std::min(b.x0, x);
    b.z1 = std::max(b.z1, z), b.y1 = std::max(b.y1, y), b.x1 = std::max(b.x1, x);
  }
  CHECK(c.sizes == sizes);
  CHECK(c.first_voxel == first);
  CHECK(c.boxes == boxes);
  REQUIRE(c.values.numel() == c.count);
  const at::Tensor got = c.values.to(at::kDouble).contiguous();
  bool same = true;
  for (int64_t k = 0; k < c.count; ++k) same = same && got.data_ptr<double>()[k] == v[first[k]];
  CHECK(same);
}

struct ThreadCount {
  explicit ThreadCount(int n) : saved(at::get_num_threads()) { at::set_num_threads(n); }
  ~ThreadCount() { at::set_num_threads(saved); }
  int saved;
};

// Small CPU slabs, so that these small volumes are cut into one slab per thread (the seams).
struct SmallSlabs {
  SmallSlabs() : saved(metrics::detail::cc_min_slab_voxels) { metrics::detail::cc_min_slab_voxels = 1 << 10; }
  ~SmallSlabs() { metrics::detail::cc_min_slab_voxels = saved; }
  int64_t saved;
};

}  // namespace

TEST_SUITE("metrics_components") {
  TEST_CASE("face, edge and corner contacts per connectivity") {
    auto count = [](std::initializer_list<std::array<int, 3>> voxels, int k) {
      at::Tensor x = at::zeros({3, 3, 3}, at::kByte);
      for (const auto& v : voxels) x[v[0]][v[1]][v[2]] = 1;
      return metrics::connected_components(x, k).count;
    };
    for (int k : {6, 18, 26}) CHECK(count({{1, 1, 1}, {1, 1, 2}}, k) == 1);   // face
    CHECK(count({{1, 1, 1}, {1, 2, 2}}, 6) == 2);                              // in-plane edge
    CHECK(count({{1, 1, 1}, {1, 2, 2}}, 18) == 1);
    CHECK(count({{1, 1, 1}, {2, 1, 2}}, 6) == 2);                              // edge across slices
    CHECK(count({{1, 1, 1}, {2, 1, 2}}, 18) == 1);
    CHECK(count({{0, 1, 1}, {1, 2, 1}}, 18) == 1);
    CHECK(count({{1, 1, 1}, {2, 2, 2}}, 18) == 2);                             // corner
    CHECK(count({{1, 1, 1}, {2, 2, 2}}, 26) == 1);
    CHECK(count({{1, 1, 1}, {0, 2, 0}}, 26) == 1);
    CHECK(count({{0, 0, 0}, {2, 2, 2}}, 26) == 2);                             // not touching
  }

  TEST_CASE("2D images: (H, W) and (1, H, W), 4 and 8 connectivity") {
    const at::Tensor x = at::tensor({0, 1, 0, 1, 0, 0, 0, 0, 1}, at::kByte).reshape({3, 3});
    // .1.
    // 1..
    // ..1
    const auto c4 = metrics::connected_components(x, 4);
    CHECK(c4.labels.sizes() == x.sizes());
    CHECK(c4.count == 3);
    CHECK(at::equal(c4.labels, at::tensor({0, 1, 0, 2, 0, 0, 0, 0, 3}, at::kInt).reshape({3, 3})));
    const auto c8 = metrics::connected_components(x, 8);
    CHECK(c8.count == 2);
    CHECK(at::equal(c8.labels, at::tensor({0, 1, 0, 1, 0, 0, 0, 0, 2}, at::kInt).reshape({3, 3})));
    CHECK(c8.boxes[0] == metrics::BoundingBox{0, 0, 0, 0, 1, 1});
    const auto c3d = metrics::connected_components(x.unsqueeze(0), 8);
    CHECK(c3d.labels.sizes() == at::IntArrayRef{1, 3, 3});
    CHECK(at::equal(c3d.labels[0], c8.labels));
    // On one slice, 6 means 4 and 18 / 26 mean 8 (what cc3d gives for a (1, H, W) volume).
    CHECK(at::equal(metrics::connected_components(x.unsqueeze(0), 6).labels[0], c4.labels));
    CHECK(at::equal(metrics::connected_components(x.unsqueeze(0), 26).labels[0], c8.labels));
    CHECK_THROWS_AS(metrics::connected_components(x.unsqueeze(0).repeat({2, 1, 1}), 8), io::Error);
    CHECK_THROWS_AS(metrics::connected_components(x, 5), io::Error);
    CHECK_THROWS_AS(metrics::connected_components(x.reshape({1, 1, 3, 3}), 6), io::Error);
  }

  TEST_CASE("multi-label: equal non-zero values connect, different ones do not") {
    at::Tensor x = at::tensor({1, 1, 2, 2, 0, 1, 3, 3, 3, 1, 1, 1}, at::kShort).reshape({1, 2, 6});
    // 1 1 2 2 0 1
    // 3 3 3 1 1 1
    const auto c = metrics::connected_components(x, 8);
    CHECK(c.count == 4);
    CHECK(at::equal(c.labels, at::tensor({1, 1, 2, 2, 0, 3, 4, 4, 4, 3, 3, 3}, at::kInt).reshape({1, 2, 6})));
    CHECK(c.sizes == std::vector<int64_t>{2, 2, 4, 3});
    CHECK(at::equal(c.values, at::tensor({1, 2, 1, 3}, at::kShort)));
    // Under 4-connectivity the 2 at (0, 3) still does not join the 1s below it.
    CHECK(metrics::connected_components(x, 4).count == 4);
    check_statistics(c, x);
  }

  TEST_CASE("numbering follows the first voxel in raster order, not the merge order") {
    // Two arms that meet only in the last row: one component, label 1; the later blob gets 2,
    // although its first voxel (row 1) comes before the merge (row 3).
    const at::Tensor x = at::tensor({1, 0, 1, 0, 0,  //
                                     1, 0, 1, 0, 1,  //
                                     1, 0, 1, 0, 1,  //
                                     1, 1, 1, 0, 0},
                                    at::kByte)
                             .reshape({1, 4, 5});
    const auto c = metrics::connected_components(x, 4);
    CHECK(c.count == 2);
    CHECK(at::equal(c.labels, at::where(x > 0, at::ones_like(x), at::zeros_like(x)).to(at::kInt) +
                                  at::tensor({0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0}, at::kInt)
                                      .reshape({1, 4, 5})));
    CHECK(c.first_voxel == std::vector<int64_t>{0, 9});
    CHECK(c.boxes[0] == metrics::BoundingBox{0, 0, 0, 0, 3, 2});
    CHECK(c.boxes[1] == metrics::BoundingBox{0, 1, 4, 0, 2, 4});
  }

  TEST_CASE("sizes and bounds of blocks") {
    at::Tensor x = at::zeros({6, 7, 8}, at::kInt);
    x.slice(0, 1, 3).slice(1, 2, 5).slice(2, 0, 2).fill_(4);   // 2 x 3 x 2
    x.slice(0, 4, 6).slice(1, 0, 7).slice(2, 5, 8).fill_(9);   // 2 x 7 x 3
    x[0][6][7] = 4;
    const auto c = metrics::connected_components(x, 26);
    REQUIRE(c.count == 3);
    CHECK(c.sizes == std::vector<int64_t>{1, 12, 42});  // (0,6,7) comes first in raster order
    CHECK(c.boxes[0] == metrics::BoundingBox{0, 6, 7, 0, 6, 7});
    CHECK(c.boxes[1] == metrics::BoundingBox{1, 2, 0, 2, 4, 1});
    CHECK(c.boxes[2] == metrics::BoundingBox{4, 0, 5, 5, 6, 7});
    CHECK(at::equal(c.values, at::tensor({4, 4, 9}, at::kInt)));
    check_statistics(c, x);
  }

  TEST_CASE("empty, full and zero-sized volumes") {
    for (int k : {6, 18, 26}) {
      const auto empty = metrics::connected_components(at::zeros({5, 6, 7}, at::kByte), k);
      CHECK(empty.count == 0);
      CHECK(empty.labels.sum().item<int64_t>() == 0);
      CHECK(empty.sizes.empty());
      const auto full = metrics::connected_components(at::full({5, 6, 7}, 3, at::kLong), k);
      CHECK(full.count == 1);
      CHECK(full.sizes == std::vector<int64_t>{210});
      CHECK(full.boxes[0] == metrics::BoundingBox{0, 0, 0, 4, 5, 6});
      CHECK(at::equal(full.labels, at::ones({5, 6, 7}, at::kInt)));
    }
    const auto none = metrics::connected_components(at::zeros({0, 4, 5}, at::kByte), 26);
    CHECK(none.count == 0);
    CHECK(none.labels.sizes() == at::IntArrayRef{0, 4, 5});
    CHECK(metrics::connected_components(at::zeros({3, 4, 0}, at::kByte), 6).count == 0);
  }

  TEST_CASE("dtypes: bool, integers and floats give the same labels; -0.0 is background") {
    at::manual_seed(3);
    const at::Tensor x = random_labels({9, 10, 11}, 3, 0.4);
    const at::Tensor ref = metrics::connected_components(x, 18).labels;
    for (auto t : {at::kChar, at::kShort, at::kInt, at::kLong, at::kFloat, at::kDouble, at::kHalf})
      CHECK(at::equal(metrics::connected_components(x.to(t), 18).labels, ref));
    const at::Tensor mask = x > 0;
    CHECK(at::equal(metrics::connected_components(mask, 6).labels,
                    metrics::connected_components(mask.to(at::kByte), 6).labels));
    at::Tensor f = at::zeros({1, 1, 5}, at::kFloat);
    f[0][0][1] = -0.0f;
    f[0][0][2] = 2.5f;
    f[0][0][3] = 2.5f;
    f[0][0][4] = 2.25f;
    const auto c = metrics::connected_components(f, 4);
    CHECK(c.count == 2);
    CHECK(at::equal(c.labels, at::tensor({0, 0, 1, 1, 2}, at::kInt).reshape({1, 1, 5})));
    CHECK(at::equal(c.values, at::tensor({2.5f, 2.25f})));
  }

  TEST_CASE("random volumes equal a flood fill, for every connectivity and thread count") {
    const SmallSlabs small_slabs;
    at::manual_seed(7);
    const std::vector<std::vector<int64_t>> shapes = {{13, 17, 19}, {1, 40, 33}, {2, 1, 50}, {20, 3, 1}, {31, 8, 9}, {4, 30, 7}};
    for (const auto& shape : shapes) {
      for (int64_t values : {1, 3}) {
        for (double bg : {0.3, 0.6}) {
          const at::Tensor x = random_labels(shape, values, bg);
          const std::vector<int> ks = shape[0] == 1 ? std::vector<int>{4, 8} : std::vector<int>{6, 18, 26};
          for (int k : ks) {
            const at::Tensor ref = flood_fill_labels(x, k);
            std::vector<metrics::Components> results;
            for (int threads : {1, 2, 3, 8}) {
              const ThreadCount scope(threads);
              results.push_back(metrics::connected_components(x, k));
            }
            INFO("shape ", shape[0], "x", shape[1], "x", shape[2], " values ", values, " k ", k);
            CHECK(at::equal(results[0].labels, ref));
            check_statistics(results[0], x);
            for (const auto& r : results) {
              CHECK(at::equal(r.labels, results[0].labels));
              CHECK(r.sizes == results[0].sizes);
              CHECK(r.boxes == results[0].boxes);
              CHECK(r.first_voxel == results[0].first_voxel);
            }
          }
        }
      }
    }
  }

  TEST_CASE("several slabs, several words per row, abutting labels: equal to a flood fill") {
    // Cut into 2..8 slabs (the seams; with {4, 100, 64} a slab is thinner than a plane, so
    // z - 1 rows lie two slabs back), rows of 1..3 words of 64 voxels (with and without a
    // partial last word), and without background, where runs of different values abut in
    // every row and corner contacts decide the widened links.
    const SmallSlabs small_slabs;
    at::manual_seed(11);
    const std::vector<std::vector<int64_t>> shapes = {{24, 21, 70}, {6, 40, 130}, {30, 30, 64}, {4, 100, 64}};
    for (const auto& shape : shapes) {
      for (int64_t values : {1, 4}) {
        for (double bg : {0.0, 0.5}) {
          if (values == 1 && bg == 0.0) continue;
          const at::Tensor x = random_labels(shape, values, bg);
          for (int k : {6, 18, 26}) {
            INFO("shape ", shape[0], "x", shape[1], "x", shape[2], " values ", values, " bg ", bg, " k ", k);
            const at::Tensor ref = flood_fill_labels(x, k);
            for (int threads : {1, 2, 3, 8}) {
              const ThreadCount scope(threads);
              const metrics::Components c = metrics::connected_components(x, k);
              CHECK(at::equal(c.labels, ref));
              check_statistics_one_pass(c, x);
              const metrics::Components bare = metrics::connected_components(x, k, metrics::ComponentStats::kNone);
              CHECK(at::equal(bare.labels, ref));
              CHECK(bare.count == c.count);
            }
          }
        }
      }
    }
  }

  TEST_CASE("ComponentStats::kNone returns labels and count only") {
    const at::Tensor x = random_labels({5, 6, 7}, 2, 0.4);
    const metrics::Components all = metrics::connected_components(x, 26);
    const metrics::Components bare = metrics::connected_components(x, 26, metrics::ComponentStats::kNone);
    CHECK(at::equal(bare.labels, all.labels));
    CHECK(bare.count == all.count);
    CHECK(bare.sizes.empty());
    CHECK(bare.boxes.empty());
    CHECK(bare.first_voxel.empty());
    CHECK(!bare.values.defined());
  }

  TEST_CASE("keep_largest_component_per_label keeps one component per value") {
    at::Tensor x = at::zeros({1, 3, 7}, at::kByte);
    x[0][0][0] = 1;                         // 1 voxel of label 1
    x[0][2].slice(0, 0, 3).fill_(1);        // 3 voxels of label 1
    x[0][0].slice(0, 5, 7).fill_(2);        // 2 voxels of label 2
    x[0][2][6] = 2;                         // 1 voxel of label 2
    const at::Tensor kept = metrics::keep_largest_component_per_label(x, 4);
    at::Tensor expected = x.clone();
    expected[0][0][0] = 0;
    expected[0][2][6] = 0;
    CHECK(at::equal(kept, expected));
  }
}

TEST_SUITE("metrics_components") {
  TEST_CASE("labels equal cc3d.connected_components on random binary and multi-label volumes") {
    testing::ScratchDir dir("components_cc3d");
    at::manual_seed(11);
    struct Case {
      std::string name;
      at::Tensor data;  // (D, H, W)
      int connectivity;
    };
    std::vector<Case> cases;
    for (int k : {6, 18, 26}) {
      cases.push_back({"binary" + std::to_string(k), random_labels({23, 18, 29}, 1, 0.45), k});
      cases.push_back({"multi" + std::to_string(k), random_labels({17, 26, 21}, 4, 0.2).to(at::kShort), k});
      cases.push_back({"sparse" + std::to_string(k), random_labels({32, 33, 34}, 2, 0.85), k});
    }
    cases.push_back({"slice4", random_labels({1, 45, 38}, 2, 0.4), 4});
    cases.push_back({"slice8", random_labels({1, 45, 38}, 1, 0.5), 8});
    std::string script =
        "import sys, numpy as np, nibabel as nib, cc3d\n"
        "for name, k in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    img = nib.load(name + '.nii.gz')\n"
        "    a = np.asfortranarray(np.asanyarray(img.dataobj))\n"  // x fastest, as our (D, H, W)
        "    if int(k) in (4, 8): out = cc3d.connected_components(a[:, :, 0], connectivity=int(k))[:, :, None]\n"
        "    else: out = cc3d.connected_components(a, connectivity=int(k))\n"
        "    nib.save(nib.Nifti1Image(out.astype(np.int32), img.affine), name + '_cc3d.nii.gz')\n";
    const std::string script_path = dir.file("cc3d_labels.py");
    std::ofstream(script_path) << script;
    std::string cmd = std::string(NEUROSEG_PYTHON) + " " + script_path;
    for (const auto& c : cases) {
      io::Volume v;
      v.data = c.data.unsqueeze(0);
      v.source.dtype = io::dtype_from_scalar_type(c.data.scalar_type(), c.name);
      io::write_volume(v, dir.file(c.name + ".nii.gz"));
      cmd += " " + dir.file(c.name) + " " + std::to_string(c.connectivity);
    }
    REQUIRE(std::system(cmd.c_str()) == 0);
    for (const auto& c : cases) {
      INFO(c.name);
      const at::Tensor theirs = io::read_volume(dir.file(c.name + "_cc3d.nii.gz")).data[0].to(at::kInt);
      const auto ours = metrics::connected_components(c.data, c.connectivity);
      REQUIRE(theirs.sizes() == ours.labels.sizes());
      CHECK(at::equal(ours.labels, theirs));
      CHECK(ours.count == theirs.max().item<int64_t>());
    }
  }
}
