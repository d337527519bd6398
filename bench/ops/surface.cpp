#include <ATen/ATen.h>

#include "bench/ops/op_registry.h"
#include "metrics/surface_distance.h"

// --param "PRED_LABEL,REF_LABEL": the input holds both masks as labels (e.g. 1 = prediction
// only, 2 = reference only, 3 = both, as bit flags); the result is a float32 volume holding
// each prediction surface voxel's distance to the reference surface (0 elsewhere), used to
// time the whole surface-distance path.
NEUROSEG_BENCH_OP(surface, "surface distances: bit 1 of the input = prediction, bit 2 = reference") {
  const at::Tensor v = in.data.to(at::kInt);
  const at::Tensor pred = (v & 1) != 0, ref = (v & 2) != 0;
  const auto d = neuroseg::metrics::surface_distances(pred, ref, in.spacing_zyx);
  at::Tensor out = at::zeros(pred.sizes(), at::kFloat);
  const at::Tensor sp = neuroseg::metrics::surface_voxels(pred.cpu());
  if (d.pred_to_ref.numel() == sp.sum().item<int64_t>()) out.masked_scatter_(sp, d.pred_to_ref);
  return out;
}
