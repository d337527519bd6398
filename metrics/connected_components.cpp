// Dispatch (shape and connectivity checks, CPU or CUDA twin), the CUDA host side and the
// postprocessing helpers built on connected components. The CPU labelling is in
// connected_components_cpu.cpp, the kernels in connected_components_cuda.cu.
#include "metrics/connected_components.h"

#include <algorithm>
#include <climits>
#include <map>

#include <ATen/ATen.h>

#ifdef NEUROSEG_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "metrics/connected_components_kernel.h"
#endif

#include "io/error.h"

namespace neuroseg::metrics {

#ifdef NEUROSEG_WITH_CUDA
namespace detail {
namespace {

void check_launch(cudaError_t rc) {
  if (rc != cudaSuccess) throw io::Error("connected components", std::string("CUDA launch failed: ") + cudaGetErrorString(rc));
}

}  // namespace

Components connected_components_cuda(const at::Tensor& image, int connectivity, ComponentStats stats) {
  TORCH_CHECK(image.dim() == 3 && image.is_cuda(), "connected_components_cuda: expects a CUDA (D, H, W) tensor");
  const c10::cuda::CUDAGuard guard(image.device());
  // The kernels read uint8, int32, int64, float32 and float64.
  at::Tensor x = comparable_values(image);
  if (x.scalar_type() == at::kChar) x = x.view(at::kByte);  // same bytes: zero and equality are unchanged
  if (x.scalar_type() == at::kShort) x = x.to(at::kInt);
  CcValueType type;
  switch (x.scalar_type()) {
    case at::kByte: type = CcValueType::kUInt8; break;
    case at::kInt: type = CcValueType::kInt32; break;
    case at::kLong: type = CcValueType::kInt64; break;
    case at::kFloat: type = CcValueType::kFloat32; break;
    case at::kDouble: type = CcValueType::kFloat64; break;
    default:
      throw io::Error("connected components", std::string("unsupported dtype ") + c10::toString(image.scalar_type()));
  }
  const int64_t D = x.size(0), H = x.size(1), W = x.size(2), n = x.numel();
  if (std::max({D, H, W}) >= INT32_MAX)
    throw io::Error("connected components", "a side of 2^31 - 1 voxels or more is not supported");
  const bool index64 = n >= INT32_MAX;
  const int max_nonzero = connectivity == 6 || connectivity == 4 ? 1 : (connectivity == 18 ? 2 : 3);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::TensorOptions on_device = x.options();

  at::Tensor parent = at::empty({n}, on_device.dtype(index64 ? at::kLong : at::kInt));
  check_launch(launch_cc_union_find(x.data_ptr(), type, parent.data_ptr(), index64, D, H, W, max_nonzero, stream));
  at::Tensor flags = at::empty({n}, on_device.dtype(at::kInt));
  check_launch(launch_cc_root_flags(parent.data_ptr(), index64, n, flags.data_ptr<int32_t>(), stream));
  // The roots in increasing linear index are the components in raster order of first voxel.
  const at::Tensor roots = at::nonzero(flags).reshape({-1});
  const int64_t count = roots.size(0);
  if (count > INT32_MAX) throw io::Error("connected components", "more than 2^31 - 1 components do not fit int32 labels");
  const at::Tensor rank = at::cumsum(flags, 0, at::kInt);
  flags.reset();
  Components c;
  c.labels = at::empty({D, H, W}, on_device.dtype(at::kInt));
  check_launch(launch_cc_relabel(parent.data_ptr(), index64, rank.data_ptr<int32_t>(), n, c.labels.data_ptr<int32_t>(), stream));
  parent.reset();
  c.count = count;
  if (count == 0 || stats == ComponentStats::kNone) return c;

  at::Tensor sizes = at::zeros({count}, on_device.dtype(at::kLong));
  at::Tensor boxes = at::empty({count, 6}, on_device.dtype(at::kInt));
  boxes.narrow(1, 0, 3).fill_(INT32_MAX);
  boxes.narrow(1, 3, 3).fill_(-1);
  check_launch(launch_cc_stats(c.labels.data_ptr<int32_t>(), D, H, W, sizes.data_ptr<int64_t>(), boxes.data_ptr<int32_t>(), stream));
  const at::Tensor sizes_cpu = sizes.cpu(), boxes_cpu = boxes.to(at::kLong).cpu(), roots_cpu = roots.cpu();
  const int64_t* s = sizes_cpu.data_ptr<int64_t>();
  const int64_t* b = boxes_cpu.data_ptr<int64_t>();
  const int64_t* r = roots_cpu.data_ptr<int64_t>();
  c.sizes.assign(s, s + count);
  c.first_voxel.assign(r, r + count);
  c.boxes.reserve(count);
  for (int64_t k = 0; k < count; ++k) c.boxes.push_back({b[6 * k], b[6 * k + 1], b[6 * k + 2], b[6 * k + 3], b[6 * k + 4], b[6 * k + 5]});
  return c;
}

}  // namespace detail
#endif

Components connected_components(const at::Tensor& image, int connectivity, ComponentStats stats) {
  if (image.dim() != 2 && image.dim() != 3)
    throw io::Error("connected components", "expects a (D, H, W) or (H, W) image, got " + std::to_string(image.dim()) + "D");
  if (at::isComplexType(image.scalar_type()))
    throw io::Error("connected components", "complex images are not supported");
  const at::Tensor volume = image.dim() == 2 ? image.unsqueeze(0) : image;
  const bool flat = volume.size(0) == 1;
  int k = connectivity;
  if (flat && k == 6) k = 4;
  if (flat && (k == 18 || k == 26)) k = 8;
  const bool ok = flat ? (k == 4 || k == 8) : (k == 6 || k == 18 || k == 26);
  if (!ok)
    throw io::Error("connected components", "connectivity " + std::to_string(connectivity) +
                                                " is not supported for a " + (flat ? "2D" : "3D") +
                                                " image (6, 18 or 26 in 3D; 4 or 8 in 2D)");
  Components c;
  if (volume.is_cuda()) {
#ifdef NEUROSEG_WITH_CUDA
    c = detail::connected_components_cuda(volume, k, stats);
#else
    throw io::Error("connected components", "this neuroseg was built without CUDA kernels");
#endif
  } else {
    c = detail::connected_components_cpu(volume, k, stats);
  }
  c.labels = c.labels.reshape(image.sizes());
  if (stats == ComponentStats::kNone) return c;
  at::Tensor first = at::empty({c.count}, at::kLong);
  std::copy(c.first_voxel.begin(), c.first_voxel.end(), first.data_ptr<int64_t>());
  c.values = image.reshape({-1}).index_select(0, first.to(image.device())).cpu();
  return c;
}

at::Tensor keep_largest_component_per_label(const at::Tensor& labels, int connectivity) {
  at::Tensor x = labels.to(at::kCPU).contiguous();
  const Components c = connected_components(x, connectivity);
  const at::Tensor flat_labels = c.labels.reshape({-1});
  const at::Tensor values = c.values.to(at::kLong);
  const int64_t* value_of = values.data_ptr<int64_t>();
  std::map<int64_t, int64_t> best;  // value -> component
  for (int64_t k = 1; k <= c.count; ++k) {
    auto it = best.find(value_of[k - 1]);
    if (it == best.end() || c.sizes[k - 1] > c.sizes[it->second - 1]) best[value_of[k - 1]] = k;
  }
  std::vector<uint8_t> keep(c.count + 1, 0);
  for (const auto& [value, k] : best) keep[k] = 1;
  const at::Tensor keep_t = at::from_blob(keep.data(), {c.count + 1}, at::kByte).to(at::kBool);
  const at::Tensor mask = keep_t.index_select(0, flat_labels.to(at::kLong)).reshape(x.sizes());
  return at::where(mask, x, at::zeros_like(x));
}

at::Tensor fill_holes_per_label(const at::Tensor& labels) {
  at::Tensor x = labels.to(at::kCPU).contiguous();
  const Components bg = connected_components((x == 0).to(at::kByte), 6, ComponentStats::kNone);
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
