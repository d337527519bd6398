// neuroseg convert IN OUT: any supported format to any other, optionally reoriented,
// resampled or cast. Output is written to a temporary file and renamed into place.
#include <optional>

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "io/error.h"
#include "io/orientation.h"
#include "io/resample.h"
#include "io/volume_io.h"
#include "metrics/distance_transform.h"

namespace neuroseg::cli {

void add_convert_command(CLI::App& app) {
  struct Args {
    std::string in, out, dtype, orient, interp = "linear", zarr_compressor = "blosc", reference;
    std::optional<double> binarize;
    bool distance_map = false;
    std::vector<double> spacing;
    int64_t zarr_chunk = 64;
    bool no_compress = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("convert", "Convert between formats (NIfTI, MetaImage, NRRD, TIFF, DICOM->, zarr)");
  cmd->add_option("input", a->in, "Input volume (file, DICOM folder or zarr array)")->required();
  cmd->add_option("output", a->out, "Output: .nii, .nii.gz, .mha, .mhd, .nrrd, .nhdr, .tif, .zarr")->required();
  cmd->add_option("--dtype", a->dtype, "On-disk voxel type (default: the input's)")
      ->check(CLI::IsMember({"uint8", "int8", "int16", "uint16", "int32", "float32", "float64"}));
  cmd->add_option("--reorient", a->orient, "Permute/flip axes to an orientation code, e.g. RAS (exact)");
  cmd->add_option("--spacing", a->spacing, "Resample to this spacing in mm (x y z)")->expected(3);
  cmd->add_option("--reference", a->reference, "Resample onto this volume's grid (same direction)");
  cmd->add_option("--binarize-above", a->binarize, "Write a uint8 mask of voxels > T (e.g. a brain mask from a skull-stripped image)");
  cmd->add_flag("--distance-map", a->distance_map,
                "Write the exact Euclidean distance (mm) from each non-zero voxel to the nearest zero voxel (float32)");
  cmd->add_option("--interp", a->interp, "Resampling: linear (images) or nearest (labels)")
      ->check(CLI::IsMember({"linear", "nearest"}));
  cmd->add_option("--zarr-chunk", a->zarr_chunk, "zarr chunk edge in voxels")->check(CLI::PositiveNumber);
  cmd->add_option("--zarr-compressor", a->zarr_compressor, "zarr compressor")
      ->check(CLI::IsMember({"blosc", "zlib", "gzip", "zstd", "none"}));
  cmd->add_flag("--no-compress", a->no_compress, "Store MetaImage/NRRD/.nii.gz payloads uncompressed");
  cmd->callback([a] {
    io::Volume v = io::read_volume(a->in);
    if (a->binarize) {
      v.data = (v.data > *a->binarize).to(at::kByte);
      v.source.dtype = io::DType::UInt8;
      v.source.scl_slope = 1.0;
      v.source.scl_inter = 0.0;
    }
    if (a->distance_map) {
      const auto& sp = v.geometry.spacing;  // (x, y, z) -> the tensor's (D, H, W) = (z, y, x)
      std::vector<at::Tensor> channels;
      for (int64_t c = 0; c < v.channels(); ++c) channels.push_back(metrics::distance_transform_edt(v.data[c], {sp[2], sp[1], sp[0]}));
      v.data = at::stack(channels);
      v.source.dtype = io::DType::Float32;
      v.source.scl_slope = 1.0;
      v.source.scl_inter = 0.0;
    }
    if (!a->orient.empty()) v = io::reorient(v, a->orient);
    if (!a->spacing.empty()) {
      v = io::resample_to_spacing(v, {a->spacing[0], a->spacing[1], a->spacing[2]},
                                  a->interp == "nearest" ? io::Interpolation::Nearest : io::Interpolation::Linear);
    }
    if (!a->reference.empty()) {
      const io::Volume ref = io::read_volume(a->reference);
      v = io::resample_to_grid(v, ref.geometry, ref.size_xyz(),
                               a->interp == "nearest" ? io::Interpolation::Nearest : io::Interpolation::Linear);
    }
    io::WriteOptions options;
    if (!a->dtype.empty()) options.dtype = io::dtype_from_name(a->dtype, "--dtype");
    options.compress = !a->no_compress;
    options.zarr_chunk = a->zarr_chunk;
    options.zarr_compressor = a->zarr_compressor == "none" ? "" : a->zarr_compressor;
    io::write_volume(v, a->out, options);
    std::printf("wrote %s\n", a->out.c_str());
  });
}

}  // namespace neuroseg::cli
