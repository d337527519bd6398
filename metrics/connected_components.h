#pragma once
// Connected components of a label image with cc3d semantics (Silversmith's
// connected-components-3d, `cc3d.connected_components(image, connectivity=k)` without
// `delta`): voxels are connected when they hold the same non-zero value and touch under 6,
// 18 or 26 connectivity in 3D (faces; + edges; + corners), 4 or 8 in 2D. Binary and
// multi-label images alike. Components are numbered 1..N in raster order (z, then y, then x)
// of their first voxel (cc3d's and scipy.ndimage.label's numbering), so the CPU and CUDA
// twins return identical label images whatever the thread count or the GPU schedule.
//   connected_components.cpp       dispatch, CUDA host side, postprocessing helpers
//   connected_components_cpu.cpp   run-based union-find over row slabs (std::thread)
//   connected_components_cuda.cu   voxel union-find with atomicMin (Playne & Hawick 2018)
// Output labels are int32 (cc3d picks uint16/uint32/uint64 by its label estimate; the
// values are the same). Floating inputs compare by value, as in cc3d: -0 is background,
// a NaN voxel is foreground and connects to nothing.
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::metrics {

/// Inclusive voxel bounds of one component.
struct BoundingBox {
  int64_t z0 = 0, y0 = 0, x0 = 0;
  int64_t z1 = 0, y1 = 0, x1 = 0;
  bool operator==(const BoundingBox& o) const {
    return z0 == o.z0 && y0 == o.y0 && x0 == o.x0 && z1 == o.z1 && y1 == o.y1 && x1 == o.x1;
  }
};

/// What connected_components computes besides the labels and the count. kNone is cc3d's
/// output and the fastest (no per-component pass or storage); kAll fills every field below.
enum class ComponentStats { kNone, kAll };

struct Components {
  at::Tensor labels;                ///< int32, the image's shape and device, 0 = background
  int64_t count = 0;                ///< N
  // With ComponentStats::kAll (empty with kNone):
  std::vector<int64_t> sizes;       ///< voxels per component; index k - 1 = component k
  std::vector<BoundingBox> boxes;   ///< bounds per component; 2D inputs have z0 = z1 = 0
  std::vector<int64_t> first_voxel; ///< linear (raster) index of each component's first voxel, increasing
  at::Tensor values;                ///< (N,) on the CPU, the image's dtype: the value each component holds
};

/// `image`: (D, H, W) or (H, W), any real dtype or bool, on the CPU or CUDA (the work runs
/// on its device). connectivity: 6, 18 or 26 for D > 1; 4 or 8 for (H, W) and (1, H, W)
/// (where 6 means 4, and 18 / 26 mean 8). Throws io::Error for other shapes/connectivities.
/// The CPU twin uses at::get_num_threads() threads.
Components connected_components(const at::Tensor& image, int connectivity = 26,
                                ComponentStats stats = ComponentStats::kAll);

/// Keeps, for every non-zero value of `labels`, only its largest connected component
/// (ties: the first in raster order). Returns a new CPU tensor of the same dtype.
at::Tensor keep_largest_component_per_label(const at::Tensor& labels, int connectivity = 26);

/// Fills holes of each non-zero label: background regions (6-connected) that do not touch
/// the volume border and are enclosed by a single label take that label.
at::Tensor fill_holes_per_label(const at::Tensor& labels);

namespace detail {
/// The image as a contiguous tensor whose equality and zero test are those of the input, in
/// one of int8/uint8, int16, int32, int64, float32, float64 (bool viewed as uint8; unsigned
/// and half types widened), on the image's device.
at::Tensor comparable_values(const at::Tensor& image);

/// Both take a (D, H, W) tensor of any supported dtype on their device, with the
/// connectivity already normalised by the dispatcher (6/18/26 for D > 1, 4/8 for D == 1),
/// and fill everything but `values` (labels and count only with ComponentStats::kNone).
Components connected_components_cpu(const at::Tensor& image, int connectivity, ComponentStats stats);

/// Fewest voxels per CPU slab (one slab per thread): 2^16, so that 64^3 volumes take two
/// threads (measured on a quiet 2-core machine: 1.2-1.6x faster than one slab; on a loaded
/// one a second thread can cost more than it saves). Tests lower it to cut small volumes
/// into many slabs.
extern int64_t cc_min_slab_voxels;
#ifdef NEUROSEG_WITH_CUDA
Components connected_components_cuda(const at::Tensor& image, int connectivity, ComponentStats stats);
#endif
}  // namespace detail

}  // namespace neuroseg::metrics
