#include "pipelines/dataset.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "io/error.h"
#include "io/orientation.h"
#include "io/resample.h"
#include "io/volume_io.h"

namespace neuroseg::pipelines {
namespace {

int64_t random_int(at::Generator& gen, int64_t n) {  // uniform in [0, n)
  if (n <= 1) return 0;
  return at::randint(n, {1}, gen, at::TensorOptions().dtype(at::kLong)).item<int64_t>();
}

double random_unit(at::Generator& gen) { return at::rand({1}, gen, at::TensorOptions().dtype(at::kDouble)).item<double>(); }

}  // namespace

std::array<double, 3> median_spacing(const std::vector<std::pair<std::string, std::string>>& pairs,
                                     const std::string& orientation) {
  std::array<std::vector<double>, 3> s;
  for (const auto& [image, label] : pairs) {
    io::Volume v = io::read_volume(image);
    v.data = v.data.slice(0, 0, 1);
    if (!orientation.empty()) v = io::reorient(v, orientation);
    for (int a = 0; a < 3; ++a) s[a].push_back(v.geometry.spacing[a]);
  }
  std::array<double, 3> out{};
  for (int a = 0; a < 3; ++a) {
    std::sort(s[a].begin(), s[a].end());
    const std::size_t n = s[a].size();
    out[a] = n % 2 ? s[a][n / 2] : 0.5 * (s[a][n / 2 - 1] + s[a][n / 2]);
  }
  return out;
}

std::vector<TrainingCase> load_training_cases(const std::vector<std::pair<std::string, std::string>>& pairs,
                                              const Preprocessing& p, const std::vector<int64_t>& label_values) {
  std::vector<TrainingCase> cases;
  for (const auto& [image_path, label_path] : pairs) {
    const io::Volume image = io::read_volume(image_path);
    io::require_3d(image, "training");
    io::Volume label = io::read_volume(label_path);
    if (label.channels() != 1) throw io::Error(label_path, "a label map must have one channel");
    io::require_same_grid(image, label);
    const PreparedCase prepared = prepare_case(image, p);
    // Label values -> class indices; anything unknown is an error naming the value.
    at::Tensor values = label.data[0].to(at::kLong);
    at::Tensor classes = at::full_like(values, -1);
    for (std::size_t k = 0; k < label_values.size(); ++k) classes.masked_fill_(values == label_values[k], static_cast<int64_t>(k));
    if ((classes < 0).any().item<bool>()) {
      const int64_t bad = values.masked_select(classes < 0)[0].item<int64_t>();
      throw io::Error(label_path, "label value " + std::to_string(bad) + " is not in the config's \"labels\"");
    }
    label.data = classes.to(at::kByte).unsqueeze(0);
    label.source.dtype = io::DType::UInt8;
    if (!p.orientation.empty()) label = io::reorient(label, p.orientation);
    label = io::resample_to_grid(label, prepared.network_geometry,
                                 {prepared.image.size(3), prepared.image.size(2), prepared.image.size(1)},
                                 io::Interpolation::Nearest);
    TrainingCase c;
    c.name = image_path;
    c.image = prepared.image;
    c.label = label.data[0].contiguous();
    const at::Tensor flat = c.label.reshape({-1});
    for (std::size_t k = 1; k < label_values.size(); ++k) c.class_voxels.push_back((flat == static_cast<int64_t>(k)).nonzero().reshape({-1}));
    cases.push_back(std::move(c));
  }
  return cases;
}

Batch sample_batch(const std::vector<TrainingCase>& cases, const std::array<int64_t, 3>& patch, int64_t batch,
                   double foreground_fraction, at::Generator& gen) {
  std::vector<at::Tensor> images, labels;
  for (int64_t b = 0; b < batch; ++b) {
    const TrainingCase& c = cases[random_int(gen, static_cast<int64_t>(cases.size()))];
    const std::array<int64_t, 3> size{c.label.size(0), c.label.size(1), c.label.size(2)};
    std::array<int64_t, 3> start{};
    std::vector<int64_t> present;
    for (std::size_t k = 0; k < c.class_voxels.size(); ++k)
      if (c.class_voxels[k].numel() > 0) present.push_back(static_cast<int64_t>(k));
    const bool foreground = !present.empty() && random_unit(gen) < foreground_fraction;
    if (foreground) {
      const at::Tensor& voxels = c.class_voxels[present[random_int(gen, static_cast<int64_t>(present.size()))]];
      int64_t flat = voxels[random_int(gen, voxels.numel())].item<int64_t>();
      const int64_t centre[3] = {flat / (size[1] * size[2]), (flat / size[2]) % size[1], flat % size[2]};
      for (int a = 0; a < 3; ++a) start[a] = centre[a] - patch[a] / 2;
    } else {
      for (int a = 0; a < 3; ++a) start[a] = size[a] > patch[a] ? random_int(gen, size[a] - patch[a] + 1) : 0;
    }
    // Crop with zero padding wherever the patch leaves the volume.
    at::Tensor img = at::zeros({c.image.size(0), patch[0], patch[1], patch[2]}, at::kFloat);
    at::Tensor lab = at::zeros({patch[0], patch[1], patch[2]}, at::kByte);
    int64_t src_lo[3], src_hi[3], dst_lo[3];
    for (int a = 0; a < 3; ++a) {
      if (size[a] <= patch[a] && !foreground) start[a] = -(patch[a] - size[a]) / 2;
      src_lo[a] = std::max<int64_t>(0, start[a]);
      src_hi[a] = std::min(size[a], start[a] + patch[a]);
      dst_lo[a] = src_lo[a] - start[a];
    }
    if (src_hi[0] > src_lo[0] && src_hi[1] > src_lo[1] && src_hi[2] > src_lo[2]) {
      auto crop = [&](const at::Tensor& t, int first) {
        return t.slice(first, src_lo[0], src_hi[0]).slice(first + 1, src_lo[1], src_hi[1]).slice(first + 2, src_lo[2], src_hi[2]);
      };
      auto place = [&](at::Tensor t, int first) {
        return t.slice(first, dst_lo[0], dst_lo[0] + src_hi[0] - src_lo[0])
            .slice(first + 1, dst_lo[1], dst_lo[1] + src_hi[1] - src_lo[1])
            .slice(first + 2, dst_lo[2], dst_lo[2] + src_hi[2] - src_lo[2]);
      };
      place(img, 1).copy_(crop(c.image, 1));
      place(lab, 0).copy_(crop(c.label, 0));
    }
    images.push_back(img);
    labels.push_back(lab);
  }
  return {at::stack(images), at::stack(labels).to(at::kLong)};
}

}  // namespace neuroseg::pipelines
