#include "pipelines/preprocess.h"

#include <ATen/ATen.h>

#include "io/error.h"
#include "io/json_args.h"
#include "io/orientation.h"
#include "io/resample.h"

namespace neuroseg::pipelines {

Preprocessing Preprocessing::from_json(const nlohmann::json& j) {
  Preprocessing p;
  io::JsonArgs a("checkpoint preprocessing", j);
  p.orientation = a.get_string("orientation", "");
  const std::vector<double> spacing = a.get_double_list("target_spacing", {}, 1e-6);
  if (!spacing.empty()) {
    if (spacing.size() != 3) a.fail("target_spacing", "needs 3 values (x y z, mm)");
    p.target_spacing = std::array<double, 3>{spacing[0], spacing[1], spacing[2]};
  }
  const nlohmann::json nj = a.get_object("normalization");
  a.finish();
  if (!nj.is_null()) {
    io::JsonArgs n("checkpoint preprocessing.normalization", nj);
    Normalization& o = p.normalization;
    o.scheme = n.get_choice("scheme", o.scheme, {"zscore", "zscore_case", "percentile", "window", "none"});
    o.mean = n.get_double("mean", 0.0, -1e300);
    o.std = n.get_double("std", 1.0, 1e-12);
    o.low = n.get_double("low", 0.0, -1e300);
    o.high = n.get_double("high", 1.0, -1e300);
    o.foreground_only = n.get_bool("foreground_only", false);
    n.finish();
    if ((o.scheme == "percentile" || o.scheme == "window") && !(o.high > o.low)) n.fail("high", "must be greater than 'low'");
  }
  if (!p.orientation.empty()) io::reorient(io::Volume{at::zeros({1, 2, 2, 2}), {}, {}}, p.orientation);  // validates the code
  return p;
}

nlohmann::json Preprocessing::to_json() const {
  nlohmann::json j;
  if (!orientation.empty()) j["orientation"] = orientation;
  if (target_spacing) j["target_spacing"] = *target_spacing;
  j["normalization"] = {{"scheme", normalization.scheme}, {"mean", normalization.mean}, {"std", normalization.std},
                        {"low", normalization.low}, {"high", normalization.high},
                        {"foreground_only", normalization.foreground_only}};
  return j;
}

at::Tensor normalize(at::Tensor x, const Normalization& n) {
  if (n.scheme == "none") return x;
  if (n.scheme == "window") return x.clamp(n.low, n.high).sub_(n.low).div_(n.high - n.low);
  if (n.scheme == "percentile") x = x.clamp(n.low, n.high);
  if (n.scheme == "zscore" || n.scheme == "percentile") return x.sub(n.mean).div_(n.std);
  // zscore_case: per channel statistics of this image (optionally of its non-zero voxels).
  at::Tensor out = at::empty_like(x);
  for (int64_t c = 0; c < x.size(0); ++c) {
    const at::Tensor ch = x[c];
    at::Tensor sel = n.foreground_only ? ch.masked_select(ch != 0) : ch.reshape({-1});
    if (sel.numel() < 2) sel = ch.reshape({-1});
    const double mean = sel.mean().item<double>();
    const double std = std::max(sel.std().item<double>(), 1e-8);
    out[c] = (ch - mean) / std;
  }
  return out;
}

PreparedCase prepare_case(const io::Volume& input, const Preprocessing& p) {
  PreparedCase c;
  c.input_grid.geometry = input.geometry;
  c.input_grid.source = input.source;
  // Shape only (a zero-stride view, nothing allocated): size_xyz() and name() need it.
  c.input_grid.data = at::zeros({1, 1, 1, 1}, at::kByte).expand(input.data.sizes());
  io::Volume v = input;
  v.data = v.data.to(at::kFloat);
  if (!p.orientation.empty()) v = io::reorient(v, p.orientation);
  c.reoriented_geometry = v.geometry;
  c.reoriented_size = v.size_xyz();
  if (p.target_spacing) v = io::resample_to_spacing(v, *p.target_spacing, io::Interpolation::Linear);
  c.network_geometry = v.geometry;
  if (const int64_t bad = io::count_non_finite(v); bad > 0) v.data = at::nan_to_num(v.data, 0.0, 0.0, 0.0);
  c.image = normalize(v.data.contiguous(), p.normalization).contiguous();
  return c;
}

io::Volume restore_to_input(const at::Tensor& prediction, const PreparedCase& c) {
  io::Volume v;
  v.data = prediction;
  v.geometry = c.network_geometry;
  v.source.dtype = io::DType::Float32;
  v = io::resample_to_grid(v, c.reoriented_geometry, c.reoriented_size, io::Interpolation::Linear);
  v = io::reorient(v, c.input_grid.geometry.orientation_code());
  const auto want = c.input_grid.size_xyz();
  if (v.size_xyz() != want) throw io::Error(c.input_grid.name(), "internal error: prediction does not map back onto the input grid");
  v.geometry = c.input_grid.geometry;  // bit-exact (reorientation arithmetic is within 1e-12)
  v.source = c.input_grid.source;
  return v;
}

}  // namespace neuroseg::pipelines
