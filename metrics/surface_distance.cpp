#include "metrics/surface_distance.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "metrics/distance_transform.h"

namespace neuroseg::metrics {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Inclusive [lo, hi] per axis of the non-zero voxels of `m` (D, H, W); false when empty.
bool bounding_box(const at::Tensor& m, std::array<int64_t, 3>& lo, std::array<int64_t, 3>& hi) {
  for (int axis = 0; axis < 3; ++axis) {
    std::vector<int64_t> others;
    for (int a = 0; a < 3; ++a)
      if (a != axis) others.push_back(a);
    const at::Tensor profile = m.amax(others).cpu();  // (n,) along `axis`
    const at::Tensor idx = profile.nonzero();
    if (idx.numel() == 0) return false;
    lo[axis] = idx.min().item<int64_t>();
    hi[axis] = idx.max().item<int64_t>();
  }
  return true;
}

at::Tensor inf_like_count(int64_t n) { return at::full({n}, kInf, at::kFloat); }

// Exact nearest-neighbour distances from query voxels to target voxels through a bucket grid
// (cells of kCell^3 voxels, targets sorted by cell with a counting sort). A query visits
// shells of cells around its own, nearest first, skipping every cell whose nearest face is
// already farther than the best hit, and stops when the next shell cannot do better. Nearby
// surfaces cost a few dozen cells per query: O(S) work where the EDT path is O(crop volume).
// Far-apart surfaces make the search grow with the cube of the distance, which is why
// surface_distances estimates the cost first and keeps the EDT for them.
constexpr int64_t kCell = 4;

class TargetGrid {
 public:
  TargetGrid(const at::Tensor& targets /* (T, 3) int64 zyx */, const std::array<int64_t, 3>& dims,
             const std::array<double, 3>& sp)
      : sp_(sp) {
    for (int a = 0; a < 3; ++a) g_[a] = (dims[a] + kCell - 1) / kCell;
    const int64_t cells = g_[0] * g_[1] * g_[2];
    start_.assign(static_cast<size_t>(cells + 1), 0);
    const int64_t n = targets.size(0);
    const int64_t* t = targets.data_ptr<int64_t>();
    std::vector<int64_t> cell_of(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      cell_of[i] = cell_index(t[3 * i] / kCell, t[3 * i + 1] / kCell, t[3 * i + 2] / kCell);
      ++start_[static_cast<size_t>(cell_of[i] + 1)];
    }
    for (int64_t c = 0; c < cells; ++c) start_[c + 1] += start_[c];
    pts_.resize(static_cast<size_t>(3 * n));
    std::vector<int64_t> fill(start_.begin(), start_.end() - 1);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = fill[static_cast<size_t>(cell_of[i])]++;
      for (int a = 0; a < 3; ++a) pts_[static_cast<size_t>(3 * k + a)] = static_cast<int32_t>(t[3 * i + a]);
    }
  }

  /// Squared distance (mm^2) from voxel q to its nearest target: shells of cells at
  /// Chebyshev cell distance 0, 1, 2, ... until the next shell cannot hold anything closer.
  double nearest2(const int64_t q[3], int64_t* cells_visited) const {
    double best = kInf;
    const int64_t qc[3] = {q[0] / kCell, q[1] / kCell, q[2] / kCell};
    const int64_t max_ring = std::max({g_[0], g_[1], g_[2]});
    for (int64_t r = 0; r <= max_ring; ++r) {
      if (ring_excludes(r, best)) break;
      for (int64_t cz = std::max<int64_t>(qc[0] - r, 0); cz <= std::min(qc[0] + r, g_[0] - 1); ++cz) {
        const double dz = axis_gap(q[0], cz, 0);
        if (dz >= best) continue;
        const bool z_face = std::abs(cz - qc[0]) == r;
        for (int64_t cy = std::max<int64_t>(qc[1] - r, 0); cy <= std::min(qc[1] + r, g_[1] - 1); ++cy) {
          const double dzy = dz + axis_gap(q[1], cy, 1);
          if (dzy >= best) continue;
          // Inside the shell's z and y faces only the two x faces belong to this shell.
          const bool face = z_face || std::abs(cy - qc[1]) == r;
          const int64_t step = face || r == 0 ? 1 : 2 * r;
          for (int64_t cx = qc[2] - r; cx <= qc[2] + r; cx += step) {
            if (cx < 0 || cx >= g_[2] || dzy + axis_gap(q[2], cx, 2) >= best) continue;
            ++*cells_visited;
            const int64_t c = cell_index(cz, cy, cx);
            for (int64_t k = start_[c]; k < start_[c + 1]; ++k) {
              const int32_t* p = &pts_[static_cast<size_t>(3 * k)];
              const double a = (p[0] - q[0]) * sp_[0], b = (p[1] - q[1]) * sp_[1], e = (p[2] - q[2]) * sp_[2];
              best = std::min(best, a * a + b * b + e * e);
            }
          }
        }
      }
    }
    return best;
  }

 private:
  int64_t cell_index(int64_t cz, int64_t cy, int64_t cx) const { return (cz * g_[1] + cy) * g_[2] + cx; }
  // Squared physical gap along axis a between voxel coordinate v and cell c (0 inside).
  double axis_gap(int64_t v, int64_t c, int a) const {
    const int64_t lo = c * kCell, hi = lo + kCell - 1;
    const int64_t g = v < lo ? lo - v : (v > hi ? v - hi : 0);
    const double d = static_cast<double>(g) * sp_[a];
    return d * d;
  }
  // Every cell of shell r is at least (r - 1) * kCell voxels away along some axis.
  bool ring_excludes(int64_t r, double best) const {
    const double reach = static_cast<double>((r - 1) * kCell + 1) * std::min({sp_[0], sp_[1], sp_[2]});
    return r > 0 && best <= reach * reach;
  }
  std::array<double, 3> sp_;
  std::array<int64_t, 3> g_{};
  std::vector<int64_t> start_;
  std::vector<int32_t> pts_;
};

// Distances (float32, query order) from every query voxel to the nearest target voxel.
at::Tensor grid_distances(const at::Tensor& queries, const at::Tensor& targets, const std::array<int64_t, 3>& dims,
                          const std::array<double, 3>& sp) {
  const TargetGrid grid(targets, dims, sp);
  const int64_t n = queries.size(0);
  at::Tensor out = at::empty({n}, at::kFloat);
  float* o = out.data_ptr<float>();
  const int64_t* q = queries.data_ptr<int64_t>();
  at::parallel_for(0, n, 2048, [&](int64_t b, int64_t e) {
    int64_t visited = 0;
    for (int64_t i = b; i < e; ++i) o[i] = static_cast<float>(std::sqrt(grid.nearest2(q + 3 * i, &visited)));
  });
  return out;
}

// Expected cells per query of the grid search, from the distances of a few sampled queries
// (the box around a query at distance d spans about (2 d / (kCell s) + 1)^3 cells).
double grid_cost_per_query(const at::Tensor& queries, const at::Tensor& targets, const std::array<int64_t, 3>& dims,
                           const std::array<double, 3>& sp) {
  const int64_t n = queries.size(0), samples = std::min<int64_t>(n, 32);
  const at::Tensor pick = queries.index_select(0, at::linspace(0, n - 1, samples).to(at::kLong)).contiguous();
  const at::Tensor d = grid_distances(pick, targets, dims, sp);
  double cost = 0;
  for (int64_t i = 0; i < samples; ++i) {
    double cells = 1;
    for (int a = 0; a < 3; ++a) cells *= 2 * d[i].item<double>() / (kCell * sp[a]) + 2;
    cost += cells;
  }
  return cost / static_cast<double>(samples);
}

}  // namespace

at::Tensor detail::surface_voxels_cpu(const at::Tensor& mask_in) {
  TORCH_CHECK(mask_in.dim() == 3 && !mask_in.is_cuda(), "surface_voxels_cpu: a CPU (D, H, W) mask");
  const at::Tensor mask = (mask_in != 0).to(at::kByte).contiguous();
  const int64_t D = mask.size(0), H = mask.size(1), W = mask.size(2);
  at::Tensor out = at::zeros({D, H, W}, at::kByte);
  const uint8_t* m = mask.data_ptr<uint8_t>();
  uint8_t* s = out.data_ptr<uint8_t>();
  at::parallel_for(0, D, 1, [&](int64_t z0, int64_t z1) {
    for (int64_t z = z0; z < z1; ++z)
      for (int64_t y = 0; y < H; ++y) {
        const int64_t row = (z * H + y) * W;
        for (int64_t x = 0; x < W; ++x) {
          const int64_t i = row + x;
          if (!m[i]) continue;
          // Erosion keeps a voxel only when all 6 neighbours are inside the image and the mask.
          const bool interior = z > 0 && z + 1 < D && y > 0 && y + 1 < H && x > 0 && x + 1 < W && m[i - 1] &&
                                m[i + 1] && m[i - W] && m[i + W] && m[i - H * W] && m[i + H * W];
          s[i] = !interior;
        }
      }
  });
  return out.to(at::kBool);
}

at::Tensor detail::surface_voxels_tensor_ops(const at::Tensor& mask_in) {
  TORCH_CHECK(mask_in.dim() == 3, "surface_voxels: a (D, H, W) mask");
  const at::Tensor m = mask_in != 0;
  const at::Tensor p = at::constant_pad_nd(m.to(at::kByte), {1, 1, 1, 1, 1, 1}, 0).to(at::kBool);
  const int64_t D = m.size(0), H = m.size(1), W = m.size(2);
  auto view = [&](int64_t dz, int64_t dy, int64_t dx) {
    return p.slice(0, 1 + dz, 1 + dz + D).slice(1, 1 + dy, 1 + dy + H).slice(2, 1 + dx, 1 + dx + W);
  };
  const at::Tensor eroded = m & view(-1, 0, 0) & view(1, 0, 0) & view(0, -1, 0) & view(0, 1, 0) & view(0, 0, -1) &
                            view(0, 0, 1);
  return m & ~eroded;
}

at::Tensor surface_voxels(const at::Tensor& mask) {
  return mask.is_cuda() ? detail::surface_voxels_tensor_ops(mask) : detail::surface_voxels_cpu(mask);
}

SurfaceDistances surface_distances(const at::Tensor& pred, const at::Tensor& ref,
                                   const std::array<double, 3>& spacing_zyx) {
  TORCH_CHECK(pred.dim() == 3 && pred.sizes() == ref.sizes(), "surface_distances: two (D, H, W) masks of one shape, got ",
              pred.sizes(), " and ", ref.sizes());
  TORCH_CHECK(pred.device() == ref.device(), "surface_distances: masks on different devices");
  const at::Tensor p = pred != 0, r = ref != 0;
  SurfaceDistances out{at::empty({0}, at::kFloat), at::empty({0}, at::kFloat)};
  std::array<int64_t, 3> lo{}, hi{};
  if (!bounding_box(p | r, lo, hi)) return out;  // both empty
  // Crop to the union's box + 1 voxel: every surface voxel and every erosion neighbour that
  // lies inside the image is kept, and distances between voxels do not depend on the crop.
  at::Tensor pc = p, rc = r;
  for (int a = 0; a < 3; ++a) {
    const int64_t b = std::max<int64_t>(lo[a] - 1, 0), e = std::min<int64_t>(hi[a] + 2, p.size(a));
    pc = pc.slice(a, b, e);
    rc = rc.slice(a, b, e);
  }
  // Where the box was clipped, the crop border is the image border (outside = background,
  // as MONAI's zero padding); elsewhere the margin voxel is background anyway.
  const at::Tensor sp = surface_voxels(pc), sr = surface_voxels(rc);
  const int64_t np = sp.sum().item<int64_t>(), nr = sr.sum().item<int64_t>();
  if (np == 0 || nr == 0) {  // exactly one empty (MONAI: +inf once per surface voxel of the other)
    const int64_t n = np + nr;
    out.pred_to_ref = inf_like_count(n);
    out.ref_to_pred = inf_like_count(n);
    return out;
  }
  if (!sp.is_cuda()) {
    // CPU: the bucket-grid search where its estimated cost beats the EDT of the crop.
    const at::Tensor qp = sp.nonzero().contiguous(), qr = sr.nonzero().contiguous();
    const std::array<int64_t, 3> dims{sp.size(0), sp.size(1), sp.size(2)};
    const double volume = static_cast<double>(sp.numel());
    if (grid_cost_per_query(qp, qr, dims, spacing_zyx) * static_cast<double>(np) < volume &&
        grid_cost_per_query(qr, qp, dims, spacing_zyx) * static_cast<double>(nr) < volume) {
      out.pred_to_ref = grid_distances(qp, qr, dims, spacing_zyx);
      out.ref_to_pred = grid_distances(qr, qp, dims, spacing_zyx);
      return out;
    }
  }
  return detail::surface_distances_edt(sp, sr, spacing_zyx);
}

SurfaceDistances detail::surface_distances_edt(const at::Tensor& sp, const at::Tensor& sr,
                                               const std::array<double, 3>& spacing_zyx) {
  const at::Tensor d_to_ref = distance_transform_edt(~sr, spacing_zyx);
  const at::Tensor d_to_pred = distance_transform_edt(~sp, spacing_zyx);
  return {d_to_ref.masked_select(sp).cpu(), d_to_pred.masked_select(sr).cpu()};
}

SurfaceDistances detail::surface_distances_grid(const at::Tensor& sp, const at::Tensor& sr,
                                                const std::array<double, 3>& spacing_zyx) {
  const std::array<int64_t, 3> dims{sp.size(0), sp.size(1), sp.size(2)};
  const at::Tensor qp = sp.cpu().nonzero().contiguous(), qr = sr.cpu().nonzero().contiguous();
  return {grid_distances(qp, qr, dims, spacing_zyx), grid_distances(qr, qp, dims, spacing_zyx)};
}

double percentile_linear(std::vector<double> x, double q) {
  if (x.empty()) return kNaN;
  const double pos = q / 100.0 * static_cast<double>(x.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, x.size() - 1);
  std::nth_element(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(lo), x.end());
  const double a = x[lo];
  if (hi == lo) return a;
  const double b = *std::min_element(x.begin() + static_cast<std::ptrdiff_t>(lo) + 1, x.end());
  if (std::isinf(a) || std::isinf(b)) return a == b ? a : (pos - lo > 0 ? b : a);
  return a + (b - a) * (pos - static_cast<double>(lo));
}

SurfaceMetrics surface_metrics(const SurfaceDistances& d, double tolerance_mm, double percentile) {
  auto to_vec = [](const at::Tensor& t) {
    const at::Tensor c = t.to(at::kDouble).contiguous().cpu();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  };
  const std::vector<double> a = to_vec(d.pred_to_ref), b = to_vec(d.ref_to_pred);
  if (a.empty() && b.empty()) return {kNaN, kNaN, kNaN, kNaN};
  auto directed_max = [](const std::vector<double>& v) { return v.empty() ? kNaN : *std::max_element(v.begin(), v.end()); };
  double sum = 0;
  int64_t within = 0;
  for (const auto* v : {&a, &b})
    for (double x : *v) {
      sum += x;
      within += x <= tolerance_mm;
    }
  SurfaceMetrics m;
  m.hd = std::max(directed_max(a), directed_max(b));
  m.hd95 = std::max(percentile_linear(a, percentile), percentile_linear(b, percentile));
  m.assd = sum / static_cast<double>(a.size() + b.size());
  m.nsd = static_cast<double>(within) / static_cast<double>(a.size() + b.size());
  return m;
}

}  // namespace neuroseg::metrics
