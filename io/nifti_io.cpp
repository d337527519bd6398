// NIfTI-1/2 reading and writing with nibabel's semantics (sform before qform, scl_slope,
// 4D as channels). zlib's gzFile reads .nii and .nii.gz alike, streaming into the tensor.
#include <cmath>
#include <cstring>

#include <ATen/ATen.h>
#include <zlib.h>

#include "io/atomic_output.h"
#include "io/error.h"
#include "io/nifti_header.h"
#include "io/volume_io.h"

namespace neuroseg::io {
namespace {

struct GzFile {
  gzFile f = nullptr;
  ~GzFile() {
    if (f) gzclose(f);
  }
};

// zlib's error for a stream, as one of our messages ("truncated ..." / "corrupt ...").
[[noreturn]] void throw_gz_error(gzFile f, const std::string& path, const char* what) {
  int errnum = 0;
  std::string msg = gzerror(f, &errnum);
  if (msg.find("unexpected end of file") != std::string::npos)
    throw Error(path, std::string("truncated file: the gzip stream ends inside ") + what);
  if (auto colon = msg.rfind(": "); colon != std::string::npos) msg = msg.substr(colon + 2);  // drop the path
  throw Error(path, "corrupt gzip data (" + msg + ")");
}

// Reads exactly n bytes or throws: distinguishes truncation from corrupt compression.
void gz_read_exact(gzFile f, uint8_t* dst, int64_t n, const std::string& path, const char* what) {
  int64_t done = 0;
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - done, 1 << 30));
    const int got = gzread(f, dst + done, chunk);
    if (got < 0) throw_gz_error(f, path, what);
    if (got == 0) {
      int errnum = 0;
      gzerror(f, &errnum);
      if (errnum != Z_OK && errnum != Z_STREAM_END) throw_gz_error(f, path, what);
      throw Error(path, std::string("truncated file: ") + what + " needs " + std::to_string(n) + " bytes, found " +
                            std::to_string(done));
    }
    done += got;
  }
}

DType dtype_of_nifti(int code) {
  switch (code) {
    case 2: return DType::UInt8;
    case 256: return DType::Int8;
    case 4: return DType::Int16;
    case 512: return DType::UInt16;
    case 8: return DType::Int32;
    case 16: return DType::Float32;
    default: return DType::Float64;  // 64; others were rejected by the header parser
  }
}

int nifti_code_of(DType d) {
  switch (d) {
    case DType::UInt8: return 2;
    case DType::Int8: return 256;
    case DType::Int16: return 4;
    case DType::UInt16: return 512;
    case DType::Int32: return 8;
    case DType::Float32: return 16;
    case DType::Float64: return 64;
  }
  return 16;
}

void byteswap_buffer(uint8_t* p, int64_t count, int itemsize) {
  for (int64_t i = 0; i < count; ++i, p += itemsize)
    for (int k = 0; k < itemsize / 2; ++k) std::swap(p[k], p[itemsize - 1 - k]);
}

}  // namespace

Volume read_nifti(const std::string& path) {
  GzFile gz;
  gz.f = gzopen(path.c_str(), "rb");
  if (!gz.f) throw Error(path, "cannot open file (missing or unreadable)");
  gzbuffer(gz.f, 1 << 17);
  uint8_t hdr_bytes[540] = {0};
  const int got = gzread(gz.f, hdr_bytes, 348);
  if (got < 0) throw_gz_error(gz.f, path, "the header");
  std::size_t header_size = static_cast<std::size_t>(got);
  int32_t sizeof_hdr = 0;
  std::memcpy(&sizeof_hdr, hdr_bytes, 4);
  if (got == 348 && (sizeof_hdr == 540 || static_cast<int32_t>(__builtin_bswap32(sizeof_hdr)) == 540)) {
    gz_read_exact(gz.f, hdr_bytes + 348, 540 - 348, path, "the NIfTI-2 header");
    header_size = 540;
  }
  const NiftiHeader h = parse_nifti_header(hdr_bytes, header_size, path);
  // Skip extensions up to vox_offset.
  int64_t to_skip = h.vox_offset - static_cast<int64_t>(header_size);
  std::vector<uint8_t> skip(static_cast<std::size_t>(std::min<int64_t>(to_skip, 1 << 20)));
  while (to_skip > 0) {
    const int64_t n = std::min<int64_t>(to_skip, static_cast<int64_t>(skip.size()));
    gz_read_exact(gz.f, skip.data(), n, path, "the header extensions");
    to_skip -= n;
  }

  const int64_t nx = h.dim[1], ny = h.dim[0] >= 2 ? h.dim[2] : 1, nz = h.dim[0] >= 3 ? h.dim[3] : 1;
  int64_t nc = 1;
  for (int64_t i = 4; i <= h.dim[0]; ++i) nc *= h.dim[i];
  const DType dtype = dtype_of_nifti(h.datatype);
  const at::ScalarType disk_type = dtype == DType::UInt16 ? at::kUInt16 : memory_scalar_type(dtype);
  at::Tensor raw = at::empty({nc, nz, ny, nx}, at::TensorOptions().dtype(disk_type));
  const int itemsize = nifti_datatype_size(h.datatype);
  gz_read_exact(gz.f, static_cast<uint8_t*>(raw.data_ptr()), raw.numel() * itemsize, path, "the voxel data");
  // Reading one byte past the payload makes zlib verify the gzip CRC of the whole member.
  uint8_t extra;
  if (gzread(gz.f, &extra, 1) < 0) throw_gz_error(gz.f, path, "the gzip trailer");
  if (h.byte_swapped) byteswap_buffer(static_cast<uint8_t*>(raw.data_ptr()), raw.numel(), itemsize);

  Volume v;
  v.data = dtype == DType::UInt16 ? raw.to(at::kInt) : raw;
  double shear = 0;
  try {
    v.geometry = Geometry::from_affine_ras(nifti_best_affine(h), &shear);
  } catch (const Error& e) {
    throw Error(path, "corrupt NIfTI header: " + e.problem());
  }
  if (shear > 1e-6)
    warn(path + ": sheared affine replaced by its nearest rotation (max residual " + std::to_string(shear) +
         "); written files will carry the unsheared geometry");
  v.source.path = path;
  v.source.dtype = dtype;
  v.source.nifti_version = h.version;
  v.source.spatial_dims = h.dim[0] >= 3 ? 3 : 2;
  v.source.channel_axis = nc == 1 ? "none" : (h.dim[0] >= 5 && h.dim[4] == 1 ? "vector" : "4d");
  v.source.qform_code = h.qform_code;
  v.source.sform_code = h.sform_code;
  v.source.xyzt_units = h.xyzt_units;
  v.source.time_step = h.dim[0] >= 4 ? h.pixdim[4] : 0.0;

  // nibabel: slope 0 or non-finite means "no scaling"; a non-finite inter means 0.
  double slope = h.scl_slope, inter = std::isfinite(h.scl_inter) ? h.scl_inter : 0.0;
  if (slope == 0 || !std::isfinite(slope)) slope = 1.0, inter = 0.0;
  if (slope != 1.0 || inter != 0.0) {
    const bool wide = dtype == DType::Int32 || dtype == DType::Float64;
    v.data = v.data.to(wide ? at::kDouble : at::kFloat).mul_(slope).add_(inter);
    v.source.scl_slope = slope;
    v.source.scl_inter = inter;
  }
  return v;
}

void write_nifti(const Volume& v, const std::string& path, const WriteOptions& options) {
  const DiskVoxels disk = to_disk_voxels(v, options.dtype, /*can_store_scaling=*/true, path);
  NiftiHeader h;
  h.version = v.source.nifti_version == 2 ? 2 : 1;
  const auto s = v.size_xyz();
  const int64_t nc = v.channels();
  const int64_t limit = h.version == 1 ? 32767 : (int64_t(1) << 40);
  for (int64_t d : {s[0], s[1], s[2], nc})
    if (d > limit) throw Error(path, "dimension " + std::to_string(d) + " too large for NIfTI-1; write NIfTI-2 or zarr");
  h.dim = {3, s[0], s[1], s[2], 1, 1, 1, 1};
  if (nc > 1) {
    if (v.source.channel_axis == "vector") h.dim[0] = 5, h.dim[5] = nc, h.intent_code = 1007;  // vector
    else h.dim[0] = 4, h.dim[4] = nc;
  } else if (v.source.spatial_dims == 2 && s[2] == 1) {
    h.dim[0] = 2;
  }
  h.pixdim = {1, 1, 1, 1, 1, 1, 1, 1};
  nifti_set_affine(h, v.geometry.affine_ras());
  if (h.dim[0] >= 4) h.pixdim[4] = v.source.time_step;
  h.datatype = nifti_code_of(disk.dtype);
  h.scl_slope = disk.scl_slope;
  h.scl_inter = disk.scl_inter;
  if (disk.scl_slope == 1.0 && disk.scl_inter == 0.0) h.scl_slope = 1.0, h.scl_inter = 0.0;
  // Keep the source's codes; a volume with neither would lose its geometry, so mark it scanner.
  h.qform_code = v.source.qform_code;
  h.sform_code = v.source.sform_code;
  if (h.qform_code <= 0 && h.sform_code <= 0) h.qform_code = 1, h.sform_code = 1;
  h.xyzt_units = v.source.xyzt_units ? v.source.xyzt_units : (2 | 8);
  h.descrip = "neuroseg " NEUROSEG_VERSION;
  const std::vector<uint8_t> header = serialize_nifti_header(h);

  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  AtomicOutput out(path);
  gzFile f = gzopen(out.path().c_str(), gz && options.compress ? "wb1" : "wbT");
  if (!f) throw Error(path, "cannot open output for writing");
  const uint8_t* payload = static_cast<const uint8_t*>(disk.data.data_ptr());
  int64_t remaining = disk.data.numel() * static_cast<int64_t>(dtype_size(disk.dtype));
  bool ok = gzwrite(f, header.data(), static_cast<unsigned>(header.size())) == static_cast<int>(header.size());
  while (ok && remaining > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(remaining, 1 << 30));
    ok = gzwrite(f, payload, chunk) == static_cast<int>(chunk);
    payload += chunk;
    remaining -= chunk;
  }
  ok = (gzclose(f) == Z_OK) && ok;
  if (!ok) throw Error(path, "write failed (disk full or not writable)");
  out.commit();
}

}  // namespace neuroseg::io
