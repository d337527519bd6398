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
  const at::Tensor d_to_ref = distance_transform_edt(~sr, spacing_zyx);
  const at::Tensor d_to_pred = distance_transform_edt(~sp, spacing_zyx);
  out.pred_to_ref = d_to_ref.masked_select(sp).cpu();
  out.ref_to_pred = d_to_pred.masked_select(sr).cpu();
  return out;
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
