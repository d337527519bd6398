// CPU connected components: run-based two-scan labelling (He, Chao & Suzuki 2008, "A
// run-based two-scan labeling algorithm", IEEE TIP 17(5)) extended to 3D and to
// multi-label images, with the union-find of Wu, Otoo & Suzuki 2009 (union to the smaller
// index, so every root is its component's first element in raster order).
//
// The (D, H, W) volume is D * H rows of W voxels. A run is a maximal segment [x0, x1) of one
// row holding one non-zero value; runs are read off a bit mask of value changes, 64 voxels
// at a time (8 per word for 1-byte dtypes), with no branch per voxel. Two runs connect when their values are equal and their
// rows are neighbours under the connectivity, with overlapping x ranges, widened by one
// voxel when the connectivity admits a diagonal step along x:
//   4 (2D):  (z, y-1) exact                     8 (2D): (z, y-1) widened
//   6:  (z, y-1), (z-1, y) exact
//   18: (z, y-1), (z-1, y) widened; (z-1, y-1), (z-1, y+1) exact
//   26: (z, y-1), (z-1, y-1), (z-1, y), (z-1, y+1) widened
// Threads: the rows are cut into one slab of consecutive rows per thread.
//   1. (parallel) each slab extracts its runs and unites them with their backward rows
//      inside the slab, then numbers its local components in raster order of their root
//      run and accumulates their size, bounds and first voxel;
//   2. (serial) the first H + 1 rows of each slab are united with their backward rows in
//      earlier slabs, on a union-find over the local components (union to the smaller id,
//      so a root is again the earliest local component);
//   3. (serial) the roots, visited in id order, get labels 1..N: raster order of first voxel;
//   4. (parallel) each slab writes its rows.
// The result does not depend on the slab cut, so any thread count gives the same labels.
#include "metrics/connected_components.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <new>
#include <exception>
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

std::vector<RowLink> row_links(int connectivity) {
  switch (connectivity) {
    case 4: return {{0, -1, 0}};
    case 8: return {{0, -1, 1}};
    case 6: return {{0, -1, 0}, {-1, 0, 0}};
    case 18: return {{0, -1, 1}, {-1, -1, 0}, {-1, 0, 1}, {-1, 1, 0}};
    default: return {{0, -1, 1}, {-1, -1, 1}, {-1, 0, 1}, {-1, 1, 1}};
  }
}

// Size, inclusive bounds and first voxel of a (local, then final) component.
struct Stats {
  int64_t size;
  int64_t first;
  int32_t z0, y0, x0, z1, y1, x1;
  void add(const Stats& o) {
    size += o.size;
    z0 = std::min(z0, o.z0), y0 = std::min(y0, o.y0), x0 = std::min(x0, o.x0);
    z1 = std::max(z1, o.z1), y1 = std::max(y1, o.y1), x1 = std::max(x1, o.x1);
  }
};

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

// A growable array of trivially copyable elements that grows without initialising
// (realloc: large blocks move by remapping, not copying).
template <typename E>
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { std::free(data_); }
  E* data() { return data_; }
  const E* data() const { return data_; }
  size_t size() const { return size_; }
  E& operator[](size_t i) { return data_[i]; }
  const E& operator[](size_t i) const { return data_[i]; }
  void reserve(size_t n) {
    if (n <= capacity_) return;
    const size_t c = std::max(n, capacity_ + capacity_ / 2);
    E* d = static_cast<E*>(std::realloc(data_, c * sizeof(E)));
    if (d == nullptr) throw std::bad_alloc();
    data_ = d;
    capacity_ = c;
    advise_huge_pages(data_, c * sizeof(E));
  }
  void resize(size_t n) {
    reserve(n);
    size_ = n;
  }

 private:
  E* data_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
};

struct Slab {
  int64_t row0 = 0, row1 = 0;       // rows [row0, row1) of the D * H rows
  Buffer<Run> runs;
  std::vector<int32_t> row_start;   // runs of row row0 + i: [row_start[i], row_start[i + 1])
  Buffer<int32_t> id;               // per run: union-find parent during the scan, then local component
  Buffer<Stats> stats;              // per local component
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

// Calls on_pair(i, k) for every run a[i] of row `arow` that connects to a run b[k] of row
// `brow` (equal values, overlapping x ranges widened by `widen`). Both run lists are sorted
// and disjoint, so a pointer into b only moves forward: O(na + nb + pairs).
template <typename T, typename F>
inline void link_rows(const Run* a, int32_t na, const T* arow, const Run* b, int32_t nb, const T* brow, int32_t widen,
                      F&& on_pair) {
  int32_t j = 0;
  for (int32_t i = 0; i < na && j < nb; ++i) {
    const int32_t lo = a[i].x0 - widen, hi = a[i].x1 + widen;
    while (j < nb && b[j].x1 <= lo) ++j;
    const T v = arow[a[i].x0];
    for (int32_t k = j; k < nb && b[k].x0 < hi; ++k)
      if (brow[b[k].x0] == v) on_pair(i, k);
  }
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

// A backward row of the current row, seen from the current row's runs in x order.
template <typename T>
struct NeighbourRow {
  const Run* runs;
  const T* values;
  int32_t count, first, next, widen;  // first: index of runs[0] in the slab; next: sweep position
};

template <typename T>
void scan_slab(const T* in, int64_t H, int64_t W, const std::vector<RowLink>& links, Slab& s) {
  const int64_t rows = s.row1 - s.row0;
  s.row_start.assign(rows + 1, 0);
  for (int64_t r = s.row0; r < s.row1; ++r) {
    const T* row = in + r * W;
    const int32_t first = static_cast<int32_t>(s.runs.size());
    s.runs.reserve(first + W + 1);
    s.id.reserve(first + W + 1);
    const int32_t n = extract_runs(row, static_cast<int32_t>(W), s.runs.data() + first);
    s.runs.resize(first + n);
    s.id.resize(first + n);
    s.row_start[r - s.row0 + 1] = first + n;
    if (n == 0) continue;
    NeighbourRow<T> nbr[4];
    int m = 0;
    const int64_t z = r / H, y = r % H;
    for (const RowLink& l : links) {
      if (z + l.dz < 0 || y + l.dy < 0 || y + l.dy >= H) continue;
      const int64_t rr = r + l.dz * H + l.dy;
      if (rr < s.row0) continue;  // in an earlier slab: step 2
      const int32_t b0 = s.row_start[rr - s.row0], nb = s.row_start[rr - s.row0 + 1] - b0;
      if (nb > 0) nbr[m++] = {s.runs.data() + b0, in + rr * W, nb, b0, 0, l.widen};
    }
    // Each run unites with every touching run of equal value in the backward rows. `root`
    // stays the current run's root (a run of this row is never the target of another one).
    const Run* a = s.runs.data() + first;
    int32_t* parent = s.id.data();
    for (int32_t i = 0; i < n; ++i) {
      int32_t root = first + i;
      parent[root] = root;
      const int32_t x0 = a[i].x0, x1 = a[i].x1;
      const T v = row[x0];
      for (int q = 0; q < m; ++q) {
        NeighbourRow<T>& b = nbr[q];
        const int32_t lo = x0 - b.widen, hi = x1 + b.widen;
        while (b.next < b.count && b.runs[b.next].x1 <= lo) ++b.next;
        for (int32_t k = b.next; k < b.count && b.runs[k].x0 < hi; ++k) {
          if (b.values[b.runs[k].x0] != v) continue;
          const int32_t other = find_root(parent, b.first + k);
          if (other < root) {
            parent[root] = other;
            root = other;
          } else if (other > root) {
            parent[other] = root;
          }
        }
      }
    }
  }
  s.id.resize(s.runs.size());
  // Local components in order of their root (= first) run; parent[k] <= k, so a run's
  // parent was visited before it and already holds its component's id.
  int32_t* id = s.id.data();
  int32_t count = 0;
  for (int64_t r = s.row0; r < s.row1; ++r) {
    const int32_t z = static_cast<int32_t>(r / H), y = static_cast<int32_t>(r % H);
    for (int32_t k = s.row_start[r - s.row0]; k < s.row_start[r - s.row0 + 1]; ++k) {
      const Run run = s.runs[k];
      const int32_t p = id[k];
      int32_t c;
      if (p == k) {
        c = count++;
        s.stats.resize(count);
        s.stats[c] = {0, r * W + run.x0, z, y, run.x0, z, y, run.x1 - 1};
      } else {
        c = id[p];
      }
      id[k] = c;
      s.stats[c].add({run.x1 - run.x0, 0, z, y, run.x0, z, y, run.x1 - 1});
    }
  }
}

// Runs fn(0) .. fn(count - 1) on `count` threads. Not at::parallel_for: that one is inline
// OpenMP and runs serially in a translation unit compiled without -fopenmp (ours are).
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

template <typename T>
Components label(const T* in, int64_t D, int64_t H, int64_t W, int connectivity) {
  const std::vector<RowLink> links = row_links(connectivity);
  const int64_t R = D * H;
  // One slab per thread (at::get_num_threads()) of at least 2 rows, and at most 2^30 voxels
  // per slab so that run indices fit int32.
  const int64_t max_voxels = int64_t(1) << 30;
  int64_t S = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), R / 2));
  S = std::max(S, (R * W + max_voxels - 1) / max_voxels);
  S = std::min(S, std::max<int64_t>(R, 1));
  std::vector<Slab> slabs(S);
  for (int64_t s = 0; s < S; ++s) {
    slabs[s].row0 = R * s / S;
    slabs[s].row1 = R * (s + 1) / S;
  }
  on_threads(S, [&](int64_t s) { scan_slab(in, H, W, links, slabs[s]); });

  // Step 2: seams between slabs, on a union-find over all local components.
  std::vector<int64_t> base(S + 1, 0);
  for (int64_t s = 0; s < S; ++s) base[s + 1] = base[s] + static_cast<int64_t>(slabs[s].stats.size());
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
  for (int64_t s = 1; s < S; ++s) {
    const Slab& a = slabs[s];
    for (int64_t r = a.row0; r < std::min(a.row1, a.row0 + H + 1); ++r) {
      const int64_t z = r / H, y = r % H;
      const int32_t a0 = a.row_start[r - a.row0], na = a.row_start[r - a.row0 + 1] - a0;
      if (na == 0) continue;
      for (const RowLink& l : links) {
        if (z + l.dz < 0 || y + l.dy < 0 || y + l.dy >= H) continue;
        const int64_t rr = r + l.dz * H + l.dy;
        if (rr >= a.row0) continue;
        const Slab& b = slabs[slab_of(rr)];
        const int32_t b0 = b.row_start[rr - b.row0], nb = b.row_start[rr - b.row0 + 1] - b0;
        const int64_t abase = base[s], bbase = base[&b - slabs.data()];
        link_rows(a.runs.data() + a0, na, in + r * W, b.runs.data() + b0, nb, in + rr * W, l.widen,
                  [&](int32_t i, int32_t k) {
                    unite<int64_t>(parent.data(), abase + a.id[a0 + i], bbase + b.id[b0 + k]);
                  });
      }
    }
  }

  // Step 3: labels 1..N in id order of the roots; parent[g] <= g, so parent[g] already has one.
  Components c;
  int64_t count = 0;
  for (int64_t g = 0; g < base[S]; ++g) count += parent[g] == g;
  if (count > INT32_MAX) throw io::Error("connected components", "more than 2^31 - 1 components do not fit int32 labels");
  c.count = count;
  c.sizes.resize(count);
  c.boxes.resize(count);
  c.first_voxel.resize(count);
  std::vector<int32_t> final_label(base[S]);
  int32_t next = 0;
  for (int64_t s = 0; s < S; ++s)
    for (size_t l = 0; l < slabs[s].stats.size(); ++l) {
      const int64_t g = base[s] + static_cast<int64_t>(l);
      const Stats& st = slabs[s].stats[l];
      if (parent[g] == g) {
        final_label[g] = ++next;
        c.sizes[next - 1] = st.size;
        c.boxes[next - 1] = {st.z0, st.y0, st.x0, st.z1, st.y1, st.x1};
        c.first_voxel[next - 1] = st.first;
      } else {
        const int32_t k = final_label[g] = final_label[parent[g]];
        BoundingBox& b = c.boxes[k - 1];
        c.sizes[k - 1] += st.size;
        b.z0 = std::min<int64_t>(b.z0, st.z0), b.y0 = std::min<int64_t>(b.y0, st.y0), b.x0 = std::min<int64_t>(b.x0, st.x0);
        b.z1 = std::max<int64_t>(b.z1, st.z1), b.y1 = std::max<int64_t>(b.y1, st.y1), b.x1 = std::max<int64_t>(b.x1, st.x1);
      }
    }

  // Step 4: rows out.
  c.labels = at::empty({D, H, W}, at::kInt);
  int32_t* out = c.labels.data_ptr<int32_t>();
  advise_huge_pages(out, static_cast<size_t>(c.labels.numel()) * sizeof(int32_t));
  on_threads(S, [&](int64_t s) {
    const Slab& sl = slabs[s];
    const int32_t* fl = final_label.data() + base[s];
    for (int64_t r = sl.row0; r < sl.row1; ++r) {
      int32_t* o = out + r * W;
      int32_t x = 0;
      for (int32_t k = sl.row_start[r - sl.row0]; k < sl.row_start[r - sl.row0 + 1]; ++k) {
        const Run run = sl.runs[k];
        std::fill(o + x, o + run.x0, 0);
        std::fill(o + run.x0, o + run.x1, fl[sl.id[k]]);
        x = run.x1;
      }
      std::fill(o + x, o + W, 0);
    }
  });
  return c;
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

Components connected_components_cpu(const at::Tensor& image, int connectivity) {
  TORCH_CHECK(image.dim() == 3, "connected_components_cpu: expects (D, H, W)");
  const at::Tensor x = comparable_values(image.to(at::kCPU));
  const int64_t D = x.size(0), H = x.size(1), W = x.size(2);
  if (W >= INT32_MAX) throw io::Error("connected components", "rows longer than 2^31 - 2 voxels are not supported");
  switch (x.scalar_type()) {
    case at::kByte: return label(x.data_ptr<uint8_t>(), D, H, W, connectivity);
    case at::kChar: return label(x.data_ptr<int8_t>(), D, H, W, connectivity);
    case at::kShort: return label(x.data_ptr<int16_t>(), D, H, W, connectivity);
    case at::kInt: return label(x.data_ptr<int32_t>(), D, H, W, connectivity);
    case at::kLong: return label(x.data_ptr<int64_t>(), D, H, W, connectivity);
    case at::kFloat: return label(x.data_ptr<float>(), D, H, W, connectivity);
    case at::kDouble: return label(x.data_ptr<double>(), D, H, W, connectivity);
    default:
      throw io::Error("connected components", std::string("unsupported dtype ") + c10::toString(x.scalar_type()));
  }
}

}  // namespace neuroseg::metrics::detail
