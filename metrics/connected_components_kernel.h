#pragma once
// Raw-pointer interface of the CUDA connected-components kernels (no torch headers in nvcc).
// Host side and the algorithm: connected_components.cpp; kernels: connected_components_cuda.cu.
#include <cstdint>

#include <cuda_runtime_api.h>

namespace neuroseg::metrics::detail {

/// Element type of the value volume the kernels read (the host converts other dtypes).
enum class CcValueType { kUInt8, kInt32, kInt64, kFloat32, kFloat64 };

/// Union-find over the voxels of a contiguous (D, H, W) volume: afterwards parent[i] is -1
/// for background (value 0) and otherwise the linear index of the root of i's component,
/// which is its first voxel in raster order. `parent` holds D * H * W int32 (index64 false,
/// needs D * H * W < 2^31) or int64 entries. max_nonzero: how many of (dz, dy, dx) a
/// neighbour offset may have non-zero: 1 (6 / 4), 2 (18), 3 (26 / 8).
cudaError_t launch_cc_union_find(const void* values, CcValueType type, void* parent, bool index64, int64_t D, int64_t H,
                                 int64_t W, int max_nonzero, cudaStream_t stream);

/// flags[i] = 1 where parent[i] == i (a root), else 0.
cudaError_t launch_cc_root_flags(const void* parent, bool index64, int64_t n, int32_t* flags, cudaStream_t stream);

/// labels[i] = parent[i] < 0 ? 0 : rank[parent[i]], rank = inclusive prefix sum of the flags.
cudaError_t launch_cc_relabel(const void* parent, bool index64, const int32_t* rank, int64_t n, int32_t* labels,
                              cudaStream_t stream);

/// For each component k (labels 1..N): sizes[k - 1] += voxels, boxes[6 (k - 1) + 0..5] =
/// min z, y, x, max z, y, x (callers initialise sizes to 0, minima to INT32_MAX, maxima to -1).
cudaError_t launch_cc_stats(const int32_t* labels, int64_t D, int64_t H, int64_t W, int64_t* sizes, int32_t* boxes,
                            cudaStream_t stream);

}  // namespace neuroseg::metrics::detail
