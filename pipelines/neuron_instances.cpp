#include "pipelines/neuron_instances.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/ATen.h>

#include "io/error.h"
#include "metrics/connected_components.h"

namespace neuroseg::pipelines {
namespace {

constexpr int kBins = 64;  // chromaticity histogram: 64 x 64 over [0, 1]^2

struct Centre {
  double r, g, weight;
};

/// Peaks of the smoothed chromaticity histogram, strongest first, merged within `merge`.
std::vector<Centre> colour_peaks(const std::vector<double>& hist, double min_weight, double merge, int64_t max_n) {
  std::vector<double> smooth(hist.size(), 0.0);
  for (int i = 0; i < kBins; ++i)
    for (int j = 0; j < kBins; ++j) {
      double s = 0;
      for (int di = -1; di <= 1; ++di)
        for (int dj = -1; dj <= 1; ++dj) {
          const int a = i + di, b = j + dj;
          if (a >= 0 && a < kBins && b >= 0 && b < kBins) s += hist[a * kBins + b];
        }
      smooth[i * kBins + j] = s;
    }
  std::vector<Centre> peaks;
  for (int i = 0; i < kBins; ++i)
    for (int j = 0; j < kBins; ++j) {
      const double v = smooth[i * kBins + j];
      if (v < min_weight) continue;
      bool is_max = true;
      for (int di = -1; di <= 1 && is_max; ++di)
        for (int dj = -1; dj <= 1; ++dj) {
          const int a = i + di, b = j + dj;
          if ((di || dj) && a >= 0 && a < kBins && b >= 0 && b < kBins && smooth[a * kBins + b] > v) {
            is_max = false;
            break;
          }
        }
      if (is_max) peaks.push_back({(i + 0.5) / kBins, (j + 0.5) / kBins, v});
    }
  std::sort(peaks.begin(), peaks.end(), [](const Centre& a, const Centre& b) { return a.weight > b.weight; });
  std::vector<Centre> kept;
  for (const Centre& p : peaks) {
    bool near = false;
    for (const Centre& k : kept) near |= std::hypot(p.r - k.r, p.g - k.g) < merge;
    if (!near) kept.push_back(p);
    if (static_cast<int64_t>(kept.size()) == max_n) break;
  }
  return kept;
}

}  // namespace

at::Tensor neuron_instances(const at::Tensor& foreground, const at::Tensor& raw, const NeuronInstanceOptions& o) {
  if (foreground.dim() != 3) throw io::Error("neuron instances", "foreground must be (D, H, W), got " + c10::str(foreground.sizes()));
  if (raw.dim() != 4 || raw.sizes().slice(1) != foreground.sizes())
    throw io::Error("neuron instances", "raw " + c10::str(raw.sizes()) + " does not match the foreground " +
                                            c10::str(foreground.sizes()));
  const at::Tensor fg = foreground.cpu().ne(0);
  at::Tensor colour_map = fg.to(at::kInt);  // 1 = foreground of the one colour (C != 3)
  const int64_t n_fg = fg.sum().item<int64_t>();
  if (raw.size(0) == 3 && n_fg > 0) {
    // 1. Background-corrected colour, averaged over the foreground of the 3x3x3 neighbourhood.
    at::Tensor x = raw.cpu().to(at::kFloat);
    const at::Tensor bg_voxels = x.masked_select(fg.logical_not().unsqueeze(0).expand_as(x)).view({3, -1});
    if (bg_voxels.size(1) > 0) {
      const int64_t step = std::max<int64_t>(1, bg_voxels.size(1) / 200000);  // a sample is enough for a median
      const at::Tensor level = std::get<0>(bg_voxels.slice(1, 0, bg_voxels.size(1), step).median(1));
      x = (x - level.view({3, 1, 1, 1})).clamp_min(0);
    }
    const at::Tensor f = fg.to(at::kFloat).unsqueeze(0);
    const at::Tensor sum = at::avg_pool3d((x * f).unsqueeze(0), 3, 1, 1).squeeze(0);
    const at::Tensor cnt = at::avg_pool3d(f.unsqueeze(0), 3, 1, 1).squeeze(0).clamp_min(1e-6);
    const at::Tensor rgb = (sum / cnt).masked_select(fg.unsqueeze(0).expand({3, -1, -1, -1})).view({3, -1});  // (3, N)
    const at::Tensor total = rgb.sum(0);
    const at::Tensor chroma = (rgb.slice(0, 0, 2) / total.clamp_min(1e-6)).t().contiguous();  // (N, 2)
    const at::Tensor weight = total.contiguous();
    // 2. Histogram peaks.
    std::vector<double> hist(kBins * kBins, 0.0);
    const float* c = chroma.const_data_ptr<float>();
    const float* w = weight.const_data_ptr<float>();
    double wsum = 0;
    for (int64_t i = 0; i < n_fg; ++i) {
      const int a = std::clamp(static_cast<int>(c[2 * i] * kBins), 0, kBins - 1);
      const int b = std::clamp(static_cast<int>(c[2 * i + 1] * kBins), 0, kBins - 1);
      hist[a * kBins + b] += w[i];
      wsum += w[i];
    }
    const double min_weight = wsum * std::max(0.002, static_cast<double>(o.min_voxels) / std::max<int64_t>(n_fg, 1) / 4);
    std::vector<Centre> centres = colour_peaks(hist, min_weight, o.colour_merge, o.max_colours);
    if (centres.empty()) centres.push_back({1.0 / 3, 1.0 / 3, 1.0});
    // 3. k-means steps from the peaks, then the nearest centre of every voxel.
    std::vector<int32_t> assign(static_cast<size_t>(n_fg), 0);
    for (int64_t step = 0; step <= o.kmeans_steps; ++step) {
      std::vector<double> sr(centres.size(), 0), sg(centres.size(), 0), sw(centres.size(), 0);
      for (int64_t i = 0; i < n_fg; ++i) {
        double best = 1e30;
        for (size_t k = 0; k < centres.size(); ++k) {
          const double d = std::hypot(c[2 * i] - centres[k].r, c[2 * i + 1] - centres[k].g);
          if (d < best) best = d, assign[i] = static_cast<int32_t>(k);
        }
        sr[assign[i]] += w[i] * c[2 * i], sg[assign[i]] += w[i] * c[2 * i + 1], sw[assign[i]] += w[i];
      }
      if (step == o.kmeans_steps) break;
      for (size_t k = 0; k < centres.size(); ++k)
        if (sw[k] > 0) centres[k].r = sr[k] / sw[k], centres[k].g = sg[k] / sw[k];
    }
    at::Tensor ids = at::from_blob(assign.data(), {n_fg}, at::kInt).add(1);
    colour_map = at::zeros(fg.sizes(), at::kInt);
    colour_map.masked_scatter_(fg, ids);
  }
  // 4. Components of each colour, bridged over gaps of the foreground: the colour map grows
  //    into the background by `bridge` 3x3x3 dilations (larger colour id wins a contested
  //    voxel) before the components are taken, then the growth is removed again. A neuron
  //    the model broke in places stays one instance.
  at::Tensor grown = colour_map;
  for (int64_t i = 0; i < o.bridge; ++i) {
    const at::Tensor dilated =
        at::max_pool3d(grown.to(at::kFloat).unsqueeze(0), 3, 1, 1).squeeze(0).to(at::kInt);
    grown = at::where(grown.eq(0), dilated, grown);
  }
  metrics::Components comp = metrics::connected_components(grown, 26, metrics::ComponentStats::kNone);
  comp.labels = comp.labels.masked_fill(colour_map.eq(0), 0);
  const at::Tensor sizes = at::bincount(comp.labels.flatten(), {}, comp.count + 1);
  const int64_t* size = sizes.const_data_ptr<int64_t>();
  std::vector<int32_t> lut(static_cast<size_t>(comp.count) + 1, 0);
  int32_t next = 0;
  for (int64_t k = 1; k <= comp.count; ++k)
    if (size[k] >= o.min_voxels) lut[k] = ++next;
  const at::Tensor table = at::from_blob(lut.data(), {static_cast<int64_t>(lut.size())}, at::kInt);
  return table.index_select(0, comp.labels.flatten().to(at::kLong)).view(comp.labels.sizes());
}

}  // namespace neuroseg::pipelines
