// CPU connected components: run-based two-scan labelling (He, Chao & Suzuki 2008, "A
// run-based two-scan labeling algorithm", IEEE TIP 17(5)) extended to 3D and to
// multi-label images, with the union-find of Wu, Otoo & Suzuki 2009 (union to the smaller
// index, so every root is its component's first element in raster order).
//
// The (D, H, W) volume is D * H rows of W voxels. A run is a maximal segment [x0, x1) of one
// row holding one non-zero value; runs are read off a bit mask of value changes, 64 voxels
// at a time (8 per word for 1-byte dtypes), with no branch per voxel. Two runs connect when
// their values are equal and their rows are neighbours under the connectivity, with
// overlapping x ranges, widened by one voxel when the connectivity admits a diagonal step
// along x:
//   4 (2D):  (z, y-1) exact                     8 (2D): (z, y-1) widened
//   6:  (z, y-1), (z-1, y) exact
//   18: (z, y-1), (z-1, y) widened; (z-1, y-1), (z-1, y+1) exact
//   26: (z, y-1), (z-1, y-1), (z-1, y), (z-1, y+1) widened
// The touching pairs of a row and one backward row come from one merge of the two sorted run
// lists with no data-dependent branch (a pair is stored and the count advanced by the test's
// value), then the pairs are united; on noise and short multi-label runs the branchy
// alternatives mispredict on almost every run.
//
// Only the run ids (4 bytes per run) outlive a row: the runs of the last H + 2 rows sit in a
// ring, and the output pass reads each row's runs off the input again, which costs less than
// storing and re-reading them.
//
// Threads: the rows are cut into one slab of consecutive rows per thread.
//   1. (parallel) each slab labels its runs, uniting them with their backward rows inside the
//      slab, then numbers its local components in raster order of their root run;
//   2. (serial) the first H + 1 rows of each slab are united with their backward rows in
//      earlier slabs, on a union-find over the local components (union to the smaller id,
//      so a root is again the earliest local component); the roots, visited in id order,
//      get labels 1..N: raster order of first voxel;
//   3. (parallel) each slab writes its rows and, when asked, sums the statistics of its local
//      components, which are then folded into the final components (serial, one entry per
//      local component).
// With one slab, steps 1's numbering and 3 are one pass and step 2 vanishes. The result does
// not depend on the slab cut, so any thread count gives the same labels.
#include "metrics/connected_components.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <numeric>
#include <thread>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "io/error.h"

namespace neuroseg::metrics::detail {
namespace {

struct Run {
  int32_t x0, x1;  // [x0, x1)
};

// A backward neighbour row of row (z, y) is (z + dz, y + dy); `widen` = 1 when runs that
// touch only diagonally along x connect.
struct RowLink {
  int dz, dy, widen;
};

int row_links(int connectivity, RowLink* links) {
  switch (connectivity) {
    case 4: links[0] = {0, -1, 0}; return 1;
    case 8: links[0] = {0, -1, 1}; return 1;
    case 6: links[0] = {0, -1, 0}, links[1] = {-1, 0, 0}; return 2;
    case 18: links[0] = {0, -1, 1}, links[1] = {-1, -1, 0}, links[2] = {-1, 0, 1}, links[3] = {-1, 1, 0}; return 4;
    default: links[0] = {0, -1, 1}, links[1] = {-1, -1, 1}, links[2] = {-1, 0, 1}, links[3] = {-1, 1, 1}; return 4;
  }
}

// Large buffers ask for transparent huge pages (as numpy does for large arrays): the first
// touch of fresh 4 KiB pages otherwise costs about as much as the labelling itself.
void advise_huge_pages(void* p, size_t bytes) {
#ifdef __linux__
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
#else
  (void)p, (void)bytes;
#endif
}

// An uninitialised array of trivially copyable elements, sized once for the worst case: the
// pages past what is written are never touched, so the bound costs address space only.
template <typename E>
class Array {
 public:
  Array() = default;
  explicit Array(size_t n) { allocate(n); }
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;
  ~Array() { std::free(data_); }
  void allocate(size_t n) {
    std::free(data_);
    data_ = static_cast<E*>(std::malloc(std::max<size_t>(n, 1) * sizeof(E)));
    if (data_ == nullptr) throw std::bad_alloc();
    advise_huge_pages(data_, n * sizeof(E));
  }
  E* data() { return data_; }
  const E* data() const { return data_; }
  E& operator[](size_t i) { return data_[i]; }
  const E& operator[](size_t i) const { return data_[i]; }

 private:
  E* data_ = nullptr;
};

template <typename I>
inline I find_root(I* parent, I a) {
  while (true) {  // path halving, writing only where it shortens the path
    const I p = parent[a];
    if (p == a) return a;
    const I g = parent[p];
    if (g == p) return p;
    parent[a] = g;
    a = g;
  }
}

template <typename I>
inline void unite(I* parent, I a, I b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a < b) parent[b] = a;
  else if (b < a) parent[a] = b;
}

// Bit i of the result is set when byte i of `cur` differs from byte i of `prev` (SWAR).
inline uint64_t changed_bytes(uint64_t cur, uint64_t prev) {
  const uint64_t d = cur ^ prev;
  const uint64_t high = (((d & 0x7f7f7f7f7f7f7f7fULL) + 0x7f7f7f7f7f7f7f7fULL) | d) & 0x8080808080808080ULL;
  return ((high >> 7) * 0x0102040810204080ULL) >> 56;  // gathers the 8 flags into one byte
}

// Bit i set when row[x + i] != row[x + i - 1] (row[-1] = 0), for i < count <= 64.
template <typename T>
inline uint64_t change_mask(const T* row, int32_t x, int32_t count) {
  uint64_t m = 0;
  int32_t i = 0;
  if constexpr (sizeof(T) == 1) {
    for (; i + 8 <= count; i += 8) {
      uint64_t cur, prev;
      std::memcpy(&cur, row + x + i, 8);
      if (x + i > 0) std::memcpy(&prev, row + x + i - 1, 8);
      else prev = cur << 8;
      m |= changed_bytes(cur, prev) << i;
    }
  }
  for (; i < count; ++i) {
    const T before = x + i > 0 ? row[x + i - 1] : T(0);
    m |= static_cast<uint64_t>(row[x + i] != before) << i;
  }
  return m;
}

// Writes the runs of one row to `out` (room for W + 1) and returns their count. The row is
// read 64 voxels at a time as a bit mask of value changes; each change closes the open run
// (if any) and opens one when the new value is non-zero, without data-dependent branches.
template <typename T>
inline int32_t extract_runs(const T* row, int32_t W, Run* out) {
  int32_t n = 0, open = 0;
  for (int32_t x = 0; x < W; x += 64) {
    uint64_t m = change_mask(row, x, std::min(64, W - x));
    while (m != 0) {
      const int32_t c = x + __builtin_ctzll(m);
      m &= m - 1;
      out[n].x1 = c;
      n += open;
      open = row[c] != T(0);
      out[n].x0 = c;
    }
  }
  out[n].x1 = W;
  return n + open;
}

// Appends to `pairs` the (a, b) id pairs of touching runs of equal value: run a[i] (id
// a_first + i) of row `arow`, run b[k] (id b_first + k) of row `brow`. With each run
// extended by kWiden on the right, a[i] and b[k] touch when their extents overlap; a merge
// step tests (i, k) and moves past the run that ends first (a on a tie: the next b starts
// at or after a's end). Widened, two runs of different values may abut in both rows, so
// on a tie a[i] is also tested against b[k + 1], which may start exactly at a's end.
template <int kWiden, typename T>
inline int32_t touching_pairs(const Run* a, int32_t na, const T* arow, uint32_t a_first, const Run* b, int32_t nb,
                              const T* brow, uint32_t b_first, uint32_t* pairs) {
  int32_t i = 0, k = 0, n = 0;
  while (i < na && k < nb) {
    const Run ra = a[i], rb = b[k];
    const T v = arow[ra.x0];
    pairs[2 * n] = a_first + i;
    pairs[2 * n + 1] = b_first + k;
    n += (rb.x0 < ra.x1 + kWiden) & (ra.x0 < rb.x1 + kWiden) & (v == brow[rb.x0]);
    if constexpr (kWiden == 1) {
      const int32_t k1 = k + (k + 1 < nb);
      const Run rc = b[k1];
      pairs[2 * n] = a_first + i;
      pairs[2 * n + 1] = b_first + k1;
      n += (k1 != k) & (ra.x1 == rb.x1) & (rc.x0 == ra.x1) & (v == brow[rc.x0]);
    }
    const bool next_a = ra.x1 <= rb.x1;
    i += next_a;
    k += !next_a;
  }
  return n;
}

template <typename T>
inline int32_t touching_pairs(int32_t widen, const Run* a, int32_t na, const T* arow, uint32_t a_first, const Run* b,
                              int32_t nb, const T* brow, uint32_t b_first, uint32_t* pairs) {
  return widen ? touching_pairs<1>(a, na, arow, a_first, b, nb, brow, b_first, pairs)
               : touching_pairs<0>(a, na, arow, a_first, b, nb, brow, b_first, pairs);
}

// Fills o[run.x0, run.x1) with `label`; the row was zeroed and runs come left to right, so
// what lies past the run is still 0. Short runs (noise, thin bands) take 8 fixed stores,
// 0 past the run's end, instead of a loop whose trip count the branch predictor cannot guess.
inline void fill_run(int32_t* o, Run run, int32_t W, int32_t label) {
  const int32_t len = run.x1 - run.x0;
  if (len <= 8 && run.x0 + 8 <= W) {
    int32_t* p = o + run.x0;
    for (int32_t q = 0; q < 8; ++q) p[q] = q < len ? label : 0;
  } else {
    std::fill(o + run.x0, o + run.x1, label);
  }
}

// Size, inclusive bounds and first voxel of a (local, then final) component.
struct Stats {
  int64_t size;
  int64_t first;
  int32_t z0, y0, x0, z1, y1, x1;
};

inline void add_run(Stats& s, int64_t first, int32_t z, int32_t y, Run run) {
  if (s.size == 0) {
    s = {0, first, z, y, run.x0, z, y, run.x1 - 1};
  } else {
    s.y0 = std::min(s.y0, y), s.x0 = std::min(s.x0, run.x0);
    s.z1 = z, s.y1 = std::max(s.y1, y), s.x1 = std::max(s.x1, run.x1 - 1);
  }
  s.size += run.x1 - run.x0;
}

struct Slab {
  int64_t row0 = 0, row1 = 0;       // rows [row0, row1) of the D * H rows
  std::vector<uint32_t> row_first;  // id of the first run of row row0 + i; [rows] = run count
  Array<uint32_t> id;               // per run: union-find parent during the scan, then local component
  uint32_t count = 0;               // local components
  Array<Stats> stats;               // per local component, when asked for
};

// Step 1: runs, union-find, and (several slabs) the local numbering.
template <typename T>
void scan_slab(const T* in, int64_t H, int64_t W, const RowLink* links, int nlinks, bool number, Slab& s) {
  const int64_t rows = s.row1 - s.row0;
  const int64_t slots = H + 2;  // rows back to (z - 1, y - 1), plus the current one
  const int32_t w32 = static_cast<int32_t>(W);
  Array<Run> ring(static_cast<size_t>(slots * (W + 1)));
  std::vector<int32_t> ring_count(slots, 0);
  Array<uint32_t> pairs(static_cast<size_t>(nlinks) * 2 * (2 * W + 2));
  s.row_first.assign(rows + 1, 0);
  s.id.allocate(static_cast<size_t>(rows * W));
  uint32_t* parent = s.id.data();
  uint32_t next = 0;
  for (int64_t r = s.row0; r < s.row1; ++r) {
    const T* row = in + r * W;
    const int64_t slot = r % slots;
    Run* a = ring.data() + slot * (W + 1);
    const int32_t na = ring_count[slot] = extract_runs(row, w32, a);
    s.row_first[r - s.row0] = next;
    for (int32_t i = 0; i < na; ++i) parent[next + i] = next + i;
    if (na > 0) {
      const int64_t z = r / H, y = r % H;
      int32_t np = 0;
      for (int q = 0; q < nlinks; ++q) {
        const RowLink& l = links[q];
        if (z + l.dz < 0 || y + l.dy < 0 || y + l.dy >= H) continue;
        const int64_t rr = r + l.dz * H + l.dy;
        if (rr < s.row0) continue;  // in an earlier slab: step 2
        const int64_t bs = rr % slots;
        np += touching_pairs(l.widen, a, na, row, next, ring.data() + bs * (W + 1), ring_count[bs], in + rr * W,
                             s.row_first[rr - s.row0], pairs.data() + 2 * np);
      }
      for (int32_t p = 0; p < np; ++p) unite(parent, pairs[2 * p], pairs[2 * p + 1]);
    }
    next += na;
  }
  s.row_first[rows] = next;
  if (!number) return;
  // Local components in order of their root (= first) run; parent[k] <= k, so a run's
  // parent was visited before it and already holds its component's id.
  uint32_t count = 0;
  for (uint32_t k = 0; k < next; ++k) {
    const uint32_t p = parent[k];
    parent[k] = p == k ? count++ : parent[p];
  }
  s.count = count;
}

// Step 3 for one slab: rows out, labels through `final_label` (nullptr: the slab is the whole
// volume, so local component c is label c + 1); `numbered` false: the ids are still
// union-find parents, numbered here on the fly. Statistics per local component when
// `s.stats` is allocated.
template <typename T>
void write_slab(const T* in, int64_t H, int64_t W, Slab& s, const int32_t* final_label, bool numbered, int32_t* out) {
  const int32_t w32 = static_cast<int32_t>(W);
  Array<Run> runs(static_cast<size_t>(W + 1));
  uint32_t* id = s.id.data();
  Stats* stats = s.stats.data();
  uint32_t count = 0;
  for (int64_t r = s.row0; r < s.row1; ++r) {
    const int32_t n = extract_runs(in + r * W, w32, runs.data());
    int32_t* o = out + r * W;
    std::memset(o, 0, static_cast<size_t>(W) * sizeof(int32_t));
    uint32_t k = s.row_first[r - s.row0];
    const int32_t z = static_cast<int32_t>(r / H), y = static_cast<int32_t>(r % H);
    for (int32_t i = 0; i < n; ++i, ++k) {
      uint32_t c;
      if (!numbered) {
        const uint32_t p = id[k];
        c = id[k] = p == k ? count++ : id[p];
      } else {
        c = id[k];
      }
      const int32_t label = final_label == nullptr ? static_cast<int32_t>(c + 1) : final_label[c];
      fill_run(o, runs[i], w32, label);
      if (stats != nullptr) add_run(stats[c], r * W + runs[i].x0, z, y, runs[i]);
    }
  }
  if (!numbered) s.count = count;
}

// Runs fn(0) .. fn(count - 1) on `count` threads. Not at::parallel_for: that one is inline
// OpenMP and runs serially in a translation unit compiled without -fopenmp.
template <typename F>
void on_threads(int64_t count, const F& fn) {
  if (count == 1) return fn(0);
  std::vector<std::exception_ptr> errors(count);
  std::vector<std::thread> threads;
  threads.reserve(count - 1);
  auto guarded = [&](int64_t i) {
    try {
      fn(i);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  for (int64_t i = 1; i < count; ++i) threads.emplace_back(guarded, i);
  guarded(0);
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

// Labels a (D, H, W) volume into `out` with `threads` slabs; returns the component count
// and, when `stats` is given, fills it per component (index label - 1).
template <typename T>
int64_t label_volume(const T* in, int64_t D, int64_t H, int64_t W, int connectivity, int64_t threads, int32_t* out,
                     std::vector<Stats>* stats) {
  RowLink links[4];
  const int nlinks = row_links(connectivity, links);
  const int64_t R = D * H;
  if (R == 0 || W == 0) return 0;
  // One slab per thread of at least 16 rows and 2^14 voxels (below that a thread costs more
  // than it saves), and at most 2^30 voxels per slab so that run ids fit uint32.
  const int64_t max_voxels = int64_t(1) << 30;
  int64_t S = std::max<int64_t>(1, std::min({threads, R / 16, R * W >> 14}));
  S = std::max(S, (R * W + max_voxels - 1) / max_voxels);
  S = std::min(S, R);
  std::vector<Slab> slabs(S);
  for (int64_t s = 0; s < S; ++s) {
    slabs[s].row0 = R * s / S;
    slabs[s].row1 = R * (s + 1) / S;
  }
  if (S == 1) {
    // Numbered on the fly while writing, unless the statistics need the count first.
    Slab& s = slabs[0];
    const bool number = stats != nullptr;
    scan_slab(in, H, W, links, nlinks, number, s);
    if (number) {
      s.stats.allocate(s.count);
      std::memset(s.stats.data(), 0, s.count * sizeof(Stats));
    }
    write_slab(in, H, W, s, nullptr, number, out);
    if (s.count > INT32_MAX) throw io::Error("connected components", "more than 2^31 - 1 components do not fit int32 labels");
    if (stats != nullptr) stats->assign(s.stats.data(), s.stats.data() + s.count);
    return s.count;
  }
  on_threads(S, [&](int64_t s) { scan_slab(in, H, W, links, nlinks, /*number=*/true, slabs[s]); });

  // Step 2: seams between slabs, on a union-find over all local components.
  std::vector<int64_t> base(S + 1, 0);
  for (int64_t s = 0; s < S; ++s) base[s + 1] = base[s] + slabs[s].count;
  std::vector<int64_t> parent(base[S]);
  std::iota(parent.begin(), parent.end(), int64_t(0));
  auto slab_of = [&](int64_t row) {
    int64_t lo = 0, hi = S - 1;  // last slab with row0 <= row
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (slabs[mid].row0 <= row) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  const int32_t w32 = static_cast<int32_t>(W);
  std::vector<Run> aruns(W + 1), bruns(W + 1);
  std::vector<uint32_t> pairs(2 * (2 * W + 2));
  for (int64_t s = 1; s < S; ++s) {
    const Slab& a = slabs[s];
    for (int64_t r = a.row0; r < std::min(a.row1, a.row0 + H + 1); ++r) {
      const int64_t z = r / H, y = r % H;
      const int32_t na = extract_runs(in + r * W, w32, aruns.data());
      if (na == 0) continue;
      const uint32_t a0 = a.row_first[r - a.row0];
      for (int q = 0; q < nlinks; ++q) {
        const RowLink& l = links[q];
        if (z + l.dz < 0 || y + l.dy < 0 || y + l.dy >= H) continue;
        const int64_t rr = r + l.dz * H + l.dy;
        if (rr >= a.row0) continue;
        const int64_t bs = slab_of(rr);
        const Slab& b = slabs[bs];
        const int32_t nb = extract_runs(in + rr * W, w32, bruns.data());
        const int32_t np = touching_pairs(l.widen, aruns.data(), na, in + r * W, a0, bruns.data(), nb, in + rr * W,
                                          b.row_first[rr - b.row0], pairs.data());
        for (int32_t p = 0; p < np; ++p)
          unite<int64_t>(parent.data(), base[s] + a.id[pairs[2 * p]], base[bs] + b.id[pairs[2 * p + 1]]);
      }
    }
  }

  // Labels 1..N in id order of the roots; parent[g] <= g, so parent[g] already has one.
  std::vector<int32_t> final_label(base[S]);
  int64_t count = 0;
  for (int64_t g = 0; g < base[S]; ++g) {
    if (parent[g] == g) {
      if (count == INT32_MAX) throw io::Error("connected components", "more than 2^31 - 1 components do not fit int32 labels");
      final_label[g] = static_cast<int32_t>(++count);
    } else {
      final_label[g] = final_label[parent[g]];
    }
  }

  // Step 3: rows out, statistics per local component, folded into the final ones.
  if (stats != nullptr)
    for (Slab& s : slabs) {
      s.stats.allocate(s.count);
      std::memset(s.stats.data(), 0, s.count * sizeof(Stats));
    }
  on_threads(S, [&](int64_t s) { write_slab(in, H, W, slabs[s], final_label.data() + base[s], /*numbered=*/true, out); });
  if (stats != nullptr) {
    stats->assign(count, Stats{});
    for (int64_t s = 0; s < S; ++s)
      for (uint32_t l = 0; l < slabs[s].count; ++l) {
        const Stats& st = slabs[s].stats[l];
        Stats& f = (*stats)[final_label[base[s] + l] - 1];
        if (f.size == 0) {
          f = st;  // the component's first local component in raster order holds its first voxel
        } else {
          f.size += st.size;
          f.z0 = std::min(f.z0, st.z0), f.y0 = std::min(f.y0, st.y0), f.x0 = std::min(f.x0, st.x0);
          f.z1 = std::max(f.z1, st.z1), f.y1 = std::max(f.y1, st.y1), f.x1 = std::max(f.x1, st.x1);
        }
      }
  }
  return count;
}

}  // namespace

at::Tensor comparable_values(const at::Tensor& image) {
  at::Tensor x = image;
  switch (x.scalar_type()) {
    case at::kBool: x = x.view(at::kByte); break;  // same bytes: zero and equality are unchanged
    case at::kUInt16: x = x.to(at::kInt); break;
    case at::kUInt32: x = x.to(at::kLong); break;
    case at::kUInt64: x = x.view(at::kLong); break;
    case at::kHalf:
    case at::kBFloat16: x = x.to(at::kFloat); break;
    default: break;
  }
  return x.contiguous();
}

Components connected_components_cpu(const at::Tensor& image, int connectivity, ComponentStats what) {
  TORCH_CHECK(image.dim() == 3, "connected_components_cpu: expects (D, H, W)");
  const at::Tensor x = comparable_values(image.to(at::kCPU));
  const int64_t D = x.size(0), H = x.size(1), W = x.size(2);
  if (W >= INT32_MAX) throw io::Error("connected components", "rows longer than 2^31 - 2 voxels are not supported");
  Components c;
  c.labels = at::empty({D, H, W}, at::kInt);
  int32_t* out = c.labels.data_ptr<int32_t>();
  advise_huge_pages(out, static_cast<size_t>(c.labels.numel()) * sizeof(int32_t));
  std::vector<Stats> stats;
  std::vector<Stats>* want = what == ComponentStats::kNone ? nullptr : &stats;
  const int64_t threads = at::get_num_threads();
  switch (x.scalar_type()) {
    case at::kByte: c.count = label_volume(x.data_ptr<uint8_t>(), D, H, W, connectivity, threads, out, want); break;
    case at::kChar: c.count = label_volume(x.data_ptr<int8_t>(), D, H, W, connectivity, threads, out, want); break;
    case at::kShort: c.count = label_volume(x.data_ptr<int16_t>(), D, H, W, connectivity, threads, out, want); break;
    case at::kInt: c.count = label_volume(x.data_ptr<int32_t>(), D, H, W, connectivity, threads, out, want); break;
    case at::kLong: c.count = label_volume(x.data_ptr<int64_t>(), D, H, W, connectivity, threads, out, want); break;
    case at::kFloat: c.count = label_volume(x.data_ptr<float>(), D, H, W, connectivity, threads, out, want); break;
    case at::kDouble: c.count = label_volume(x.data_ptr<double>(), D, H, W, connectivity, threads, out, want); break;
    default:
      throw io::Error("connected components", std::string("unsupported dtype ") + c10::toString(x.scalar_type()));
  }
  if (want != nullptr) {
    c.sizes.resize(c.count);
    c.first_voxel.resize(c.count);
    c.boxes.resize(c.count);
    for (int64_t k = 0; k < c.count; ++k) {
      const Stats& s = stats[k];
      c.sizes[k] = s.size;
      c.first_voxel[k] = s.first;
      c.boxes[k] = {s.z0, s.y0, s.x0, s.z1, s.y1, s.x1};
    }
  }
  return c;
}

}  // namespace neuroseg::metrics::detail
