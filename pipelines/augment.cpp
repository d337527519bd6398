#include "pipelines/augment.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "io/json_args.h"

namespace neuroseg::pipelines {
namespace {

double uniform(at::Generator& gen, double lo, double hi) {
  return lo + (hi - lo) * at::rand({1}, gen, at::TensorOptions().dtype(at::kDouble)).item<double>();
}
bool chance(at::Generator& gen, double p) { return uniform(gen, 0, 1) < p; }

std::array<double, 2> pair_of(io::JsonArgs& a, const std::string& key, std::array<double, 2> fallback) {
  const auto v = a.get_double_list(key, {fallback[0], fallback[1]}, -1e9);
  if (v.size() != 2 || v[1] < v[0]) a.fail(key, "needs [low, high]");
  return {v[0], v[1]};
}

// Separable Gaussian blur of (N, C, D, H, W) with `sigma` voxels: one depthwise conv per axis.
at::Tensor blur(const at::Tensor& x, double sigma) {
  const int64_t radius = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(3 * sigma)));
  const int64_t size = 2 * radius + 1, c = x.size(1);
  at::Tensor k = at::arange(-radius, radius + 1, x.options().dtype(at::kFloat));
  k = at::exp(-(k * k) / (2 * sigma * sigma));
  k = k / k.sum();
  at::Tensor y = x;
  for (int a = 0; a < 3; ++a) {
    std::vector<int64_t> shape{c, 1, 1, 1, 1}, pad{0, 0, 0};
    shape[2 + a] = size;
    pad[a] = radius;
    y = at::conv3d(y, k.view(std::vector<int64_t>{1, 1, shape[2], shape[3], shape[4]}).expand(shape).contiguous(), {}, 1, pad, 1, c);
  }
  return y;
}

// A random monotonic intensity curve on [0, 1] (Zhou et al., "Generalizable cross-modality
// medical image segmentation via style augmentation and dual normalization", CVPR 2022): a
// cubic Bézier from (0, 0) to (1, 1) with two random control points, its x and y samples
// sorted (Models Genesis' non-linear transform), flipped to a decreasing curve with p = 0.5,
// the "source-dissimilar" styles that mimic another sequence's contrast order. Voxels at the
// sample's minimum (air, padding: dark in every MR sequence) stay at the minimum.
void random_intensity_curve(at::Tensor& x /* (C, D, H, W) */, at::Generator& gen) {
  constexpr int kSamples = 256;
  const double p1x = uniform(gen, 0, 1), p1y = uniform(gen, 0, 1), p2x = uniform(gen, 0, 1), p2y = uniform(gen, 0, 1);
  const bool decreasing = chance(gen, 0.5);
  std::vector<double> xs(kSamples), ys(kSamples);
  for (int i = 0; i < kSamples; ++i) {
    const double t = i / double(kSamples - 1), u = 1 - t;
    xs[i] = 3 * u * u * t * p1x + 3 * u * t * t * p2x + t * t * t;
    ys[i] = 3 * u * u * t * p1y + 3 * u * t * t * p2y + t * t * t;
  }
  std::sort(xs.begin(), xs.end());
  std::sort(ys.begin(), ys.end());
  if (decreasing)
    for (double& y : ys) y = 1 - y;
  for (int i = 1; i < kSamples; ++i) xs[i] = std::max(xs[i], xs[i - 1] + 1e-9);  // strictly increasing knots
  const auto opts = x.options().dtype(at::kDouble);
  const at::Tensor knots_x = at::tensor(xs, at::kDouble).to(x.device()), knots_y = at::tensor(ys, at::kDouble).to(x.device());
  const at::Tensor lo = x.amin({1, 2, 3}, true), hi = x.amax({1, 2, 3}, true);
  const at::Tensor range = (hi - lo).clamp_min(1e-7);
  const at::Tensor v = ((x - lo) / range).to(opts).clamp(0, 1);
  // Piecewise-linear interpolation between the knots around each value.
  const at::Tensor right = at::bucketize(v, knots_x).clamp(1, kSamples - 1), left = right - 1;
  const at::Tensor x0 = knots_x.index({left}), x1 = knots_x.index({right});
  const at::Tensor y0 = knots_y.index({left}), y1 = knots_y.index({right});
  const at::Tensor y = y0 + (v - x0) / (x1 - x0) * (y1 - y0);
  x.copy_(at::where(x > lo, y.to(x.scalar_type()) * range + lo, x));
}

}  // namespace

AugmentOptions AugmentOptions::from_json(const nlohmann::json& j) {
  AugmentOptions o;
  io::JsonArgs a("config augmentation", j);
  o.enabled = a.get_bool("enabled", o.enabled);
  o.probability = a.get_double("probability", o.probability, 0.0);
  o.flip = a.get_bool("flip", o.flip);
  o.rotate_degrees = a.get_double("rotate_degrees", o.rotate_degrees, 0.0);
  o.scale = pair_of(a, "scale", o.scale);
  o.elastic = a.get_double("elastic", o.elastic, 0.0);
  o.noise_std = a.get_double("noise_std", o.noise_std, 0.0);
  o.blur_sigma = pair_of(a, "blur_sigma", o.blur_sigma);
  o.bias_field = a.get_double("bias_field", o.bias_field, 0.0);
  o.contrast = pair_of(a, "contrast", o.contrast);
  o.gamma = pair_of(a, "gamma", o.gamma);
  o.intensity_curve = a.get_double("intensity_curve", o.intensity_curve, 0.0);
  if (o.intensity_curve > 1) a.fail("intensity_curve", "is a probability in [0, 1]");
  a.finish();
  return o;
}

void augment_batch(at::Tensor& image, at::Tensor& label, const AugmentOptions& o, at::Generator& gen) {
  if (!o.enabled) return;
  const int64_t n = image.size(0);
  const auto dev = image.device();
  // --- spatial: one affine (+ elastic field) per sample, applied with grid_sample ---
  std::vector<at::Tensor> thetas;
  bool any_spatial = false;
  std::vector<bool> warped(n, false);
  for (int64_t b = 0; b < n; ++b) {
    at::Tensor m = at::eye(3, at::kDouble);
    if (chance(gen, o.probability) && o.rotate_degrees > 0) {
      for (int axis = 0; axis < 3; ++axis) {
        const double t = uniform(gen, -o.rotate_degrees, o.rotate_degrees) * M_PI / 180.0;
        at::Tensor r = at::eye(3, at::kDouble);
        const int i = (axis + 1) % 3, k = (axis + 2) % 3;
        r[i][i] = std::cos(t), r[i][k] = -std::sin(t), r[k][i] = std::sin(t), r[k][k] = std::cos(t);
        m = at::matmul(r, m);
      }
      warped[b] = true;
    }
    if (chance(gen, o.probability)) {
      m = m / uniform(gen, o.scale[0], o.scale[1]);  // sampling grid shrinks = content grows
      warped[b] = true;
    }
    if (o.flip)
      for (int axis = 0; axis < 3; ++axis)
        if (chance(gen, 0.5)) {
          m.select(1, axis).neg_();
          warped[b] = true;
        }
    any_spatial = any_spatial || warped[b];
    thetas.push_back(at::cat({m, at::zeros({3, 1}, at::kDouble)}, 1));
  }
  if (any_spatial || o.elastic > 0) {
    const at::Tensor theta = at::stack(thetas).to(dev, at::kFloat);
    at::Tensor grid = at::affine_grid_generator(theta, image.sizes(), /*align_corners=*/false);
    if (o.elastic > 0) {
      // Smooth random displacement: coarse noise (1/8 resolution) upsampled, in voxels -> [-1, 1].
      std::vector<int64_t> coarse = {n, 3};
      for (int a = 2; a < 5; ++a) coarse.push_back(std::max<int64_t>(2, image.size(a) / 8));
      at::Tensor d = at::randn(coarse, gen, at::TensorOptions().dtype(at::kFloat)).to(dev);
      std::vector<int64_t> full(image.sizes().begin() + 2, image.sizes().end());
      d = at::upsample_trilinear3d(d, full, false, {}, {}, {});
      std::vector<double> amp;
      for (int64_t b = 0; b < n; ++b) amp.push_back(chance(gen, o.probability) ? o.elastic : 0.0);
      // grid's last dim is (x, y, z) = (W, H, D); displacement in voxels -> normalised units.
      const at::Tensor scale = at::tensor({2.0 / image.size(4), 2.0 / image.size(3), 2.0 / image.size(2)}, at::kFloat).to(dev);
      d = d.permute({0, 2, 3, 4, 1}) * scale * at::tensor(amp, at::kFloat).to(dev).view({n, 1, 1, 1, 1});
      grid = grid + d;
    }
    // The affine grid's channel order is (x, y, z) with x along W: matches (D, H, W) data.
    image = at::grid_sampler(image, grid, /*bilinear*/ 0, /*zeros*/ 0, false);
    label = at::grid_sampler(label.unsqueeze(1).to(at::kFloat), grid, /*nearest*/ 1, /*zeros*/ 0, false)
                .squeeze(1)
                .round()
                .to(at::kLong);
  }
  // --- intensity, per sample ---
  for (int64_t b = 0; b < n; ++b) {
    at::Tensor x = image[b];
    // First, while air is still at the minimum (noise would lift it).
    if (o.intensity_curve > 0 && chance(gen, o.intensity_curve)) random_intensity_curve(x, gen);
    if (o.noise_std > 0 && chance(gen, o.probability)) {
      const double std = uniform(gen, 0, o.noise_std);
      x.add_(at::randn(x.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).to(dev) * std);
    }
    if (chance(gen, o.probability)) x.copy_(blur(x.unsqueeze(0), uniform(gen, o.blur_sigma[0], o.blur_sigma[1]))[0]);
    if (o.bias_field > 0 && chance(gen, o.probability)) {
      std::vector<int64_t> coarse = {1, 1, 3, 3, 3};
      at::Tensor f = at::randn(coarse, gen, at::TensorOptions().dtype(at::kFloat)).to(dev) * uniform(gen, 0, o.bias_field);
      std::vector<int64_t> full(x.sizes().begin() + 1, x.sizes().end());
      x.mul_(at::exp(at::upsample_trilinear3d(f, full, true, {}, {}, {}))[0]);
    }
    if (chance(gen, o.probability)) {
      const double factor = uniform(gen, o.contrast[0], o.contrast[1]);
      const at::Tensor lo = x.amin({1, 2, 3}, true), hi = x.amax({1, 2, 3}, true), mean = x.mean({1, 2, 3}, true);
      x.copy_(at::clamp((x - mean) * factor + mean, lo, hi));
    }
    if (chance(gen, o.probability)) {
      // nnU-Net: rescale to [0, 1], x^gamma, rescale back.
      const double g = uniform(gen, o.gamma[0], o.gamma[1]);
      const at::Tensor lo = x.amin({1, 2, 3}, true), hi = x.amax({1, 2, 3}, true);
      const at::Tensor range = (hi - lo).clamp_min(1e-7);
      x.copy_(at::pow((x - lo) / range, g) * range + lo);
    }
  }
}

}  // namespace neuroseg::pipelines
