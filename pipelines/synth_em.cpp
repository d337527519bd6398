#include "pipelines/synth_em.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "io/error.h"
#include "io/volume_io.h"

namespace neuroseg::pipelines {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Smooth random field in [-1, 1]-ish: coarse noise, trilinearly upsampled.
at::Tensor smooth_field(const std::array<int64_t, 3>& size, int64_t coarse_xy, at::Generator& gen) {
  const int64_t cd = std::max<int64_t>(2, size[0] / 6 + 1), ch = std::max<int64_t>(2, size[1] / coarse_xy + 1),
                cw = std::max<int64_t>(2, size[2] / coarse_xy + 1);
  const at::Tensor c = at::randn({1, 1, cd, ch, cw}, gen, at::kFloat);
  return at::upsample_trilinear3d(c, {size[0], size[1], size[2]}, /*align_corners=*/true).view({size[0], size[1], size[2]});
}

}  // namespace

SynthEmCase synth_em(const SynthEmOptions& o) {
  const int64_t d = o.size[0], h = o.size[1], w = o.size[2];
  if (d < 1 || h < 16 || w < 16) throw io::Error("synth em", "size must be at least 1 x 16 x 16");
  if (o.anisotropy <= 0) throw io::Error("synth em", "anisotropy must be positive");
  std::mt19937_64 rng(o.seed);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed ^ 0x5eedULL);
  auto uni = [&rng](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
  const double depth_phys = static_cast<double>(d) * o.anisotropy;
  const auto f = at::TensorOptions().dtype(at::kFloat);
  // Physical coordinates of every voxel: x, y in pixels, z in pixels · anisotropy.
  const at::Tensor zs = (at::arange(d, f) * o.anisotropy).view({d, 1, 1}).expand({d, h, w});
  const at::Tensor ys = at::arange(h, f).view({1, h, 1}).expand({d, h, w});
  const at::Tensor xs = at::arange(w, f).view({1, 1, w}).expand({d, h, w});

  // Cells: distances to the nearest two Voronoi seeds, slice by slice.
  const double margin = 30;
  const double phys_volume = (w + 2 * margin) * (h + 2 * margin) * std::max(depth_phys, 45.0);
  const int64_t cells = o.cells > 0 ? o.cells : std::max<int64_t>(4, static_cast<int64_t>(phys_volume / (45.0 * 45.0 * 45.0)));
  std::vector<float> seeds;
  for (int64_t i = 0; i < cells; ++i) {
    seeds.push_back(static_cast<float>(uni(-margin, w + margin)));
    seeds.push_back(static_cast<float>(uni(-margin, h + margin)));
    seeds.push_back(static_cast<float>(uni(-margin, depth_phys + margin)));
  }
  const at::Tensor seed_t = at::from_blob(seeds.data(), {cells, 3}, f).clone();
  at::Tensor membrane = at::empty({d, h, w}, f);
  for (int64_t z = 0; z < d; ++z) {
    const at::Tensor p = at::stack({xs[z], ys[z], zs[z]}, -1).view({h * w, 1, 3});
    const at::Tensor dist = (p - seed_t.view({1, cells, 3})).pow(2).sum(-1).sqrt();  // (hw, cells)
    const auto two = std::get<0>(dist.topk(2, 1, /*largest=*/false));
    const at::Tensor gap = (two.select(1, 1) - two.select(1, 0)).view({h, w});  // ≈ 2 · distance to the cell wall
    membrane[z] = at::exp(-(gap / 2.2).pow(2));
  }

  // Cytoplasm with slow variation and small dark vesicles.
  at::Tensor img = 0.64 + 0.05 * smooth_field(o.size, 24, gen) - 0.40 * membrane;
  const int64_t vesicles = static_cast<int64_t>(h * w * std::max<int64_t>(d, 1) / 900);
  for (int64_t i = 0; i < vesicles; ++i) {
    const double cx = uni(0, w), cy = uni(0, h), cz = uni(0, depth_phys), r = uni(1.5, 3.5);
    const int64_t y0 = std::max<int64_t>(0, static_cast<int64_t>(cy - 2 * r)), y1 = std::min<int64_t>(h, static_cast<int64_t>(cy + 2 * r) + 1);
    const int64_t x0 = std::max<int64_t>(0, static_cast<int64_t>(cx - 2 * r)), x1 = std::min<int64_t>(w, static_cast<int64_t>(cx + 2 * r) + 1);
    const int64_t z0 = std::max<int64_t>(0, static_cast<int64_t>((cz - 2 * r) / o.anisotropy)),
                  z1 = std::min<int64_t>(d, static_cast<int64_t>((cz + 2 * r) / o.anisotropy) + 1);
    if (y0 >= y1 || x0 >= x1 || z0 >= z1) continue;
    auto box = [&](const at::Tensor& t) { return t.slice(0, z0, z1).slice(1, y0, y1).slice(2, x0, x1); };
    const at::Tensor rr = ((box(xs) - cx).pow(2) + (box(ys) - cy).pow(2) + (box(zs) - cz).pow(2)).sqrt();
    box(img).sub_(0.18 * at::exp(-((rr - r) / 0.9).pow(2)));
  }

  // Mitochondria: elongated ellipsoids, label 1.
  at::Tensor label = at::zeros({d, h, w}, at::kByte);
  const int64_t mitos = o.mitochondria > 0 ? o.mitochondria : std::max<int64_t>(2, h * w / 2500);
  for (int64_t i = 0; i < mitos; ++i) {
    const double half_len = uni(10, 26), half_wid = uni(5, 9), half_z = uni(12, 40);
    const double cx = uni(half_wid, w - half_wid), cy = uni(half_wid, h - half_wid), cz = uni(0, depth_phys);
    const double th = uni(0, kPi), period = uni(4.5, 7.0), phase = uni(0, 2 * kPi);
    const double reach = half_len + 3;
    const int64_t y0 = std::max<int64_t>(0, static_cast<int64_t>(cy - reach)), y1 = std::min<int64_t>(h, static_cast<int64_t>(cy + reach) + 1);
    const int64_t x0 = std::max<int64_t>(0, static_cast<int64_t>(cx - reach)), x1 = std::min<int64_t>(w, static_cast<int64_t>(cx + reach) + 1);
    const int64_t z0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor((cz - half_z - 3) / o.anisotropy))),
                  z1 = std::min<int64_t>(d, static_cast<int64_t>(std::ceil((cz + half_z + 3) / o.anisotropy)) + 1);
    if (y0 >= y1 || x0 >= x1 || z0 >= z1) continue;
    auto box = [&](const at::Tensor& t) { return t.slice(0, z0, z1).slice(1, y0, y1).slice(2, x0, x1); };
    const at::Tensor dx = box(xs) - cx, dy = box(ys) - cy, dz = box(zs) - cz;
    const at::Tensor u = dx * std::cos(th) + dy * std::sin(th), v = -dx * std::sin(th) + dy * std::cos(th);
    const at::Tensor rho = ((u / half_len).pow(2) + (v / half_wid).pow(2) + (dz / half_z).pow(2)).sqrt();
    const at::Tensor inside = rho <= 1.0;
    // Distance to the surface in pixels, approximately (1 - rho) · the short semi-axis.
    const at::Tensor depth_px = (1.0 - rho) * half_wid;
    const at::Tensor cristae = 0.5 + 0.5 * at::cos(2 * kPi * u / period + phase);
    const at::Tensor matrix = 0.44 - 0.14 * cristae * (depth_px > 1.5).to(at::kFloat);
    const at::Tensor outer = at::exp(-((depth_px - 0.6) / 0.9).pow(2));  // dark double membrane at the surface
    at::Tensor region = box(img);
    region.copy_(at::where(inside, matrix - 0.22 * outer, region - 0.22 * outer * (rho < 1.15).to(at::kFloat)));
    box(label).masked_fill_(inside, 1);
  }

  // Imaging: in-plane blur (sigma 1 px), per-slice brightness drift, noise, uint8.
  const at::Tensor k1 = at::exp(-at::arange(-2, 3, f).pow(2) / 2.0);
  const at::Tensor k2 = (k1.view({5, 1}) * k1.view({1, 5}));
  img = at::conv2d(img.unsqueeze(1), (k2 / k2.sum()).view({1, 1, 5, 5}), {}, 1, 2).squeeze(1);
  const double drift_phase = uni(0, 2 * kPi);
  img = img + 0.03 * at::sin(at::arange(d, f) * 0.7 + drift_phase).view({d, 1, 1});
  img = img + o.noise * at::randn({d, h, w}, gen, at::kFloat);
  const at::Tensor u8 = (img.clamp(0, 1) * 255).round().to(at::kByte);

  SynthEmCase c;
  io::Geometry g;
  const double s = o.spacing_nm * 1e-6;  // mm
  g.spacing = {s, s, s * o.anisotropy};
  c.image.data = u8.unsqueeze(0).contiguous();
  c.image.geometry = g;
  c.image.source.dtype = io::DType::UInt8;
  c.labels.data = label.unsqueeze(0).contiguous();
  c.labels.geometry = g;
  c.labels.source.dtype = io::DType::UInt8;
  return c;
}

std::vector<std::pair<std::string, std::string>> write_synth_em(const std::string& dir, int64_t cases, const SynthEmOptions& o) {
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, std::string>> out;
  for (int64_t i = 0; i < cases; ++i) {
    SynthEmOptions oi = o;
    oi.seed = o.seed + static_cast<uint64_t>(i);
    const SynthEmCase c = synth_em(oi);
    char name[32];
    std::snprintf(name, sizeof(name), "em_%03lld", static_cast<long long>(i));
    const std::string img = (std::filesystem::path(dir) / (std::string(name) + "_img.nii.gz")).string();
    const std::string seg = (std::filesystem::path(dir) / (std::string(name) + "_seg.nii.gz")).string();
    io::write_volume(c.image, img);
    io::write_volume(c.labels, seg);
    out.emplace_back(img, seg);
  }
  return out;
}

}  // namespace neuroseg::pipelines
