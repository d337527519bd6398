#include <string>

#include "bench/ops/op_registry.h"
#include "io/error.h"
#include "metrics/connected_components.h"

NEUROSEG_BENCH_OP(components, "connected components, cc3d numbering (--param connectivity: 6, 18, 26; 4, 8 for one slice; default 26), int32 labels") {
  int connectivity = 26;
  if (!in.param.empty()) {
    try {
      size_t used = 0;
      connectivity = std::stoi(in.param, &used);
      if (used != in.param.size()) throw std::invalid_argument(in.param);
    } catch (const std::exception&) {
      throw neuroseg::io::Error("--param", "expects a connectivity (4, 6, 8, 18 or 26), got '" + in.param + "'");
    }
  }
  // Labels only, as cc3d returns them.
  return neuroseg::metrics::connected_components(in.data, connectivity, neuroseg::metrics::ComponentStats::kNone).labels;
}
