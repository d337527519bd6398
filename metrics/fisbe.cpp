#include "metrics/fisbe.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <climits>
#include <cstring>
#include <cmath>
#include <map>
#include <numeric>
#include <queue>
#include <type_traits>
#include <unordered_map>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "io/error.h"
#include "metrics/skeleton.h"

// Numerics follow the reference bit for bit where it matters (spec §2.9): matrices are float32
// (ratios computed in double, then rounded), clDice is evaluated in float32 in numpy's order,
// and a float32 matrix compared with a Python float threshold compares in float32 (numpy 1.x
// value-based casting), while a float32 scalar against the threshold compares in double.
// This file is compiled with -ffp-contract=off so that no fused multiply-add changes them.

namespace neuroseg::metrics {
namespace {

// ---------------------------------------------------------------------------------------
// Label stacks: the evaluator's view of a (C, Z, Y, X) label array after
// util.py: check_fix_and_unify_ids.

struct Box {
  int64_t z0 = INT64_MAX, z1 = -1, y0 = INT64_MAX, y1 = -1, x0 = INT64_MAX, x1 = -1;  // inclusive
  bool empty() const { return z1 < z0; }
  void add(const Box& b) {
    z0 = std::min(z0, b.z0), z1 = std::max(z1, b.z1), y0 = std::min(y0, b.y0), y1 = std::max(y1, b.y1);
    x0 = std::min(x0, b.x0), x1 = std::max(x1, b.x1);
  }
  int64_t volume() const { return empty() ? 0 : (z1 - z0 + 1) * (y1 - y0 + 1) * (x1 - x0 + 1); }
};

struct ValueStats {
  int64_t count = 0;
  Box box;
};
using StatsMap = std::unordered_map<int64_t, ValueStats>;

template <typename T>
inline bool zero_word(const T* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));
  return w == 0;
}

/// Voxel count and bounding box of every non-zero value of one channel, by runs along x.
template <typename T>
StatsMap channel_stats(const T* data, int64_t Z, int64_t Y, int64_t X) {
  constexpr int64_t kPerWord = static_cast<int64_t>(sizeof(uint64_t) / sizeof(T));
  std::vector<StatsMap> per_slab(static_cast<size_t>(Z));
  at::parallel_for(0, Z, 1, [&](int64_t zb, int64_t ze) {
    for (int64_t z = zb; z < ze; ++z) {
      StatsMap& m = per_slab[z];
      for (int64_t y = 0; y < Y; ++y) {
        const T* row = data + (z * Y + y) * X;
        for (int64_t x = 0; x < X;) {
          // Most of a FISBe channel is background: skip it 8 bytes at a time.
          while (x + kPerWord <= X && zero_word(row + x)) x += kPerWord;
          if (x >= X) break;
          const T v = row[x];
          if (v == T(0)) {
            ++x;
            continue;
          }
          int64_t e = x + 1;
          while (e < X && row[e] == v) ++e;
          ValueStats& s = m[static_cast<int64_t>(v)];
          s.count += e - x;
          s.box.add(Box{z, z, y, y, x, e - 1});
          x = e;
        }
      }
    }
  });
  StatsMap all;
  for (auto& m : per_slab)
    for (auto& [v, s] : m) {
      ValueStats& a = all[v];
      a.count += s.count;
      a.box.add(s.box);
    }
  return all;
}

struct LabelStack {
  at::Tensor data;  ///< (C, Z, Y, X) renumbered ids: uint8, uint16 or int32
  int64_t C = 0, Z = 0, Y = 0, X = 0;
  int32_t count = 0;              ///< ids 1..count
  std::vector<int32_t> channel;   ///< [id] the one channel holding the instance
  std::vector<Box> box;           ///< [id]
  std::vector<Box> channel_box;   ///< [c] union of the channel's instances
  std::map<int64_t, int32_t> first_id_of_value;  ///< stored value -> id in its first channel (dim ids)
  int64_t removed = 0;

  int64_t voxels() const { return Z * Y * X; }
  int32_t at(int64_t c, int64_t v) const {
    const int64_t i = c * voxels() + v;
    switch (data.scalar_type()) {
      case at::kByte: return data.const_data_ptr<uint8_t>()[i];
      case at::kUInt16: return data.const_data_ptr<uint16_t>()[i];
      default: return data.const_data_ptr<int32_t>()[i];
    }
  }
  /// Calls f(const T* ids) with the typed (C, Z, Y, X) buffer.
  template <typename F>
  void visit(F f) const {
    switch (data.scalar_type()) {
      case at::kByte: return f(data.const_data_ptr<uint8_t>());
      case at::kUInt16: return f(data.const_data_ptr<uint16_t>());
      default: return f(data.const_data_ptr<int32_t>());
    }
  }
  bool contains(int32_t id, int64_t v) const { return at(channel[id], v) == id; }
  int nonzero_channels(int64_t v) const {
    int n = 0;
    for (int64_t c = 0; c < C; ++c) n += at(c, v) != 0;
    return n;
  }
};

/// Writes channel `c` of `src` renumbered through `lut` into channel `dst_c` of `dst`
/// (possibly the same memory, dst_c <= c).
template <typename S, typename D>
void renumber_channel(const S* src, D* dst, int64_t n, const std::unordered_map<int64_t, int32_t>& lut) {
  at::parallel_for(0, n, 1 << 16, [&](int64_t b, int64_t e) {
    int64_t last_v = 0;
    D last_id = 0;
    for (int64_t i = b; i < e; ++i) {
      const int64_t v = static_cast<int64_t>(src[i]);
      if (v == 0) {
        dst[i] = 0;
        continue;
      }
      if (v != last_v) {
        auto it = lut.find(v);
        last_v = v;
        last_id = it == lut.end() ? D(0) : static_cast<D>(it->second);
      }
      dst[i] = last_id;
    }
  });
}

/// check_fix_and_unify_ids for one array: drop values with <= remove_small voxels over all
/// channels (prediction only), drop empty channels, number the (channel, value) instances
/// 1..n channel by channel in ascending value order. This one rule is what the reference's
/// filter + binary_masks_to_uniq_ids + relabel_sequential-with-offset sequence amounts to.
LabelStack normalise(at::Tensor t, int64_t remove_small, const std::string& what) {
  if (t.scalar_type() == at::kBool) t = t.to(at::kByte);
  if (at::isFloatingType(t.scalar_type())) {
    if (!at::isfinite(t).all().item<bool>()) throw io::Error(what, "label volume holds NaN or infinite values");
    if (!at::equal(t, t.trunc())) throw io::Error(what, "label volume holds non-integer values");
    t = t.to(at::kLong);
  }
  if (t.scalar_type() == at::kUInt16 || t.scalar_type() == at::kUInt32 || t.scalar_type() == at::kUInt64 ||
      t.scalar_type() == at::kChar || t.scalar_type() == at::kShort)
    t = t.to(at::kInt);
  t = t.contiguous();
  if (t.numel() > 0 && t.min().item<int64_t>() < 0) throw io::Error(what, "negative label values");

  LabelStack s;
  s.Z = t.size(1), s.Y = t.size(2), s.X = t.size(3);
  const int64_t C = t.size(0), n = s.voxels();
  std::vector<StatsMap> stats(static_cast<size_t>(C));
  AT_DISPATCH_INTEGRAL_TYPES(t.scalar_type(), "fisbe_stats", [&] {
    for (int64_t c = 0; c < C; ++c) stats[c] = channel_stats(t.const_data_ptr<scalar_t>() + c * n, s.Z, s.Y, s.X);
  });
  // util.py: filter_components counts a value over all channels jointly (np.unique on the
  // whole array), `counts <= thresh`.
  std::unordered_map<int64_t, int64_t> total;
  for (const auto& m : stats)
    for (const auto& [v, st] : m) total[v] += st.count;
  std::vector<std::unordered_map<int64_t, int32_t>> luts(static_cast<size_t>(C));
  std::vector<int64_t> kept_channels;
  s.channel.push_back(-1);
  s.box.emplace_back();
  for (int64_t c = 0; c < C; ++c) {
    std::vector<int64_t> values;
    for (const auto& [v, st] : stats[c])
      if (remove_small <= 0 || total[v] > remove_small) values.push_back(v);
    if (values.empty()) continue;
    std::sort(values.begin(), values.end());
    const int32_t out_c = static_cast<int32_t>(kept_channels.size());
    kept_channels.push_back(c);
    for (int64_t v : values) {
      const int32_t id = ++s.count;
      luts[c][v] = id;
      s.channel.push_back(out_c);
      s.box.push_back(stats[c][v].box);
      s.first_id_of_value.emplace(v, id);
    }
  }
  if (remove_small > 0)
    for (const auto& [v, cnt] : total) s.removed += cnt <= remove_small;
  s.C = std::max<int64_t>(1, static_cast<int64_t>(kept_channels.size()));
  const at::ScalarType out_type = s.count <= 255 ? at::kByte : (s.count <= 65535 ? at::kUInt16 : at::kInt);
  // Renumber in place when the type already fits (the FISBe GT: uint8, one neuron per channel),
  // and not at all when every value keeps its number in its own channel (FISBe's GT again).
  const bool in_place = t.scalar_type() == out_type;
  bool identity = in_place && static_cast<int64_t>(kept_channels.size()) == C;
  for (int64_t c = 0; identity && c < C; ++c)
    for (const auto& [v, id] : luts[c]) identity &= v == id;
  if (identity) {
    s.data = t;
    s.channel_box.assign(static_cast<size_t>(s.C), Box{});
    for (int32_t id = 1; id <= s.count; ++id) s.channel_box[s.channel[id]].add(s.box[id]);
    return s;
  }
  at::Tensor out = in_place ? t : at::empty({s.C, s.Z, s.Y, s.X}, t.options().dtype(out_type));
  if (kept_channels.empty()) {
    out = at::zeros({1, s.Z, s.Y, s.X}, t.options().dtype(out_type));
  } else {
    AT_DISPATCH_INTEGRAL_TYPES(t.scalar_type(), "fisbe_renumber", [&] {
      const scalar_t* src = t.const_data_ptr<scalar_t>();
      for (size_t k = 0; k < kept_channels.size(); ++k) {
        const int64_t c = kept_channels[k];
        switch (out_type) {
          case at::kByte:
            renumber_channel(src + c * n, static_cast<uint8_t*>(out.data_ptr()) + k * n, n, luts[c]);
            break;
          case at::kUInt16:
            renumber_channel(src + c * n, static_cast<uint16_t*>(out.data_ptr()) + k * n, n, luts[c]);
            break;
          default:
            renumber_channel(src + c * n, static_cast<int32_t*>(out.data_ptr()) + k * n, n, luts[c]);
        }
      }
    });
    if (in_place) out = out.narrow(0, 0, s.C);
  }
  s.data = out;
  s.channel_box.assign(static_cast<size_t>(s.C), Box{});
  for (int32_t id = 1; id <= s.count; ++id) s.channel_box[s.channel[id]].add(s.box[id]);
  return s;
}

/// Voxels covered by >= 2 channels: whether any exists, and (if asked) which ids touch one.
struct Overlaps {
  bool any = false;
  std::vector<char> touches;  ///< [id]
};

Overlaps find_overlaps(const LabelStack& s) {
  Overlaps o;
  o.touches.assign(static_cast<size_t>(s.count) + 1, 0);
  if (s.C < 2) return o;
  std::vector<std::vector<char>> per_z(static_cast<size_t>(s.Z));
  s.visit([&](const auto* ids) {
    const int64_t n = s.voxels();
    at::parallel_for(0, s.Z, 1, [&](int64_t zb, int64_t ze) {
      std::vector<int64_t> cands;
      std::vector<uint8_t> hits(static_cast<size_t>(s.X));
      for (int64_t z = zb; z < ze; ++z)
        for (int64_t y = 0; y < s.Y; ++y) {
          // Only rows inside >= 2 channels' boxes can hold an overlap.
          cands.clear();
          int64_t x0 = INT64_MAX, x1 = -1;
          for (int64_t c = 0; c < s.C; ++c) {
            const Box& b = s.channel_box[c];
            if (b.empty() || z < b.z0 || z > b.z1 || y < b.y0 || y > b.y1) continue;
            cands.push_back(c);
            x0 = std::min(x0, b.x0), x1 = std::max(x1, b.x1);
          }
          if (cands.size() < 2) continue;
          const int64_t row = (z * s.Y + y) * s.X;
          // Count channels per voxel (a plain loop the compiler vectorises), then look closer
          // only if some voxel has two.
          std::fill(hits.begin() + x0, hits.begin() + x1 + 1, 0);
          for (int64_t c : cands) {
            const auto* r = ids + c * n + row;
            for (int64_t x = x0; x <= x1; ++x) hits[x] += r[x] != 0;
          }
          uint8_t most = 0;
          for (int64_t x = x0; x <= x1; ++x) most = std::max(most, hits[x]);
          if (most < 2) continue;
          auto& touched = per_z[z];
          if (touched.empty()) touched.assign(static_cast<size_t>(s.count) + 1, 0);
          for (int64_t x = x0; x <= x1; ++x)
            if (hits[x] >= 2)
              for (int64_t c : cands)
                if (const int64_t id = ids[c * n + row + x]) touched[id] = 1;
        }
    });
  });
  for (const auto& t : per_z) {
    if (t.empty()) continue;
    o.any = true;
    for (size_t i = 0; i < t.size(); ++i) o.touches[i] |= t[i];
  }
  return o;
}

/// Runs f(i) for i in `order` on all threads, one instance at a time (sizes vary a lot).
template <typename F>
void for_each_instance(const std::vector<int32_t>& order, F f) {
  std::atomic<size_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), order.size()));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (size_t i; (i = next++) < order.size();) f(order[i]);
  });
}

/// Largest boxes first, so the long skeletons start early.
std::vector<int32_t> by_box_size(const LabelStack& s) {
  std::vector<int32_t> ids(static_cast<size_t>(s.count));
  std::iota(ids.begin(), ids.end(), 1);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return s.box[a].volume() > s.box[b].volume(); });
  return ids;
}

/// Skeleton of instance `id` (util: skeletonize of its channel-max mask), as ascending linear
/// voxel indices, computed on its bounding box (bit-identical: thinning is translation
/// invariant and sees only the 3x3x3 neighbourhood, spec §2.2). With `cut_overlaps`, voxels
/// covered by >= 2 channels of `s` are removed from the mask first (recallMat_wo_overlap).
std::vector<int64_t> instance_skeleton(const LabelStack& s, int32_t id, bool cut_overlaps) {
  const Box& b = s.box[id];
  if (b.empty()) return {};
  const int64_t d = b.z1 - b.z0 + 1, h = b.y1 - b.y0 + 1, w = b.x1 - b.x0 + 1;
  at::Tensor mask = at::empty({d, h, w}, at::TensorOptions().dtype(at::kByte));
  uint8_t* m = mask.data_ptr<uint8_t>();
  const int64_t c = s.channel[id];
  s.visit([&](const auto* ids) {
    const auto* channel = ids + c * s.voxels();
    using T = std::remove_const_t<std::remove_reference_t<decltype(*ids)>>;
    const T key = static_cast<T>(id);
    for (int64_t z = 0; z < d; ++z)
      for (int64_t y = 0; y < h; ++y) {
        const int64_t row = ((b.z0 + z) * s.Y + (b.y0 + y)) * s.X + b.x0;
        uint8_t* out = m + (z * h + y) * w;
        const T* in = channel + row;
        for (int64_t x = 0; x < w; ++x) out[x] = in[x] == key;
        if (cut_overlaps)
          for (int64_t x = 0; x < w; ++x)
            if (out[x] && s.nonzero_channels(row + x) >= 2) out[x] = 0;
      }
  });
  const at::Tensor skel = skeletonize(mask);
  const uint8_t* k = skel.const_data_ptr<uint8_t>();
  std::vector<int64_t> voxels;
  for (int64_t z = 0; z < d; ++z)
    for (int64_t y = 0; y < h; ++y) {
      const uint8_t* row = k + (z * h + y) * w;
      for (int64_t x = 0; x < w; ++x)
        if (row[x]) voxels.push_back(((b.z0 + z) * s.Y + (b.y0 + y)) * s.X + b.x0 + x);
    }
  return voxels;
}

using Skeletons = std::vector<std::vector<int64_t>>;  // [id]

Skeletons all_skeletons(const LabelStack& s, bool cut_overlaps = false) {
  Skeletons sk(static_cast<size_t>(s.count) + 1);
  for_each_instance(by_box_size(s), [&](int32_t id) { sk[id] = instance_skeleton(s, id, cut_overlaps); });
  return sk;
}

/// localize.py: get_centerline_overlap. m[i][j] = |S_i ∩ other_j| / |S_i| for the skeleton
/// holders i and the other stack's instances j; m[i][0] = |S_i \ FG(other)| / |S_i|. Row 0
/// stays 0, as does the row of an empty skeleton. `rows` x (other.count + 1), row-major.
/// `column_of` maps the other stack's ids to columns (identity when empty; 0 = not counted,
/// used for GT subsets).
std::vector<float> centerline_overlap(const Skeletons& sk, const LabelStack& other,
                                      const std::vector<int32_t>& column_of = {}, int64_t columns = -1) {
  const int64_t cols = columns >= 0 ? columns : other.count + 1;
  std::vector<float> m(sk.size() * static_cast<size_t>(cols), 0.0f);
  at::parallel_for(1, static_cast<int64_t>(sk.size()), 1, [&](int64_t b, int64_t e) {
    std::vector<int64_t> counts(static_cast<size_t>(cols));
    for (int64_t i = b; i < e; ++i) {
      if (sk[i].empty()) continue;
      std::fill(counts.begin(), counts.end(), 0);
      for (int64_t v : sk[i]) {
        bool fg = false;
        for (int64_t c = 0; c < other.C; ++c) {
          int32_t j = other.at(c, v);
          if (j && !column_of.empty()) j = column_of[j];
          if (j) ++counts[j], fg = true;
        }
        if (!fg) ++counts[0];
      }
      const double size = static_cast<double>(sk[i].size());
      for (int64_t j = 0; j < cols; ++j)
        if (counts[j]) m[i * cols + j] = static_cast<float>(static_cast<double>(counts[j]) / size);
    }
  });
  return m;
}

/// `x > th` with x a float32 matrix entry and th a Python float: numpy 1.x compares in float32.
inline bool above(float x, double th) { return x > static_cast<float>(th); }

struct Pair {
  int32_t g, p;  // 1-based
  float loc;
};

/// match.py: assign_labels, greedy: pairs with loc > th, by (-loc, g, p), one-to-one.
/// `rows` lists the GT row ids in order (a subset for the diagnostics).
std::vector<Pair> greedy_one_to_one(const std::vector<float>& loc, int64_t cols, const std::vector<int32_t>& rows,
                                    double th) {
  std::vector<Pair> cand;
  for (size_t k = 0; k < rows.size(); ++k)
    for (int64_t p = 1; p < cols; ++p) {
      const float l = loc[rows[k] * cols + p];
      if (above(l, th)) cand.push_back({static_cast<int32_t>(k + 1), static_cast<int32_t>(p), l});
    }
  std::sort(cand.begin(), cand.end(), [](const Pair& a, const Pair& b) {
    if (a.loc != b.loc) return a.loc > b.loc;
    if (a.g != b.g) return a.g < b.g;
    return a.p < b.p;
  });
  std::vector<char> used_g(rows.size() + 1, 0), used_p(static_cast<size_t>(cols), 0);
  std::vector<Pair> out;
  for (const Pair& c : cand)
    if (!used_g[c.g] && !used_p[c.p]) used_g[c.g] = used_p[c.p] = 1, out.push_back(c);
  return out;
}

/// np.argmax over rows 0..R-1 of column p (first maximum; row 0 = background wins ties).
std::vector<int32_t> argmax_rows(const std::vector<float>& m, int64_t R, int64_t cols) {
  std::vector<int32_t> a(static_cast<size_t>(cols), 0);
  for (int64_t p = 0; p < cols; ++p) {
    float best = m[p];
    for (int64_t r = 1; r < R; ++r)
      if (m[r * cols + p] > best) best = m[r * cols + p], a[p] = static_cast<int32_t>(r);
  }
  return a;
}

/// compute.py: get_gt_coverage for the GT rows `rows` (ids into the full matrices) with the
/// clPrecision matrix `prec` of those rows (row 0 = background of that subset).
std::vector<double> gt_coverage(const std::vector<int32_t>& rows, const std::vector<float>& prec,
                                const std::vector<float>& recall, int64_t cols, bool union_branch,
                                const Skeletons& gt_skeletons, const LabelStack& pred) {
  const int64_t R = static_cast<int64_t>(rows.size()) + 1;
  const std::vector<int32_t> a = argmax_rows(prec, R, cols);
  std::vector<double> cov;
  for (int64_t k = 1; k < R; ++k) {
    if (union_branch) {
      // clRecall of the union of the predictions assigned to this GT (they may overlap).
      bool assigned = false;
      for (int64_t p = 1; p < cols; ++p) assigned |= a[p] == k;
      if (!assigned) {
        cov.push_back(0.0);
        continue;
      }
      const auto& sk = gt_skeletons[rows[k - 1]];
      int64_t hit = 0;
      for (int64_t v : sk)
        for (int64_t c = 0; c < pred.C; ++c) {
          const int32_t p = pred.at(c, v);
          if (p && a[p] == k) {
            ++hit;
            break;
          }
        }
      cov.push_back(static_cast<double>(hit) / static_cast<double>(sk.size()));  // 0/0 = NaN, as numpy
    } else {
      float sum = 0.0f;  // np.sum of a float32 selection
      for (int64_t p = 0; p < cols; ++p)
        if (a[p] == k) sum += recall[rows[k - 1] * cols + p];
      cov.push_back(sum);
    }
  }
  return cov;
}

/// util.py: LazyHeap + match.py: greedy_many_to_many_matching, with the reference's exact
/// priorities (float32 clRecall at first, double after a consumption update), tie order
/// (push order) and version rules (a push after an invalidation gets version 0 and is live).
class LazyHeap {
 public:
  explicit LazyHeap(int64_t cols) : cols_(cols) {}
  void push(int32_t g, int32_t p, double priority) {
    const int64_t key = g * cols_ + p;
    auto it = version_.find(key);
    const int64_t v = (it == version_.end() ? 0 : it->second) + 1;
    version_[key] = v;
    heap_.push(Entry{priority, counter_++, v, g, p});
  }
  void invalidate(int32_t g, int32_t p) {
    auto it = version_.find(g * cols_ + p);
    if (it != version_.end()) it->second = -1;
  }
  bool pop(int32_t& g, int32_t& p) {
    while (!heap_.empty()) {
      const Entry e = heap_.top();
      heap_.pop();
      auto it = version_.find(e.g * cols_ + e.p);
      if (it != version_.end() && it->second == e.version) {
        version_.erase(it);
        g = e.g, p = e.p;
        return true;
      }
    }
    return false;
  }

 private:
  struct Entry {
    double priority;
    int64_t counter, version;
    int32_t g, p;
    bool operator<(const Entry& o) const {  // std::priority_queue is a max-heap: invert
      if (priority != o.priority) return priority > o.priority;
      return counter > o.counter;
    }
  };
  int64_t cols_;
  int64_t counter_ = 0;
  std::unordered_map<int64_t, int64_t> version_;
  std::priority_queue<Entry> heap_;
};

struct M2M {
  int64_t fm = 0, fs = 0;
};

/// compute.py: get_m2m_metrics on clRecall at threshold th.
M2M many_to_many(const std::vector<float>& recall, int64_t NG, int64_t NP, double th, bool overlaps,
                 const Skeletons& gt_sk, const LabelStack& gt, const LabelStack& pred) {
  const int64_t cols = NP + 1;
  std::vector<std::vector<int32_t>> matches(static_cast<size_t>(NG) + 1);
  if (!overlaps) {
    for (int32_t g = 1; g <= NG; ++g)
      for (int32_t p = 1; p <= NP; ++p)
        if (above(recall[g * cols + p], th)) matches[g].push_back(p);
  } else {
    LazyHeap heap(cols);
    std::vector<std::vector<char>> avail_g(static_cast<size_t>(NG) + 1);
    std::vector<std::vector<int32_t>> consumed_by(static_cast<size_t>(NP) + 1);  // GTs removed from AvailP[p]
    for (int32_t g = 1; g <= NG; ++g)
      for (int32_t p = 1; p <= NP; ++p)
        if (above(recall[g * cols + p], th)) {
          heap.push(g, p, -static_cast<double>(recall[g * cols + p]));
          if (avail_g[g].empty()) avail_g[g].assign(gt_sk[g].size(), 1);
        }
    int32_t g, p;
    while (heap.pop(g, p)) {
      matches[g].push_back(p);
      const auto& sk_g = gt_sk[g];
      for (size_t i = 0; i < sk_g.size(); ++i)
        if (avail_g[g][i] && pred.contains(p, sk_g[i])) avail_g[g][i] = 0;
      consumed_by[p].push_back(g);
      const double denom_g = sk_g.empty() ? 1.0 : static_cast<double>(sk_g.size());
      for (int32_t q = 1; q <= NP; ++q) {
        if (!above(recall[g * cols + q], th)) continue;
        int64_t inter = 0;
        for (size_t i = 0; i < sk_g.size(); ++i) inter += avail_g[g][i] && pred.contains(q, sk_g[i]);
        const double v = static_cast<double>(inter) / denom_g;
        if (v > th) heap.push(g, q, -v);
        else heap.invalidate(g, q);
      }
      for (int32_t h = 1; h <= NG; ++h) {
        if (!above(recall[h * cols + p], th)) continue;
        const auto& sk_h = gt_sk[h];
        int64_t inter = 0;
        for (int64_t v : sk_h) {
          if (!pred.contains(p, v)) continue;
          bool taken = false;
          for (int32_t c : consumed_by[p]) taken |= gt.contains(c, v);
          inter += !taken;
        }
        const double v = static_cast<double>(inter) / (sk_h.empty() ? 1.0 : static_cast<double>(sk_h.size()));
        if (v > th) heap.push(h, p, -v);
        else heap.invalidate(h, p);
      }
    }
  }
  M2M r;
  std::vector<int64_t> per_pred(static_cast<size_t>(NP) + 1, 0);
  for (int32_t gi = 1; gi <= NG; ++gi) {
    r.fs += std::max<int64_t>(0, static_cast<int64_t>(matches[gi].size()) - 1);
    for (int32_t pi : matches[gi]) ++per_pred[pi];
  }
  for (int32_t pi = 1; pi <= NP; ++pi) r.fm += std::max<int64_t>(0, per_pred[pi] - 1);
  return r;
}

double mean_of(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

/// Centre crop of the spatial axes to `shape` (util.py: crop).
at::Tensor centre_crop(const at::Tensor& t, at::IntArrayRef shape) {
  at::Tensor out = t;
  for (int64_t d = 0; d < 3; ++d) {
    const int64_t off = (t.size(d + 1) - shape[d]) / 2;
    out = out.narrow(d + 1, off, shape[d]);
  }
  return out.contiguous();
}

at::Tensor as_stack(at::Tensor t, const std::string& what) {
  if (t.dim() == 3) t = t.unsqueeze(0);
  if (t.dim() != 4) throw io::Error(what, "expected a (Z, Y, X) or (C, Z, Y, X) label volume, got " + c10::str(t.sizes()));
  if (!t.device().is_cpu()) t = t.cpu();
  return t;
}

/// A diagnostic subset (compute.py: get_gt_coverage_dim / _overlap): rows = GT ids in order.
FisbeSubset subset_scores(const std::vector<int32_t>& rows, const LabelStack& gt, const LabelStack& pred,
                          const Skeletons& gt_sk, const Skeletons& pred_sk, const std::vector<float>& recall,
                          const std::vector<float>& loc, bool pred_overlaps, std::vector<std::string>& warnings,
                          const char* name) {
  FisbeSubset s;
  s.count = static_cast<int64_t>(rows.size());
  if (rows.empty()) return s;
  const int64_t NP = pred.count, cols = NP + 1;
  if (NP == 0) {
    s.coverage.assign(rows.size(), 0.0);
    warnings.push_back(std::string("no predicted instances: the reference evaluator fails on the ") + name +
                       " subset of such a volume; its coverage is reported as 0");
    return s;
  }
  // clPrecision against the subset only: row 0 = prediction skeleton outside the subset's GT.
  std::vector<int32_t> column_of(static_cast<size_t>(gt.count) + 1, 0);
  for (size_t k = 0; k < rows.size(); ++k) column_of[rows[k]] = static_cast<int32_t>(k + 1);
  const int64_t R = static_cast<int64_t>(rows.size()) + 1;
  const std::vector<float> prec_t = centerline_overlap(pred_sk, gt, column_of, R);  // (NP+1) x R
  std::vector<float> prec(static_cast<size_t>(R * cols), 0.0f);
  for (int64_t p = 0; p < cols; ++p)
    for (int64_t r = 0; r < R; ++r) prec[r * cols + p] = prec_t[p * R + r];
  // Both-overlap test on the subset's GT only.
  bool subset_overlaps = false;
  if (pred_overlaps) {
    for (size_t k = 0; k < rows.size() && !subset_overlaps; ++k) {
      const Box& b = gt.box[rows[k]];
      for (int64_t z = b.z0; z <= b.z1 && !subset_overlaps; ++z)
        for (int64_t y = b.y0; y <= b.y1 && !subset_overlaps; ++y)
          for (int64_t x = b.x0; x <= b.x1; ++x) {
            const int64_t v = (z * gt.Y + y) * gt.X + x;
            if (!gt.contains(rows[k], v)) continue;
            int hits = 0;
            for (int64_t c = 0; c < gt.C; ++c) {
              const int32_t id = gt.at(c, v);
              hits += id != 0 && column_of[id] != 0;
            }
            if (hits >= 2) {
              subset_overlaps = true;
              break;
            }
          }
    }
  }
  // recall rows of the subset, re-indexed 1..k.
  std::vector<float> recall_sub(static_cast<size_t>(R * cols), 0.0f);
  for (size_t k = 0; k < rows.size(); ++k)
    std::copy_n(recall.begin() + rows[k] * cols, cols, recall_sub.begin() + (k + 1) * cols);
  std::vector<int32_t> sub_rows_in_sub(rows.size());
  std::iota(sub_rows_in_sub.begin(), sub_rows_in_sub.end(), 1);
  Skeletons sub_sk(rows.size() + 1);
  for (size_t k = 0; k < rows.size(); ++k) sub_sk[k + 1] = gt_sk[rows[k]];
  s.coverage = gt_coverage(sub_rows_in_sub, prec, recall_sub, cols, subset_overlaps && pred_overlaps, sub_sk, pred);
  {
    std::vector<double> as_f32;
    for (double c : s.coverage) as_f32.push_back(static_cast<float>(c));
    s.avg_coverage = mean_of(as_f32);
  }
  float max_loc = -1.0f;
  for (int32_t r : rows)
    for (int64_t p = 1; p < cols; ++p) max_loc = std::max(max_loc, loc[r * cols + p]);
  if (static_cast<double>(max_loc) > 0.5) s.tp_05 = static_cast<int64_t>(greedy_one_to_one(loc, cols, rows, 0.5).size());
  s.tp_05_rel = static_cast<double>(s.tp_05) / static_cast<double>(s.count);
  return s;
}

}  // namespace

const std::vector<double>& fisbe_thresholds() {
  static const std::vector<double> t = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.55, 0.65, 0.75, 0.85, 0.95};
  return t;
}

FisbeVolumeResult evaluate_fisbe_volume(at::Tensor gt_in, at::Tensor pred_in, const FisbeOptions& options) {
  FisbeVolumeResult r;
  const bool timing = std::getenv("NEUROSEG_FISBE_TIMING") != nullptr;
  auto t_last = std::chrono::steady_clock::now();
  auto lap = [&](const char* what) {
    if (!timing) return;
    const auto now = std::chrono::steady_clock::now();
    std::fprintf(stderr, "fisbe: %-12s %.3f s\n", what, std::chrono::duration<double>(now - t_last).count());
    t_last = now;
  };
  gt_in = as_stack(std::move(gt_in), "ground truth");
  pred_in = as_stack(std::move(pred_in), "prediction");
  // util.py: check_and_fix_sizes: the larger array is centre-cropped to the smaller.
  const auto gs = gt_in.sizes().slice(1), ps = pred_in.sizes().slice(1);
  if (gs != ps) {
    const bool gt_smaller = gs[0] <= ps[0] && gs[1] <= ps[1] && gs[2] <= ps[2];
    const bool pred_smaller = ps[0] <= gs[0] && ps[1] <= gs[1] && ps[2] <= gs[2];
    if (!gt_smaller && !pred_smaller)
      throw io::Error("prediction", "spatial shape " + c10::str(ps) + " is larger than the ground truth's " +
                                        c10::str(gs) + " in some axes and smaller in others");
    r.warnings.push_back("prediction " + c10::str(ps) + " and ground truth " + c10::str(gs) +
                         " differ in shape; the larger is centre-cropped, as the reference evaluator does");
    if (gt_smaller) pred_in = centre_crop(pred_in, gs.vec());
    else gt_in = centre_crop(gt_in, ps.vec());
  }
  LabelStack gt = normalise(std::move(gt_in), 0, "ground truth");
  lap("crop");
  LabelStack pred = normalise(std::move(pred_in), options.remove_small_components, "prediction");
  lap("normalise");
  const int64_t NG = gt.count, NP = pred.count, cols = NP + 1;
  r.num_gt = NG, r.num_pred = NP, r.removed_small = pred.removed;
  if (NG == 0) r.warnings.push_back("the ground truth has no instances (the reference evaluator fails on such a volume)");

  const Overlaps gt_ov = find_overlaps(gt), pred_ov = find_overlaps(pred);
  r.gt_overlaps = gt_ov.any, r.pred_overlaps = pred_ov.any;
  lap("overlaps");
  const bool overlaps = gt_ov.any || pred_ov.any;

  // Skeletons: every instance once, on its bounding box.
  const Skeletons gt_sk = all_skeletons(gt), pred_sk = all_skeletons(pred);
  lap("skeletons");
  r.recall = centerline_overlap(gt_sk, pred);  // (NG+1) x (NP+1)
  {
    const std::vector<float> prec_t = centerline_overlap(pred_sk, gt);  // (NP+1) x (NG+1)
    r.precision.assign(static_cast<size_t>((NG + 1) * cols), 0.0f);
    for (int64_t p = 0; p < cols; ++p)
      for (int64_t g = 0; g <= NG; ++g) r.precision[g * cols + p] = prec_t[p * (NG + 1) + g];
  }
  // clDice in float32, numpy's evaluation order: ((2 * P) * R) / (P + R), 0/0 -> 0.
  r.localization.assign(r.recall.size(), 0.0f);
  for (size_t i = 0; i < r.recall.size(); ++i) {
    const float p = r.precision[i], rc = r.recall[i];
    const float num = (2.0f * p) * rc, den = p + rc;
    const float l = num / den;
    r.localization[i] = std::isnan(l) ? 0.0f : l;
  }
  float max_loc = 0.0f;
  for (float l : r.localization) max_loc = std::max(max_loc, l);

  // recallMat_wo_overlap: only the per-threshold false_merge diagnostic of partly samples.
  const bool partly = options.partly;
  std::vector<float> recall_wo;
  if (partly && overlaps) {
    const Skeletons cut = all_skeletons(gt, /*cut_overlaps=*/true);
    recall_wo = centerline_overlap(cut, pred);
  }

  std::vector<int32_t> all_rows(static_cast<size_t>(NG));
  std::iota(all_rows.begin(), all_rows.end(), 1);
  const std::vector<int32_t> best_gt = argmax_rows(r.precision, NG + 1, cols);
  std::vector<double> fscores, aps;
  for (double th : fisbe_thresholds()) {
    FisbeThresholdCounts t;
    t.threshold = th;
    std::vector<Pair> m;
    if (std::min(NG, NP) > 0 && static_cast<double>(max_loc) > th) m = greedy_one_to_one(r.localization, cols, all_rows, th);
    t.tp = static_cast<int64_t>(m.size());
    std::vector<char> matched(static_cast<size_t>(cols), 0);
    for (const Pair& pr : m) matched[pr.p] = 1;
    int64_t unmatched_in_gt = 0;  // match.py: get_false_labels, fs_ind
    for (int64_t p = 1; p < cols; ++p) unmatched_in_gt += !matched[p] && best_gt[p] > 0;
    if (partly) {
      t.fp = unmatched_in_gt;
      t.false_split = unmatched_in_gt;
      int64_t fm = 0;
      for (int64_t p = 1; p < cols; ++p) {
        int64_t n = 0;
        for (int64_t g = 1; g <= NG; ++g)
          n += above(r.recall[g * cols + p], th) && (recall_wo.empty() || above(recall_wo[g * cols + p], th));
        fm += std::max<int64_t>(0, n - 1);
      }
      t.false_merge = fm;
    } else {
      t.fp = NP - t.tp;
    }
    t.fn = NG - t.tp;
    t.precision = static_cast<double>(t.tp) / static_cast<double>(std::max<int64_t>(1, t.tp + t.fp));
    t.recall = static_cast<double>(t.tp) / static_cast<double>(std::max<int64_t>(1, t.tp + t.fn));
    t.ap = t.precision * t.recall;
    t.fscore = t.precision + t.recall > 0 ? 2.0 * t.precision * t.recall / (t.precision + t.recall) : 0.0;
    fscores.push_back(t.fscore);
    aps.push_back(t.ap);
    if (th == 0.5) {
      r.tp_05 = t.tp;
      for (const Pair& pr : m) r.tp_05_cldice.push_back(pr.loc);
    }
    r.thresholds.push_back(t);
  }
  auto mean_range = [](const std::vector<double>& v, size_t b, size_t e) {
    double s = 0;
    for (size_t i = b; i < e; ++i) s += v[i];
    return s / static_cast<double>(e - b);
  };
  r.av_f1 = mean_range(fscores, 0, 9);
  r.av_f1_59 = mean_range(fscores, 4, fscores.size());
  r.av_ap = mean_range(aps, 4, aps.size());
  r.av_ap19 = mean_range(aps, 0, 9);
  r.tp_05_rel = NG > 0 ? static_cast<double>(r.tp_05) / static_cast<double>(NG) : 0.0;
  r.avg_tp_05_cldice = r.tp_05_cldice.empty() ? 0.0 : mean_of(r.tp_05_cldice);

  r.gt_coverage = gt_coverage(all_rows, r.precision, r.recall, cols, gt_ov.any && pred_ov.any, gt_sk, pred);
  {
    std::vector<double> as_f32;
    for (double c : r.gt_coverage) as_f32.push_back(static_cast<float>(c));
    r.avg_gt_coverage = mean_of(as_f32);
  }
  r.avg_f1_cov_score = 0.5 * r.av_f1 + 0.5 * r.avg_gt_coverage;

  lap("matching");
  r.false_merges = many_to_many(r.recall, NG, NP, 0.1, overlaps, gt_sk, gt, pred).fm;
  r.false_splits = many_to_many(r.recall, NG, NP, 0.05, overlaps, gt_sk, gt, pred).fs;

  // Diagnostic subsets: dim neurons (ids as stored, mapped through the first channel that
  // holds them) and neurons touching an overlap, in ascending id order.
  std::vector<int32_t> dim_rows;
  for (int64_t v : options.dim_instances) {
    auto it = gt.first_id_of_value.find(v);
    if (it == gt.first_id_of_value.end())
      r.warnings.push_back("dim neuron " + std::to_string(v) + " is not in the ground truth; ignored");
    else dim_rows.push_back(it->second);
  }
  if (!dim_rows.empty() && NP > 0)
    r.dim = subset_scores(dim_rows, gt, pred, gt_sk, pred_sk, r.recall, r.localization, pred_ov.any, r.warnings, "dim");
  else r.dim.count = static_cast<int64_t>(dim_rows.size());
  std::vector<int32_t> overlap_rows;
  for (int32_t g = 1; g <= NG; ++g)
    if (gt_ov.touches[g]) overlap_rows.push_back(g);
  r.overlap = subset_scores(overlap_rows, gt, pred, gt_sk, pred_sk, r.recall, r.localization, pred_ov.any, r.warnings,
                            "overlap");
  lap("m2m+subsets");
  return r;
}

FisbeSetScores pool_fisbe_volumes(const std::vector<const FisbeVolumeResult*>& volumes) {
  FisbeSetScores s;
  s.volumes = static_cast<int64_t>(volumes.size());
  std::vector<double> cov_dim, cov_ovl;
  for (const FisbeVolumeResult* v : volumes) {
    s.num_gt += v->num_gt, s.num_pred += v->num_pred;
    for (int i = 0; i < 9; ++i) s.tp[i] += v->thresholds[i].tp, s.fp[i] += v->thresholds[i].fp, s.fn[i] += v->thresholds[i].fn;
    for (double c : v->gt_coverage) s.coverages.push_back(static_cast<float>(c));
    for (double c : v->tp_05_cldice) s.tp_05_cldice.push_back(static_cast<float>(c));
    s.tp_05 += v->tp_05, s.false_merges += v->false_merges, s.false_splits += v->false_splits;
    s.gt_dim += v->dim.count, s.tp_05_dim += v->dim.tp_05;
    s.gt_overlap += v->overlap.count, s.tp_05_overlap += v->overlap.tp_05;
    for (double c : v->dim.coverage) cov_dim.push_back(static_cast<float>(c));
    for (double c : v->overlap.coverage) cov_ovl.push_back(static_cast<float>(c));
  }
  for (int i = 0; i < 9; ++i) {
    const int64_t den = 2 * s.tp[i] + s.fp[i] + s.fn[i];
    s.fscore[i] = den > 0 ? 2.0 * static_cast<double>(s.tp[i]) / static_cast<double>(den) : 0.0;
    s.av_f1 += s.fscore[i] / 9.0;
  }
  s.coverage = s.coverages.empty() ? 0.0 : mean_of(s.coverages);
  s.score = 0.5 * s.av_f1 + 0.5 * s.coverage;
  s.tp_05_rel = s.num_gt > 0 ? static_cast<double>(s.tp_05) / static_cast<double>(s.num_gt) : 0.0;
  s.cldice_tp = s.tp_05 > 0 ? mean_of(s.tp_05_cldice) : 0.0;
  s.tp_05_rel_dim = s.gt_dim > 0 ? static_cast<double>(s.tp_05_dim) / static_cast<double>(s.gt_dim) : 0.0;
  s.avg_gt_cov_dim = cov_dim.empty() ? 0.0 : mean_of(cov_dim);
  s.tp_05_rel_overlap = s.gt_overlap > 0 ? static_cast<double>(s.tp_05_overlap) / static_cast<double>(s.gt_overlap) : 0.0;
  s.avg_gt_cov_overlap = cov_ovl.empty() ? 0.0 : mean_of(cov_ovl);
  return s;
}

FisbeCombinedScores combine_fisbe_sets(const FisbeSetScores& a, const FisbeSetScores& b) {
  FisbeCombinedScores c;
  FisbeSetScores& p = c.pooled;
  p.volumes = a.volumes + b.volumes, p.num_gt = a.num_gt + b.num_gt, p.num_pred = a.num_pred + b.num_pred;
  for (int i = 0; i < 9; ++i) {
    p.tp[i] = a.tp[i] + b.tp[i], p.fp[i] = a.fp[i] + b.fp[i], p.fn[i] = a.fn[i] + b.fn[i];
    c.fscore[i] = 0.5 * (a.fscore[i] + b.fscore[i]);
  }
  p.fscore = c.fscore;
  p.coverages = a.coverages;
  p.coverages.insert(p.coverages.end(), b.coverages.begin(), b.coverages.end());
  p.tp_05_cldice = a.tp_05_cldice;
  p.tp_05_cldice.insert(p.tp_05_cldice.end(), b.tp_05_cldice.begin(), b.tp_05_cldice.end());
  p.tp_05 = a.tp_05 + b.tp_05, p.false_merges = a.false_merges + b.false_merges;
  p.false_splits = a.false_splits + b.false_splits;
  p.tp_05_rel = p.num_gt > 0 ? static_cast<double>(p.tp_05) / static_cast<double>(p.num_gt) : 0.0;
  c.score = 0.5 * (a.score + b.score);
  c.av_f1 = 0.5 * (a.av_f1 + b.av_f1);
  c.coverage = 0.5 * (a.coverage + b.coverage);
  p.score = c.score, p.av_f1 = c.av_f1, p.coverage = c.coverage;
  c.cldice_tp_pooled = p.tp_05_cldice.empty() ? std::nan("") : mean_of(p.tp_05_cldice);
  c.cldice_tp_mean_of_sets = 0.5 * (a.cldice_tp + b.cldice_tp);
  p.cldice_tp = c.cldice_tp_pooled;
  return c;
}

}  // namespace neuroseg::metrics
