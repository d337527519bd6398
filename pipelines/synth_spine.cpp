#include "pipelines/synth_spine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "io/atomic_output.h"
#include "io/error.h"
#include "io/volume_io.h"
#include "pipelines/synth_random.h"

namespace fs = std::filesystem;

namespace neuroseg::pipelines {
namespace {

using synth::Rng;
constexpr double kPi = 3.14159265358979323846;

// Tissues with their own MR contrast. The image is a sum over three sub-slices of the
// thick sagittal slice (partial volume), each classified into one tissue.
enum Tissue : uint8_t { Air, Fat, Muscle, Soft, Vessel, Marrow, Cortex, PosteriorBone, Annulus, Nucleus, Csf, Cord, kTissues };

// Relative signal (T1, T2) of each tissue at 1.5-3 T spin echo, roughly: fatty marrow and fat
// bright on T1; water (CSF, healthy disc nucleus) bright on T2; cortical bone, air and
// flowing blood dark on both.
constexpr float kT1[kTissues] = {0.0f, 0.95f, 0.33f, 0.42f, 0.08f, 0.80f, 0.10f, 0.50f, 0.30f, 0.38f, 0.12f, 0.45f};
constexpr float kT2[kTissues] = {0.0f, 0.78f, 0.20f, 0.40f, 0.12f, 0.48f, 0.08f, 0.30f, 0.22f, 0.92f, 0.95f, 0.42f};

/// One bone element along the spine: the sacrum (label 0, unlabelled in SPIDER) or a
/// vertebra (label = its number from the bottom). Local frame: a = left-right, b = towards
/// posterior, c = towards superior, tilted in the sagittal plane by the lordosis.
struct Level {
  double w = 0, v = 0;            // centre in the spine frame (mm): w superior, v posterior
  double cos_t = 1, sin_t = 0;    // sagittal tilt
  double A = 22, B = 17, C = 13;  // half width (LR), half depth (AP), half height (SI) of the body
  int label = 0;                  // 0 = sacrum
  double texture = 1.0;           // marrow signal factor of this level
  double degeneration = 0.0;      // of the disc below it: darkens the nucleus on T2, thins the disc
  void local(double u, double v_, double w_, double& a, double& b, double& c) const {
    const double dv = v_ - v, dw = w_ - w;
    a = u;
    b = cos_t * dv - sin_t * dw;
    c = sin_t * dv + cos_t * dw;
  }
};

struct Point {
  uint8_t label = 0;
  uint8_t tissue = Soft;
  int8_t level = -1;  // the level whose texture/degeneration applies
};

/// The anatomy of one case in the spine frame (mm; u = LPS x - x0 (left), v = LPS y - y0
/// (posterior), w = LPS z - z0 (superior)).
struct SpineAnatomy {
  std::vector<Level> levels;  // sacrum first, then vertebrae bottom-up
  double kappa = 0, w_mid = 0, phi_extra = 0;
  double B_avg = 17, canal_off = 0, R_lr = 11, R_ap = 7.5, w_conus = 0, r_cord = 4;
  double skin = 110, fat = 20, aorta_u = 14, aorta_r = 9;
  double tex_phase[3] = {0, 0, 0};

  double v_centre(double w) const { return kappa * (w - w_mid) * (w - w_mid); }
  double tilt(double w) const { return std::atan(2.0 * kappa * (w - w_mid)); }

  Point classify(double u, double v, double w) const {
    Point p;
    const double vc = v_centre(w);
    // Bone bodies and posterior elements of the levels near w.
    for (std::size_t i = 0; i < levels.size(); ++i) {
      const Level& L = levels[i];
      if (std::abs(w - L.w) > L.C + 48) continue;
      double a, b, c;
      L.local(u, v, w, a, b, c);
      const double r2 = (a / L.A) * (a / L.A) + (b / L.B) * (b / L.B);
      // Body: elliptic cross-section with a flat posterior wall, concave endplates.
      if (r2 <= 1.0 && b <= 0.8 * L.B && std::abs(c) <= L.C * (1.0 - 0.05 * (1.0 - r2))) {
        p.label = static_cast<uint8_t>(L.label);
        const bool shell = r2 > (1.0 - 1.4 / L.B) * (1.0 - 1.4 / L.B) || b > 0.8 * L.B - 1.2 ||
                           std::abs(c) > L.C * (1.0 - 0.05 * (1.0 - r2)) - 1.2;
        p.tissue = shell ? Cortex : Marrow;
        p.level = static_cast<int8_t>(i);
        return p;
      }
      if (L.label == 0) continue;  // the sacrum's posterior part is left out
      // Posterior arch: pedicles beside the canal, the lamina behind it, the spinous
      // process slanting down and back.
      const double front = 0.8 * B_avg, back = front + 1.5 + 2 * R_ap;
      const bool pedicle = std::abs(a) >= R_lr + 0.5 && std::abs(a) <= R_lr + 7.5 && b > front - 1 && b <= back &&
                           std::abs(c - 0.2 * L.C) <= 0.35 * L.C;
      const bool lamina = std::abs(a) <= R_lr + 7.5 && b > back && b <= back + 6 && std::abs(c) <= 0.55 * L.C;
      const double along = b - back - 6;
      const bool spinous = std::abs(a) <= 3.0 && along > 0 && along <= 30 && c <= 0.25 * L.C - 0.35 * along &&
                           c >= -0.45 * L.C - 0.35 * along;
      if (pedicle || lamina || spinous) {
        p.label = static_cast<uint8_t>(L.label);
        p.tissue = PosteriorBone;
        p.level = static_cast<int8_t>(i);
        return p;
      }
    }
    // Discs between consecutive levels: above the lower endplate, below the upper one.
    for (std::size_t i = 0; i + 1 < levels.size(); ++i) {
      const Level &lo = levels[i], &hi = levels[i + 1];
      if (w < lo.w - lo.C - 20 || w > hi.w + 20) continue;
      double a0, b0, c0, a1, b1, c1;
      lo.local(u, v, w, a0, b0, c0);
      hi.local(u, v, w, a1, b1, c1);
      const double A = 0.52 * (lo.A + hi.A), B = 0.52 * (lo.B + hi.B), b = 0.5 * (b0 + b1);
      const double r2 = (a0 / A) * (a0 / A) + (b / B) * (b / B);
      if (r2 > 1.0 || b > 0.84 * B) continue;
      const double below = c0 - lo.C * (1.0 - 0.05 * (1.0 - r2));  // > 0 above the lower endplate
      const double above = -hi.C * (1.0 - 0.05 * (1.0 - r2)) - c1;  // > 0 below the upper endplate
      if (below < 0 || above < 0) continue;
      p.label = static_cast<uint8_t>(200 + hi.label);
      const double f = below / std::max(1e-6, below + above);
      const double bn = b + 0.08 * B;  // the nucleus sits slightly posterior
      const bool nucleus = std::abs(f - 0.5) < 0.3 && (a0 / (0.55 * A)) * (a0 / (0.55 * A)) + (bn / (0.5 * B)) * (bn / (0.5 * B)) <= 1.0;
      p.tissue = nucleus ? Nucleus : Annulus;
      p.level = static_cast<int8_t>(i + 1);
      return p;
    }
    // Spinal canal (CSF, the cord above the conus), ringed by epidural fat.
    const double phi = tilt(w), cv = vc + canal_off / std::cos(phi);
    const double dv = (v - cv) * std::cos(phi);
    const double q = (u / R_lr) * (u / R_lr) + (dv / R_ap) * (dv / R_ap);
    const double w_bottom = levels.front().w + levels.front().C - 25;  // the canal enters the sacrum
    if (q <= 1.0 && w > w_bottom) {
      p.label = 100;
      p.tissue = (w > w_conus && u * u + dv * dv <= r_cord * r_cord) ? Cord : Csf;
      return p;
    }
    if (q <= 1.6 && w > w_bottom) {
      p.tissue = Fat;
      return p;
    }
    // Soft tissues by the distance behind the vertebral centreline.
    const double behind = v - vc;
    const double av = vc - B_avg - 16;
    if (((u - aorta_u) / aorta_r) * ((u - aorta_u) / aorta_r) + ((v - av) / aorta_r) * ((v - av) / aorta_r) <= 1.0) {
      p.tissue = Vessel;
      return p;
    }
    if (behind > skin) p.tissue = Air;
    else if (behind > skin - fat) p.tissue = Fat;
    else if (behind > canal_off + R_ap + 2) p.tissue = Muscle;
    else p.tissue = Soft;
    return p;
  }
};

/// Draws an anatomy whose field of view [w_lo, w_hi] holds 5-7 complete vertebrae.
SpineAnatomy draw_anatomy(Rng& rng, double w_lo, double w_hi) {
  SpineAnatomy an;
  for (int attempt = 0;; ++attempt) {
    an = SpineAnatomy();
    an.B_avg = rng.uniform(15, 19);
    an.R_lr = rng.uniform(9.5, 12.5);
    an.R_ap = rng.uniform(6.5, 8.5);
    an.canal_off = 0.8 * an.B_avg + 1.5 + an.R_ap;
    // Sacrum top (S1 endplate) a little above the bottom of the field of view.
    const double sacrum_top = w_lo + rng.uniform(22, 48);
    an.w_mid = sacrum_top + rng.uniform(80, 110);  // the lordosis peaks near L3
    an.kappa = rng.uniform(6, 12) / (100.0 * 100.0);  // 6-12 mm anterior bulge over 10 cm
    // The sacrum: a long body steeply tilted (sacral slope), its top endplate at sacrum_top.
    Level s;
    s.A = rng.uniform(20, 25), s.B = an.B_avg * rng.uniform(0.95, 1.05), s.C = 35;
    // (tilt < 0 below the lordosis apex: going up leads anteriorly; the sacrum is steeper.)
    const double slope = an.tilt(sacrum_top) - rng.uniform(25, 40) * kPi / 180.0;
    s.cos_t = std::cos(slope), s.sin_t = std::sin(slope);
    s.w = sacrum_top - s.C * s.cos_t;
    s.v = an.v_centre(sacrum_top) - s.C * s.sin_t;
    s.texture = rng.uniform(0.9, 1.1);
    an.levels.push_back(s);
    double w = sacrum_top;
    for (int k = 1; k <= 9 && w < w_hi + 60; ++k) {  // L5 upwards until past the field of view
      Level L;
      L.label = k;
      L.A = rng.uniform(19, 25) - 0.3 * k;
      L.B = an.B_avg * rng.uniform(0.95, 1.05) - 0.2 * k;
      L.C = rng.uniform(11, 14.5) - 0.15 * k;
      L.degeneration = rng.chance(0.35) ? rng.uniform(0.3, 1.0) : rng.uniform(0.0, 0.15);
      const double disc = rng.uniform(8, 12.5) * (1.0 - 0.4 * L.degeneration) - 0.1 * k;
      L.w = w + disc + L.C;
      L.v = an.v_centre(L.w);
      const double t = an.tilt(L.w) + rng.uniform(-3, 3) * kPi / 180.0;
      L.cos_t = std::cos(t), L.sin_t = std::sin(t);
      L.texture = rng.uniform(0.88, 1.12);
      an.levels.push_back(L);
      w = L.w + L.C;
    }
    // Complete = body and arch (which reaches ~25 mm below the body's centre) inside the
    // field of view, with a margin for tilt.
    int complete = 0;
    for (std::size_t i = 1; i < an.levels.size(); ++i)
      complete += an.levels[i].w + an.levels[i].C + 3 < w_hi && an.levels[i].w - an.levels[i].C - 14 > w_lo;
    if ((complete >= 5 && complete <= 7) || attempt > 200) break;
  }
  // The cord ends (conus) around L1/L2; the canal below holds CSF (and nerve roots).
  an.w_conus = an.levels.size() > 5 ? an.levels[5].w - an.levels[5].C - 5 + rng.uniform(-8, 8) : 1e9;
  an.r_cord = rng.uniform(3.5, 5);
  an.skin = an.canal_off + rng.uniform(70, 100);
  an.fat = rng.uniform(8, 30);
  an.aorta_u = rng.uniform(8, 18);
  an.aorta_r = rng.uniform(8, 11);
  for (double& ph : an.tex_phase) ph = rng.uniform(0, 2 * kPi);
  return an;
}

/// Per-contrast appearance: tissue signal jitter, scanner scale, bias field, noise.
struct Contrast {
  float signal[kTissues];
  double scale, noise, coil_depth, bias_amp, bias_freq, bias_phase;
  uint64_t noise_seed;
};

Contrast draw_contrast(Rng& rng, const float (&table)[kTissues], uint64_t noise_seed) {
  Contrast c;
  for (int t = 0; t < kTissues; ++t) c.signal[t] = static_cast<float>(table[t] * rng.uniform(0.9, 1.1));
  c.scale = rng.uniform(900, 1500);
  c.noise = rng.uniform(0.015, 0.035);
  c.coil_depth = rng.uniform(70, 140);  // posterior receive coil: signal falls off anteriorly
  c.bias_amp = rng.uniform(0.05, 0.2);
  c.bias_freq = rng.uniform(0.008, 0.02);
  c.bias_phase = rng.uniform(0, 2 * kPi);
  c.noise_seed = noise_seed;
  return c;
}

}  // namespace

SpineCase synth_spine_case(const SpineSynthOptions& o, int64_t index) {
  const int64_t nx = o.size[0], ny = o.size[1], nz = o.size[2];
  const double sx = o.spacing[0], sy = o.spacing[1], sz = o.spacing[2];
  Rng rng(synth::substream(o.seed, static_cast<uint64_t>(index), 11));
  Rng rng_t1(synth::substream(o.seed, static_cast<uint64_t>(index), 12));
  Rng rng_t2(synth::substream(o.seed, static_cast<uint64_t>(index), 13));

  // Grid: index x -> patient right, y -> posterior, z -> inferior (a proper rotation, as
  // scanners write sagittal series), tilted about left-right by a few degrees.
  const double theta = rng.uniform(-6, 6) * kPi / 180.0, ct = std::cos(theta), st = std::sin(theta);
  const std::array<double, 3> ex{-1, 0, 0}, ey{0, ct, st}, ez{0, st, -ct};
  io::Geometry g;
  g.spacing = o.spacing;
  for (int r = 0; r < 3; ++r) g.direction[r * 3 + 0] = ex[r], g.direction[r * 3 + 1] = ey[r], g.direction[r * 3 + 2] = ez[r];
  // The spine frame's origin in LPS (a scanner's table position) and the field of view's
  // centre in that frame: slab near the midline, a little behind the vertebral bodies.
  const std::array<double, 3> frame{rng.uniform(-10, 10), rng.uniform(-40, 10), rng.uniform(-120, -40)};
  const double fov_si = nz * sz * std::abs(ct), u_c = rng.uniform(-4, 4), v_c = rng.uniform(15, 35), w_c = 0.0;
  const std::array<double, 3> centre{frame[0] + u_c, frame[1] + v_c, frame[2] + w_c};
  for (int r = 0; r < 3; ++r)
    g.origin[r] = centre[r] - (ex[r] * sx * (nx - 1) + ey[r] * sy * (ny - 1) + ez[r] * sz * (nz - 1)) / 2.0;
  const SpineAnatomy an = draw_anatomy(rng, w_c - fov_si / 2, w_c + fov_si / 2);
  const Contrast c1 = draw_contrast(rng_t1, kT1, synth::substream(o.seed, static_cast<uint64_t>(index), 14));
  const Contrast c2 = draw_contrast(rng_t2, kT2, synth::substream(o.seed, static_cast<uint64_t>(index), 15));

  at::Tensor mask = at::empty({1, nz, ny, nx}, at::kByte);
  at::Tensor t1 = at::empty({1, nz, ny, nx}, at::kInt), t2 = at::empty({1, nz, ny, nx}, at::kInt);
  uint8_t* m = mask.data_ptr<uint8_t>();
  int32_t *p1 = t1.data_ptr<int32_t>(), *p2 = t2.data_ptr<int32_t>();
  const int64_t plane = ny * nx;

  at::parallel_for(0, nz, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k)
      for (int64_t j = 0; j < ny; ++j)
        for (int64_t i = 0; i < nx; ++i) {
          const int64_t gidx = k * plane + j * nx + i;
          float s1 = 0.f, s2 = 0.f;
          double v_mid = 0, w_mid = 0;
          // Three sub-slices across the thick slice: partial volume along left-right.
          for (int sub = -1; sub <= 1; ++sub) {
            const double fi = i + sub / 3.0;
            double pt[3];
            for (int r = 0; r < 3; ++r) pt[r] = g.origin[r] + ex[r] * sx * fi + ey[r] * sy * j + ez[r] * sz * k - frame[r];
            const Point p = an.classify(pt[0], pt[1], pt[2]);
            if (sub == 0) m[gidx] = p.label, v_mid = pt[1], w_mid = pt[2];
            float tex = 1.f;
            if (p.tissue == Marrow || p.tissue == PosteriorBone) {
              tex = static_cast<float>(an.levels[static_cast<std::size_t>(p.level)].texture *
                                       (1.0 + 0.07 * std::sin(0.21 * pt[0] + an.tex_phase[0]) * std::sin(0.17 * pt[1] + an.tex_phase[1]) *
                                                  std::sin(0.19 * pt[2] + an.tex_phase[2])));
            } else if (p.tissue == Soft || p.tissue == Muscle) {
              tex = static_cast<float>(1.0 + 0.1 * std::sin(0.11 * pt[0] + an.tex_phase[1]) * std::sin(0.13 * pt[2] + an.tex_phase[0]));
            }
            float n2 = c2.signal[p.tissue];
            if (p.tissue == Nucleus) n2 *= static_cast<float>(1.0 - 0.65 * an.levels[static_cast<std::size_t>(p.level)].degeneration);
            s1 += c1.signal[p.tissue] * tex;
            s2 += n2 * tex;
          }
          s1 /= 3.f, s2 /= 3.f;
          // Bias: posterior receive coil (exponential fall-off with depth from the back)
          // times a slow superior-inferior ripple; then Rician noise (magnitude images).
          const double depth = std::max(0.0, an.v_centre(w_mid) + an.skin - v_mid);
          auto finish = [&](float s, const Contrast& c, int32_t* out) {
            const double bias = (0.45 + 0.75 * std::exp(-depth / c.coil_depth)) * (1.0 + c.bias_amp * std::sin(2 * kPi * c.bias_freq * w_mid + c.bias_phase));
            const double sig = s * bias, sd = c.noise;
            const double re = sig + sd * synth::hash_normal(synth::mix64(c.noise_seed + 2 * static_cast<uint64_t>(gidx)));
            const double im = sd * synth::hash_normal(synth::mix64(c.noise_seed + 2 * static_cast<uint64_t>(gidx) + 1));
            out[gidx] = static_cast<int32_t>(std::clamp(std::lround(std::sqrt(re * re + im * im) * c.scale), 0L, 65535L));
          };
          finish(s1, c1, p1);
          finish(s2, c2, p2);
        }
  });

  // Vertebrae cut by the field of view (touching its first or last SI plane) become 100 + k.
  std::set<int> cut, present;
  for (int64_t k : {int64_t{0}, nz - 1})
    for (int64_t q = 0; q < plane; ++q) {
      const int l = m[k * plane + q];
      if (l >= 1 && l < 100) cut.insert(l);
    }
  const int64_t voxels = nz * plane;
  for (int64_t q = 0; q < voxels; ++q) {
    uint8_t& l = m[q];
    if (l >= 1 && l < 100 && cut.count(l)) l = static_cast<uint8_t>(100 + l);
    if (l) present.insert(l);
  }

  SpineCase out;
  out.id = std::to_string(index + 1);
  for (int l : present) {
    out.complete_vertebrae += l >= 1 && l < 100;
    out.partial_vertebra = out.partial_vertebra || (l > 100 && l < 200);
    out.discs += l > 200;
  }
  auto volume = [&](const at::Tensor& data, io::DType dtype) {
    io::Volume v;
    v.data = data;
    v.geometry = g;
    v.source.dtype = dtype;
    v.source.format = "metaimage";
    return v;
  };
  out.t1 = volume(t1, io::DType::UInt16);
  out.t2 = volume(t2, io::DType::UInt16);
  out.mask = volume(mask, io::DType::UInt8);
  return out;
}

void synth_spine(const std::string& out_dir, int64_t n, const SpineSynthOptions& o) {
  if (n < 1 || n > 100000) throw io::Error("--n", "must be between 1 and 100000 (got " + std::to_string(n) + ")");
  if (o.contrast != "t1" && o.contrast != "t2" && o.contrast != "both")
    throw io::Error("--contrast", "must be t1, t2 or both (got '" + o.contrast + "')");
  for (int d = 0; d < 3; ++d) {
    if (o.size[d] < (d == 0 ? 3 : 16) || o.size[d] > 2048)
      throw io::Error("--size", "sizes must be 3..2048 slices (x) and 16..2048 voxels (y, z)");
    if (!(o.spacing[d] > 0.05 && o.spacing[d] < 20)) throw io::Error("--spacing", "spacings must be between 0.05 and 20 mm");
  }
  const double fov_si = o.size[2] * o.spacing[2], fov_ap = o.size[1] * o.spacing[1];
  if (fov_si < 200 || fov_si > 400 || fov_ap < 120)
    throw io::Error("--size/--spacing", "the field of view must span 200-400 mm superior-inferior (z) and >= 120 mm "
                                        "anterior-posterior (y) to hold 5-7 lumbar vertebrae (got " +
                                            std::to_string(static_cast<int>(fov_si)) + " x " + std::to_string(static_cast<int>(fov_ap)) + " mm)");
  std::error_code ec;
  if (fs::exists(out_dir, ec) && !fs::is_directory(out_dir, ec)) throw io::Error(out_dir, "exists and is not a folder");
  const bool existed = fs::exists(out_dir, ec);
  std::vector<std::string> contrasts;
  if (o.contrast != "t2") contrasts.push_back("t1");
  if (o.contrast != "t1") contrasts.push_back("t2");
  try {
    // synth_spine.csv is the named output; images/ and masks/ are filled in the same
    // temporary folder and their files moved one by one into out_dir at the end (existing
    // folders keep their other files).
    io::AtomicOutput output((fs::path(out_dir) / "synth_spine.csv").string());
    const fs::path temp = fs::path(output.path()).parent_path();
    std::string csv = "case,contrast,image,mask,complete_vertebrae,partial_vertebra,discs,size_x,size_y,size_z,spacing_x,spacing_y,spacing_z\n";
    io::WriteOptions wo;
    for (int64_t i = 0; i < n; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const SpineCase sc = synth_spine_case(o, i);
      for (const auto& contrast : contrasts) {
        const std::string stem = sc.id + "_" + contrast + ".mha";
        io::write_volume(contrast == "t1" ? sc.t1 : sc.t2, (temp / "images" / stem).string(), wo);
        io::write_volume(sc.mask, (temp / "masks" / stem).string(), wo);
        char row[512];
        std::snprintf(row, sizeof(row), "%s,%s,images/%s,masks/%s,%lld,%d,%lld,%lld,%lld,%lld,%g,%g,%g\n", sc.id.c_str(),
                      contrast.c_str(), stem.c_str(), stem.c_str(), static_cast<long long>(sc.complete_vertebrae),
                      sc.partial_vertebra ? 1 : 0, static_cast<long long>(sc.discs), static_cast<long long>(o.size[0]),
                      static_cast<long long>(o.size[1]), static_cast<long long>(o.size[2]), o.spacing[0], o.spacing[1], o.spacing[2]);
        csv += row;
      }
      std::printf("case %s: %lld vertebrae%s, %lld discs, canal; %s in %.2f s\n", sc.id.c_str(),
                  static_cast<long long>(sc.complete_vertebrae), sc.partial_vertebra ? " + 1 cut by the field of view" : "",
                  static_cast<long long>(sc.discs), o.contrast == "both" ? "T1 + T2" : o.contrast.c_str(),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      std::fflush(stdout);
    }
    io::write_text(output.path(), csv);
    for (const char* sub : {"images", "masks"}) {
      fs::create_directories(fs::path(out_dir) / sub, ec);
      if (ec) throw io::Error((fs::path(out_dir) / sub).string(), "cannot create folder (" + ec.message() + ")");
      for (const auto& entry : fs::directory_iterator(temp / sub)) {
        fs::rename(entry.path(), fs::path(out_dir) / sub / entry.path().filename(), ec);
        if (ec) throw io::Error((fs::path(out_dir) / sub / entry.path().filename()).string(), "cannot move output into place (" + ec.message() + ")");
      }
      fs::remove(temp / sub, ec);
    }
    output.commit();
  } catch (...) {
    if (!existed) fs::remove(out_dir, ec);  // only removes it if empty: what we created
    throw;
  }
}

}  // namespace neuroseg::pipelines
