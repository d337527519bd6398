#include <ATen/ATen.h>

#include "bench/ops/op_registry.h"
#include "metrics/surface_distance.h"

// The input holds both masks as bit flags of one label volume (bit 1 = prediction, bit 2 =
// reference); `prepare` unpacks them untimed into a (2, D, H, W) bool tensor, so the timed
// part is what a caller holding two masks pays: the directed distance sets and HD, HD95, ASSD
// and NSD (1 mm) from them, returned as four values (the bench compares them with MONAI).
// --param deepmind: DeepMind's surfel convention instead of MONAI's.
static neuroseg::bench::OpInput unpack_surface_masks(const neuroseg::bench::OpInput& in) {
  const at::Tensor v = in.data.to(at::kInt);
  return {at::stack({(v & 1) != 0, (v & 2) != 0}), in.spacing_zyx, in.param};
}

NEUROSEG_BENCH_OP_PREPARED(surface, "HD/HD95/ASSD/NSD: bit 1 of the input = prediction, bit 2 = reference",
                           unpack_surface_masks) {
  const auto convention = in.param.empty() ? neuroseg::metrics::SurfaceConvention::kMonai
                                           : neuroseg::metrics::parse_surface_convention(in.param);
  const auto d = neuroseg::metrics::surface_distances(in.data[0], in.data[1], in.spacing_zyx, convention);
  const auto m = neuroseg::metrics::surface_metrics(d, 1.0, 95.0);
  return at::tensor({m.hd, m.hd95, m.assd, m.nsd}, at::kDouble);
}
