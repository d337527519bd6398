#include "bench/ops/op_registry.h"
#include "metrics/distance_transform.h"

NEUROSEG_BENCH_OP(edt, "exact Euclidean distance transform with the volume's spacing (float32)") {
  return neuroseg::metrics::distance_transform_edt(in.data, in.spacing_zyx);
}
