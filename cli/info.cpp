// neuroseg info FILE [--json]: what a volume is, where it sits in space, what it holds.
#include <cmath>
#include <cstdio>
#include <sstream>

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "io/finite_stats.h"
#include "io/volume_io.h"

namespace neuroseg::cli {
namespace {

nlohmann::json describe(const io::Volume& v) {
  nlohmann::json j;
  const auto s = v.size_xyz();
  j["path"] = v.source.path;
  j["format"] = v.source.format;
  j["size_xyz"] = {s[0], s[1], s[2]};
  j["channels"] = v.channels();
  j["channel_axis"] = v.source.channel_axis;
  j["spatial_dims"] = v.source.spatial_dims;
  j["dtype"] = io::dtype_name(v.source.dtype);
  j["spacing"] = v.geometry.spacing;
  j["origin_lps"] = v.geometry.origin;
  j["direction_lps"] = {{v.geometry.dir(0, 0), v.geometry.dir(0, 1), v.geometry.dir(0, 2)},
                        {v.geometry.dir(1, 0), v.geometry.dir(1, 1), v.geometry.dir(1, 2)},
                        {v.geometry.dir(2, 0), v.geometry.dir(2, 1), v.geometry.dir(2, 2)}};
  const auto a = v.geometry.affine_ras();
  j["affine_ras"] = {{a[0], a[1], a[2], a[3]}, {a[4], a[5], a[6], a[7]}, {a[8], a[9], a[10], a[11]}, {0, 0, 0, 1}};
  j["orientation"] = v.geometry.orientation_code();
  if (v.source.scaled()) j["scaling"] = {{"slope", v.source.scl_slope}, {"inter", v.source.scl_inter}};
  const io::FiniteStats stats = io::finite_stats(v.data);
  if (stats.finite > 0) j["range"] = {stats.min, stats.max};
  j["non_finite_voxels"] = stats.non_finite;
  return j;
}

std::string fmt3(const std::array<double, 3>& v) {
  std::ostringstream s;
  s.precision(6);
  s << v[0] + 0.0 << " x " << v[1] + 0.0 << " x " << v[2] + 0.0;
  return s.str();
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show shape, dtype, spacing, origin, direction, orientation and value range");
  auto path = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("file", *path, "Volume: .nii(.gz), .mha/.mhd, .nrrd, .tif, DICOM file or folder, zarr array")->required();
  cmd->add_flag("--json", *as_json, "Print JSON (geometry in LPS and the RAS affine nibabel reports)");
  cmd->callback([path, as_json] {
    const io::Volume v = io::read_volume(*path);
    const nlohmann::json j = describe(v);
    if (*as_json) {
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    const auto s = v.size_xyz();
    std::printf("file         %s (%s)\n", path->c_str(), v.source.format.c_str());
    std::printf("size         %lld x %lld x %lld voxels (x y z)", (long long)s[0], (long long)s[1], (long long)s[2]);
    if (v.channels() > 1) std::printf(", %lld channels (%s)", (long long)v.channels(), v.source.channel_axis.c_str());
    std::printf("\ndtype        %s%s\n", io::dtype_name(v.source.dtype),
                v.source.scaled() ? (" (scaled: slope " + std::to_string(v.source.scl_slope) + ", inter " +
                                     std::to_string(v.source.scl_inter) + ")").c_str() : "");
    std::printf("spacing      %s mm\n", fmt3(v.geometry.spacing).c_str());
    std::printf("origin       %s mm (LPS)\n", fmt3(v.geometry.origin).c_str());
    auto d = [&](int r, int c) { return v.geometry.dir(r, c) + 0.0; };  // + 0.0: print 0, not -0
    std::printf("direction    [%g %g %g; %g %g %g; %g %g %g] (LPS, columns = i j k)\n", d(0, 0), d(0, 1), d(0, 2),
                d(1, 0), d(1, 1), d(1, 2), d(2, 0), d(2, 1), d(2, 2));
    std::printf("orientation  %s\n", v.geometry.orientation_code().c_str());
    if (j.contains("range"))
      std::printf("range        [%g, %g]\n", j["range"][0].get<double>(), j["range"][1].get<double>());
    if (j["non_finite_voxels"].get<int64_t>() > 0)
      std::printf("non-finite   %lld voxels\n", (long long)j["non_finite_voxels"].get<int64_t>());
  });
}

}  // namespace neuroseg::cli
