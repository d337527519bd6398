#include "bench/ops/op_registry.h"
#include "metrics/skeleton.h"

NEUROSEG_BENCH_OP(skeleton, "skeleton of the mask (non-zero), skimage's skeletonize_3d, uint8 {0, 1}") {
  return neuroseg::metrics::skeletonize(in.data);
}

NEUROSEG_BENCH_OP(skeleton_labels, "one skeleton per label value (integer input), skeleton voxels keep their label") {
  return neuroseg::metrics::skeletonize_labels(in.data);
}
