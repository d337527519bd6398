#include "pipelines/spine_instances.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "io/error.h"
#include "metrics/connected_components.h"

namespace neuroseg::pipelines {
namespace {

// One kept component of a class: its label image id, centroid height (LPS z, mm) and whether
// it touches the cranio-caudal ends of the field of view.
struct Part {
  int32_t id = 0;
  int64_t size = 0;
  double height = 0;
  bool at_fov_end = false;
};

// Components of `mask` (D, H, W) with the fragments dropped; `ids` gets the component image.
std::vector<Part> parts_of(const at::Tensor& mask, const io::Geometry& g, const SpineInstanceOptions& o, at::Tensor& ids,
                           int64_t& dropped) {
  const metrics::Components cc = metrics::connected_components(mask, o.connectivity, metrics::ComponentStats::kAll);
  ids = cc.labels.contiguous();
  if (cc.count == 0) return {};
  const int64_t D = ids.size(0), H = ids.size(1), W = ids.size(2);
  // Centroids in index space (x, y, z), one pass.
  std::vector<std::array<double, 3>> sum(static_cast<size_t>(cc.count), {0, 0, 0});
  const int32_t* p = ids.data_ptr<int32_t>();
  for (int64_t z = 0; z < D; ++z)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const int32_t c = p[(z * H + y) * W + x];
        if (c == 0) continue;
        auto& s = sum[static_cast<size_t>(c - 1)];
        s[0] += static_cast<double>(x);
        s[1] += static_cast<double>(y);
        s[2] += static_cast<double>(z);
      }
  // The index axis closest to the cranio-caudal direction (row 2 of the direction: LPS z).
  int axis = 0;
  for (int j = 1; j < 3; ++j)
    if (std::abs(g.dir(2, j)) > std::abs(g.dir(2, axis))) axis = j;
  const int64_t extent[3] = {W, H, D};
  const int64_t largest = *std::max_element(cc.sizes.begin(), cc.sizes.end());
  const double voxel_mm3 = g.spacing[0] * g.spacing[1] * g.spacing[2];
  std::vector<Part> parts;
  for (int64_t k = 0; k < cc.count; ++k) {
    const int64_t size = cc.sizes[static_cast<size_t>(k)];
    if (static_cast<double>(size) * voxel_mm3 < o.min_volume_mm3 ||
        static_cast<double>(size) < o.min_fraction * static_cast<double>(largest)) {
      ++dropped;
      continue;
    }
    Part part;
    part.id = static_cast<int32_t>(k + 1);
    part.size = size;
    std::array<double, 3> centroid;
    for (int j = 0; j < 3; ++j) centroid[j] = sum[static_cast<size_t>(k)][j] / static_cast<double>(size);
    part.height = g.index_to_point(centroid)[2];
    const metrics::BoundingBox& b = cc.boxes[static_cast<size_t>(k)];
    const int64_t lo[3] = {b.x0, b.y0, b.z0}, hi[3] = {b.x1, b.y1, b.z1};
    part.at_fov_end = lo[axis] == 0 || hi[axis] == extent[axis] - 1;
    parts.push_back(part);
  }
  return parts;
}

}  // namespace

io::Volume spine_instances(const io::Volume& semantic, const SpineInstanceOptions& o, SpineInstanceSummary* summary) {
  if (semantic.channels() != 1)
    throw io::Error(semantic.name(), "--instances spine needs a one-channel label map, got " + std::to_string(semantic.channels()));
  const at::Tensor sem = semantic.data[0].cpu().to(at::kLong).contiguous();
  {
    const at::Tensor known = (sem == 0) | (sem == o.vertebra_class) | (sem == o.disc_class) | (sem == o.canal_class);
    if (!known.all().item<bool>()) {
      const int64_t bad = sem.masked_select(known.logical_not())[0].item<int64_t>();
      throw io::Error(semantic.name(), "--instances spine expects the labels 0, " + std::to_string(o.vertebra_class) +
                                           " (vertebra), " + std::to_string(o.disc_class) + " (disc) and " +
                                           std::to_string(o.canal_class) + " (spinal canal); found " + std::to_string(bad));
    }
  }
  SpineInstanceSummary s;
  at::Tensor vert_ids, disc_ids, canal_ids;
  std::vector<Part> vertebrae = parts_of(sem == o.vertebra_class, semantic.geometry, o, vert_ids, s.dropped_components);
  std::vector<Part> discs = parts_of(sem == o.disc_class, semantic.geometry, o, disc_ids, s.dropped_components);
  std::vector<Part> canal = parts_of(sem == o.canal_class, semantic.geometry, o, canal_ids, s.dropped_components);

  // Bottom to top (ties: the component order, i.e. raster order, for determinism).
  auto by_height = [](const Part& a, const Part& b) { return a.height != b.height ? a.height < b.height : a.id < b.id; };
  std::sort(vertebrae.begin(), vertebrae.end(), by_height);
  if (vertebrae.size() > 99)
    throw io::Error(semantic.name(), std::to_string(vertebrae.size()) + " vertebra components: not a spine label map");

  // Output value per component id of each class (0: dropped).
  auto lut_for = [](const at::Tensor& ids) {
    return std::vector<uint8_t>(static_cast<size_t>(ids.max().item<int64_t>() + 1), 0);
  };
  std::vector<uint8_t> vert_lut = lut_for(vert_ids), disc_lut = lut_for(disc_ids), canal_lut = lut_for(canal_ids);
  std::vector<double> vertebra_heights;
  for (size_t k = 0; k < vertebrae.size(); ++k) {
    const bool partial = o.mark_partial && vertebrae[k].at_fov_end;
    vert_lut[static_cast<size_t>(vertebrae[k].id)] = static_cast<uint8_t>((partial ? 100 : 0) + k + 1);
    vertebra_heights.push_back(vertebrae[k].height);
    s.partial_vertebrae += partial ? 1 : 0;
  }
  s.vertebrae = static_cast<int64_t>(vertebrae.size());
  for (const Part& d : discs) {
    // 200 + the vertebra above = 200 + 1 + the vertebrae below (heights are sorted).
    const int64_t below = std::lower_bound(vertebra_heights.begin(), vertebra_heights.end(), d.height) - vertebra_heights.begin();
    disc_lut[static_cast<size_t>(d.id)] = static_cast<uint8_t>(200 + std::min<int64_t>(below + 1, 55));
  }
  s.discs = static_cast<int64_t>(discs.size());
  if (!canal.empty()) {
    const Part& largest = *std::max_element(canal.begin(), canal.end(), [](const Part& a, const Part& b) {
      return a.size != b.size ? a.size < b.size : a.id > b.id;
    });
    canal_lut[static_cast<size_t>(largest.id)] = 100;
    s.dropped_components += static_cast<int64_t>(canal.size()) - 1;
    s.canal = true;
  }

  at::Tensor out = at::zeros(sem.sizes(), at::kByte);
  uint8_t* q = out.data_ptr<uint8_t>();
  const int32_t* v = vert_ids.data_ptr<int32_t>();
  const int32_t* dk = disc_ids.data_ptr<int32_t>();
  const int32_t* c = canal_ids.data_ptr<int32_t>();
  const int64_t n = out.numel();
  for (int64_t i = 0; i < n; ++i) {
    if (v[i]) q[i] = vert_lut[static_cast<size_t>(v[i])];
    else if (dk[i]) q[i] = disc_lut[static_cast<size_t>(dk[i])];
    else if (c[i]) q[i] = canal_lut[static_cast<size_t>(c[i])];
  }
  io::Volume result;
  result.data = out.unsqueeze(0);
  result.geometry = semantic.geometry;
  result.source = semantic.source;
  result.source.dtype = io::DType::UInt8;
  result.source.scl_slope = 1.0;
  result.source.scl_inter = 0.0;
  if (summary) *summary = s;
  return result;
}

}  // namespace neuroseg::pipelines
