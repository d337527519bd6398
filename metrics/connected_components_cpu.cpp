// CPU connected components: run-based two-scan labelling (He, Chao & Suzuki 2008, "A
// run-based two-scan labeling algorithm", IEEE TIP 17(5)) extended to 3D and to
// multi-label images, with the union-find of Wu, Otoo & Suzuki 2009 (union to the smaller
// index, so every root is its component's first element in raster order).
//
// The (D, H, W) volume is D * H rows of W voxels. A run is a maximal segment of one row
// holding one non-zero value. Two runs connect when their values are equal and their rows
// are neighbours under the connectivity, with overlapping x ranges, widened by one voxel
// when the connectivity admits a diagonal step along x:
//   4 (2D):  (z, y-1) exact                     8 (2D): (z, y-1) widened
//   6:  (z, y-1), (z-1, y) exact
//   18: (z, y-1), (z-1, y) widened; (z-1, y-1), (z-1, y+1) exact
//   26: (z, y-1), (z-1, y-1), (z-1, y), (z-1, y+1) widened
// Runs are never listed in the scan: each row is kept as bit masks, 64 voxels a word (non-zero
// voxels, first and last voxels of runs, per-byte run counts), built with SSE2 compares for
// 1-byte dtypes. The touching pairs of a row and a backward row come from word operations
// (row_pairs): one pair per stretch where both rows hold the same value, plus corner contacts
// when widened; the run holding a voxel is a table look-up. On noise and on short
// multi-label runs this has no per-run branch to mispredict, which is where run-list merges
// and cc3d's per-voxel decision tree spend their time.
//
// Fewer unions (18 and 26): as in the decision tree of Wu, Otoo & Suzuki (2009, "Optimizing
// two-pass connected-component labeling algorithms", Pattern Anal. Appl. 12(2)), which cc3d
// extends to 3D per voxel, a voxel whose neighbour E = (x, y, z - 1), or K = (x, y - 1, z),
// holds its value needs no union with the other backward neighbours that E (K) touches: they
// were united with E (K) when the later of the two was labelled. See RowLink's `covered`.
//
// Only the run ids (4 bytes per run) outlive a row: the masks of the last H + 2 rows sit in a
// ring, and the output pass reads each row's runs off the input again, which costs less than
// storing and re-reading them. Statistics are summed in that same pass, and only when asked.
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
// With one slab, step 1's numbering and step 3 are one pass and step 2 vanishes. The result
// does not depend on the slab cut, so any thread count gives the same labels.
#include "metrics/connected_components.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <numeric>
#include <system_error>
#include <thread>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#ifdef __linux__
#include <sys/mman.h>
#endif

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "io/error.h"

namespace neuroseg::metrics::detail {
namespace {

// The per-word helpers below must inline into the row loops: GCC left some of them out of
// line in the library build (PCH, -fopenmp), though not in a standalone build of this code.
#if defined(__GNUC__)
#define NEUROSEG_CC_INLINE inline __attribute__((always_inline))
#else
#define NEUROSEG_CC_INLINE inline
#endif

struct Run {
  int32_t x0, x1;  // [x0, x1)
};

// A backward neighbour row of row (z, y) is (z + dz, y + dy); `widen` = 1 when runs that
// touch only diagonally along x connect. `covered`: the pairs found at a voxel p = (x, y, z)
// whose E = (x, y, z - 1) (kE) or also K = (x, y - 1, z) (kEK) holds p's value are left out,
// because every voxel of that row touching p also touches E (or K) under the connectivity
// (see row_pairs). The E row always unites, K is covered by E only.
enum Cover { kNone = 0, kE = 1, kEK = 2 };

struct RowLink {
  int dz, dy, widen;
  Cover covered;
};

int row_links(int connectivity, RowLink* links) {
  switch (connectivity) {
    case 4: links[0] = {0, -1, 0, kNone}; return 1;
    case 8: links[0] = {0, -1, 1, kNone}; return 1;
    case 6: links[0] = {-1, 0, 0, kNone}, links[1] = {0, -1, 0, kNone}; return 2;
    case 18:
      links[0] = {-1, 0, 1, kNone}, links[1] = {0, -1, 1, kNone};
      links[2] = {-1, -1, 0, kEK}, links[3] = {-1, 1, 0, kE};
      return 4;
    default:
      links[0] = {-1, 0, 1, kNone}, links[1] = {0, -1, 1, kE};
      links[2] = {-1, -1, 1, kEK}, links[3] = {-1, 1, 1, kE};
      return 4;
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
NEUROSEG_CC_INLINE I find_root(I* parent, I a) {
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
NEUROSEG_CC_INLINE void unite(I* parent, I a, I b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a < b) parent[b] = a;
  else if (b < a) parent[a] = b;
}

// Bit i of the result is set when byte i of `cur` differs from byte i of `prev` (SWAR).
NEUROSEG_CC_INLINE uint64_t changed_bytes(uint64_t cur, uint64_t prev) {
  const uint64_t d = cur ^ prev;
  const uint64_t high = (((d & 0x7f7f7f7f7f7f7f7fULL) + 0x7f7f7f7f7f7f7f7fULL) | d) & 0x8080808080808080ULL;
  return ((high >> 7) * 0x0102040810204080ULL) >> 56;  // gathers the 8 flags into one byte
}

#if defined(__SSE2__)
// Bit i set when a[i] == b[i], i < 16: one compare and one movemask (SSE2 is baseline x86-64).
NEUROSEG_CC_INLINE uint64_t equal16(const void* a, const void* b) {
  const __m128i u = _mm_loadu_si128(static_cast<const __m128i*>(a));
  const __m128i v = _mm_loadu_si128(static_cast<const __m128i*>(b));
  return static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(u, v)));
}
#endif

// Bit i set when byte a[i] == b[i], i < 8.
NEUROSEG_CC_INLINE uint64_t equal8(const void* a, const void* b) {
  uint64_t u, v;
  std::memcpy(&u, a, 8);
  std::memcpy(&v, b, 8);
  return ~changed_bytes(u, v) & 0xffULL;
}

// Bit i set when a[x + i] == b[x + i + d] (d = -1, 0, 1), 16 (then 8) at a time for 1-byte
// types; returns the first i it did not do. Where x + i + d falls outside [0, W) the byte
// compared is 0 (callers that need "not equal" there clear those bits): the one chunk that
// would read b[-1] or b[W] loads b[x + i ..] and shifts it by a byte instead.
template <typename T>
NEUROSEG_CC_INLINE int32_t equal_chunks(const T* a, const T* b, int32_t x, int32_t count, int32_t d, int32_t W,
                                        uint64_t& m) {
  int32_t i = 0;
  if constexpr (sizeof(T) == 1) {
#if defined(__SSE2__)
    for (; i + 16 <= count; i += 16) {
      const __m128i u = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + x + i));
      const int32_t j = x + i + d;
      __m128i v;
      if (j >= 0 && j + 16 <= W) v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + j));
      else if (j < 0) v = _mm_slli_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + x + i)), 1);
      else v = _mm_srli_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + x + i)), 1);
      m |= static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(u, v)))) << i;
    }
#endif
    for (; i + 8 <= count && x + i + d >= 0 && x + i + d + 8 <= W; i += 8) m |= equal8(a + x + i, b + x + i + d) << i;
  }
  return i;
}

// Bit i set when row[x + i] != row[x + i - 1] (row[-1] = 0), for i < count <= 64.
template <typename T>
NEUROSEG_CC_INLINE uint64_t change_mask(const T* row, int32_t x, int32_t count) {
  uint64_t same = 0;
  const int32_t done = equal_chunks(row, row, x, count, -1, x + count, same);
  uint64_t m = ~same & (done == 64 ? ~uint64_t(0) : (uint64_t(1) << done) - 1);
  for (int32_t i = done; i < count; ++i) {
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

// Bit i set when a[x + i] == b[x + i], for i < count <= 64.
template <typename T>
NEUROSEG_CC_INLINE uint64_t equal_mask(const T* a, const T* b, int32_t x, int32_t count) {
  uint64_t m = 0;
  int32_t i = equal_chunks(a, b, x, count, 0, x + count, m);
  for (; i < count; ++i) m |= static_cast<uint64_t>(a[x + i] == b[x + i]) << i;
  return m;
}

// Bit i set when a[x + i] == b[x + i + d] (d = -1 or 1), for i < count <= 64; 0 where
// x + i + d falls outside [0, W).
template <typename T>
NEUROSEG_CC_INLINE uint64_t equal_shifted_mask(const T* a, const T* b, int32_t x, int32_t count, int32_t d, int32_t W) {
  uint64_t m = 0;
  int32_t i = equal_chunks(a, b, x, count, d, W, m);
  for (; i < count; ++i) {
    const int32_t j = x + i + d;
    m |= static_cast<uint64_t>(j >= 0 && j < W && a[x + i] == b[j]) << i;
  }
  if (x + d < 0) m &= ~uint64_t(1);                           // b[-1]
  if (x + count + d > W) m &= ~(uint64_t(1) << (count - 1));  // b[W]
  return m;
}

// Bit i set when row[x + i] != 0, for i < count <= 64.
template <typename T>
NEUROSEG_CC_INLINE uint64_t nonzero_mask(const T* row, int32_t x, int32_t count) {
  uint64_t m = 0;
  int32_t i = 0;
  if constexpr (sizeof(T) == 1) {
    static const uint8_t zeros[16] = {};
#if defined(__SSE2__)
    for (; i + 16 <= count; i += 16) m |= (~equal16(row + x + i, zeros) & 0xffffULL) << i;
#endif
    for (; i + 8 <= count; i += 8) m |= (~equal8(row + x + i, zeros) & 0xffULL) << i;
  }
  for (; i < count; ++i) m |= static_cast<uint64_t>(row[x + i] != T(0)) << i;
  return m;
}

// One row as bit masks, 64 voxels a word, bits past W clear: non-zero voxels, first and last
// voxels of runs; rank[w] = runs starting before word w (rank[words] = the row's runs) and
// bytes[w] = byte j: runs starting in bytes 0..j-1 of word w, so that the run holding voxel
// x is found with two shifts and a table look-up.
struct RowBits {
  uint64_t* fg;
  uint64_t* start;
  uint64_t* end;
  uint64_t* bytes;
  uint32_t* rank;
};

// Set bits per byte value.
struct ByteCounts {
  uint8_t n[256];
  constexpr ByteCounts() : n() {
    for (int i = 1; i < 256; ++i) n[i] = static_cast<uint8_t>((i & 1) + n[i / 2]);
  }
};
constexpr ByteCounts kByteCounts;

template <typename T>
inline uint32_t row_bits(const T* row, int32_t W, int32_t words, RowBits b) {
  uint64_t next_change = 0;  // bit 0: a change at the first voxel of the next word (or past W)
  for (int32_t w = words - 1; w >= 0; --w) {
    const int32_t x = w * 64, count = std::min(64, W - x);
    const uint64_t fg = nonzero_mask(row, x, count), change = change_mask(row, x, count);
    const uint64_t after = (change >> 1) | (count == 64 ? next_change << 63 : uint64_t(1) << (count - 1));
    b.fg[w] = fg;
    b.start[w] = fg & change;
    b.end[w] = fg & after;
    next_change = change & 1;
  }
  uint32_t n = 0;
  for (int32_t w = 0; w < words; ++w) {
    // Per-byte counts (SWAR), then their running sums: byte j of the product = bytes 0..j.
    uint64_t v = b.start[w];
    v = v - ((v >> 1) & 0x5555555555555555ULL);
    v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
    v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    const uint64_t sums = v * 0x0101010101010101ULL;
    b.bytes[w] = sums << 8;
    b.rank[w] = n;
    n += static_cast<uint32_t>(sums >> 56);
  }
  b.rank[words] = n;
  return n;
}

// Index in its row of the run holding voxel x.
NEUROSEG_CC_INLINE uint32_t run_at(const RowBits& b, int32_t x) {
  const int32_t w = x >> 6, shift = x & 56;
  const uint32_t byte = static_cast<uint32_t>(b.start[w] >> shift) & ((2u << (x & 7)) - 1) & 0xffu;
  return b.rank[w] + static_cast<uint32_t>((b.bytes[w] >> shift) & 0xff) + kByteCounts.n[byte] - 1;
}

// Appends to `pairs` the (a, b) id pairs of touching runs of equal value between row `arow`
// (bits A, first run id a_first) and the backward row `brow` (B, b_first): at most one pair
// per two runs, found with word operations and no per-run branch.
//   - runs overlapping in x: M = A.fg & (arow == brow) is set where both hold the same value;
//     each stretch of M within one run of each row is one pair, found at its first voxel
//     (a set bit of M whose left neighbour is clear or where a run of either row starts);
//   - widened, runs meeting only at a corner: the last voxel of a run of `arow` next to the
//     first voxel of a run of `brow` (or the other way round), when their values are equal.
// `skip` (nullable, for a `covered` link): voxels of `arow` whose E (or E or K) neighbour
// holds their value. A pair found at such a voxel is redundant: the voxel's neighbour in
// `brow` and E (K) are neighbours of each other, hold the same value, and were united when
// the later of the two was labelled (or are united through earlier pairs, by induction
// over raster order), while the voxel itself unites with E (K) through the E (K) row. This
// is the decision-tree argument of Wu, Otoo & Suzuki 2009 applied to runs; on smooth
// volumes (z - 1 agrees almost everywhere) it removes most unions of the other rows.
template <typename T>
inline int32_t row_pairs(const T* arow, const RowBits& A, uint32_t a_first, const T* brow, const RowBits& B,
                         uint32_t b_first, int32_t W, int32_t words, int widen, const uint64_t* skip, uint32_t* pairs) {
  int32_t n = 0;
  uint64_t carry = 0;
  for (int32_t w = 0; w < words; ++w) {
    const uint64_t keep = skip != nullptr ? ~skip[w] : ~uint64_t(0);
    if ((A.fg[w] & keep) == 0) {
      // No voxel of `arow` here, or all covered: no pair. Forgetting the stretch that may
      // cross into the next word costs at most one repeated pair there.
      carry = 0;
      continue;
    }
    const int32_t x = w * 64, count = std::min(64, W - x);
    const uint64_t m = A.fg[w] & equal_mask(arow, brow, x, count);
    uint64_t first = m & (~((m << 1) | carry) | A.start[w] | B.start[w]);
    carry = m >> 63;
    first &= keep;
    while (first != 0) {
      const int32_t v = x + __builtin_ctzll(first);
      first &= first - 1;
      pairs[2 * n] = a_first + run_at(A, v);
      pairs[2 * n + 1] = b_first + run_at(B, v);
      ++n;
    }
    if (widen) {
      const uint64_t b_start_right = (B.start[w] >> 1) | (w + 1 < words ? B.start[w + 1] << 63 : 0);
      const uint64_t b_end_left = (B.end[w] << 1) | (w > 0 ? B.end[w - 1] >> 63 : 0);
      uint64_t right = A.end[w] & b_start_right & keep, left = A.start[w] & b_end_left & keep;
      // Most corner candidates of a multi-label volume hold different values: one word test
      // drops them before any rank is looked up.
      if (right != 0) right &= equal_shifted_mask(arow, brow, x, count, 1, W);
      if (left != 0) left &= equal_shifted_mask(arow, brow, x, count, -1, W);
      while (right != 0) {
        const int32_t v = x + __builtin_ctzll(right);
        right &= right - 1;
        pairs[2 * n] = a_first + run_at(A, v);
        pairs[2 * n + 1] = b_first + run_at(B, v + 1);
        ++n;
      }
      while (left != 0) {
        const int32_t v = x + __builtin_ctzll(left);
        left &= left - 1;
        pairs[2 * n] = a_first + run_at(A, v);
        pairs[2 * n + 1] = b_first + run_at(B, v - 1);
        ++n;
      }
    }
  }
  return n;
}

// Storage for the bits of `rows` rows.
struct BitsRing {
  int32_t words = 0;
  std::vector<uint64_t> masks;
  std::vector<uint32_t> ranks;
  BitsRing(int64_t rows, int32_t w)
      : words(w), masks(static_cast<size_t>(rows) * 4 * w), ranks(static_cast<size_t>(rows) * (w + 1)) {}
  RowBits at(int64_t slot) {
    uint64_t* m = masks.data() + slot * 4 * words;
    return {m, m + words, m + 2 * words, m + 3 * words, ranks.data() + slot * (words + 1)};
  }
};

// Voxels of row r that agree with E = (x, y, z - 1) (cover[0..words)) and with E or
// K = (x, y - 1, z) (cover[words..2 words)), for the `covered` links; false when no link of
// the connectivity is covered.
template <typename T>
inline bool cover_masks(const T* in, int64_t r, int64_t H, int64_t W, int32_t words, const RowLink* links, int nlinks,
                        const RowBits& A, uint64_t* cover) {
  bool any = false;
  for (int q = 0; q < nlinks; ++q) any = any || links[q].covered != kNone;
  if (!any) return false;
  const T* row = in + r * W;
  const bool has_e = r >= H, has_k = r % H > 0;
  for (int32_t w = 0; w < words; ++w) {
    const int32_t x = w * 64, count = std::min<int32_t>(64, static_cast<int32_t>(W) - x);
    const uint64_t e = has_e && A.fg[w] != 0 ? A.fg[w] & equal_mask(row, row - H * W, x, count) : 0;
    const uint64_t k = has_k && A.fg[w] != 0 ? A.fg[w] & equal_mask(row, row - W, x, count) : 0;
    cover[w] = e;
    cover[words + w] = e | k;
  }
  return true;
}

inline const uint64_t* cover_of(const RowLink& l, bool covering, const uint64_t* cover, int32_t words) {
  if (!covering || l.covered == kNone) return nullptr;
  return l.covered == kE ? cover : cover + words;
}

// Fills o[run.x0, run.x1) with `label`; the row was zeroed and runs come left to right, so
// what lies past the run is still 0. Short runs (noise, thin bands) take 8 fixed stores,
// 0 past the run's end, instead of a loop whose trip count the branch predictor cannot guess.
NEUROSEG_CC_INLINE void fill_run(int32_t* o, Run run, int32_t W, int32_t label) {
  const int32_t len = run.x1 - run.x0;
  if (len <= 8 && run.x0 + 8 <= W) {
    int32_t* p = o + run.x0;
#if defined(__SSE2__)
    const __m128i l = _mm_set1_epi32(label), n = _mm_set1_epi32(len);
    const __m128i lo = _mm_cmpgt_epi32(n, _mm_setr_epi32(0, 1, 2, 3));
    const __m128i hi = _mm_cmpgt_epi32(n, _mm_setr_epi32(4, 5, 6, 7));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm_and_si128(l, lo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 4), _mm_and_si128(l, hi));
#else
    for (int32_t q = 0; q < 8; ++q) p[q] = q < len ? label : 0;
#endif
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

NEUROSEG_CC_INLINE void add_run(Stats& s, int64_t first, int32_t z, int32_t y, Run run) {
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
  const int32_t w32 = static_cast<int32_t>(W), words = static_cast<int32_t>((W + 63) / 64);
  BitsRing ring(slots, words);
  std::vector<uint64_t> cover(2 * words);
  Array<uint32_t> pairs(static_cast<size_t>(nlinks) * 2 * (2 * W + 2));
  s.row_first.assign(rows + 1, 0);
  s.id.allocate(static_cast<size_t>(rows * W));
  uint32_t* parent = s.id.data();
  uint32_t next = 0;
  for (int64_t r = s.row0; r < s.row1; ++r) {
    const T* row = in + r * W;
    const RowBits A = ring.at(r % slots);
    const uint32_t na = row_bits(row, w32, words, A);
    s.row_first[r - s.row0] = next;
    for (uint32_t i = 0; i < na; ++i) parent[next + i] = next + i;
    if (na > 0) {
      const int64_t z = r / H, y = r % H;
      const bool covering = cover_masks(in, r, H, W, words, links, nlinks, A, cover.data());
      int32_t np = 0;
      for (int q = 0; q < nlinks; ++q) {
        const RowLink& l = links[q];
        if (z + l.dz < 0 || y + l.dy < 0 || y + l.dy >= H) continue;
        const int64_t rr = r + l.dz * H + l.dy;
        if (rr < s.row0) continue;  // in an earlier slab: step 2
        if (s.row_first[rr - s.row0 + 1] == s.row_first[rr - s.row0]) continue;  // no runs
        np += row_pairs(row, A, next, in + rr * W, ring.at(rr % slots), s.row_first[rr - s.row0], w32, words, l.widen,
                        cover_of(l, covering, cover.data(), words), pairs.data() + 2 * np);
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

// Runs fn(0) .. fn(count - 1) on up to `count` threads. The calling thread and count - 1
// detached helpers take tasks from a shared counter, and the caller returns once every task
// has run: on a machine whose cores are busy with other processes a helper that is not
// scheduled in time finds no task left, instead of the caller waiting a whole time slice for
// it (with one slab per thread pinned, two threads were slower than one under load). A
// helper calls fn only for a task it claimed, and the caller waits for those, so fn and what
// it refers to outlive every call. Not at::parallel_for: its OpenMP workers spin while they
// wait, which under the same load made two threads 2x slower than one on 64^3 volumes.
template <typename F>
void on_threads(int64_t count, const F& fn) {
  if (count == 1) return fn(0);
  struct Job {
    std::atomic<int64_t> next{0};
    int64_t count = 0, done = 0;  // done: under `mutex`
    std::mutex mutex;
    std::condition_variable finished;
    std::exception_ptr error;
    std::function<void(int64_t)> task;
    void work() {
      for (int64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) {
        std::exception_ptr e;
        try {
          task(i);
        } catch (...) {
          e = std::current_exception();
        }
        const std::lock_guard<std::mutex> lock(mutex);
        if (e && !error) error = e;
        if (++done == count) finished.notify_all();
      }
    }
  };
  auto job = std::make_shared<Job>();
  job->count = count;
  job->task = [&fn](int64_t i) { fn(i); };
  for (int64_t t = 1; t < count; ++t) {
    try {
      std::thread([job] { job->work(); }).detach();
    } catch (const std::system_error&) {
      break;  // no thread to be had: the caller runs the rest
    }
  }
  job->work();
  std::unique_lock<std::mutex> lock(job->mutex);
  job->finished.wait(lock, [&] { return job->done == job->count; });
  if (job->error) std::rethrow_exception(job->error);
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
  // One slab per thread of at least 16 rows and cc_min_slab_voxels voxels, and at most 2^30
  // voxels per slab so that run ids fit uint32.
  const int64_t max_voxels = int64_t(1) << 30;
  int64_t S = std::max<int64_t>(1, std::min({threads, R / 16, R * W / std::max<int64_t>(cc_min_slab_voxels, 1)}));
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
  const int32_t w32 = static_cast<int32_t>(W), words = static_cast<int32_t>((W + 63) / 64);
  BitsRing bits(2, words);
  std::vector<uint64_t> cover(2 * words);
  std::vector<uint32_t> pairs(2 * (2 * W + 2));
  for (int64_t s = 1; s < S; ++s) {
    const Slab& a = slabs[s];
    for (int64_t r = a.row0; r < std::min(a.row1, a.row0 + H + 1); ++r) {
      const int64_t z = r / H, y = r % H;
      const RowBits A = bits.at(0), B = bits.at(1);
      if (row_bits(in + r * W, w32, words, A) == 0) continue;
      const bool covering = cover_masks(in, r, H, W, words, links, nlinks, A, cover.data());
      const uint32_t a0 = a.row_first[r - a.row0];
      for (int q = 0; q < nlinks; ++q) {
        const RowLink& l = links[q];
        if (z + l.dz < 0 || y + l.dy < 0 || y + l.dy >= H) continue;
        const int64_t rr = r + l.dz * H + l.dy;
        if (rr >= a.row0) continue;
        const int64_t bs = slab_of(rr);
        const Slab& b = slabs[bs];
        row_bits(in + rr * W, w32, words, B);
        const int32_t np = row_pairs(in + r * W, A, a0, in + rr * W, B, b.row_first[rr - b.row0], w32, words, l.widen,
                                     cover_of(l, covering, cover.data(), words), pairs.data());
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
  on_threads(S, [&](int64_t s) {
    write_slab(in, H, W, slabs[s], final_label.data() + base[s], /*numbered=*/true, out);
  });
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

int64_t cc_min_slab_voxels = int64_t(1) << 16;

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

Components connected_components_cpu(const at::Tensor& image, int connectivity, ComponentStats stats_wanted) {
  TORCH_CHECK(image.dim() == 3, "connected_components_cpu: expects (D, H, W)");
  const at::Tensor x = comparable_values(image.to(at::kCPU));
  const int64_t D = x.size(0), H = x.size(1), W = x.size(2);
  if (W >= INT32_MAX) throw io::Error("connected components", "rows longer than 2^31 - 2 voxels are not supported");
  Components c;
  c.labels = at::empty({D, H, W}, at::kInt);
  int32_t* out = c.labels.data_ptr<int32_t>();
  advise_huge_pages(out, static_cast<size_t>(c.labels.numel()) * sizeof(int32_t));
  std::vector<Stats> stats;
  std::vector<Stats>* want = stats_wanted == ComponentStats::kNone ? nullptr : &stats;
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
