#include "pipelines/synth_fisbe.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "io/atomic_output.h"
#include "io/error.h"
#include "io/volume_io.h"
#include "pipelines/synth_random.h"

namespace fs = std::filesystem;

namespace neuroseg::pipelines {
namespace {

using synth::Rng;
using V3 = std::array<double, 3>;  // (z, y, x) in voxels

V3 add(const V3& a, const V3& b) { return {a[0] + b[0], a[1] + b[1], a[2] + b[2]}; }
V3 sub(const V3& a, const V3& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }
V3 scale(const V3& a, double s) { return {a[0] * s, a[1] * s, a[2] * s}; }
double norm(const V3& a) { return std::sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]); }
V3 unit(const V3& a) {
  const double n = norm(a);
  return n > 1e-12 ? scale(a, 1.0 / n) : V3{0, 0, 1};
}
V3 random_unit(Rng& rng) { return unit({rng.normal(), rng.normal(), rng.normal()}); }

// The voxel profile of a tube is stored per neuron as one byte: the neuron's smallest
// normalised distance t = d / r over its tubes (d = distance to the tube's axis, r = its
// radius there). v >= 128 <=> t <= 1 (inside: the GT mask), 1..127 the soft halo out to
// t = kOuter that carries the partial-volume blur into the raw image, 0 = not near.
// Taking the max of v over tubes = the min of t: joints of one neuron do not double up.
constexpr float kOuter = 2.2f;
inline uint8_t encode_t(float t) {
  if (t <= 1.f) return static_cast<uint8_t>(255 - static_cast<int>(127.f * t + 0.5f));
  if (t >= kOuter) return 0;
  return static_cast<uint8_t>(127 - static_cast<int>(126.f * (t - 1.f) / (kOuter - 1.f) + 0.5f));
}
inline float decode_t(int v) {
  return v >= 128 ? (255 - v) / 127.f : 1.f + (127 - v) * (kOuter - 1.f) / 126.f;
}
// Brightness across a tube: slightly brighter on the axis, falling off smoothly past the
// membrane (a Gaussian halo ~ the optical blur), continuous at t = 1.
inline float profile_of_t(float t) {
  return t <= 1.f ? 1.f - 0.25f * t * t : 0.75f * std::exp(-0.5f * ((t - 1.f) / 0.4f) * ((t - 1.f) / 0.4f));
}

struct Capsule {
  float a[3], b[3];  // axis end points (z, y, x), voxels
  float ra, rb;      // radius at a and at b, voxels
  int32_t channel;   // buffer channel of its neuron
  int64_t lo[3], hi[3];  // inclusive voxel box of its halo, clipped to the volume
};

/// The anatomy of one sample: tapered tubes of every neuron, in generation order.
struct Anatomy {
  std::vector<Capsule> capsules;
  int64_t neurons = 0;
};

class NeuronBuilder {
 public:
  NeuronBuilder(const std::array<int64_t, 3>& shape, Rng& rng) : shape_(shape), rng_(rng) {
    scale_ = std::cbrt(static_cast<double>(shape[0]) * shape[1] * shape[2]);
  }
  double size_scale() const { return scale_; }

  /// A point uniformly inside the fraction [lo, hi] of every axis.
  V3 random_point(double lo, double hi) {
    V3 p;
    for (int d = 0; d < 3; ++d) p[d] = rng_.uniform(lo, hi) * (shape_[d] - 1);
    return p;
  }

  /// Smooth random walk of up to `steps` steps of kStep voxels from p along dir: the
  /// direction keeps momentum, turns by `jitter`, is pulled towards `target` when farther
  /// than `free_radius` from it, and reflects off the walls. Stops early within
  /// `stop_radius` of the target. Returns the points, p first.
  std::vector<V3> walk(V3 p, V3 dir, int64_t steps, double jitter, const V3* target, double pull, double free_radius,
                       double stop_radius) {
    std::vector<V3> pts{p};
    dir = unit(dir);
    const double margin = 1.5;
    for (int64_t i = 0; i < steps; ++i) {
      V3 turn = scale(random_unit(rng_), jitter);
      if (target) {
        const V3 to = sub(*target, p);
        const double dist = norm(to);
        if (dist < stop_radius) break;
        if (dist > free_radius) turn = add(turn, scale(unit(to), pull));
      }
      dir = unit(add(dir, turn));
      V3 next = add(p, scale(dir, kStep));
      for (int d = 0; d < 3; ++d) {
        const double hi = shape_[d] - 1 - margin;
        if (next[d] < margin || next[d] > hi) {
          dir[d] = -dir[d];
          next[d] = std::clamp(p[d] + dir[d] * kStep, std::min(margin, hi), std::max(margin, hi));
        }
      }
      p = next;
      pts.push_back(p);
    }
    return pts;
  }

  /// Tubes along a polyline, radius tapering r0 -> r1 with gentle beading (varicosities).
  void tubes(const std::vector<V3>& pts, double r0, double r1, int32_t channel, std::vector<Capsule>& out) {
    if (pts.size() < 2) return;
    const double phase = rng_.uniform(0, 6.283), freq = rng_.uniform(0.25, 0.6), bead = rng_.uniform(0.0, 0.2);
    auto radius = [&](std::size_t i) {
      const double f = static_cast<double>(i) / (pts.size() - 1);
      return std::clamp((r0 + (r1 - r0) * f) * (1.0 + bead * std::sin(phase + freq * i)), 1.0, 3.0);
    };
    for (std::size_t i = 0; i + 1 < pts.size(); ++i) out.push_back(capsule(pts[i], pts[i + 1], radius(i), radius(i + 1), channel));
  }

  Capsule capsule(const V3& a, const V3& b, double ra, double rb, int32_t channel) const {
    Capsule c;
    for (int d = 0; d < 3; ++d) c.a[d] = static_cast<float>(a[d]), c.b[d] = static_cast<float>(b[d]);
    c.ra = static_cast<float>(ra), c.rb = static_cast<float>(rb), c.channel = channel;
    const double reach = std::max(ra, rb) * kOuter + 0.5;
    for (int d = 0; d < 3; ++d) {
      c.lo[d] = std::max<int64_t>(0, static_cast<int64_t>(std::floor(std::min(a[d], b[d]) - reach)));
      c.hi[d] = std::min<int64_t>(shape_[d] - 1, static_cast<int64_t>(std::ceil(std::max(a[d], b[d]) + reach)));
    }
    return c;
  }

  static constexpr double kStep = 1.5;  // voxels per walk step (< the thinnest diameter: no gaps)

 private:
  std::array<int64_t, 3> shape_;
  Rng& rng_;
  double scale_;
};

struct Hub {
  V3 centre;
  double radius;
};

/// Builds the neurons of a sample. `channel_of[k]` = buffer channel of neuron k.
Anatomy build_anatomy(const std::array<int64_t, 3>& shape, Rng& rng, int64_t neurons, const std::vector<int32_t>& channel_of) {
  NeuronBuilder nb(shape, rng);
  const double L = nb.size_scale(), step = NeuronBuilder::kStep;
  // Neuropil regions shared by several neurons: their arbors interweave (and overlap) there.
  std::vector<Hub> hubs(static_cast<std::size_t>(rng.integer(2, 4)));
  for (auto& h : hubs) h = {nb.random_point(0.22, 0.78), std::max(4.0, rng.uniform(0.08, 0.16) * L)};
  Anatomy an;
  an.neurons = neurons;
  std::vector<std::vector<V3>> trunks;
  for (int64_t k = 0; k < neurons; ++k) {
    const int32_t ch = channel_of[static_cast<std::size_t>(k)];
    std::vector<Capsule>& out = an.capsules;
    const std::size_t h0 = static_cast<std::size_t>(rng.integer(0, static_cast<int64_t>(hubs.size()) - 1));
    const Hub& hub = hubs[h0];
    const double r_trunk = rng.uniform(1.6, 3.0), r_end = rng.uniform(1.1, 1.6);
    std::vector<V3> trunk;
    V3 soma;
    if (k > 0 && rng.chance(0.3)) {
      // Fasciculation: run alongside an earlier neuron's primary neurite for a while (these
      // bundles are where GT channels overlap over long stretches), then head for own hub.
      const auto& other = trunks[static_cast<std::size_t>(rng.integer(0, k - 1))];
      const std::size_t n_follow = std::max<std::size_t>(2, static_cast<std::size_t>(other.size() * rng.uniform(0.4, 0.9)));
      // (One draw per statement: the order of evaluation of function arguments is
      // unspecified, and the bytes must not depend on the compiler.)
      const V3 offset_dir = random_unit(rng);
      const V3 offset = scale(offset_dir, rng.uniform(1.5, 4.0));
      for (std::size_t i = 0; i < std::min(n_follow, other.size()); ++i) trunk.push_back(add(other[i], offset));
      const V3 soma_dir = random_unit(rng);
      soma = add(trunk.front(), scale(soma_dir, rng.uniform(1.0, 3.0)));
      const V3 dir = trunk.size() >= 2 ? sub(trunk.back(), trunk[trunk.size() - 2]) : random_unit(rng);
      auto rest = nb.walk(trunk.back(), dir, static_cast<int64_t>(2 * L / step), 0.25, &hub.centre, 0.35, 0.0, hub.radius * 0.6);
      trunk.insert(trunk.end(), rest.begin() + 1, rest.end());
    } else {
      soma = nb.random_point(0.06, 0.94);
      trunk = nb.walk(soma, sub(hub.centre, soma), static_cast<int64_t>(3 * L / step), 0.3, &hub.centre, 0.25, 0.0,
                      hub.radius * 0.6);
    }
    trunks.push_back(trunk);
    out.push_back(nb.capsule(soma, soma, rng.uniform(2.5, 4.5), 0, ch));  // cell body
    out.back().rb = out.back().ra;
    nb.tubes({soma, trunk.front()}, r_trunk, r_trunk, ch, out);
    nb.tubes(trunk, r_trunk, r_end, ch, out);

    // Arbors: branches from earlier points of the arbor (a tree), confined to the hub.
    auto arborise = [&](const Hub& h, std::vector<V3> seeds) {
      const int64_t branches = rng.integer(12, 30);
      for (int64_t b = 0; b < branches; ++b) {
        const V3 from = seeds[static_cast<std::size_t>(rng.integer(0, static_cast<int64_t>(seeds.size()) - 1))];
        const int64_t len = std::max<int64_t>(3, static_cast<int64_t>(rng.uniform(0.8, 2.0) * h.radius / step));
        auto br = nb.walk(from, random_unit(rng), len, 0.35, &h.centre, 0.35, h.radius, 0.0);
        nb.tubes(br, rng.uniform(1.1, 1.6), 1.0, ch, out);
        seeds.insert(seeds.end(), br.begin() + 1, br.end());
      }
    };
    arborise(hub, {trunk.back()});
    // A second target region, reached by a collateral from the trunk.
    if (hubs.size() > 1 && rng.chance(0.5)) {
      std::size_t h1 = static_cast<std::size_t>(rng.integer(0, static_cast<int64_t>(hubs.size()) - 2));
      if (h1 >= h0) ++h1;
      const V3 from = trunk[static_cast<std::size_t>(rng.integer(0, static_cast<int64_t>(trunk.size()) - 1))];
      auto col = nb.walk(from, sub(hubs[h1].centre, from), static_cast<int64_t>(3 * L / step), 0.3, &hubs[h1].centre, 0.25,
                         0.0, hubs[h1].radius * 0.6);
      nb.tubes(col, rng.uniform(1.3, 2.2), 1.2, ch, out);
      arborise(hubs[h1], {col.back()});
    }
    // A few short side branches along the trunk.
    for (int64_t b = rng.integer(0, 3); b > 0; --b) {
      const V3 from = trunk[static_cast<std::size_t>(rng.integer(0, static_cast<int64_t>(trunk.size()) - 1))];
      const V3 dir = random_unit(rng);
      auto br = nb.walk(from, dir, static_cast<int64_t>(rng.uniform(0.05, 0.15) * L / step) + 2, 0.35, nullptr, 0,
                        0, 0);
      nb.tubes(br, rng.uniform(1.0, 1.5), 1.0, ch, out);
    }
  }
  return an;
}

/// Appearance of a sample: per-neuron colour x brightness, background, illumination, noise.
struct Appearance {
  std::vector<std::array<float, 3>> neuron_rgb;  // per buffer channel, counts at profile 1
  std::array<float, 3> offset, autofluorescence;
  float gain, read_noise;
  std::vector<float> illum_z, illum_y, illum_x;  // separable illumination
  std::vector<float> brain_z, brain_y, brain_x;  // separable ellipsoid quadratic form
  std::vector<bool> dim;                         // per buffer channel
};

Appearance draw_appearance(const std::array<int64_t, 3>& shape, Rng& rng, int64_t neurons, const std::vector<int32_t>& channel_of) {
  Appearance ap;
  ap.neuron_rgb.resize(static_cast<std::size_t>(neurons));
  ap.dim.assign(static_cast<std::size_t>(neurons), false);
  std::vector<std::array<float, 3>> colour(static_cast<std::size_t>(neurons));
  for (int64_t k = 0; k < neurons; ++k) {
    auto& c = colour[static_cast<std::size_t>(k)];
    if (k > 0 && rng.chance(0.3)) {
      // MCFO often gives two neurons nearly the same colour (FISBe's hardest cases).
      c = colour[static_cast<std::size_t>(rng.integer(0, k - 1))];
      for (auto& v : c) v = static_cast<float>(std::clamp(v + rng.uniform(-0.1, 0.1), 0.0, 1.0));
    } else {
      const int64_t tags = rng.integer(1, 7);  // which of the three tags the neuron expresses
      for (int ch = 0; ch < 3; ++ch)
        c[static_cast<std::size_t>(ch)] = static_cast<float>((tags >> ch) & 1 ? rng.uniform(0.55, 1.0) : rng.uniform(0.0, 0.08));
    }
    double amplitude = rng.uniform(700, 2100);
    const bool dim = rng.chance(0.2);
    if (dim) amplitude *= rng.uniform(0.12, 0.3);
    const auto ch = static_cast<std::size_t>(channel_of[static_cast<std::size_t>(k)]);
    for (int j = 0; j < 3; ++j) ap.neuron_rgb[ch][static_cast<std::size_t>(j)] = static_cast<float>(amplitude * c[static_cast<std::size_t>(j)]);
    ap.dim[ch] = dim;
  }
  for (int j = 0; j < 3; ++j) {
    ap.offset[static_cast<std::size_t>(j)] = static_cast<float>(rng.uniform(60, 110));
    ap.autofluorescence[static_cast<std::size_t>(j)] = static_cast<float>(rng.uniform(40, 160));
  }
  ap.gain = static_cast<float>(rng.uniform(0.8, 2.0));
  ap.read_noise = static_cast<float>(rng.uniform(6, 14));
  // Illumination: quadratic vignetting in-plane, exponential attenuation with depth.
  auto vignette = [&](int64_t n) {
    std::vector<float> f(static_cast<std::size_t>(n));
    const double c = rng.uniform(0.3, 0.7), a = rng.uniform(0.2, 0.6);
    for (int64_t i = 0; i < n; ++i) {
      const double u = static_cast<double>(i) / std::max<int64_t>(1, n - 1) - c;
      f[static_cast<std::size_t>(i)] = static_cast<float>(1.0 - a * u * u * 2.0);
    }
    return f;
  };
  ap.illum_z.resize(static_cast<std::size_t>(shape[0]));
  const double att = rng.uniform(0.1, 0.6);
  for (int64_t z = 0; z < shape[0]; ++z)
    ap.illum_z[static_cast<std::size_t>(z)] = static_cast<float>(std::exp(-att * z / std::max<int64_t>(1, shape[0] - 1)));
  ap.illum_y = vignette(shape[1]);
  ap.illum_x = vignette(shape[2]);
  // The brain: an ellipsoid of autofluorescent neuropil, sum of per-axis squares.
  auto quad = [&](int64_t n) {
    std::vector<float> q(static_cast<std::size_t>(n));
    const double c = rng.uniform(0.4, 0.6) * (n - 1), a = rng.uniform(0.45, 0.7) * n;
    for (int64_t i = 0; i < n; ++i) q[static_cast<std::size_t>(i)] = static_cast<float>(((i - c) / a) * ((i - c) / a));
    return q;
  };
  ap.brain_z = quad(shape[0]);
  ap.brain_y = quad(shape[1]);
  ap.brain_x = quad(shape[2]);
  return ap;
}

/// Rasterises one capsule into its channel's bytes within z in [z0, z1) and marks the
/// voxels it reaches in `touched` (the slab's (z - z0, y, x) bytes).
void rasterise(const Capsule& c, int64_t z0, int64_t z1, int64_t ny, int64_t nx, uint8_t* channel, uint8_t* touched) {
  const float d[3] = {c.b[0] - c.a[0], c.b[1] - c.a[1], c.b[2] - c.a[2]};
  const float dd = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
  const float inv = dd > 0 ? 1.f / dd : 0.f;
  const float rmax = std::max(c.ra, c.rb) * kOuter;
  for (int64_t z = std::max(c.lo[0], z0); z <= std::min(c.hi[0], z1 - 1); ++z) {
    const float qz = static_cast<float>(z) - c.a[0];
    for (int64_t y = c.lo[1]; y <= c.hi[1]; ++y) {
      const float qy = static_cast<float>(y) - c.a[1];
      uint8_t* row = channel + (z * ny + y) * nx;
      for (int64_t x = c.lo[2]; x <= c.hi[2]; ++x) {
        const float qx = static_cast<float>(x) - c.a[2];
        const float s = std::clamp((qz * d[0] + qy * d[1] + qx * d[2]) * inv, 0.f, 1.f);
        const float ez = qz - s * d[0], ey = qy - s * d[1], ex = qx - s * d[2];
        const float dist2 = ez * ez + ey * ey + ex * ex;
        if (dist2 >= rmax * rmax) continue;
        const float r = c.ra + s * (c.rb - c.ra);
        const uint8_t v = encode_t(std::sqrt(dist2) / r);
        if (v > row[x]) row[x] = v, touched[((z - z0) * ny + y) * nx + x] = 1;
      }
    }
  }
}

}  // namespace

std::string fisbe_sample_name(uint64_t seed, int64_t index) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "synth_s%llu_%03lld", static_cast<unsigned long long>(seed), static_cast<long long>(index));
  return buf;
}

FisbeSample synth_fisbe_sample(const FisbeSynthOptions& o, int64_t index) {
  const auto& shape = o.shape;
  const int64_t nz = shape[0], ny = shape[1], nx = shape[2], plane = ny * nx, voxels = nz * plane;
  // Independent streams: anatomy + appearance, which neurons are labelled (partly), noise.
  // The partly choice has its own stream, so raw is the same with and without --partly.
  Rng rng(synth::substream(o.seed, static_cast<uint64_t>(index), 1));
  Rng label_rng(synth::substream(o.seed, static_cast<uint64_t>(index), 2));
  const uint64_t noise_seed = synth::substream(o.seed, static_cast<uint64_t>(index), 3);

  const int64_t neurons = rng.integer(3, 10);
  std::vector<bool> labelled(static_cast<std::size_t>(neurons), true);
  if (o.partly) {  // 1 .. neurons/3 neurons stay unlabelled (at least two remain labelled)
    for (int64_t drop = label_rng.integer(1, std::max<int64_t>(1, neurons / 3)); drop > 0;) {
      const auto k = static_cast<std::size_t>(label_rng.integer(0, neurons - 1));
      if (labelled[k]) labelled[k] = false, --drop;
    }
  }
  // Buffer channels: labelled neurons first (in neuron order), so gt is a leading slice.
  std::vector<int32_t> channel_of(static_cast<std::size_t>(neurons));
  int32_t next = 0;
  for (int64_t k = 0; k < neurons; ++k)
    if (labelled[static_cast<std::size_t>(k)]) channel_of[static_cast<std::size_t>(k)] = next++;
  const int64_t n_labelled = next;
  for (int64_t k = 0; k < neurons; ++k)
    if (!labelled[static_cast<std::size_t>(k)]) channel_of[static_cast<std::size_t>(k)] = next++;

  const Anatomy an = build_anatomy(shape, rng, neurons, channel_of);
  const Appearance ap = draw_appearance(shape, rng, neurons, channel_of);

  // Slabs of kSlab z-planes: each is owned by one task (rasterise every tube reaching it,
  // then compose raw), so no two threads write the same byte and no whole-volume float
  // buffer exists; tubes are bucketed by the slabs their halo box touches.
  constexpr int64_t kSlab = 4;
  const int64_t n_slabs = (nz + kSlab - 1) / kSlab;
  std::vector<std::vector<int32_t>> bucket(static_cast<std::size_t>(n_slabs));
  for (std::size_t i = 0; i < an.capsules.size(); ++i)
    for (int64_t s = an.capsules[i].lo[0] / kSlab; s <= an.capsules[i].hi[0] / kSlab; ++s)
      bucket[static_cast<std::size_t>(s)].push_back(static_cast<int32_t>(i));

  float profile_lut[256];
  profile_lut[0] = 0.f;
  for (int v = 1; v < 256; ++v) profile_lut[v] = profile_of_t(decode_t(v));

  at::Tensor buffer = at::empty({neurons, nz, ny, nx}, at::kByte);  // (N_all, Z, Y, X) profile bytes, then GT
  // int16 holds the 12-bit values exactly at half the memory of the usual int32 for uint16
  // (the writer stores uint16 either way).
  at::Tensor raw = at::empty({3, nz, ny, nx}, at::kShort);
  uint8_t* buf = buffer.data_ptr<uint8_t>();
  int16_t* out = raw.data_ptr<int16_t>();
  std::vector<int64_t> overlaps(static_cast<std::size_t>(n_slabs), 0);

  at::parallel_for(0, n_slabs, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> touched(static_cast<std::size_t>(kSlab * plane));
    for (int64_t s = begin; s < end; ++s) {
      const int64_t z0 = s * kSlab, z1 = std::min(nz, z0 + kSlab);
      std::fill(touched.begin(), touched.end(), 0);
      for (int64_t c = 0; c < neurons; ++c) std::memset(buf + c * voxels + z0 * plane, 0, static_cast<std::size_t>((z1 - z0) * plane));
      for (int32_t i : bucket[static_cast<std::size_t>(s)]) {
        const Capsule& cap = an.capsules[static_cast<std::size_t>(i)];
        rasterise(cap, z0, z1, ny, nx, buf + cap.channel * voxels, touched.data());
      }
      int64_t overlap = 0;
      for (int64_t z = z0; z < z1; ++z) {
        const float iz = ap.illum_z[static_cast<std::size_t>(z)], bz = ap.brain_z[static_cast<std::size_t>(z)];
        for (int64_t y = 0; y < ny; ++y) {
          const float izy = iz * ap.illum_y[static_cast<std::size_t>(y)], bzy = bz + ap.brain_y[static_cast<std::size_t>(y)];
          for (int64_t x = 0; x < nx; ++x) {
            const int64_t g = z * plane + y * nx + x;
            float sig[3] = {0.f, 0.f, 0.f};
            int inside = 0;
            // Most voxels are near no neuron: skip reading the N profile bytes there.
            // Summed in neuron order, not buffer order: float sums depend on the order, and
            // raw must not change with which neurons --partly leaves unlabelled.
            for (int64_t k = 0; touched[static_cast<std::size_t>(g - z0 * plane)] && k < neurons; ++k) {
              const int64_t c = channel_of[static_cast<std::size_t>(k)];
              uint8_t& b = buf[c * voxels + g];
              if (!b) continue;
              const float p = profile_lut[b];
              const auto& rgb = ap.neuron_rgb[static_cast<std::size_t>(c)];
              sig[0] += rgb[0] * p, sig[1] += rgb[1] * p, sig[2] += rgb[2] * p;
              if (c < n_labelled) {
                const bool in = b >= 128;
                inside += in;
                b = in ? static_cast<uint8_t>(c + 1) : 0;
              }
            }
            overlap += inside >= 2;
            const float illum = izy * ap.illum_x[static_cast<std::size_t>(x)];
            const float brain = std::clamp((1.2f - bzy - ap.brain_x[static_cast<std::size_t>(x)]) * 2.5f, 0.f, 1.f);
            for (int j = 0; j < 3; ++j) {
              // Expected counts, then shot noise (variance gain * signal) and read noise.
              const float signal = illum * (ap.autofluorescence[j] * brain + sig[j]);
              const float sd = std::sqrt(ap.gain * signal + ap.read_noise * ap.read_noise);
              const float value = ap.offset[j] + signal + sd * synth::hash_normal(synth::mix64(noise_seed + static_cast<uint64_t>(g * 3 + j)));
              // Round half up after clamping (inline, unlike lround's libm call).
              out[j * voxels + g] = static_cast<int16_t>(std::clamp(value, 0.f, 4095.f) + 0.5f);
            }
          }
        }
      }
      overlaps[static_cast<std::size_t>(s)] = overlap;
    }
  });

  FisbeSample sample;
  sample.name = fisbe_sample_name(o.seed, index);
  sample.raw = raw;
  sample.gt = buffer.narrow(0, 0, n_labelled);
  sample.neurons = neurons;
  for (int64_t k = 0; k < neurons; ++k) {
    const int32_t ch = channel_of[static_cast<std::size_t>(k)];
    if (ch < n_labelled && ap.dim[static_cast<std::size_t>(ch)]) sample.dim_neurons.push_back(ch + 1);
  }
  std::sort(sample.dim_neurons.begin(), sample.dim_neurons.end());
  for (int64_t v : overlaps) sample.overlap_voxels += v;
  return sample;
}

void write_fisbe_sample(const FisbeSample& sample, const std::string& zarr_path, const std::string& zarr_compressor) {
  const fs::path root(zarr_path);
  std::error_code ec;
  fs::create_directories(root / "volumes", ec);
  if (ec) throw io::Error(zarr_path, "cannot create folder (" + ec.message() + ")");
  // The .zgroup files that let zarr.open(path)['volumes/raw'] walk the path come from
  // io::write_zarr (an array inside a .zarr folder).
  nlohmann::json attrs = {{"generator", "neuroseg synth fisbe"},
                          {"neurons", sample.neurons},
                          {"labelled_neurons", sample.gt.size(0)},
                          {"voxel_size_um", {0.44, 0.44, 0.44}}};
  io::write_text((root / ".zattrs").string(), attrs.dump(4));

  io::Geometry geometry;
  geometry.spacing = {0.00044, 0.00044, 0.00044};  // 0.44 um isotropic, in mm
  io::WriteOptions options;
  options.zarr_compressor = zarr_compressor;
  options.zarr_chunk = 64;
  io::Volume raw;
  raw.data = sample.raw;
  raw.geometry = geometry;
  raw.source.dtype = io::DType::UInt16;
  raw.source.channel_axis = "4d";
  options.dtype = io::DType::UInt16;
  io::write_zarr(raw, (root / "volumes" / "raw").string(), options);

  io::Volume gt;
  gt.data = sample.gt;
  gt.geometry = geometry;
  gt.source.dtype = io::DType::UInt8;
  gt.source.channel_axis = "4d";  // (N, Z, Y, X) even for one neuron, as FISBe stores it
  options.dtype = io::DType::UInt8;
  const fs::path gt_path = root / "volumes" / "gt_instances";
  io::write_zarr(gt, gt_path.string(), options);
  // The evaluator reads the dim neurons' ids from this attribute (evalinstseg util.read_file).
  std::ifstream in(gt_path / ".zattrs");
  nlohmann::json gt_attrs = nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
  gt_attrs["dim_neurons"] = sample.dim_neurons;
  io::write_text((gt_path / ".zattrs").string(), gt_attrs.dump(4));
}

std::string fisbe_split_file_text(const std::vector<std::string>& completely_train,
                                  const std::vector<std::string>& completely_val,
                                  const std::vector<std::string>& completely_test,
                                  const std::vector<std::string>& partly_train, const std::vector<std::string>& partly_val,
                                  const std::vector<std::string>& partly_test) {
  std::string s;
  auto section = [&](const char* title, const std::vector<std::string>& train, const std::vector<std::string>& val,
                     const std::vector<std::string>& test) {
    s += title;
    s += "\n\n";
    const std::pair<const char*, const std::vector<std::string>*> parts[] = {{"train:", &train}, {"val:", &val}, {"test:", &test}};
    for (const auto& [name, list] : parts) {
      s += name;
      s += "\n";
      for (const auto& n : *list) s += n + "\n";
      s += "\n";
    }
  };
  section("(1) samples for FlyLight completely:", completely_train, completely_val, completely_test);
  section("(2) samples for FlyLight partly:", partly_train, partly_val, partly_test);
  return s;
}

void synth_fisbe(const std::string& out_dir, int64_t n, const FisbeSynthOptions& o) {
  if (n < 1 || n > 100000) throw io::Error("--n", "must be between 1 and 100000 (got " + std::to_string(n) + ")");
  for (int64_t s : o.shape)
    if (s < 8 || s > 4096) throw io::Error("--shape", "every size must be between 8 and 4096 voxels (got " + std::to_string(s) + ")");
  if (o.shape[0] * o.shape[1] * o.shape[2] > 1'000'000'000)
    throw io::Error("--shape", "more than 1e9 voxels per volume (FISBe's are ~1.9e8)");
  const std::string& comp = o.zarr_compressor;
  if (!(comp.empty() || comp == "blosc" || comp == "zlib" || comp == "gzip" || comp == "zstd"))
    throw io::Error("--zarr-compressor", "unknown compressor '" + comp + "' (blosc, zlib, gzip, zstd or none)");
  std::error_code ec;
  if (fs::exists(out_dir, ec) && !fs::is_directory(out_dir, ec)) throw io::Error(out_dir, "exists and is not a folder");
  const bool existed = fs::exists(out_dir, ec);
  try {
    // The split file is the named output; the samples are written beside it in the same
    // temporary folder and moved into out_dir (replacing same-named samples only) at commit.
    io::AtomicOutput output((fs::path(out_dir) / "sample_list_per_split.txt").string());
    const fs::path temp = fs::path(output.path()).parent_path();
    std::vector<std::string> names;
    for (int64_t i = 0; i < n; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      FisbeSample sample = synth_fisbe_sample(o, i);
      const auto t1 = std::chrono::steady_clock::now();
      write_fisbe_sample(sample, (temp / (sample.name + ".zarr")).string(), comp);
      const auto t2 = std::chrono::steady_clock::now();
      std::printf("%s.zarr: %lld neurons (%lld labelled, %zu dim), %lld overlap voxels; generated in %.2f s, written in %.2f s\n",
                  sample.name.c_str(), static_cast<long long>(sample.neurons), static_cast<long long>(sample.gt.size(0)),
                  sample.dim_neurons.size(), static_cast<long long>(sample.overlap_voxels),
                  std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count());
      std::fflush(stdout);
      names.push_back(sample.name);
    }
    // 60 / 20 / 20 % train / val / test, in sample order.
    const auto n_train = static_cast<std::size_t>(std::max<int64_t>(1, std::llround(0.6 * n)));
    const auto n_val = std::min(names.size() - n_train, static_cast<std::size_t>(std::llround(0.2 * n)));
    const std::vector<std::string> train(names.begin(), names.begin() + n_train),
        val(names.begin() + n_train, names.begin() + n_train + n_val), test(names.begin() + n_train + n_val, names.end()), none;
    io::write_text(output.path(), o.partly ? fisbe_split_file_text(none, none, none, train, val, test)
                                       : fisbe_split_file_text(train, val, test, none, none, none));
    output.commit();
  } catch (...) {
    if (!existed) fs::remove(out_dir, ec);  // only removes it if empty: what we created
    throw;
  }
}

}  // namespace neuroseg::pipelines
