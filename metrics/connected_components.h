#pragma once
// Connected components of a 3D label image, cc3d semantics (Silversmith's
// connected-components-3d): voxels are connected when they hold the same non-zero value
// and touch under 6, 18 or 26 connectivity (4 / 8 for a 2D image, D = 1). Components
// are numbered 1..N in raster order (z, then y, then x) of their first voxel, so every
// implementation gives the same label image.
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::metrics {

struct Components {
  at::Tensor labels;            ///< int32 (D, H, W), 0 = background
  int64_t count = 0;            ///< N
  std::vector<int64_t> sizes;   ///< voxels per component, index 0 = component 1
};

/// `image`: integer or bool (D, H, W) on the CPU. connectivity: 6, 18 or 26 (4 or 8 in 2D).
Components connected_components(const at::Tensor& image, int connectivity = 26);

/// Keeps, for every non-zero value of `labels`, only its largest connected component
/// (ties: the first in raster order). Returns a new tensor of the same dtype.
at::Tensor keep_largest_component_per_label(const at::Tensor& labels, int connectivity = 26);

/// Fills holes of each non-zero label: background regions (6-connected) that do not touch
/// the volume border and are enclosed by a single label take that label.
at::Tensor fill_holes_per_label(const at::Tensor& labels);

}  // namespace neuroseg::metrics
