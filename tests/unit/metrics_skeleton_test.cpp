// Skeletons (Lee et al. 1994 thinning, skimage's skeletonize_3d) and clDice: hand cases,
// invariants, and voxel-for-voxel agreement with scikit-image run from the test.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "io/error.h"
#include "metrics/cldice.h"
#include "metrics/skeleton.h"
#include "support/test_support.h"

using namespace neuroseg;

namespace {

// Smoothed uniform noise above `level`: blobs and tubes of a few voxels' width. `shape`:
// (D, H, W), or (H, W) for a 2D mask.
at::Tensor noise_mask(std::vector<int64_t> shape, double level, int64_t seed) {
  at::manual_seed(seed);
  const bool plane = shape.size() == 2;
  if (plane) shape.insert(shape.begin(), 1);
  const at::Tensor noise = at::rand({1, 1, shape[0] + 2, shape[1] + 2, shape[2] + 2});
  const at::Tensor smooth = at::avg_pool3d(noise, 3, 1, 0)[0][0];
  const at::Tensor mask = (smooth > level).to(at::kByte);
  return plane ? mask[0] : mask;
}

int64_t count(const at::Tensor& t) { return (t != 0).sum().item<int64_t>(); }

bool subset(const at::Tensor& a, const at::Tensor& b) { return count((a != 0) & (b == 0)) == 0; }

// 26-connected pieces of the non-zero voxels, by flood fill (a reference independent of
// metrics/connected_components).
int64_t components(const at::Tensor& t) {
  const at::Tensor v = (t != 0).to(at::kByte).reshape({-1, t.size(-2), t.size(-1)}).contiguous();
  const int64_t D = v.size(0), H = v.size(1), W = v.size(2);
  std::vector<uint8_t> seen(v.data_ptr<uint8_t>(), v.data_ptr<uint8_t>() + v.numel());
  int64_t pieces = 0;
  std::vector<int64_t> stack;
  for (int64_t start = 0; start < v.numel(); ++start) {
    if (seen[start] != 1) continue;
    ++pieces;
    seen[start] = 2;
    stack.push_back(start);
    while (!stack.empty()) {
      const int64_t i = stack.back();
      stack.pop_back();
      const int64_t z = i / (H * W), y = i / W % H, x = i % W;
      for (int64_t dz = -1; dz <= 1; ++dz)
        for (int64_t dy = -1; dy <= 1; ++dy)
          for (int64_t dx = -1; dx <= 1; ++dx) {
            const int64_t zz = z + dz, yy = y + dy, xx = x + dx;
            if (zz < 0 || zz >= D || yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
            const int64_t j = (zz * H + yy) * W + xx;
            if (seen[j] == 1) {
              seen[j] = 2;
              stack.push_back(j);
            }
          }
    }
  }
  return pieces;
}

void write_raw(const at::Tensor& t, const std::string& path) {
  const at::Tensor c = t.to(at::kByte).contiguous();
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), c.numel());
}

at::Tensor read_raw(const std::string& path, at::IntArrayRef shape) {
  at::Tensor t = at::empty(shape, at::kByte);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(t.data_ptr<uint8_t>()), t.numel());
  REQUIRE_MESSAGE(in.gcount() == t.numel(), path);
  return t;
}

std::string shape_text(at::IntArrayRef shape) {
  std::string s;
  for (int64_t n : shape) s += (s.empty() ? "" : "x") + std::to_string(n);
  return s;
}

}  // namespace

TEST_SUITE("metrics_skeleton") {
  TEST_CASE("hand cases: lines stay, a bar thins to its centre line, empty, full, one voxel") {
    at::Tensor line = at::zeros({5, 6, 12}, at::kByte);
    line.select(0, 2).select(0, 3).slice(0, 1, 11).fill_(1);
    CHECK(at::equal(metrics::skeletonize(line), line));
    at::Tensor diagonal = at::zeros({9, 9, 9}, at::kByte);
    for (int64_t k = 1; k < 8; ++k) diagonal[k][k][8 - k] = 1;
    CHECK(at::equal(metrics::skeletonize(diagonal), diagonal));

    // A 3x3x11 bar: what is left lies on the centre line, in one piece, through the middle.
    at::Tensor bar = at::zeros({5, 5, 13}, at::kByte);
    bar.slice(0, 1, 4).slice(1, 1, 4).slice(2, 1, 12).fill_(1);
    const at::Tensor s = metrics::skeletonize(bar);
    CHECK((s.scalar_type() == at::kByte));
    CHECK(s.max().item<int>() == 1);
    CHECK(count(s) == count(s[2][2]));
    CHECK(s[2][2][6].item<int>() == 1);
    CHECK(count(s) >= 7);
    CHECK(components(s) == 1);

    // A 5x5x5 cube keeps a few voxels around its centre.
    at::Tensor cube = at::zeros({7, 7, 7}, at::kByte);
    cube.slice(0, 1, 6).slice(1, 1, 6).slice(2, 1, 6).fill_(1);
    const at::Tensor sc = metrics::skeletonize(cube);
    CHECK(sc[3][3][3].item<int>() == 1);
    CHECK(count(sc) <= 5);
    CHECK(components(sc) == 1);

    CHECK(count(metrics::skeletonize(at::zeros({4, 5, 6}))) == 0);
    CHECK(metrics::skeletonize(at::zeros({0, 5, 6})).numel() == 0);
    const at::Tensor full = metrics::skeletonize(at::ones({4, 5, 6}, at::kFloat));
    CHECK(count(full) >= 1);
    CHECK(components(full) == 1);
    at::Tensor one = at::zeros({3, 4, 5}, at::kInt);
    one[1][2][3] = 7;
    CHECK(at::equal(metrics::skeletonize(one), (one != 0).to(at::kByte)));
  }

  TEST_CASE("a line at every start and end of rows of 1 to 20 voxels stays whole (the crop's box)") {
    // The box scan reads one-byte masks 8 voxels per load: lines that start or end at any
    // offset within and around a word, in rows of any width, must not be cut by the crop.
    int cases = 0, cut = 0;
    for (int64_t w = 2; w <= 20; ++w)
      for (int64_t x0 = 0; x0 + 1 < w; ++x0)
        for (int64_t x1 = x0 + 1; x1 < w; ++x1)
          for (const at::ScalarType dtype : {at::kByte, at::kBool, at::kChar, at::kShort}) {
            at::Tensor line = at::zeros({3, 2, w}, at::kByte);
            line[1][1].slice(0, x0, x1 + 1).fill_(1);
            ++cases;
            if (!at::equal(metrics::skeletonize(line.to(dtype)), line)) {
              ++cut;
              FAIL_CHECK("width " << w << ", line " << x0 << ".." << x1 << ", " << dtype);
            }
          }
    CHECK(cases == 4 * 1330);
    CHECK(cut == 0);
  }

  TEST_CASE("topology: a torus stays a ring, separate objects stay separate") {
    // Torus of tube radius 3 around a circle of radius 9 in the (H, W) plane.
    const at::Tensor z = at::arange(15, at::kFloat).view({15, 1, 1}) - 7;
    const at::Tensor y = at::arange(30, at::kFloat).view({1, 30, 1}) - 14.5;
    const at::Tensor x = at::arange(30, at::kFloat).view({1, 1, 30}) - 14.5;
    const at::Tensor torus = ((at::sqrt(y * y + x * x) - 9).pow(2) + z * z <= 9).to(at::kByte);
    const at::Tensor ring = metrics::skeletonize(torus);
    CHECK(components(ring) == 1);
    CHECK(subset(ring, torus));
    CHECK(count(ring) >= 40);  // goes round: at least the 8-connected circumference
    // Nothing is left at the centre of the hole or off the tube's mid-plane.
    CHECK(count(ring.slice(1, 10, 20).slice(2, 10, 20)) == 0);
    at::Tensor two = at::zeros({8, 9, 20}, at::kByte);
    two.slice(0, 1, 7).slice(1, 1, 8).slice(2, 1, 8).fill_(1);
    two.slice(0, 2, 6).slice(1, 2, 7).slice(2, 10, 19).fill_(1);
    CHECK(components(metrics::skeletonize(two)) == 2);
  }

  TEST_CASE("invariants on random masks: subset, no new pieces, idempotent, any dtype, crop and 2D") {
    for (int64_t seed = 0; seed < 6; ++seed) {
      const std::vector<int64_t> shape = seed % 2 ? std::vector<int64_t>{17, 20, 23} : std::vector<int64_t>{22, 19, 16};
      const at::Tensor mask = noise_mask(shape, seed < 3 ? 0.5 : 0.56, seed);
      const at::Tensor s = metrics::skeletonize(mask);
      CHECK(subset(s, mask));
      // Deleting a simple point never splits a piece. skimage's sequential re-check tests
      // simplicity only (not the end-point and Euler conditions), so a remnant that became
      // isolated during a pass may vanish: pieces can only get fewer.
      CHECK(components(s) <= components(mask));
      CHECK(count(s) < count(mask));
      // Thinning is idempotent: a skeleton has nothing left to delete.
      CHECK(at::equal(metrics::skeletonize(s), s));
      // Non-zero is foreground, whatever the dtype and value.
      CHECK(at::equal(metrics::skeletonize(mask.to(at::kBool)), s));
      CHECK(at::equal(metrics::skeletonize(mask.to(at::kFloat) * -2.5), s));
      CHECK(at::equal(metrics::skeletonize(mask.to(at::kLong) * 300), s));
      // Zero margins (cropping) change nothing: the same mask inside a larger volume.
      at::Tensor big = at::zeros({shape[0] + 7, shape[1] + 3, shape[2] + 5}, at::kByte);
      big.slice(0, 4, 4 + shape[0]).slice(1, 1, 1 + shape[1]).slice(2, 5, 5 + shape[2]).copy_(mask);
      const at::Tensor sb = metrics::skeletonize(big);
      CHECK(count(sb) == count(s));
      CHECK(at::equal(sb.slice(0, 4, 4 + shape[0]).slice(1, 1, 1 + shape[1]).slice(2, 5, 5 + shape[2]), s));
    }
    // A 2D image is thinned as a one-slice volume.
    const at::Tensor plane = noise_mask({30, 41}, 0.5, 9);
    const at::Tensor s2 = metrics::skeletonize(plane);
    CHECK((s2.sizes() == plane.sizes()));
    CHECK(at::equal(s2, metrics::skeletonize(plane.unsqueeze(0))[0]));
    CHECK(subset(s2, plane));
    CHECK_THROWS_AS(metrics::skeletonize(at::zeros({2, 3, 4, 5})), io::Error);
  }

  TEST_CASE("two threads (alternate passes in a wavefront) give the one-thread skeleton") {
    // Crops with >= 32 k foreground voxels, >= 4 planes and >= 2048 voxels per padded plane
    // thin on two threads when two are available (metrics/skeleton.cpp); dense blobs delete
    // most voxels, so the hand-over between the threads is exercised on every plane of every
    // pass. Odd sizes, a depth of 4 (the smallest on two threads), and a crop of 44 x 44
    // (46 x 46 padded voxels a plane, near the smallest allowed, 2048: summary words of
    // the bit image span two planes).
    const int previous = at::get_num_threads();
    at::manual_seed(5);
    for (const auto& shape :
         std::vector<std::vector<int64_t>>{{13, 131, 101}, {4, 256, 200}, {24, 97, 110}, {48, 46, 46}, {36, 100, 21}}) {
      at::Tensor noise = at::rand(shape, at::kFloat).unsqueeze(0).unsqueeze(0);
      noise = at::avg_pool3d(noise, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
      at::Tensor mask = (noise[0][0] > 0.5).to(at::kByte);
      // Full first and last rows in every plane: on the 36 x 100 x 21 crop (22 padded voxels
      // a row) the two threads' halves then meet in one word of the bit image when encoding.
      mask.select(1, 0).fill_(1);
      mask.select(1, -1).fill_(1);
      // The conditions for two threads hold on the crop (the bounding box, padded by one).
      auto extent = [&](at::IntArrayRef other_dims) {
        const at::Tensor at_all = at::nonzero(mask.amax(other_dims)).flatten();
        return at_all.max().item<int64_t>() - at_all.min().item<int64_t>() + 1;
      };
      CHECK(mask.sum().item<int64_t>() >= 32768);
      CHECK(extent({1, 2}) >= 4);
      CHECK((extent({0, 2}) + 2) * (extent({0, 1}) + 2) >= 2048);
      at::set_num_threads(1);
      const at::Tensor one = metrics::skeletonize(mask);
      at::set_num_threads(2);
      const at::Tensor two = metrics::skeletonize(mask);
      CHECK(at::equal(one, two));
      CHECK(one.sum().item<int64_t>() > 0);
      CHECK(one.sum().item<int64_t>() < mask.sum().item<int64_t>() / 4);
    }
    // Planes of >= 2^17 padded voxels: several passes in flight per thread (4 on one thread,
    // 2 on each of two), so the two runs below interleave their passes differently.
    {
      at::Tensor noise = at::rand({6, 400, 330}, at::kFloat).unsqueeze(0).unsqueeze(0);
      noise = at::avg_pool3d(noise, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
      const at::Tensor mask = (noise[0][0] > 0.5).to(at::kByte);
      at::set_num_threads(1);
      const at::Tensor one = metrics::skeletonize(mask);
      at::set_num_threads(2);
      CHECK(at::equal(one, metrics::skeletonize(mask)));
      CHECK(one.sum().item<int64_t>() > 0);
      CHECK(one.sum().item<int64_t>() < mask.sum().item<int64_t>() / 4);
    }
    // A crop large enough to start the second thread (it fills half the planes) but with
    // fewer than 32 k foreground voxels: the first thread then thins alone. Sparse blobs all
    // over, and blobs in the second thread's half only.
    for (const int64_t lower_empty : {0, 20}) {
      at::Tensor noise = at::rand({40, 60, 60}, at::kFloat).unsqueeze(0).unsqueeze(0);
      noise = at::avg_pool3d(noise, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
      at::Tensor mask = (noise[0][0] > 0.58).to(at::kByte);
      mask.slice(0, 0, lower_empty).zero_();
      mask.select(0, 0).select(0, 0).fill_(1);  // the box spans the whole volume
      mask.select(0, 39).select(0, 59).fill_(1);
      CHECK(mask.sum().item<int64_t>() < 32768);
      CHECK(mask.sum().item<int64_t>() > 1000);
      at::set_num_threads(1);
      const at::Tensor one = metrics::skeletonize(mask);
      at::set_num_threads(2);
      CHECK(at::equal(one, metrics::skeletonize(mask)));
      CHECK(one.sum().item<int64_t>() > 0);
    }
    at::set_num_threads(previous);
  }

  TEST_CASE("a child forked after a two-thread skeleton thins on two threads of its own") {
    // The second thread persists between calls (metrics/skeleton.cpp, SecondThread); fork()
    // does not copy it, so a child must not post to it (the job would never run).
    const int previous = at::get_num_threads();
    at::set_num_threads(2);
    at::manual_seed(9);
    at::Tensor noise = at::avg_pool3d(at::rand({1, 1, 40, 64, 64}), {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
    const at::Tensor mask = (noise[0][0] > 0.5).to(at::kByte).contiguous();
    REQUIRE(mask.sum().item<int64_t>() >= 32768);  // large enough for two threads
    const at::Tensor expected = metrics::skeletonize(mask);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      alarm(60);  // a hang ends the child with SIGALRM
      const at::Tensor got = metrics::skeletonize(mask);
      const bool same = std::memcmp(got.data_ptr(), expected.data_ptr(), expected.nbytes()) == 0;
      std::exit(same ? 0 : 1);  // static destructors included: the helper's must not join
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(at::equal(metrics::skeletonize(mask), expected));  // the parent's helper still works
    at::set_num_threads(previous);
  }

  TEST_CASE("skeletonize_labels: each label on its own, its value kept, any integer dtype") {
    // Three touching instances: the halves of one blob image and a second blob image.
    const at::Tensor a = noise_mask({21, 18, 25}, 0.5, 11), b = noise_mask({21, 18, 25}, 0.52, 12);
    at::Tensor labels = at::zeros({21, 18, 25}, at::kInt);
    labels.masked_fill_(b != 0, 3000);
    labels.masked_fill_(a != 0, 5);
    labels.slice(2, 0, 12).masked_fill_(a.slice(2, 0, 12) != 0, -2);
    for (const at::ScalarType dtype : {at::kInt, at::kLong, at::kShort}) {
      const at::Tensor l = labels.to(dtype);
      const at::Tensor s = metrics::skeletonize_labels(l);
      CHECK((s.scalar_type() == dtype));
      for (const int64_t v : {-2, 5, 3000}) {
        const at::Tensor expected = metrics::skeletonize(l == v);
        CHECK(at::equal((s == v).to(at::kByte), expected));
      }
      CHECK(count(s) == count(s == -2) + count(s == 5) + count(s == 3000));
    }
    // Many small instances (one per voxel column) run in parallel and do not interfere.
    const at::Tensor many = at::arange(1, 1 + 6 * 7, at::kLong).reshape({1, 6, 7}).expand({9, 6, 7}).contiguous();
    const at::Tensor sm = metrics::skeletonize_labels(many);
    CHECK(at::equal(sm, many));  // every instance is a 9-voxel line along z
    const at::Tensor bools = metrics::skeletonize_labels(a.to(at::kBool));
    CHECK(at::equal(bools.to(at::kByte), metrics::skeletonize(a)));
    CHECK_THROWS_AS(metrics::skeletonize_labels(a.to(at::kFloat)), io::Error);
  }

  TEST_CASE("clDice: hand cases and edge cases") {
    // A 10-voxel line against its first half: S(pred) = pred, S(ref) = ref.
    at::Tensor pred = at::zeros({3, 3, 12}, at::kByte);
    pred[1][1].slice(0, 1, 11).fill_(1);
    at::Tensor ref = at::zeros_like(pred);
    ref[1][1].slice(0, 1, 6).fill_(1);
    const metrics::ClDice parts = metrics::cl_dice_parts(pred, ref);
    CHECK(parts.precision == doctest::Approx(0.5));
    CHECK(parts.sensitivity == doctest::Approx(1.0));
    CHECK(parts.score == doctest::Approx(2.0 / 3.0));
    CHECK(metrics::cl_dice(ref, pred) == doctest::Approx(2.0 / 3.0));

    // A thick tube against its centre line: the line's skeleton lies in the tube and the
    // tube's skeleton on the line.
    at::Tensor tube = at::zeros({5, 5, 14}, at::kByte);
    tube.slice(0, 1, 4).slice(1, 1, 4).slice(2, 1, 13).fill_(1);
    at::Tensor centre = at::zeros_like(tube);
    centre[2][2].slice(0, 1, 13).fill_(1);
    CHECK(metrics::cl_dice(centre, tube) == doctest::Approx(1.0));

    const at::Tensor m = noise_mask({12, 13, 14}, 0.5, 3);
    CHECK(metrics::cl_dice(m, m) == doctest::Approx(1.0));
    CHECK(metrics::cl_dice(m, at::zeros_like(m)) == 0.0);
    CHECK(metrics::cl_dice(at::zeros_like(m), m) == 0.0);
    const metrics::ClDice empty = metrics::cl_dice_parts(at::zeros_like(m), at::zeros_like(m));
    CHECK(empty.score == 1.0);
    CHECK(empty.precision == 1.0);
    at::Tensor left = at::zeros_like(m), right = at::zeros_like(m);
    left.slice(2, 0, 5).fill_(1);
    right.slice(2, 8, 14).fill_(1);
    CHECK(metrics::cl_dice(left, right) == 0.0);
    CHECK_THROWS_AS(metrics::cl_dice(m, m.slice(0, 1)), io::Error);
  }

  TEST_CASE("voxel for voxel equal to scikit-image's skeletonize_3d (random and real masks)") {
    testing::ScratchDir dir("skeleton_vs_skimage");
    struct Case {
      std::string name;
      at::Tensor mask;
    };
    std::vector<Case> cases = {
        {"blobs_even", noise_mask({20, 22, 24}, 0.5, 21)},   {"blobs_odd", noise_mask({31, 29, 27}, 0.5, 22)},
        {"tubes", noise_mask({33, 36, 30}, 0.57, 23)},        {"dense", noise_mask({24, 21, 19}, 0.44, 24)},
        {"one_slice", noise_mask({1, 40, 37}, 0.5, 25)},      {"two_slices", noise_mask({2, 33, 35}, 0.5, 26)},
        {"thin_y", noise_mask({30, 1, 28}, 0.5, 27)},         {"flat", noise_mask({40, 36, 3}, 0.48, 28)},
        {"plane_2d", noise_mask({37, 31}, 0.5, 29)},
    };
    for (const auto& c : cases) write_raw(c.mask, dir.file(c.name + "_" + shape_text(c.mask.sizes()) + ".mask"));
    // The script skeletonizes every mask with skimage, and adds a real one: the ch2bet brain
    // mask, downsampled 3x, a 40-voxel-wide block through its edge.
    const std::string script = dir.file("skeletonize.py");
    std::ofstream(script) << R"(import glob, os, sys
import numpy as np, nibabel as nib
from skimage.morphology import skeletonize_3d
folder = sys.argv[1]
brain = np.asanyarray(nib.load(sys.argv[2]).dataobj) > 0
crop = np.ascontiguousarray(brain[::3, ::3, ::3][10:40, 20:60, 5:40]).astype(np.uint8)
crop.tofile(os.path.join(folder, "brain_" + "x".join(map(str, crop.shape)) + ".mask"))
for path in glob.glob(os.path.join(folder, "*.mask")):
    shape = tuple(int(n) for n in path[:-5].rsplit("_", 1)[1].split("x"))
    mask = np.fromfile(path, np.uint8).reshape(shape)
    skeleton = skeletonize_3d(mask)
    assert skeleton.shape == mask.shape and set(np.unique(skeleton)) <= {0, 1}
    skeleton.astype(np.uint8).tofile(path[:-5] + ".skel")
)";
    const std::string cmd = std::string(NEUROSEG_PYTHON) + " " + script + " " + dir.path().string() + " " +
                            testing::mricron("ch2bet.nii.gz") + " > /dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    at::Tensor brain;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
      const std::string file = entry.path().filename().string();
      if (file.rfind("brain_", 0) == 0 && entry.path().extension() == ".mask") {
        const std::string dims = entry.path().stem().string().substr(6);
        std::vector<int64_t> shape;
        for (size_t at = 0; at <= dims.size();) {
          const size_t x = dims.find('x', at);
          shape.push_back(std::stoll(dims.substr(at, x - at)));
          at = x == std::string::npos ? dims.size() + 1 : x + 1;
        }
        cases.push_back({"brain", read_raw(entry.path().string(), shape)});
      }
    }
    REQUIRE(cases.back().name == "brain");
    CHECK(count(cases.back().mask) > 1000);
    // Both paths: pext where the CPU has it, and the portable shifts.
    for (const bool portable : {false, true}) {
      CAPTURE(portable);
      if (portable) setenv("NEUROSEG_SKELETON_PORTABLE", "1", 1);
      for (const auto& c : cases) {
        CAPTURE(c.name);
        const at::Tensor expected = read_raw(dir.file(c.name + "_" + shape_text(c.mask.sizes()) + ".skel"), c.mask.sizes());
        const at::Tensor ours = metrics::skeletonize(c.mask);
        CHECK(count(expected) > 0);
        CHECK(count(ours != expected) == 0);
      }
      unsetenv("NEUROSEG_SKELETON_PORTABLE");
    }
  }

  TEST_CASE("the lookup tables agree with Lee's definitions on every 3x3x3 neighbourhood") {
    // Every 7th of the 2^26 neighbourhoods (all of them: 3 s; checked when the tables changed).
    CHECK(metrics::detail::skeleton_table_mismatches(/*stride=*/7) == 0);
  }
}
