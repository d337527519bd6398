#pragma once
// Reading and writing volumes in every supported format, chosen by the path:
//   .nii .nii.gz        NIfTI-1/2 (our codec, nibabel semantics; see io/nifti_header.h)
//   .mha .mhd           MetaImage (ITK)
//   .nrrd .nhdr         NRRD (ITK)
//   .tif .tiff          TIFF stack (ITK)
//   .dcm, or a folder of DICOM files   DICOM (ITK + GDCM; read only)
//   a folder holding .zarray (e.g. sample.zarr/volumes/raw)   zarr v2 (our codec)
// Outputs are written to a temporary folder and renamed into place (io/atomic_output.h).
#include <optional>
#include <string>
#include <vector>

#include "io/volume.h"

namespace neuroseg::io {

enum class Format { Nifti, MetaImage, Nrrd, Tiff, Dicom, Zarr };
const char* format_name(Format f);
/// Format of an existing input path (looks at the folder contents for zarr/DICOM).
Format detect_input_format(const std::string& path);
/// Format implied by an output path's extension (".zarr" or a trailing "/" + zarr marks zarr).
Format detect_output_format(const std::string& path);

/// \brief Reads any supported volume. Warns (io::warn) when voxels are NaN/Inf, with the
/// count. Throws io::Error "<path>: <problem>" for missing, truncated or corrupt files.
Volume read_volume(const std::string& path);

struct WriteOptions {
  /// On-disk voxel type; default: the volume's source dtype. Values must fit exactly.
  std::optional<DType> dtype;
  /// NIfTI: written gzip'd when the name ends .gz. MetaImage/NRRD: compressed payload.
  bool compress = true;
  /// zarr: chunk edge (per spatial axis; channels are chunked by 1) and compressor id
  /// ("blosc", "zlib", "gzip", "zstd" or "" for none).
  int64_t zarr_chunk = 64;
  std::string zarr_compressor = "blosc";
};

/// \brief Writes a volume atomically; throws io::Error naming `path`.
void write_volume(const Volume& volume, const std::string& path, const WriteOptions& options = {});

/// \brief The volume's voxels as the on-disk dtype `dtype` (contiguous CPU tensor; uint16
/// as at::kUInt16), with the NIfTI scaling to store (slope 1, inter 0 when none).
/// Scaled NIfTI data goes back to its integer type only when that is exact.
struct DiskVoxels {
  at::Tensor data;
  DType dtype;
  double scl_slope = 1.0, scl_inter = 0.0;
};
DiskVoxels to_disk_voxels(const Volume& v, std::optional<DType> dtype, bool can_store_scaling,
                          const std::string& path);

/// Per-format entry points (used by read_volume/write_volume; exposed for tests).
Volume read_nifti(const std::string& path);
void write_nifti(const Volume& v, const std::string& path, const WriteOptions& options);
Volume read_zarr(const std::string& path);
void write_zarr(const Volume& v, const std::string& path, const WriteOptions& options);
Volume read_itk(const std::string& path, Format format);
void write_itk(const Volume& v, const std::string& path, Format format, const WriteOptions& options);

}  // namespace neuroseg::io
