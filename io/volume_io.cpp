#include "io/volume_io.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <ATen/ATen.h>

#include "io/error.h"

namespace fs = std::filesystem;

namespace neuroseg::io {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(),
                    [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
}

std::string strip_slash(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

}  // namespace

const char* format_name(Format f) {
  switch (f) {
    case Format::Nifti: return "nifti";
    case Format::MetaImage: return "metaimage";
    case Format::Nrrd: return "nrrd";
    case Format::Tiff: return "tiff";
    case Format::Dicom: return "dicom";
    case Format::Zarr: return "zarr";
  }
  return "?";
}

Format detect_output_format(const std::string& raw) {
  const std::string p = strip_slash(raw);
  if (ends_with(p, ".nii") || ends_with(p, ".nii.gz")) return Format::Nifti;
  if (ends_with(p, ".mha") || ends_with(p, ".mhd")) return Format::MetaImage;
  if (ends_with(p, ".nrrd") || ends_with(p, ".nhdr")) return Format::Nrrd;
  if (ends_with(p, ".tif") || ends_with(p, ".tiff")) return Format::Tiff;
  if (ends_with(p, ".zarr") || p.find(".zarr/") != std::string::npos) return Format::Zarr;
  if (ends_with(p, ".dcm")) throw Error(raw, "writing DICOM is not supported (write .nii.gz, .mha or .nrrd)");
  throw Error(raw, "unknown output format (use .nii, .nii.gz, .mha, .mhd, .nrrd, .nhdr, .tif, .tiff or .zarr)");
}

Format detect_input_format(const std::string& raw) {
  const std::string p = strip_slash(raw);
  std::error_code ec;
  if (!fs::exists(p, ec)) throw Error(raw, "no such file or folder");
  if (fs::is_directory(p, ec)) {
    if (fs::exists(fs::path(p) / ".zarray")) return Format::Zarr;
    if (fs::exists(fs::path(p) / ".zgroup"))
      throw Error(raw, "is a zarr group, not an array; name an array inside it, e.g. " + p + "/volumes/raw");
    return Format::Dicom;  // read_itk says so clearly when the folder holds no DICOM series
  }
  if (ends_with(p, ".dcm") || ends_with(p, ".ima")) return Format::Dicom;
  if (ends_with(p, ".nii") || ends_with(p, ".nii.gz")) return Format::Nifti;
  if (ends_with(p, ".mha") || ends_with(p, ".mhd")) return Format::MetaImage;
  if (ends_with(p, ".nrrd") || ends_with(p, ".nhdr")) return Format::Nrrd;
  if (ends_with(p, ".tif") || ends_with(p, ".tiff")) return Format::Tiff;
  throw Error(raw, "unknown file format (expected NIfTI, MetaImage, NRRD, TIFF, DICOM or zarr)");
}

Volume read_volume(const std::string& path) {
  const Format f = detect_input_format(path);
  Volume v;
  switch (f) {
    case Format::Nifti: v = read_nifti(path); break;
    case Format::Zarr: v = read_zarr(strip_slash(path)); break;
    default: v = read_itk(path, f); break;
  }
  v.source.format = format_name(f);
  if (v.data.numel() == 0) throw Error(path, "volume has no voxels");
  const int64_t bad = count_non_finite(v);
  if (bad > 0) warn(path + ": " + std::to_string(bad) + " of " + std::to_string(v.data.numel()) + " voxels are NaN or Inf");
  return v;
}

void write_volume(const Volume& volume, const std::string& path, const WriteOptions& options) {
  if (!volume.data.defined() || volume.data.dim() != 4)
    throw Error(path, "cannot write: volume data must be a (C, Z, Y, X) tensor");
  const Format f = detect_output_format(path);
  switch (f) {
    case Format::Nifti: write_nifti(volume, path, options); break;
    case Format::Zarr: write_zarr(volume, strip_slash(path), options); break;
    default: write_itk(volume, path, f, options); break;
  }
}

DiskVoxels to_disk_voxels(const Volume& v, std::optional<DType> dtype, bool can_store_scaling, const std::string& path) {
  DiskVoxels out;
  at::Tensor x = v.data.detach().to(at::kCPU).contiguous();
  if (x.scalar_type() == at::kBool) x = x.to(at::kByte);
  out.dtype = dtype ? *dtype : v.source.dtype;
  const bool is_float_data = at::isFloatingType(x.scalar_type());

  // Scaled NIfTI: try to store the original integers plus slope/inter (exact inverse only).
  if (!dtype && can_store_scaling && v.source.scaled() && dtype_is_integer(out.dtype) && is_float_data) {
    at::Tensor raw = ((x.to(at::kDouble) - v.source.scl_inter) / v.source.scl_slope).round();
    at::Tensor back = (raw * v.source.scl_slope + v.source.scl_inter).to(x.scalar_type());
    const bool exact = at::equal(back, x) && raw.min().item<double>() >= dtype_min(out.dtype) &&
                       raw.max().item<double>() <= dtype_max(out.dtype);
    if (exact) {
      out.scl_slope = v.source.scl_slope;
      out.scl_inter = v.source.scl_inter;
      x = raw;
    } else {
      out.dtype = x.scalar_type() == at::kDouble ? DType::Float64 : DType::Float32;
    }
  } else if (!dtype && v.source.scaled() && is_float_data && dtype_is_integer(out.dtype)) {
    out.dtype = x.scalar_type() == at::kDouble ? DType::Float64 : DType::Float32;  // scaling can't be stored
  } else if (!dtype && is_float_data && dtype_is_integer(out.dtype)) {
    // A computed float volume whose source was integer: keep float unless values are integral.
    if (x.numel() > 0 && !at::equal(x, x.round())) out.dtype = x.scalar_type() == at::kDouble ? DType::Float64 : DType::Float32;
  }

  if (dtype_is_integer(out.dtype) && x.numel() > 0) {
    if (is_float_data && !at::isfinite(x).all().item<bool>())
      throw Error(path, std::string("NaN/Inf voxels cannot be written as ") + dtype_name(out.dtype));
    const double lo = x.min().item<double>(), hi = x.max().item<double>();
    if (lo < dtype_min(out.dtype) || hi > dtype_max(out.dtype))
      throw Error(path, std::string("values [") + std::to_string(lo) + ", " + std::to_string(hi) + "] do not fit " +
                            dtype_name(out.dtype) + "; choose a wider --dtype");
    if (is_float_data && !at::equal(x, x.round()))
      throw Error(path, std::string("non-integer values cannot be written as ") + dtype_name(out.dtype));
  }
  const at::ScalarType disk_type = out.dtype == DType::UInt16 ? at::kUInt16 : memory_scalar_type(out.dtype);
  out.data = x.to(disk_type).contiguous();
  return out;
}

}  // namespace neuroseg::io
