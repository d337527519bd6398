#include "metrics/skeleton.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "io/error.h"

// Lee, Kashyap & Chu (1994) thinning as scikit-image 0.19 runs it
// (skimage/morphology/_skeletonize_3d_cy.pyx): the volume is zero-padded by one voxel; then,
// for the border directions in the order W, E, S, N, U, B (skimage's ids 4, 3, 2, 1, 5, 6:
// the background neighbour at r-1, r+1, c+1, c-1, p+1, p-1 for index (p, r, c) = (z, y, x)),
//   1. a raster scan (p, then r, then c) collects the foreground voxels whose neighbour in
//      that direction is background, that are not end points (exactly one of the 26
//      neighbours is foreground), keep the Euler characteristic (Lee's Table 2, column
//      δG26, summed over the 8 octants of the 3x3x3 cube) and are simple (the foreground
//      of the 26-neighbourhood, centre excluded, is one 26-connected piece);
//   2. the candidates are re-checked one after another in that order, with the
//      simple-point test only, on the image as the previous deletions left it, and deleted.
// Passes repeat until a full round of directions deletes nothing. A one-slice volume (and a
// 2D image) gets only the four in-plane directions.
//
// What is ours, not skimage's (the result is the same voxel for voxel):
//  - Only surface voxels (foreground with a background 6-neighbour) can be border voxels.
//    They are kept in a two-level bit set, walked in raster order; a deletion adds its
//    foreground 6-neighbours. skimage scans the whole volume in every pass.
//  - Whether a voxel may be deleted depends on its 3x3x3 neighbourhood only, so the answer
//    is cached per voxel until a neighbour is deleted; a candidate whose neighbourhood did
//    not change since it was collected needs no second simple-point test.
//  - The neighbourhood is one 27-bit word (9 four-byte loads); the Euler test reads the 8
//    octant indices from 3 plane tables; the simple-point test grows a 26-connected piece
//    with shift-and-mask dilations (two neighbours of the centre are 26-adjacent iff some
//    octant holds both, which is why Lee's octree labelling counts 26-connected pieces).
//  - Stopping after as many consecutive empty passes as there are directions, instead of at
//    the end of a round: an empty pass leaves the image as it was, so the rest of skimage's
//    round deletes nothing either.
//  - Cropping to the bounding box: every test looks at the 3x3x3 neighbourhood only and the
//    raster order is translation invariant, so the empty margin changes nothing (measured
//    bit-identical in shared/specs/fisbe.md §2.2); the direction count follows the original
//    depth, not the crop's. Buffers come zeroed from calloc, so the empty parts of a crop
//    are never touched.
//  - Candidate collection only reads the image, so a large surface is split across threads
//    (by blocks of the bit set) and the pieces concatenated in order; the re-check stays
//    sequential.
//
// A quirk kept for agreement: the re-check tests simplicity only, and "simple" includes a
// voxel without foreground neighbours, so a remnant isolated earlier in the same pass is
// deleted and a small component can vanish (skimage does the same). Components never split.

namespace neuroseg::metrics {
namespace {

// The 3x3x3 neighbourhood of a voxel as a 27-bit word in raster order:
// bit 9 (dp + 1) + 3 (dr + 1) + (dc + 1) for the neighbour at (p + dp, r + dr, c + dc).
constexpr int kCenter = 13;
constexpr uint32_t kCenterBit = 1u << kCenter;
constexpr int bit_of(int dp, int dr, int dc) { return 9 * (dp + 1) + 3 * (dr + 1) + (dc + 1); }

// Lee et al. 1994, Table 2, column δG26: the change of the 26-connected Euler characteristic
// contributed by one octant, indexed by its 7 non-centre voxels (first listed below = 64).
constexpr int8_t kEulerDelta[] = {
     1, -1, -1,  1, -3, -1, -1,  1, -1,  1,  1, -1,  3,  1,  1, -1,
    -3, -1,  3,  1,  1, -1,  3,  1, -1,  1,  1, -1,  3,  1,  1, -1,
    -3,  3, -1,  1,  1,  3, -1,  1, -1,  1,  1, -1,  3,  1,  1, -1,
     1,  3,  3,  1,  5,  3,  3,  1, -1,  1,  1, -1,  3,  1,  1, -1,
    -7, -1, -1,  1, -3, -1, -1,  1, -1,  1,  1, -1,  3,  1,  1, -1,
    -3, -1,  3,  1,  1, -1,  3,  1, -1,  1,  1, -1,  3,  1,  1, -1,
    -3,  3, -1,  1,  1,  3, -1,  1, -1,  1,  1, -1,  3,  1,  1, -1,
     1,  3,  3,  1,  5,  3,  3,  1, -1,  1,  1, -1,  3,  1,  1, -1,
};
static_assert(sizeof(kEulerDelta) == 128, "δG26 has one entry per configuration of 7 neighbours");

// The octants' voxels in the order of Lee's table, in skimage's neighbour numbering
// k = 9 (dp + 1) + 3 (dc + 1) + (dr + 1) (Lee's Fig. 1a with the centre as 13).
constexpr uint8_t kEulerOctants[8][7] = {
    {2, 1, 11, 10, 5, 4, 14},    {0, 9, 3, 12, 1, 10, 4},     {8, 7, 17, 16, 5, 4, 14},
    {6, 15, 7, 16, 3, 12, 4},    {20, 23, 19, 22, 11, 14, 10}, {18, 21, 9, 12, 19, 22, 10},
    {26, 23, 17, 14, 25, 22, 16}, {24, 25, 15, 16, 21, 22, 12},
};

// Masks of the bits with c = 0, c = 2, r = 0, r = 2, and of all 27 bits.
constexpr uint32_t bits_where(int axis_divisor, int value) {
  uint32_t m = 0;
  for (int b = 0; b < 27; ++b)
    if ((b / axis_divisor) % 3 == value) m |= 1u << b;
  return m;
}
constexpr uint32_t kC0 = bits_where(1, 0), kC2 = bits_where(1, 2), kR0 = bits_where(3, 0), kR2 = bits_where(3, 2);
constexpr uint32_t kAllBits = (1u << 27) - 1;

// The 26-neighbours (3x3x3 box, separable) of the bits of v, within the cube.
constexpr uint32_t dilate(uint32_t v) {
  v |= ((v << 1) & ~kC0 & kAllBits) | ((v >> 1) & ~kC2);
  v |= ((v << 3) & ~kR0 & kAllBits) | ((v >> 3) & ~kR2);
  return (v | (v << 9) | (v >> 9)) & kAllBits;
}

// Euler test: the 8 octants' 7-bit table indices, packed 7 bits per octant, as the OR of
// one entry per 9-bit plane dp = -1, 0, 1 of the cube.
struct EulerTables {
  std::array<std::array<uint64_t, 512>, 3> index{};
  EulerTables() {
    for (int o = 0; o < 8; ++o)
      for (int j = 0; j < 7; ++j) {
        const int k = kEulerOctants[o][j];
        const int b = bit_of(k / 9 - 1, k % 3 - 1, (k / 3) % 3 - 1);
        for (uint32_t plane = 0; plane < 512; ++plane)
          if (plane >> (b % 9) & 1u) index[b / 9][plane] |= uint64_t{1} << (7 * o + 6 - j);
      }
  }
};
const EulerTables kEuler;

// Exactly one of the 26 neighbours is foreground.
bool is_end_point(uint32_t cube) {
  const uint32_t fg = cube & ~kCenterBit;
  return fg != 0 && (fg & (fg - 1)) == 0;
}

bool is_euler_invariant(uint32_t cube) {
  const uint64_t index = kEuler.index[0][cube & 511u] | kEuler.index[1][(cube >> 9) & 511u] | kEuler.index[2][cube >> 18];
  int delta = 0;
  for (int o = 0; o < 8; ++o) delta += kEulerDelta[(index >> (7 * o)) & 127u];
  return delta == 0;
}

// At most one 26-connected piece of foreground among the 26 neighbours (none counts too).
// Lee's octree labelling counts the same pieces: two neighbours of the centre are
// 26-adjacent iff some octant holds both.
bool is_simple(uint32_t cube) {
  const uint32_t fg = cube & ~kCenterBit;
  if (fg == 0) return true;
  uint32_t piece = fg & (0u - fg);
  for (;;) {
    const uint32_t grown = dilate(piece) & fg;
    if (grown == piece) return piece == fg;
    piece = grown;
  }
}

// Zeroed arrays from calloc: large zero allocations come as untouched pages, so the parts
// of a crop that thinning never visits cost nothing.
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <typename T>
using ZeroArray = std::unique_ptr<T[], FreeDeleter>;
template <typename T>
ZeroArray<T> zero_array(size_t n) {
  T* p = static_cast<T*>(std::calloc(n == 0 ? 1 : n, sizeof(T)));
  if (!p) throw std::bad_alloc();
  return ZeroArray<T>(p);
}

// A set of voxel indices visited in increasing (raster) order: one bit per voxel, and one
// bit per non-zero word of those, so that insert and erase are O(1) and a walk skips empty
// stretches 4096 voxels at a time.
class RasterSet {
 public:
  explicit RasterSet(int64_t n)
      : bits_(zero_array<uint64_t>(bits_count(n))), words_(zero_array<uint64_t>((bits_count(n) + 63) / 64)),
        blocks_((bits_count(n) + 63) / 64) {}

  void insert(int64_t i) {
    uint64_t& word = bits_[i >> 6];
    const uint64_t bit = uint64_t{1} << (i & 63);
    if (word & bit) return;
    word |= bit;
    words_[i >> 12] |= uint64_t{1} << ((i >> 6) & 63);
    ++size_;
  }
  void erase(int64_t i) {
    uint64_t& word = bits_[i >> 6];
    const uint64_t bit = uint64_t{1} << (i & 63);
    if (!(word & bit)) return;
    word &= ~bit;
    if (word == 0) words_[i >> 12] &= ~(uint64_t{1} << ((i >> 6) & 63));
    --size_;
  }
  size_t size() const { return size_; }
  size_t blocks() const { return blocks_; }  ///< 4096 voxels each

  /// Calls f(i) for the members in blocks [begin, end), in increasing order.
  template <typename F>
  void for_each(size_t begin, size_t end, F&& f) const {
    for (size_t u = begin; u < end; ++u)
      for (uint64_t used = words_[u]; used; used &= used - 1) {
        const size_t w = u * 64 + __builtin_ctzll(used);
        for (uint64_t b = bits_[w]; b; b &= b - 1) f(static_cast<int64_t>(w * 64 + __builtin_ctzll(b)));
      }
  }

 private:
  static size_t bits_count(int64_t n) { return static_cast<size_t>((n + 63) / 64); }
  ZeroArray<uint64_t> bits_, words_;
  size_t blocks_, size_ = 0;
};

// The thinning of one zero-padded crop: the image (0 / 1 bytes); the surface, i.e. the
// foreground voxels with a background 6-neighbour (only they can be border voxels); and per
// voxel a cached answer to "may it be deleted" (not an end point, Euler invariant, simple),
// which depends only on the 3x3x3 neighbourhood and is dropped when a neighbour is deleted.
class Thinner {
 public:
  /// Crop of (d, h, w) voxels, all background; fill with row().
  Thinner(int64_t d, int64_t h, int64_t w)
      : rows_(h + 2), cols_(w + 2), slice_(rows_ * cols_), depth_(d), size_((d + 2) * slice_ + kSlack),
        img_(zero_array<uint8_t>(size_)), state_(zero_array<uint8_t>(size_)),
        // skimage's direction order 4, 3, 2, 1, 5, 6: background at r-1, r+1, c+1, c-1, p+1, p-1
        border_{-cols_, cols_, 1, -1, slice_, -slice_}, surface_(size_) {
    for (int dp = -1; dp <= 1; ++dp)
      for (int dr = -1; dr <= 1; ++dr) row_offset_[3 * (dp + 1) + dr + 1] = dp * slice_ + dr * cols_ - 1;
  }

  /// The w voxels of crop row (z, y): fill with 0 / 1, read the skeleton after run().
  uint8_t* row(int64_t z, int64_t y) { return img_.get() + (z + 1) * slice_ + (y + 1) * cols_ + 1; }

  /// `directions`: 6, or 4 for a one-slice volume (skimage decides on the uncropped depth).
  void run(int directions) {
    list_surface();
    int empty_passes = 0;
    for (int d = 0; empty_passes < directions; d = (d + 1) % directions)
      empty_passes = thin_once(d) ? 0 : empty_passes + 1;
  }

 private:
  static constexpr uint8_t kKnown = 1, kDeletable = 2;
  static constexpr size_t kParallelMin = 65536;  // border voxels; below, threads cost more than they save
  static constexpr int64_t kSlack = 8;  // cube_at reads one byte past the last voxel's row

  // The 27 bytes as 9 rows of 3 along c: a 4-byte load keeps bytes c-1, c, c+1 and one
  // multiply moves their low bits next to each other (bits 16, 17, 18; no carries).
  uint32_t cube_at(int64_t i) const {
    uint32_t cube = 0;
    for (int row = 0; row < 9; ++row) {
      uint32_t bytes;
      std::memcpy(&bytes, img_.get() + i + row_offset_[row], 4);
      cube |= ((((bytes & 0x00010101u) * 0x10204u) >> 16) & 7u) << (3 * row);
    }
    return cube;
  }

  bool zero8(int64_t i) const {
    uint64_t eight;
    std::memcpy(&eight, img_.get() + i, 8);
    return eight == 0;
  }

  void list_surface() {
    for (int64_t z = 0; z < depth_; ++z)
      for (int64_t y = 0; y < rows_ - 2; ++y) {
        const int64_t first = (z + 1) * slice_ + (y + 1) * cols_ + 1;
        for (int64_t i = first; i < first + cols_ - 2; ++i) {
          if (i % 8 == 0 && zero8(i)) {  // mostly empty crops: skip 8 voxels at a time
            i += 7;
            continue;
          }
          const uint8_t* p = img_.get() + i;
          if (*p && !(p[-1] & p[1] & p[-cols_] & p[cols_] & p[-slice_] & p[slice_])) surface_.insert(i);
        }
      }
  }

  // Writes state_ of the voxels it visits only, so block ranges can run in parallel.
  void collect(int64_t border, size_t begin, size_t end, std::vector<int64_t>& out) {
    surface_.for_each(begin, end, [&](int64_t i) {
      if (img_[i + border]) return;
      __builtin_prefetch(img_.get() + i + slice_ + 2 * cols_);
      __builtin_prefetch(state_.get() + i + 2 * cols_);
      uint8_t s = state_[i];
      if (!(s & kKnown)) {
        const uint32_t cube = cube_at(i);
        const bool deletable = !is_end_point(cube) && is_euler_invariant(cube) && is_simple(cube);
        s = kKnown | (deletable ? kDeletable : 0);
        state_[i] = s;
      }
      if (s & kDeletable) out.push_back(i);
    });
  }

  // One pass in border direction d; true when something was deleted.
  bool thin_once(int d) {
    const RasterSet& set = surface_;
    const int64_t border = border_[d];
    candidates_.clear();
    const int threads = at::get_num_threads();
    if (threads > 1 && set.size() >= kParallelMin && !at::in_parallel_region()) {
      const size_t chunks = static_cast<size_t>(threads) * 8, blocks = set.blocks();
      chunk_out_.resize(chunks);
      at::parallel_for(0, static_cast<int64_t>(chunks), 1, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) {
          chunk_out_[c].clear();
          collect(border, blocks * c / chunks, blocks * (c + 1) / chunks, chunk_out_[c]);
        }
      });
      for (const auto& part : chunk_out_) candidates_.insert(candidates_.end(), part.begin(), part.end());
    } else {
      collect(border, 0, set.blocks(), candidates_);
    }

    // Sequential re-check. A candidate whose neighbourhood is unchanged since collect() is
    // still simple. A deletion drops the cached answers around it and puts its foreground
    // 6-neighbours on the surface.
    bool changed = false;
    for (int64_t i : candidates_) {
      if (!(state_[i] & kKnown) && !is_simple(cube_at(i))) continue;
      changed = true;
      img_[i] = 0;
      // Forget the answers of the 3x3x3 block (and, harmlessly, of the voxel after each row).
      for (int64_t o : row_offset_) std::memset(state_.get() + i + o, 0, 4);
      surface_.erase(i);
      for (int64_t o : border_)
        if (img_[i + o]) surface_.insert(i + o);
    }
    return changed;
  }

  int64_t rows_, cols_, slice_, depth_, size_;
  ZeroArray<uint8_t> img_, state_;
  int64_t border_[6], row_offset_[9];
  RasterSet surface_;
  std::vector<int64_t> candidates_;
  std::vector<std::vector<int64_t>> chunk_out_;
};

// An inclusive box in the (D, H, W) volume.
struct Box {
  int64_t lo[3] = {INT64_MAX, INT64_MAX, INT64_MAX}, hi[3] = {-1, -1, -1};
  bool empty() const { return hi[0] < 0; }
  int64_t voxels() const { return (hi[0] - lo[0] + 1) * (hi[1] - lo[1] + 1) * (hi[2] - lo[2] + 1); }
  void add_run(int64_t z, int64_t y, int64_t x0, int64_t x1) {
    lo[0] = std::min(lo[0], z), hi[0] = std::max(hi[0], z);
    lo[1] = std::min(lo[1], y), hi[1] = std::max(hi[1], y);
    lo[2] = std::min(lo[2], x0), hi[2] = std::max(hi[2], x1);
  }
};

struct Instance {
  int64_t value = 0;
  Box box;
};

// Every non-zero value and its box, from one raster scan over runs of equal values.
template <typename T>
std::vector<Instance> find_instances(const T* data, int64_t D, int64_t H, int64_t W) {
  std::vector<Instance> found;
  std::unordered_map<int64_t, size_t> index;
  Instance* last = nullptr;
  for (int64_t z = 0; z < D; ++z)
    for (int64_t y = 0; y < H; ++y) {
      const T* row = data + (z * H + y) * W;
      for (int64_t x = 0; x < W;) {
        const T v = row[x];
        if (v == T(0)) {
          ++x;
          continue;
        }
        const int64_t start = x;
        while (x < W && row[x] == v) ++x;
        if (last == nullptr || static_cast<int64_t>(v) != last->value) {
          const auto [it, inserted] = index.emplace(static_cast<int64_t>(v), found.size());
          if (inserted) found.push_back(Instance{static_cast<int64_t>(v), Box{}});
          last = &found[it->second];
        }
        last->box.add_run(z, y, start, x - 1);
      }
    }
  return found;
}

// Whether inside(row[x]) holds for some x < n; written as a reduction without an early
// exit so that it vectorizes (most rows of a sparse mask are empty).
template <typename T, typename Inside>
bool any_inside(const T* row, int64_t n, Inside inside) {
  bool any = false;
  for (int64_t x = 0; x < n; ++x) any |= inside(row[x]);
  return any;
}

template <typename T>
Box nonzero_box(const T* data, int64_t D, int64_t H, int64_t W) {
  Box box;
  for (int64_t z = 0; z < D; ++z)
    for (int64_t y = 0; y < H; ++y) {
      const T* row = data + (z * H + y) * W;
      if (!any_inside(row, W, [](T v) { return v != T(0); })) continue;
      int64_t x0 = 0, x1 = W - 1;
      while (row[x0] == T(0)) ++x0;
      while (row[x1] == T(0)) --x1;
      box.add_run(z, y, x0, x1);
    }
  return box;
}

// Thins the voxels of `box` for which inside(value) holds, and sets out = mark on the
// skeleton. `D` is the uncropped depth (one slice: four directions, as skimage).
template <typename T, typename O, typename Inside>
void thin_box(const Box& box, const T* in, O* out, O mark, Inside inside, int64_t D, int64_t H, int64_t W) {
  const int64_t d = box.hi[0] - box.lo[0] + 1, h = box.hi[1] - box.lo[1] + 1, w = box.hi[2] - box.lo[2] + 1;
  Thinner thinner(d, h, w);
  // Offset of crop row (z, y) in the full volume.
  auto at_row = [&](int64_t z, int64_t y) { return ((box.lo[0] + z) * H + box.lo[1] + y) * W + box.lo[2]; };
  for (int64_t z = 0; z < d; ++z)
    for (int64_t y = 0; y < h; ++y) {
      const T* src = in + at_row(z, y);
      if (!any_inside(src, w, inside)) continue;  // the crop starts zeroed; leave its pages untouched
      uint8_t* dst = thinner.row(z, y);
      for (int64_t x = 0; x < w; ++x) dst[x] = inside(src[x]) ? 1 : 0;
    }
  thinner.run(D == 1 ? 4 : 6);
  for (int64_t z = 0; z < d; ++z)
    for (int64_t y = 0; y < h; ++y) {
      const uint8_t* kept = thinner.row(z, y);
      O* dst = out + at_row(z, y);
      for (int64_t x = 0; x < w; ++x) {
        uint64_t eight;
        std::memcpy(&eight, kept + x, 8);  // skeletons are sparse: skip 8 voxels at a time
        if (eight == 0) {
          x += 7;
          continue;
        }
        if (kept[x]) dst[x] = mark;
      }
    }
}

template <typename T>
void skeletonize_instances(const at::Tensor& labels, at::Tensor& out) {
  const int64_t D = labels.size(0), H = labels.size(1), W = labels.size(2);
  const T* in = labels.const_data_ptr<T>();
  T* dst = out.data_ptr<T>();
  std::vector<Instance> instances = find_instances(in, D, H, W);
  // Largest boxes first, so that the last instance a thread picks up is a small one.
  std::sort(instances.begin(), instances.end(), [](const Instance& a, const Instance& b) {
    return a.box.voxels() != b.box.voxels() ? a.box.voxels() > b.box.voxels() : a.value < b.value;
  });
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), static_cast<int64_t>(instances.size()));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t k = next++; k < instances.size(); k = next++) {
      const T value = static_cast<T>(instances[k].value);
      thin_box(instances[k].box, in, dst, value, [value](T v) { return v == value; }, D, H, W);
    }
  };
  // One instance: run it alone so that its passes can use the threads.
  if (threads <= 1) {
    work();
  } else {
    at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) work();
    });
  }
}

// Zeros without a parallel ATen kernel: on a busy machine waking threads for a fill costs
// more than the fill.
at::Tensor zeros_serial(at::IntArrayRef sizes, at::ScalarType dtype) {
  at::Tensor t = at::empty(sizes, at::TensorOptions().dtype(dtype));
  std::memset(t.data_ptr(), 0, t.nbytes());
  return t;
}

at::Tensor as_volume(const at::Tensor& t, const char* what) {
  if (t.dim() != 2 && t.dim() != 3)
    throw io::Error(what, "expects a (D, H, W) or (H, W) image, got " + std::to_string(t.dim()) + "D");
  return (t.dim() == 2 ? t.unsqueeze(0) : t).cpu().contiguous();
}

}  // namespace

at::Tensor skeletonize_labels(const at::Tensor& labels) {
  if (!(at::isIntegralType(labels.scalar_type(), /*includeBool=*/true)))
    throw io::Error("skeletonize_labels", std::string("expects an integer label image, got ") + c10::toString(labels.scalar_type()));
  const at::Tensor volume = as_volume(labels, "skeletonize_labels");
  at::Tensor out = zeros_serial(volume.sizes(), volume.scalar_type());
  AT_DISPATCH_INTEGRAL_TYPES_AND(at::kBool, volume.scalar_type(), "skeletonize_labels",
                                 [&] { skeletonize_instances<scalar_t>(volume, out); });
  return out.reshape(labels.sizes());
}

at::Tensor skeletonize(const at::Tensor& mask) {
  const at::Tensor volume = as_volume(mask, "skeletonize");
  const int64_t D = volume.size(0), H = volume.size(1), W = volume.size(2);
  at::Tensor out = zeros_serial(volume.sizes(), at::kByte);
  AT_DISPATCH_ALL_TYPES_AND3(at::kBool, at::kHalf, at::kBFloat16, volume.scalar_type(), "skeletonize", [&] {
    const scalar_t* in = volume.const_data_ptr<scalar_t>();
    const Box box = nonzero_box(in, D, H, W);
    if (box.empty()) return;
    thin_box(box, in, out.data_ptr<uint8_t>(), uint8_t{1}, [](scalar_t v) { return v != scalar_t(0); }, D, H, W);
  });
  return out.reshape(mask.sizes());
}

}  // namespace neuroseg::metrics
