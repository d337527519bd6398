// Two-pass connected-component labelling with union-find (Wu, Otoo & Suzuki 2005's
// scan + equivalence idea, as cc3d): pass 1 visits voxels in raster order and joins each
// to its already-visited neighbours of equal value (the "backward" half of the
// neighbourhood: 3 of 6, 9 of 18, 13 of 26); pass 2 replaces provisional labels by their
// root, renumbered in order of first appearance.
//
// The backward neighbours are the offsets (dz, dy, dx), dz in {-1, 0}, that come strictly
// before the voxel in raster order and have at most 1 (6-conn), 2 (18) or 3 (26) non-zero
// components: 3, 9 and 13 of them.
#include "metrics/connected_components.h"

#include <algorithm>
#include <array>
#include <map>
#include <numeric>

#include <ATen/ATen.h>

#include "io/error.h"

namespace neuroseg::metrics {
namespace {

struct Offset {
  int dz, dy, dx;
};

std::vector<Offset> backward_offsets(int connectivity) {
  std::vector<Offset> out;
  for (int dz = -1; dz <= 0; ++dz)
    for (int dy = -1; dy <= 1; ++dy)
      for (int dx = -1; dx <= 1; ++dx) {
        // Strictly before (0,0,0) in raster order.
        if (dz == 0 && (dy > 0 || (dy == 0 && dx >= 0))) continue;
        const int nonzero = (dz != 0) + (dy != 0) + (dx != 0);
        const int limit = connectivity == 26 || connectivity == 8 ? 3 : (connectivity == 18 ? 2 : 1);
        if (nonzero <= limit) out.push_back({dz, dy, dx});
      }
  return out;
}

int32_t find_root(std::vector<int32_t>& parent, int32_t a) {
  while (parent[a] != a) {
    parent[a] = parent[parent[a]];  // path halving
    a = parent[a];
  }
  return a;
}

template <typename T>
Components label_impl(const T* in, int64_t D, int64_t H, int64_t W, int connectivity) {
  Components c;
  c.labels = at::zeros({D, H, W}, at::kInt);
  int32_t* out = c.labels.data_ptr<int32_t>();
  std::vector<Offset> offsets = backward_offsets(connectivity);
  if (D == 1) {  // 2D: keep in-plane offsets only
    offsets.erase(std::remove_if(offsets.begin(), offsets.end(), [](const Offset& o) { return o.dz != 0; }), offsets.end());
  }
  std::vector<int32_t> parent{0};
  for (int64_t z = 0; z < D; ++z)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const int64_t i = (z * H + y) * W + x;
        const T v = in[i];
        if (v == 0) continue;
        int32_t label = 0;
        for (const Offset& o : offsets) {
          const int64_t zz = z + o.dz, yy = y + o.dy, xx = x + o.dx;
          if (zz < 0 || yy < 0 || xx < 0 || yy >= H || xx >= W) continue;  // dz = -1 reaches y + 1
          const int64_t j = (zz * H + yy) * W + xx;
          if (in[j] != v) continue;
          const int32_t other = find_root(parent, out[j]);
          if (label == 0) {
            label = other;
          } else if (other != label) {
            const int32_t lo = std::min(label, other), hi = std::max(label, other);
            parent[hi] = lo;
            label = lo;
          }
        }
        if (label == 0) {
          label = static_cast<int32_t>(parent.size());
          parent.push_back(label);
        }
        out[i] = label;
      }
  // Pass 2: roots -> 1..N in order of first appearance.
  std::vector<int32_t> final_label(parent.size(), 0);
  int32_t next = 0;
  const int64_t n = D * H * W;
  for (int64_t i = 0; i < n; ++i) {
    if (out[i] == 0) continue;
    const int32_t r = find_root(parent, out[i]);
    if (final_label[r] == 0) {
      final_label[r] = ++next;
      c.sizes.push_back(0);
    }
    out[i] = final_label[r];
    ++c.sizes[out[i] - 1];
  }
  c.count = next;
  return c;
}

}  // namespace

Components connected_components(const at::Tensor& image, int connectivity) {
  if (image.dim() != 3) throw io::Error("connected_components", "expects a (D, H, W) tensor, got " + std::to_string(image.dim()) + "D");
  const bool two_d = image.size(0) == 1;
  const bool ok = two_d ? (connectivity == 4 || connectivity == 8 || connectivity == 6 || connectivity == 18 ||
                           connectivity == 26)
                        : (connectivity == 6 || connectivity == 18 || connectivity == 26);
  if (!ok)
    throw io::Error("connected_components", "connectivity " + std::to_string(connectivity) +
                                                " is not supported (6, 18 or 26 in 3D; 4 or 8 in 2D)");
  if (two_d && connectivity == 6) connectivity = 4;
  if (two_d && (connectivity == 18 || connectivity == 26)) connectivity = 8;
  at::Tensor x = image.to(at::kCPU).contiguous();
  if (x.scalar_type() == at::kBool) x = x.to(at::kByte);
  if (at::isFloatingType(x.scalar_type())) throw io::Error("connected_components", "expects an integer label image");
  const int64_t D = x.size(0), H = x.size(1), W = x.size(2);
  switch (x.scalar_type()) {
    case at::kByte: return label_impl(x.data_ptr<uint8_t>(), D, H, W, connectivity);
    case at::kChar: return label_impl(x.data_ptr<int8_t>(), D, H, W, connectivity);
    case at::kShort: return label_impl(x.data_ptr<int16_t>(), D, H, W, connectivity);
    case at::kInt: return label_impl(x.data_ptr<int32_t>(), D, H, W, connectivity);
    case at::kLong: return label_impl(x.data_ptr<int64_t>(), D, H, W, connectivity);
    default: throw io::Error("connected_components", "unsupported label dtype");
  }
}

at::Tensor keep_largest_component_per_label(const at::Tensor& labels, int connectivity) {
  const Components c = connected_components(labels, connectivity);
  at::Tensor x = labels.to(at::kCPU).contiguous();
  // Value of each component, then the largest component per value.
  const at::Tensor flat_labels = c.labels.reshape({-1});
  const at::Tensor flat_values = x.reshape({-1}).to(at::kLong);
  std::vector<int64_t> value_of(c.count + 1, 0);
  {
    const int32_t* l = flat_labels.data_ptr<int32_t>();
    const int64_t* v = flat_values.data_ptr<int64_t>();
    for (int64_t i = 0; i < flat_labels.numel(); ++i)
      if (l[i] > 0) value_of[l[i]] = v[i];
  }
  std::map<int64_t, int64_t> best;  // value -> component
  for (int64_t k = 1; k <= c.count; ++k) {
    auto it = best.find(value_of[k]);
    if (it == best.end() || c.sizes[k - 1] > c.sizes[it->second - 1]) best[value_of[k]] = k;
  }
  std::vector<uint8_t> keep(c.count + 1, 0);
  for (const auto& [value, k] : best) keep[k] = 1;
  const at::Tensor keep_t = at::from_blob(keep.data(), {c.count + 1}, at::kByte).to(at::kBool);
  const at::Tensor mask = keep_t.index_select(0, flat_labels.to(at::kLong)).reshape(x.sizes());
  return at::where(mask, x, at::zeros_like(x));
}

at::Tensor fill_holes_per_label(const at::Tensor& labels) {
  at::Tensor x = labels.to(at::kCPU).contiguous();
  const Components bg = connected_components((x == 0).to(at::kByte), 6);
  const int64_t D = x.size(0), H = x.size(1), W = x.size(2);
  const int32_t* l = bg.labels.data_ptr<int32_t>();
  const at::Tensor values = x.to(at::kLong);
  const int64_t* v = values.data_ptr<int64_t>();
  // For each background component: does it touch the border, and which labels surround it.
  std::vector<uint8_t> border(bg.count + 1, 0);
  std::vector<int64_t> surround(bg.count + 1, -1);  // -1 none yet, -2 several
  const int64_t step[3] = {H * W, W, 1};
  for (int64_t z = 0; z < D; ++z)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t xx = 0; xx < W; ++xx) {
        const int64_t i = (z * H + y) * W + xx;
        if (l[i] == 0) continue;
        if (z == 0 || y == 0 || xx == 0 || z == D - 1 || y == H - 1 || xx == W - 1) border[l[i]] = 1;
        const int64_t coords[3] = {z, y, xx}, sizes[3] = {D, H, W};
        for (int a = 0; a < 3; ++a)
          for (int s = -1; s <= 1; s += 2) {
            const int64_t c = coords[a] + s;
            if (c < 0 || c >= sizes[a]) continue;
            const int64_t j = i + s * step[a];
            if (v[j] == 0) continue;
            int64_t& sv = surround[l[i]];
            sv = sv == -1 ? v[j] : (sv == v[j] ? sv : -2);
          }
      }
  at::Tensor out = values.clone();
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < out.numel(); ++i)
    if (l[i] > 0 && !border[l[i]] && surround[l[i]] >= 0) o[i] = surround[l[i]];
  return out.to(labels.scalar_type());
}

}  // namespace neuroseg::metrics
