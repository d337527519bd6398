#include "metrics/skeleton.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include <unistd.h>

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
// What is ours, not skimage's (the result is the same voxel for voxel; the tables were
// checked against the direct definitions on all 2^26 neighbourhoods):
//  - The image is kept twice: one bit per voxel, so the border voxels of a direction come 64
//    at a time (foreground and not foreground at the shifted index; words without
//    foreground are skipped through a summary bit set); and one byte per voxel holding the
//    column (r - 1, r, r + 1), so a 3x3x3 neighbourhood is three 4-byte loads packed into a
//    27-bit word (with pext where the CPU has a fast one). skimage scans the whole volume
//    and reads 26 neighbours for every voxel in every pass.
//  - Lee's tests from two tables (class Tables): the δG26 sum of the four octants on each
//    side of the middle plane depends on 18 bits only, and the 26-connected pieces are those
//    of the 18 face and edge neighbours plus the corners alone in their octant.
//  - A pass collects plane p + 1 and then re-checks plane p: collecting reads planes p to
//    p + 2 as they were when the pass began, re-checking plane p writes plane p only, so the
//    order of skimage's two loops is kept while the planes are in cache. A candidate stores
//    its neighbourhood; if no deletion changed it, it is still simple.
//  - Stopping after as many consecutive empty passes as there are directions, instead of at
//    the end of a round: an empty pass leaves the image as it was, so the rest of skimage's
//    round deletes nothing either.
//  - Cropping to the bounding box: every test looks at the 3x3x3 neighbourhood only and the
//    raster order is translation invariant, so the empty margin changes nothing (measured
//    bit-identical in shared/specs/fisbe.md §2.2); the direction count follows the original
//    depth, not the crop's. Buffers come zeroed from calloc, so the empty parts of a crop
//    are never touched.
//  - Passes run as a wavefront: pass k + 1 follows pass k two planes behind
//    (Thinner::run_passes). Two threads take alternate passes (or groups of passes), so
//    both sweep the volume at once, each on planes in its own cache; each first fills and
//    encodes half the planes (Thinner::run_two_threads), and the second thread persists
//    between calls (SecondThread). Measured on 2 cores: 1.35-2x on dense blobs and the
//    brain mask. Used from 32 k foreground voxels (tubes 64^3, 12 k, ran slower: a
//    hand-over per plane and pass). skeletonize_labels thins instances in parallel instead.
//    Where a plane is too large for a few to stay in a core's cache (512^3), one thread
//    keeps several passes in flight, so one sweep through memory serves them all.
//
// A quirk kept for agreement: the re-check tests simplicity only, and "simple" includes a
// voxel without foreground neighbours, so a remnant isolated earlier in the same pass is
// deleted and a small component can vanish (skimage does the same). Components never split.

namespace neuroseg::metrics {
namespace {

// The 3x3x3 neighbourhood of a voxel as a 27-bit word: bit 9 (dp + 1) + 3 (dc + 1) + (dr + 1)
// for the neighbour at (p + dp, r + dr, c + dc). This is skimage's neighbour numbering (Lee's
// Fig. 1a with the centre as 13), and the layout the column codes below produce directly.
constexpr int bit_of(int dp, int dr, int dc) { return 9 * (dp + 1) + 3 * (dc + 1) + (dr + 1); }
constexpr int kCenter = bit_of(0, 0, 0);
constexpr uint32_t kCenterBit = 1u << kCenter;
constexpr uint32_t kAllBits = (1u << 27) - 1;

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

// The octants' voxels (bits of the cube) in the order of Lee's table.
constexpr uint8_t kEulerOctants[8][7] = {
    {2, 1, 11, 10, 5, 4, 14},    {0, 9, 3, 12, 1, 10, 4},     {8, 7, 17, 16, 5, 4, 14},
    {6, 15, 7, 16, 3, 12, 4},    {20, 23, 19, 22, 11, 14, 10}, {18, 21, 9, 12, 19, 22, 10},
    {26, 23, 17, 14, 25, 22, 16}, {24, 25, 15, 16, 21, 22, 12},
};

// pext (BMI2): the bits of x under mask, packed at the bottom. Written as inline assembly so
// that the file builds for any x86-64 and uses it only where the CPU has a fast one (Zen 1
// and 2 run it in microcode, at a cost growing with the mask's popcount).
#if defined(__x86_64__) && defined(__GNUC__)
constexpr bool kHavePextAsm = true;
inline uint32_t pext(uint32_t x, uint32_t mask) {
  uint32_t r;
  asm("pextl %2, %1, %0" : "=r"(r) : "r"(x), "r"(mask));
  return r;
}
#else
constexpr bool kHavePextAsm = false;
inline uint32_t pext(uint32_t x, uint32_t mask) {
  uint32_t r = 0;
  for (uint32_t bit = 1; mask; mask &= mask - 1, bit <<= 1)
    if (x & mask & (0u - mask)) r |= bit;
  return r;
}
#endif

// Whether to use pext: BMI2 and not AMD family 17h; NEUROSEG_SKELETON_PORTABLE=1 forces the
// portable shifts (the tests run both).
bool use_pext() {
  static const bool fast = [] {
    if (!kHavePextAsm) return false;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("bmi2") && !__builtin_cpu_is("amdfam17h");
#else
    return false;
#endif
  }();
  const char* portable = std::getenv("NEUROSEG_SKELETON_PORTABLE");
  return fast && !(portable && *portable && std::string(portable) != "0");
}

// Lee's three tests, answered with two tables and a few bit operations:
//  - end point: exactly one of the 26 neighbours is foreground;
//  - Euler invariance: the δG26 sum over the 8 octants is 0. The four octants with dp <= 0
//    see only the planes dp = -1 and dp = 0, the four with dp >= 0 only dp = 1 and dp = 0,
//    so the sum is two reads of a table indexed by 18 bits (outer plane, middle plane): one
//    table serves both halves because Lee's octants with dp >= 0 mirror those with dp <= 0
//    (dp -> -dp) and δG26 is invariant under that reflection (detail::skeleton_table_mismatches
//    checks it);
//  - simple (skimage's octree labelling: the 26 neighbours' foreground is at most one
//    26-connected piece). Two neighbours are 26-adjacent iff some octant holds both; a corner
//    (dp, dr, dc all non-zero) lies in one octant only, and never touches another corner. So
//    the pieces are those of the 18 face and edge neighbours, plus one per corner whose
//    octant has no other foreground: a table of the 2^18 face/edge configurations (pieces
//    counted up to 2) and, with the Euler sums, the count of such corners per outer plane.
class Tables {
 public:
  Tables() : half_(1u << 18), pieces_(1u << 13) {
    // The half-cube of the octants with dp <= 0: outer plane dp = -1 (bits 0-8), middle plane
    // dp = 0 (bits 9-17). Its octants, and per outer corner the rest of the corner's octant.
    std::vector<const uint8_t*> octants;
    for (const auto& octant : kEulerOctants)
      if (*std::max_element(octant, octant + 7) < 18) octants.push_back(octant);
    uint32_t corner_rest[4] = {}, corner_bit[4] = {};
    for (int k = 0; k < 4; ++k) {
      const int dr = k & 1 ? 1 : -1, dc = k & 2 ? 1 : -1;
      corner_bit[k] = 1u << bit_of(-1, dr, dc);
      for (int dp : {-1, 0})
        for (int r : {0, dr})
          for (int c : {0, dc}) corner_rest[k] |= 1u << bit_of(dp, r, c);
      corner_rest[k] &= ~(corner_bit[k] | kCenterBit);
    }
    for (uint32_t cube = kCenterBit; cube < (1u << 18); cube = (cube + 1) | kCenterBit) {
      int euler = 0, lone_corners = 0;
      for (const uint8_t* octant : octants) {
        int code = 0;
        for (int j = 0; j < 7; ++j) code |= static_cast<int>(cube >> octant[j] & 1u) << (6 - j);
        euler += kEulerDelta[code];
      }
      for (int k = 0; k < 4; ++k) lone_corners += (cube & corner_bit[k]) && !(cube & corner_rest[k]);
      half_[cube] = static_cast<uint16_t>((32 + euler) | (lone_corners << 8));
    }
    // Pieces of each face/edge configuration, grown from its lowest member over the
    // 26-adjacency of the 18 positions.
    uint32_t adjacent[18] = {};
    for (int a = 0; a < 27; ++a)
      for (int b = 0; b < 27; ++b) {
        const uint32_t ia = face_edge_index(1u << a), ib = face_edge_index(1u << b);
        const int far = std::max({std::abs(a / 9 - b / 9), std::abs(a % 3 - b % 3), std::abs(a / 3 % 3 - b / 3 % 3)});
        if (ia && ib && a != b && far == 1) adjacent[__builtin_ctz(ia)] |= ib;
      }
    for (uint32_t set = 1; set < (1u << 18); ++set) {
      uint32_t piece = set & (0u - set), frontier = piece;
      while (frontier) {
        const uint32_t grown = adjacent[__builtin_ctz(frontier)] & set & ~piece;
        frontier = (frontier & (frontier - 1)) | grown;
        piece |= grown;
      }
      pieces_[set >> 5] |= uint64_t{piece == set ? 1u : 2u} << (2 * (set & 31));
    }
  }

  static bool is_end_point(uint32_t cube) {
    const uint32_t fg = cube & ~kCenterBit;
    return fg != 0 && (fg & (fg - 1)) == 0;
  }

  /// Euler-invariant, not an end point, and simple: Lee's condition for a border voxel.
  template <bool kPext>
  bool is_deletable(uint32_t cube) const {
    const uint32_t halves = half_sums(cube);
    return (halves & 0xFFu) == 64 && !is_end_point(cube) && pieces<kPext>(cube) + (halves >> 8) <= 1;
  }

  template <bool kPext>
  bool is_simple(uint32_t cube) const {
    return pieces<kPext>(cube) + (half_sums(cube) >> 8) <= 1;
  }

 private:
  // Entry: 32 + δG26 sum of the half's four octants (bits 0-7), lone corners of its outer
  // plane (bits 8-11); two entries add without carries.
  uint32_t half_sums(uint32_t cube) const {
    return half_[cube & 0x3FFFFu] + half_[(cube >> 18) | (cube & 0x3FE00u)];
  }
  // Pieces among the face and edge neighbours: in-plane bits 1, 3, 4, 5, 7 of the outer
  // planes and all but the centre of the middle one, packed into 18 bits.
  static constexpr uint32_t kFaceEdgeBits = 0x2EBDEBAu;
  template <bool kPext = false>
  static uint32_t face_edge_index(uint32_t c) {
    if constexpr (kPext) return pext(c, kFaceEdgeBits);
    return ((c >> 1) & 0x1u) | ((c >> 2) & 0xEu) | ((c >> 3) & 0x10u) | ((c >> 4) & 0x1E0u) | ((c >> 5) & 0x1E00u) |
           ((c >> 6) & 0x2000u) | ((c >> 7) & 0x1C000u) | ((c >> 8) & 0x20000u);
  }
  template <bool kPext>
  int pieces(uint32_t cube) const {
    const uint32_t index = face_edge_index<kPext>(cube);
    return static_cast<int>(pieces_[index >> 5] >> (2 * (index & 31)) & 3u);
  }

  std::vector<uint16_t> half_;
  std::vector<uint64_t> pieces_;
};

const Tables& tables() {
  static const Tables t;
  return t;
}

// The definitions the tables replace, for the self-check: the δG26 sum over the 8 octants,
// and the 26-connected pieces of the neighbours grown by shift-and-mask dilations.
bool is_euler_invariant_by_definition(uint32_t cube) {
  int delta = 0;
  for (const auto& octant : kEulerOctants) {
    int code = 0;
    for (int j = 0; j < 7; ++j) code |= static_cast<int>(cube >> octant[j] & 1u) << (6 - j);
    delta += kEulerDelta[code];
  }
  return delta == 0;
}

bool is_simple_by_definition(uint32_t cube) {
  auto bits_where = [](int axis_divisor, int value) {
    uint32_t m = 0;
    for (int b = 0; b < 27; ++b)
      if ((b / axis_divisor) % 3 == value) m |= 1u << b;
    return m;
  };
  static const uint32_t r0 = bits_where(1, 0), r2 = bits_where(1, 2), c0 = bits_where(3, 0), c2 = bits_where(3, 2);
  auto dilate = [&](uint32_t v) {
    v |= ((v << 1) & ~r0 & kAllBits) | ((v >> 1) & ~r2);
    v |= ((v << 3) & ~c0 & kAllBits) | ((v >> 3) & ~c2);
    return (v | (v << 9) | (v >> 9)) & kAllBits;
  };
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

// A pause in a spin-wait (lets the sibling hyper-thread run).
inline void pause() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_ia32_pause();
#endif
}

// Spins until done() holds: pause, then yield (the other thread may be descheduled on a
// busy machine).
template <typename Done>
void spin_until(Done&& done) {
  for (int spin = 0; !done(); ++spin) {
    if (spin < 256) pause();
    else std::this_thread::yield();
  }
}

// A persistent second thread for the two-thread passes. A std::thread per call cost ~35 us
// in the caller and ~100 us more before it had encoded its half of a 64^3 crop (1.3 ms
// calls, measured on a 2-vCPU VM, where waking an idle vCPU is slow). This one is posted
// its job before the crop is filled, so its wake-up overlaps the caller's work, and after
// a job it polls for the next one for kLingerMicros before it sleeps (OpenMP's
// GOMP_SPINCOUNT, bounded): back-to-back calls (a prediction and its reference, a folder
// of cases) find it awake. Not OpenMP's pool: the two halves wait on each other, so both
// must run at once, and ThreadSanitizer (slow.skeleton_tsan) cannot see libgomp's
// hand-overs.
class SecondThread {
 public:
  SecondThread() : pid_(getpid()), thread_([this] { loop(); }) {}

  /// The process's helper, started on first use; nullptr if no thread could be started, or
  /// in a child forked after it started (fork copies no thread: a job posted to it would
  /// never run). Never destroyed: its thread sleeps until the process ends, and a forked
  /// child has no thread to join at exit (std::thread::detach threw there).
  static SecondThread* instance() {
    static SecondThread* const helper = []() -> SecondThread* {
      try {
        return new SecondThread();
      } catch (const std::system_error&) {
        return nullptr;
      }
    }();
    return helper && helper->pid_ == getpid() ? helper : nullptr;
  }

  /// Starts job() on the helper; false if another caller holds it. A started job is
  /// waited for with wait(), which spins: the two halves end together.
  bool try_start(std::function<void()> job) {
    if (busy_.exchange(true, std::memory_order_acquire)) return false;
    job_ = std::move(job);
    done_.store(false, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      posted_.store(true, std::memory_order_release);
    }
    wake_.notify_one();
    return true;
  }

  void wait() {
    spin_until([this] { return done_.load(std::memory_order_acquire); });
    busy_.store(false, std::memory_order_release);
  }

 private:
  static constexpr int kLingerMicros = 200;

  void loop() {
    for (;;) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kLingerMicros);
      for (int spin = 0; !posted_.load(std::memory_order_acquire); ++spin) {
        pause();
        if (spin % 64 == 63 && std::chrono::steady_clock::now() > until) {
          std::unique_lock<std::mutex> lock(mutex_);
          wake_.wait(lock, [this] { return posted_.load(std::memory_order_relaxed); });
        }
      }
      posted_.store(false, std::memory_order_relaxed);
      job_();
      job_ = nullptr;
      done_.store(true, std::memory_order_release);
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::function<void()> job_;                   // written by the poster before posted_ is set
  std::atomic<bool> posted_{false}, done_{true}, busy_{false};
  const pid_t pid_;                             // the process that started thread_
  std::thread thread_;
};

// Runs f(1) on a second thread and f(0) on the caller, at the same time (the two calls may
// wait on each other), and returns when both have returned; f must not throw. False, with
// f not called, if no thread could be had.
bool run_pair(const std::function<void(int)>& f) {
  SecondThread* helper = SecondThread::instance();
  if (helper && helper->try_start([&f] { f(1); })) {
    f(0);
    helper->wait();
    return true;
  }
  std::thread thread;  // the helper is busy with another caller's crop, or this is a forked child
  try {
    thread = std::thread([&f] { f(1); });
  } catch (const std::system_error&) {
    return false;
  }
  f(0);
  thread.join();
  return true;
}

// The thinning of one zero-padded crop. The image is kept twice:
//  - one byte per voxel, a column code: bit k = foreground at (p, r - 1 + k, c), so a 3x3x3
//    neighbourhood is three 4-byte loads (planes p - 1, p, p + 1 at columns c - 1..c + 1);
//  - one bit per voxel (same linear index), so the border voxels of a direction are found 64
//    at a time: foreground and not foreground at the shifted position.
// A summary bit per 64-voxel word of the bit image marks the words with foreground.
class Thinner {
 public:
  /// Crop of (d, h, w) voxels, all background; fill with row(), then run().
  Thinner(int64_t d, int64_t h, int64_t w)
      : rows_(h + 2), cols_(w + 2), slice_(rows_ * cols_), depth_(d), size_((d + 2) * slice_),
        words_((size_ + 63) / 64), code_(zero_array<uint8_t>(size_ + kSlack)),
        fg_bits_(zero_array<uint64_t>(words_ + 2 * kGuardWords)), used_(zero_array<uint64_t>((words_ + 63) / 64)),
        used_rows_(zero_array<uint8_t>(d * h)),
        // skimage's direction order 4, 3, 2, 1, 5, 6: background at r-1, r+1, c+1, c-1, p+1, p-1
        border_{-cols_, cols_, 1, -1, slice_, -slice_} {}

  /// The w voxels of crop row (z, y): fill with 0 / 1 before run().
  uint8_t* row(int64_t z, int64_t y) {
    used_rows_[z * (rows_ - 2) + y] = 1;
    return code_.get() + offset(z, y);
  }
  /// Calls f(z, y, x) for the crop voxels on the skeleton after run(), in raster order.
  template <typename F>
  void for_each_kept(F&& f) const {
    for (int64_t u = 0; u < (words_ + 63) / 64; ++u)
      for (uint64_t used = used_[u]; used; used &= used - 1) {
        const int64_t w = u * 64 + __builtin_ctzll(used);
        for (uint64_t b = fg()[w]; b; b &= b - 1) {
          const int64_t i = w * 64 + __builtin_ctzll(b), in_slice = i % slice_;
          f(i / slice_ - 1, in_slice / cols_ - 1, in_slice % cols_ - 1);
        }
      }
  }

  /// Fills the crop and thins it. fill(z_lo, z_hi) writes the rows of planes [z_lo, z_hi)
  /// through row() and returns their foreground voxel count; it may run on two threads at
  /// once, on disjoint planes. `directions`: 6, or 4 for a one-slice volume (skimage decides
  /// on the uncropped depth). `two_threads`: may use a second thread. `max_foreground`: an
  /// upper bound of the foreground voxels (a second thread is started only if it reaches
  /// kTwoThreadVoxels).
  template <typename Fill>
  void run(int directions, bool two_threads, int64_t max_foreground, Fill&& fill) {
    // Writers are >= 3 planes apart (run_two_threads), so with >= 2048 voxels per plane no
    // word of the bit image or of its summary is written by both threads.
    two_threads = two_threads && depth_ >= 4 && slice_ >= 2048 && max_foreground >= kTwoThreadVoxels;
    if (two_threads && (use_pext() ? run_two_threads<true>(directions, fill) : run_two_threads<false>(directions, fill)))
      return;
    fill(0, depth_);
    encode_all();
    Shared shared;
    use_pext() ? run_passes<true>(0, 1, pass_depth(1), directions, shared)
               : run_passes<false>(0, 1, pass_depth(1), directions, shared);
  }

 private:
  // A second thread pays for itself only with enough work (a hand-over per plane and pass;
  // measured: tubes 64^3, 12 k foreground voxels, ran at 600 MVx/s on two threads against
  // 818 on one; blobs 64^3, 78 k, at 176 against 132).
  static constexpr int64_t kTwoThreadVoxels = 32768;
  static constexpr int64_t kDeepSlice = int64_t{1} << 17;  // voxels per padded plane (pass_depth)
  static constexpr int64_t kSlack = 8;          // cube_at reads one byte past the last voxel's row
  static constexpr int64_t kGuardWords = 2;     // shifted reads of the bit image step one word outside

  int64_t offset(int64_t z, int64_t y) const { return (z + 1) * slice_ + (y + 1) * cols_ + 1; }
  uint64_t* fg() const { return fg_bits_.get() + kGuardWords; }

  // The 64 bits of the image from linear index q on (q may be below 0 or past the end by
  // less than a guard).
  uint64_t fg_from(int64_t q) const {
    const int64_t w = q >> 6;
    const int s = static_cast<int>(q & 63);
    const uint64_t lo = load(fg() + w);
    return s == 0 ? lo : (lo >> s) | (load(fg() + w + 1) << (64 - s));
  }

  // With two threads (run_two_threads), a word of the bit image or of its summary that
  // straddles two planes can be read by one thread while the other clears bits of the other
  // plane in it: relaxed atomic accesses, plain moves on x86. The two never write one word.
  static uint64_t load(const uint64_t* word) { return __atomic_load_n(word, __ATOMIC_RELAXED); }
  static void store(uint64_t* word, uint64_t value) { __atomic_store_n(word, value, __ATOMIC_RELAXED); }

  template <bool kPext>
  uint32_t cube_at(int64_t i) const {
    uint32_t cube = 0;
    for (int dp = -1; dp <= 1; ++dp) {
      uint32_t x;
      std::memcpy(&x, code_.get() + i + dp * slice_ - 1, 4);
      const uint32_t plane = kPext ? pext(x, 0x070707u) : (x & 7u) | ((x >> 5) & 0x38u) | ((x >> 10) & 0x1C0u);
      cube |= plane << (9 * (dp + 1));
    }
    return cube;
  }

  // Column codes and bits from the 0 / 1 bytes that row() received, 8 voxels at a time.
  // Rows go backwards so that the row below is already a code (bit 1 = its value) and the
  // row above is still 0 / 1.
  // Planes [z_lo, z_hi) only: planes encode independently (their reads past a row's end
  // meet padding only). `shared`: a word of the bit image that may also take bits from
  // another thread's planes (set with an atomic OR), or -1.
  void encode(int64_t z_lo, int64_t z_hi, int64_t shared) {
    const int64_t h = rows_ - 2, w = cols_ - 2;
    constexpr uint64_t kOnes = 0x0101010101010101ull;
    auto set_bits = [&](int64_t word, uint64_t bits) {
      if (word == shared) __atomic_fetch_or(fg() + word, bits, __ATOMIC_RELAXED);
      else fg()[word] |= bits;
    };
    for (int64_t z = z_hi - 1; z >= z_lo; --z)
      for (int64_t y = h - 1; y >= 0; --y) {
        const bool self = used_rows_[z * h + y], above = y > 0 && used_rows_[z * h + y - 1],
                   below = y + 1 < h && used_rows_[z * h + y + 1];
        if (!(self || above || below)) continue;
        const int64_t first = offset(z, y);
        uint8_t* p = code_.get() + first;
        for (int64_t x = 0; x < w; x += 8) {
          uint64_t up, mid, down;
          std::memcpy(&up, p + x - cols_, 8);
          std::memcpy(&mid, p + x, 8);
          std::memcpy(&down, p + x + cols_, 8);
          // Bytes past the row end are padding (0) or the next row's first bytes; only the
          // first min(8, w - x) bytes are written.
          const int64_t n = std::min<int64_t>(8, w - x);
          const uint64_t keep = n == 8 ? ~0ull : (1ull << (8 * n)) - 1;
          up &= keep & kOnes, mid &= keep & kOnes, down = (down >> 1) & keep & kOnes;
          const uint64_t code = up | (mid << 1) | (down << 2);
          std::memcpy(p + x, &code, static_cast<size_t>(n));
          if (mid) {
            const uint64_t bits = (mid * 0x0102040810204080ull) >> 56;  // byte k's low bit -> bit k
            const int64_t i = first + x;
            set_bits(i >> 6, bits << (i & 63));
            if ((i & 63) > 56) set_bits((i >> 6) + 1, bits >> (64 - (i & 63)));
          }
        }
      }
  }

  // The summary bits of the bit image's non-empty words, after encode().
  void summarize() {
    for (int64_t w64 = 0; w64 < words_; ++w64)
      if (fg()[w64]) used_[w64 >> 6] |= uint64_t{1} << (w64 & 63);
  }

  void encode_all() {
    encode(0, depth_, -1);
    summarize();
  }

  // Appends the candidates of direction `border` with linear index in [lo, hi): the border
  // voxels that are deletable, as (index << 27 | cube). Reads only.
  template <bool kPext>
  void collect(int64_t border, int64_t lo, int64_t hi, std::vector<uint64_t>& out) const {
    const Tables& t = tables();
    const int64_t w_lo = lo >> 6, w_hi = (hi + 63) >> 6;  // words [w_lo, w_hi)
    for (int64_t u = w_lo >> 6; u <= (w_hi - 1) >> 6; ++u) {
      uint64_t used = load(used_.get() + u);
      if (u == w_lo >> 6) used &= ~0ull << (w_lo & 63);
      if (u == (w_hi - 1) >> 6 && (w_hi & 63)) used &= ~(~0ull << (w_hi & 63));
      for (; used; used &= used - 1) {
        const int64_t w = u * 64 + __builtin_ctzll(used);
        __builtin_prefetch(code_.get() + w * 64 + slice_ + 4 * 64);
        uint64_t b = load(fg() + w) & ~fg_from(w * 64 + border);
        if (w == w_lo) b &= ~0ull << (lo & 63);
        if (w == w_hi - 1 && (hi & 63)) b &= ~(~0ull << (hi & 63));
        for (; b; b &= b - 1) {
          const int64_t i = w * 64 + __builtin_ctzll(b);
          const uint32_t cube = cube_at<kPext>(i);
          if (t.is_deletable<kPext>(cube)) out.push_back(static_cast<uint64_t>(i) << 27 | cube);
        }
      }
    }
  }

  void erase(int64_t i) {
    uint64_t* word = fg() + (i >> 6);
    const uint64_t left = load(word) & ~(uint64_t{1} << (i & 63));
    store(word, left);
    if (left == 0) store(used_.get() + (i >> 12), load(used_.get() + (i >> 12)) & ~(uint64_t{1} << ((i >> 6) & 63)));
    code_[i] &= static_cast<uint8_t>(~2u);
    code_[i - cols_] &= static_cast<uint8_t>(~4u);
    code_[i + cols_] &= static_cast<uint8_t>(~1u);
  }

  // Sequential re-check of simplicity on the image as the previous deletions left it; a
  // candidate whose neighbourhood did not change is still simple. True if any was deleted.
  template <bool kPext>
  bool recheck(const std::vector<uint64_t>& candidates) {
    const Tables& t = tables();
    bool changed = false;
    for (uint64_t entry : candidates) {
      const int64_t i = static_cast<int64_t>(entry >> 27);
      const uint32_t cube = cube_at<kPext>(i);
      if (cube != (entry & kAllBits) && !t.is_simple<kPext>(cube)) continue;
      erase(i);
      changed = true;
    }
    return changed;
  }

  // One pass in border direction d deletes border voxels. skimage collects all candidates,
  // then re-checks them in order. Candidates of plane p only read planes p - 1 to p + 1,
  // and a deletion in plane p changes plane p only, so collecting plane p + 1 before
  // re-checking plane p gives the same result while the planes are still in cache: step p
  // (p = 0..D) collects plane p + 1 and re-checks plane p.
  struct Pass {
    int64_t k = 0, p = 0;  // pass k (direction k % directions), next step p
    bool changed = false;  // deleted something
    std::vector<uint64_t> now, next;
  };

  template <bool kPext>
  void step(Pass& pass, int directions) {
    const int64_t p = pass.p;
    pass.next.clear();
    if (p < depth_) collect<kPext>(border_[pass.k % directions], (p + 1) * slice_, (p + 2) * slice_, pass.next);
    if (p > 0) pass.changed |= recheck<kPext>(pass.now);
    std::swap(pass.now, pass.next);
    ++pass.p;
  }

  // What the threads of one run share.
  struct Shared {
    struct alignas(64) Progress {
      std::atomic<int64_t> planes{-1};  // k * (D + 1) + p: pass k has done steps 0..p
      std::atomic<int> empty_run{0};    // empty passes in a row up to the thread's last ended pass
    };
    Progress progress[2];
    std::atomic<bool> stop{false};
  };

  // The passes of thread t of `threads` (1 or 2), `depth` passes at a time. Passes run as a
  // wavefront: step p of pass k + 1 reads planes p - 1 to p + 2 and writes plane p; pass k
  // last reads plane p in its step p + 1 and last writes plane p + 2 in step p + 2, so step
  // p of pass k + 1 runs once pass k has done step min(p + 2, D), and the image is the one
  // of passes run one after another. Passes go to the threads in groups of `depth`
  // (thread t runs groups t, t + threads, ...); a thread interleaves the steps of its
  // passes in flight, so one sweep over the volume does `depth` passes per thread: the
  // planes of a pass are still in cache for the next (measured, blobs on one thread:
  // 512^3 in 1.51 s with 4 passes at a time against 1.80 s with 1; but 256^3, whose planes
  // fit the cache anyway, in 0.21 s with 4 against 0.17 s with 1: pass_depth).
  // With two threads a pass waits on the other thread's progress only at the start of a
  // group; the threads write planes at least 3 apart (run() requires >= 2048 voxels per
  // plane, so no word of the bit image or its summary is written by both), but a word one
  // of them reads can straddle a plane the other writes, hence the relaxed atomics.
  // A pass ends with the count of empty passes up to it; `directions` of them in a row stop
  // every thread (a pass after that is empty too, so passes in flight are dropped).
  template <bool kPext>
  void run_passes(int t, int threads, int depth, int directions, Shared& shared) {
    const int64_t D = depth_;
    typename Shared::Progress& mine = shared.progress[t];
    typename Shared::Progress& other = shared.progress[1 - t];
    // Local pass m is pass k(m); in flight: local passes [oldest, newest], at ring[m % depth].
    auto k_of = [&](int64_t m) { return ((m / depth) * threads + t) * depth + m % depth; };
    auto local = [&](int64_t k) { return (k / depth) % threads == t; };
    std::vector<Pass> ring(static_cast<size_t>(depth));
    int64_t oldest = 0, newest = -1;
    int empty_run = 0;        // up to the last local pass that ended
    int64_t other_seen = -1;  // the other thread's progress when last read
    for (int idle = 0;; ) {
      if (shared.stop.load(std::memory_order_relaxed)) return;  // the image is final
      if (newest - oldest + 1 < depth) {
        Pass& pass = ring[++newest % depth];
        pass.k = k_of(newest), pass.p = 0, pass.changed = false;
        pass.now.clear();
      }
      bool stepped = false;
      for (int64_t m = oldest; m <= newest; ++m) {
        Pass& pass = ring[m % depth];
        if (pass.p > D) continue;
        const int64_t k = pass.k, needed = std::min(pass.p + 2, D);
        if (k > 0) {
          if (!local(k - 1)) {
            const int64_t target = (k - 1) * (D + 1) + needed;
            if (other_seen < target && (other_seen = other.planes.load(std::memory_order_acquire)) < target) break;
          } else if (m > oldest && ring[(m - 1) % depth].p <= needed) {
            break;  // later passes wait on this one
          }
        }
        step<kPext>(pass, directions);
        stepped = true;
        if (!local(k + 1) && pass.p - 1 > 0 && pass.p - 1 < D)
          mine.planes.store(k * (D + 1) + pass.p - 1, std::memory_order_release);
      }
      // Passes end in order: pass k's last step waited for pass k - 1's.
      while (oldest <= newest && ring[oldest % depth].p > D) {
        const Pass& pass = ring[oldest % depth];
        const int before = pass.k == 0 ? 0 : local(pass.k - 1) ? empty_run : other.empty_run.load(std::memory_order_relaxed);
        empty_run = pass.changed ? 0 : before + 1;
        ++oldest;
        if (!local(pass.k + 1)) {
          mine.empty_run.store(empty_run, std::memory_order_relaxed);
          mine.planes.store(pass.k * (D + 1) + D, std::memory_order_release);
        }
        if (empty_run >= directions) {
          shared.stop.store(true, std::memory_order_relaxed);
          return;
        }
      }
      if (stepped) {
        idle = 0;
      } else if (++idle < 256) {
        pause();
      } else {
        std::this_thread::yield();
      }
    }
  }

  // Passes in flight per thread (run_passes): several when a few planes overflow a core's
  // cache (512^3: 264 KB of column codes a plane), so that a sweep from memory serves
  // several passes; one when they fit (each pass then keeps its planes in the nearest cache).
  int pass_depth(int threads) const { return slice_ < kDeepSlice ? 1 : threads == 1 ? 4 : 2; }

  // Fill, encoding and passes on two threads (run_passes, the caller being thread 0 and
  // run_pair's helper thread 1). Each thread first fills and encodes half the planes (the
  // serial part of a small crop: ~25 % of a 64^3 call with one thread doing it); the word of
  // the bit image at the split may take bits from both. If the crop turns out to hold fewer
  // than kTwoThreadVoxels foreground voxels, thread 0 goes on alone. False, with nothing
  // done, if no second thread could be had.
  template <bool kPext, typename Fill>
  bool run_two_threads(int directions, Fill& fill) {
    const int64_t D = depth_, split = D / 2, shared_word = ((split + 1) * slice_) >> 6;
    Shared shared;
    std::atomic<int64_t> upper_foreground{-1};     // thread 1's count, once its half is filled
    std::atomic<int> decided{0};                   // 1: thread 0 goes on alone, 2: both
    std::atomic<bool> fill_claimed{false}, encode_claimed{false}, upper_encoded{false}, encoded{false};
    auto wait_for = [](const std::atomic<bool>& flag) { spin_until([&] { return flag.load(std::memory_order_acquire); }); };
    std::exception_ptr error[2];

    // Thread 1's two tasks, filling and encoding the upper half, go to whichever thread
    // claims them first: a helper that is slow to wake (tens of us for an idle vCPU) never
    // holds up thread 0, which then does them itself and runs pass 0 meanwhile.
    auto claim = [](std::atomic<bool>& claimed) { return !claimed.exchange(true, std::memory_order_acq_rel); };
    // fill and encode do not throw; a thrown exception (a failed allocation in the passes)
    // stops both threads and is rethrown here.
    const bool ran = run_pair([&](int t) {
      if (t == 1) {
        if (claim(fill_claimed)) upper_foreground.store(fill(split, D), std::memory_order_release);
        spin_until([&] { return decided.load(std::memory_order_acquire) != 0; });
        if (decided.load(std::memory_order_relaxed) == 1) return;
        if (claim(encode_claimed)) {
          encode(split, D, shared_word);
          upper_encoded.store(true, std::memory_order_release);
        }
        wait_for(encoded);
      } else {
        const int64_t lower = fill(0, split);
        int64_t upper;
        if (claim(fill_claimed)) {
          upper = fill(split, D);
        } else {
          spin_until([&] { return (upper = upper_foreground.load(std::memory_order_acquire)) >= 0; });
        }
        const bool both = lower + upper >= kTwoThreadVoxels;
        decided.store(both ? 2 : 1, std::memory_order_release);
        try {
          if (!both) {
            encode_all();
            run_passes<kPext>(0, 1, pass_depth(1), directions, shared);
            return;
          }
        } catch (...) {
          error[0] = std::current_exception();
          return;
        }
        encode(0, split, shared_word);
        if (claim(encode_claimed)) encode(split, D, shared_word);
        else wait_for(upper_encoded);
        summarize();
        encoded.store(true, std::memory_order_release);
      }
      try {
        run_passes<kPext>(t, 2, pass_depth(2), directions, shared);
      } catch (...) {
        error[t] = std::current_exception();
        shared.stop.store(true, std::memory_order_relaxed);
      }
    });
    for (const std::exception_ptr& e : error)
      if (e) std::rethrow_exception(e);
    return ran;
  }

  int64_t rows_, cols_, slice_, depth_, size_, words_;
  ZeroArray<uint8_t> code_;
  ZeroArray<uint64_t> fg_bits_, used_;
  ZeroArray<uint8_t> used_rows_;
  int64_t border_[6];
};

// An inclusive box in the (D, H, W) volume.
struct Box {
  int64_t lo[3] = {INT64_MAX, INT64_MAX, INT64_MAX}, hi[3] = {-1, -1, -1};
  bool empty() const { return hi[0] < 0; }
  int64_t voxels() const { return (hi[0] - lo[0] + 1) * (hi[1] - lo[1] + 1) * (hi[2] - lo[2] + 1); }
  int64_t run_voxels = 0;  // of the runs added: at least the box's foreground voxels
  void add_run(int64_t z, int64_t y, int64_t x0, int64_t x1) {
    run_voxels += x1 - x0 + 1;
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

// Whether inside(row[x]) holds for some x < n; written as a reduction into a byte without
// an early exit so that it vectorizes (most rows of a sparse mask are empty; a bool
// accumulator does not vectorize with GCC 12).
template <typename T, typename Inside>
bool any_inside(const T* row, int64_t n, Inside inside) {
  uint8_t any = 0;
  for (int64_t x = 0; x < n; ++x) any |= static_cast<uint8_t>(inside(row[x]));
  return any != 0;
}

// The first and last non-zero voxel of a row of n, or false if it has none. One-byte types
// (uint8 / bool masks, the usual input) go 8 voxels per load; a dense row costs a few loads.
template <typename T>
bool row_extent(const T* row, int64_t n, int64_t& x0, int64_t& x1) {
  if constexpr (sizeof(T) == 1) {
    auto word_at = [row](int64_t x) {
      uint64_t w;
      std::memcpy(&w, row + x, 8);
      return w;
    };
    x0 = 0;
    while (x0 + 8 <= n && word_at(x0) == 0) x0 += 8;
    if (x0 + 8 <= n) x0 += __builtin_ctzll(word_at(x0)) >> 3;  // little-endian: byte k is bits 8k..
    else while (x0 < n && row[x0] == T(0)) ++x0;
    if (x0 == n) return false;
    x1 = n - 1;
    while (x1 - 7 > x0 && word_at(x1 - 7) == 0) x1 -= 8;
    if (x1 - 7 > x0) x1 -= __builtin_clzll(word_at(x1 - 7)) >> 3;
    else while (row[x1] == T(0)) --x1;
    return true;
  } else {
    if (!any_inside(row, n, [](T v) { return v != T(0); })) return false;
    // Skip empty stretches 16 voxels at a time (sparse masks), then voxel by voxel.
    x0 = 0, x1 = n - 1;
    while (x0 + 16 <= n && !any_inside(row + x0, 16, [](T v) { return v != T(0); })) x0 += 16;
    while (row[x0] == T(0)) ++x0;
    while (x1 - 15 > x0 && !any_inside(row + x1 - 15, 16, [](T v) { return v != T(0); })) x1 -= 16;
    while (row[x1] == T(0)) --x1;
    return true;
  }
}

// The box of the non-zero voxels, and which rows (z * H + y) hold any.
template <typename T>
Box nonzero_box(const T* data, int64_t D, int64_t H, int64_t W, std::vector<uint8_t>& rows) {
  Box box;
  rows.assign(static_cast<size_t>(D * H), 0);
  for (int64_t z = 0; z < D; ++z)
    for (int64_t y = 0; y < H; ++y) {
      int64_t x0, x1;
      if (!row_extent(data + (z * H + y) * W, W, x0, x1)) continue;
      rows[z * H + y] = 1;
      box.add_run(z, y, x0, x1);
    }
  return box;
}

// dst[x] = inside(src[x]) ? 1 : 0 for x < n; returns the count of ones. A function of its
// own: in a lambda capturing n by reference the byte stores could alias n, which kept the
// loop from vectorizing (measured: the fill of tubes 64^3 took half as long again).
template <typename T, typename Inside>
int64_t copy_inside(const T* src, uint8_t* dst, int64_t n, Inside inside) {
  int64_t ones = 0;
  for (int64_t x = 0; x < n; ++x) ones += dst[x] = inside(src[x]) ? 1 : 0;
  return ones;
}

// Thins the voxels of `box` for which inside(value) holds, and sets out = mark on the
// skeleton. `D` is the uncropped depth (one slice: four directions, as skimage). `rows`, if
// given, marks the rows (z * H + y of the volume) that hold any such voxel.
template <typename T, typename O, typename Inside>
void thin_box(const Box& box, const T* in, O* out, O mark, Inside inside, int64_t D, int64_t H, int64_t W,
              const std::vector<uint8_t>* rows = nullptr) {
  const int64_t d = box.hi[0] - box.lo[0] + 1, h = box.hi[1] - box.lo[1] + 1, w = box.hi[2] - box.lo[2] + 1;
  Thinner thinner(d, h, w);
  // Offset of crop row (z, y) in the full volume.
  auto at_row = [&](int64_t z, int64_t y) { return ((box.lo[0] + z) * H + box.lo[1] + y) * W + box.lo[2]; };
  auto fill = [&](int64_t z_lo, int64_t z_hi) {
    int64_t foreground = 0;
    for (int64_t z = z_lo; z < z_hi; ++z)
      for (int64_t y = 0; y < h; ++y) {
        const T* src = in + at_row(z, y);
        // The crop starts zeroed: leave the pages of empty rows untouched.
        if (rows ? !(*rows)[(box.lo[0] + z) * H + box.lo[1] + y] : !any_inside(src, w, inside)) continue;
        foreground += copy_inside(src, thinner.row(z, y), w, inside);
      }
    return foreground;
  };
  // Never two threads inside the per-instance parallel loop.
  thinner.run(D == 1 ? 4 : 6, at::get_num_threads() >= 2 && !at::in_parallel_region(), box.run_voxels, fill);
  thinner.for_each_kept([&](int64_t z, int64_t y, int64_t x) { out[at_row(z, y) + x] = mark; });
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

namespace detail {

int64_t skeleton_table_mismatches(uint32_t stride) {
  const Tables& t = tables();
  int64_t mismatches = 0;
  for (uint32_t other = 0; other < (1u << 26); other += std::max<uint32_t>(stride, 1)) {
    const uint32_t cube = (other & (kCenterBit - 1)) | ((other >> kCenter) << (kCenter + 1)) | kCenterBit;
    const bool simple = is_simple_by_definition(cube);
    const bool deletable = __builtin_popcount(cube & ~kCenterBit) != 1 && is_euler_invariant_by_definition(cube) && simple;
    mismatches += (t.is_simple<false>(cube) != simple) + (t.is_deletable<false>(cube) != deletable);
    if (use_pext()) mismatches += (t.is_simple<true>(cube) != simple) + (t.is_deletable<true>(cube) != deletable);
  }
  return mismatches;
}

}  // namespace detail

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
    std::vector<uint8_t> rows;
    const Box box = nonzero_box(in, D, H, W, rows);
    if (box.empty()) return;
    thin_box(box, in, out.data_ptr<uint8_t>(), uint8_t{1}, [](scalar_t v) { return v != scalar_t(0); }, D, H, W, &rows);
  });
  return out.reshape(mask.sizes());
}

}  // namespace neuroseg::metrics
