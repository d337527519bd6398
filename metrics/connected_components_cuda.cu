// CUDA connected components: voxel-level union-find with atomicMin (Playne & Hawick 2018,
// "A new algorithm for parallel connected-component labelling on GPUs", IEEE TPDS 29(6);
// the same union as YACCLAB's UF kernels, Allegretti et al. 2019).
//   init:     parent[i] = i for a foreground voxel, -1 for background;
//   merge:    every foreground voxel unites with its backward neighbours (the half of the
//             neighbourhood before it in raster order: 3 / 9 / 13 offsets) of equal value.
//             A union links the larger root under the smaller one with atomicMin and retries
//             from the returned parent when another thread got there first, so parent[i] <= i
//             always and each root ends as its component's minimum linear index;
//   compress: parent[i] = root(i).
// The host then ranks the roots by linear index (a prefix sum of root flags), which numbers
// the components in raster order of their first voxel whatever the schedule.
#include <climits>

#include "metrics/connected_components_kernel.h"

namespace neuroseg::metrics::detail {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  // Grid-stride loops: a bounded grid covers any n.
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 * 16 ? b : 65535 * 16);
}

// Parents are read around L1 (__ldcg): other SMs change them with atomics during the merge.
template <typename I>
__device__ __forceinline__ I root_of(const I* parent, I a) {
  I p = __ldcg(parent + a);
  while (p != a) {
    a = p;
    p = __ldcg(parent + a);
  }
  return a;
}

template <typename I>
__device__ void unite(I* parent, I a, I b) {
  while (true) {
    a = root_of(parent, a);
    b = root_of(parent, b);
    if (a == b) return;
    if (a < b) {
      const I t = a;
      a = b;
      b = t;
    }
    // a > b: hang root a under b, unless a stopped being a root meanwhile.
    const I old = atomicMin(parent + a, b);
    if (old == a) return;
    a = old;
  }
}

template <typename V, typename I>
__global__ void init_kernel(const V* values, I* parent, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x)
    parent[i] = values[i] != V(0) ? static_cast<I>(i) : I(-1);
}

template <typename V, typename I>
__global__ void merge_kernel(const V* values, I* parent, int64_t D, int64_t H, int64_t W, int max_nonzero) {
  const int64_t n = D * H * W, hw = H * W;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const V v = values[i];
    if (v == V(0)) continue;
    const int64_t x = i % W, y = (i / W) % H, z = i / hw;
#pragma unroll
    for (int dz = -1; dz <= 0; ++dz)
#pragma unroll
      for (int dy = -1; dy <= 1; ++dy)
#pragma unroll
        for (int dx = -1; dx <= 1; ++dx) {
          if (dz == 0 && (dy > 0 || (dy == 0 && dx >= 0))) continue;  // not before i
          if ((dz != 0) + (dy != 0) + (dx != 0) > max_nonzero) continue;
          if (z + dz < 0 || y + dy < 0 || y + dy >= H || x + dx < 0 || x + dx >= W) continue;
          const int64_t j = i + dz * hw + dy * W + dx;
          if (values[j] == v) unite(parent, static_cast<I>(i), static_cast<I>(j));
        }
  }
}

template <typename I>
__global__ void compress_kernel(I* parent, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const I p = parent[i];
    if (p >= 0 && p != static_cast<I>(i)) parent[i] = root_of(parent, p);
  }
}

template <typename I>
__global__ void root_flags_kernel(const I* parent, int64_t n, int32_t* flags) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x)
    flags[i] = parent[i] == static_cast<I>(i) ? 1 : 0;
}

template <typename I>
__global__ void relabel_kernel(const I* parent, const int32_t* rank, int64_t n, int32_t* labels) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const I p = parent[i];
    labels[i] = p < 0 ? 0 : rank[p];
  }
}

// One thread per row: one atomic per run of equal labels rather than per voxel.
__global__ void stats_kernel(const int32_t* labels, int64_t D, int64_t H, int64_t W, unsigned long long* sizes,
                             int32_t* boxes) {
  const int64_t rows = D * H;
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(blockDim.x) * gridDim.x) {
    const int32_t z = static_cast<int32_t>(r / H), y = static_cast<int32_t>(r % H);
    const int32_t* row = labels + r * W;
    int64_t x = 0;
    while (x < W) {
      const int32_t l = row[x];
      const int64_t start = x;
      while (x < W && row[x] == l) ++x;
      if (l == 0) continue;
      int32_t* b = boxes + 6 * int64_t(l - 1);
      atomicAdd(sizes + (l - 1), static_cast<unsigned long long>(x - start));
      atomicMin(b + 0, z);
      atomicMin(b + 1, y);
      atomicMin(b + 2, static_cast<int32_t>(start));
      atomicMax(b + 3, z);
      atomicMax(b + 4, y);
      atomicMax(b + 5, static_cast<int32_t>(x - 1));
    }
  }
}

template <typename V, typename I>
cudaError_t union_find(const V* values, I* parent, int64_t D, int64_t H, int64_t W, int max_nonzero, cudaStream_t stream) {
  const int64_t n = D * H * W;
  if (n == 0) return cudaSuccess;
  const unsigned blocks = blocks_for(n);
  init_kernel<V, I><<<blocks, kThreads, 0, stream>>>(values, parent, n);
  merge_kernel<V, I><<<blocks, kThreads, 0, stream>>>(values, parent, D, H, W, max_nonzero);
  compress_kernel<I><<<blocks, kThreads, 0, stream>>>(parent, n);
  return cudaGetLastError();
}

template <typename I>
cudaError_t union_find_typed(const void* values, CcValueType type, I* parent, int64_t D, int64_t H, int64_t W,
                             int max_nonzero, cudaStream_t stream) {
  switch (type) {
    case CcValueType::kUInt8: return union_find(static_cast<const uint8_t*>(values), parent, D, H, W, max_nonzero, stream);
    case CcValueType::kInt32: return union_find(static_cast<const int32_t*>(values), parent, D, H, W, max_nonzero, stream);
    case CcValueType::kInt64:
      return union_find(static_cast<const long long*>(values), parent, D, H, W, max_nonzero, stream);
    case CcValueType::kFloat32: return union_find(static_cast<const float*>(values), parent, D, H, W, max_nonzero, stream);
    case CcValueType::kFloat64: return union_find(static_cast<const double*>(values), parent, D, H, W, max_nonzero, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

// int64 parents are `long long` here: CUDA's 64-bit atomicMin has no `long` overload.
cudaError_t launch_cc_union_find(const void* values, CcValueType type, void* parent, bool index64, int64_t D, int64_t H,
                                 int64_t W, int max_nonzero, cudaStream_t stream) {
  if (index64) return union_find_typed(values, type, static_cast<long long*>(parent), D, H, W, max_nonzero, stream);
  if (D * H * W >= INT_MAX) return cudaErrorInvalidValue;
  return union_find_typed(values, type, static_cast<int*>(parent), D, H, W, max_nonzero, stream);
}

cudaError_t launch_cc_root_flags(const void* parent, bool index64, int64_t n, int32_t* flags, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (index64)
    root_flags_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const long long*>(parent), n, flags);
  else
    root_flags_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const int*>(parent), n, flags);
  return cudaGetLastError();
}

cudaError_t launch_cc_relabel(const void* parent, bool index64, const int32_t* rank, int64_t n, int32_t* labels,
                              cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (index64)
    relabel_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const long long*>(parent), rank, n, labels);
  else
    relabel_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const int*>(parent), rank, n, labels);
  return cudaGetLastError();
}

cudaError_t launch_cc_stats(const int32_t* labels, int64_t D, int64_t H, int64_t W, int64_t* sizes, int32_t* boxes,
                            cudaStream_t stream) {
  const int64_t rows = D * H;
  if (rows == 0 || W == 0) return cudaSuccess;
  stats_kernel<<<blocks_for(rows), kThreads, 0, stream>>>(labels, D, H, W, reinterpret_cast<unsigned long long*>(sizes),
                                                          boxes);
  return cudaGetLastError();
}

}  // namespace neuroseg::metrics::detail
