#include "io/nifti_header.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "io/error.h"

namespace neuroseg::io {
namespace {

// Field offsets of the two header layouts (nifti1.h, nifti2.h).
struct Layout {
  std::size_t size, datatype, bitpix, dim, pixdim, vox_offset, scl_slope, scl_inter, descrip, qform_code,
      sform_code, quatern, srow_x, xyzt_units, intent_code;
  bool wide;  // NIfTI-2: int64 dims, double floats, int32 codes
};
constexpr Layout kV1{348, 70, 72, 40, 76, 108, 112, 116, 148, 252, 254, 256, 280, 123, 68, false};
constexpr Layout kV2{540, 12, 14, 16, 104, 168, 176, 184, 240, 344, 348, 352, 400, 500, 504, true};

// Largest volume we agree to allocate from a header: 2^36 voxels (64 G). Anything bigger is
// an absurd (corrupt) header, not data.
constexpr int64_t kMaxVoxels = int64_t(1) << 36;

class Reader {
 public:
  Reader(const uint8_t* d, bool swap) : d_(d), swap_(swap) {}
  template <typename T>
  T get(std::size_t off) const {
    T v;
    std::memcpy(&v, d_ + off, sizeof(T));
    if (swap_) {
      auto* b = reinterpret_cast<uint8_t*>(&v);
      for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(b[i], b[sizeof(T) - 1 - i]);
    }
    return v;
  }

 private:
  const uint8_t* d_;
  bool swap_;
};

template <typename T>
void put(std::vector<uint8_t>& b, std::size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof(T));
}

}  // namespace

int nifti_datatype_size(int datatype) {
  switch (datatype) {
    case 2: return 1;     // uint8
    case 256: return 1;   // int8
    case 4: return 2;     // int16
    case 512: return 2;   // uint16
    case 8: return 4;     // int32
    case 16: return 4;    // float32
    case 64: return 8;    // float64
    default: return 0;
  }
}

std::string nifti_datatype_name(int datatype) {
  switch (datatype) {
    case 2: return "uint8";
    case 256: return "int8";
    case 4: return "int16";
    case 512: return "uint16";
    case 8: return "int32";
    case 768: return "uint32";
    case 1024: return "int64";
    case 1280: return "uint64";
    case 16: return "float32";
    case 64: return "float64";
    case 1536: return "float128";
    case 32: return "complex64";
    case 1792: return "complex128";
    case 2048: return "complex256";
    case 128: return "RGB24";
    case 2304: return "RGBA32";
    default: return "code " + std::to_string(datatype);
  }
}

int64_t NiftiHeader::voxel_count() const {
  int64_t n = 1;
  for (int64_t i = 1; i <= dim[0]; ++i) n *= dim[i];
  return n;
}

int64_t NiftiHeader::payload_bytes() const { return voxel_count() * nifti_datatype_size(datatype); }

NiftiHeader parse_nifti_header(const uint8_t* data, std::size_t size, const std::string& subject) {
  if (size < 348) throw Error(subject, "truncated NIfTI header (" + std::to_string(size) + " bytes, need 348)");
  int32_t sizeof_hdr;
  std::memcpy(&sizeof_hdr, data, 4);
  auto swap32 = [](int32_t v) { return static_cast<int32_t>(__builtin_bswap32(static_cast<uint32_t>(v))); };
  NiftiHeader h;
  if (sizeof_hdr == 348 || sizeof_hdr == 540) {
    h.byte_swapped = false;
  } else if (swap32(sizeof_hdr) == 348 || swap32(sizeof_hdr) == 540) {
    h.byte_swapped = true;
    sizeof_hdr = swap32(sizeof_hdr);
  } else {
    throw Error(subject, "not a NIfTI file (sizeof_hdr is " + std::to_string(sizeof_hdr) + ", expected 348 or 540)");
  }
  h.version = sizeof_hdr == 348 ? 1 : 2;
  const Layout& L = h.version == 1 ? kV1 : kV2;
  if (size < L.size) throw Error(subject, "truncated NIfTI-2 header (" + std::to_string(size) + " bytes, need 540)");
  const Reader r(data, h.byte_swapped);

  if (h.version == 1) {
    const char* magic = reinterpret_cast<const char*>(data + 344);
    if (std::memcmp(magic, "ni1\0", 4) == 0)
      throw Error(subject, "NIfTI-1 pair (.hdr/.img) files are not supported; convert to a single .nii");
    if (std::memcmp(magic, "n+1\0", 4) != 0) throw Error(subject, "bad NIfTI-1 magic (not 'n+1')");
  } else {
    const char* magic = reinterpret_cast<const char*>(data + 4);
    if (std::memcmp(magic, "ni2\0", 4) == 0)
      throw Error(subject, "NIfTI-2 pair (.hdr/.img) files are not supported; convert to a single .nii");
    if (std::memcmp(magic, "n+2\0", 4) != 0) throw Error(subject, "bad NIfTI-2 magic (not 'n+2')");
  }

  auto get_int = [&](std::size_t off) -> int64_t { return L.wide ? r.get<int64_t>(off) : r.get<int16_t>(off); };
  auto get_real = [&](std::size_t off) -> double { return L.wide ? r.get<double>(off) : r.get<float>(off); };
  auto get_code = [&](std::size_t off) -> int { return L.wide ? r.get<int32_t>(off) : r.get<int16_t>(off); };

  for (int i = 0; i < 8; ++i) {
    h.dim[i] = get_int(L.dim + i * (L.wide ? 8 : 2));
    h.pixdim[i] = get_real(L.pixdim + i * (L.wide ? 8 : 4));
  }
  h.datatype = r.get<int16_t>(L.datatype);
  h.bitpix = r.get<int16_t>(L.bitpix);
  if (L.wide) {
    h.vox_offset = r.get<int64_t>(L.vox_offset);
  } else {
    const float off = r.get<float>(L.vox_offset);  // NIfTI-1 stores it as a float
    if (!(off >= 0.0f && off < 1e12f)) throw Error(subject, "corrupt NIfTI header: vox_offset is " + std::to_string(off));
    h.vox_offset = static_cast<int64_t>(off);
  }
  h.scl_slope = get_real(L.scl_slope);
  h.scl_inter = get_real(L.scl_inter);
  h.qform_code = get_code(L.qform_code);
  h.sform_code = get_code(L.sform_code);
  const std::size_t step = L.wide ? 8 : 4;
  h.quatern_b = get_real(L.quatern);
  h.quatern_c = get_real(L.quatern + step);
  h.quatern_d = get_real(L.quatern + 2 * step);
  h.qoffset_x = get_real(L.quatern + 3 * step);
  h.qoffset_y = get_real(L.quatern + 4 * step);
  h.qoffset_z = get_real(L.quatern + 5 * step);
  for (int i = 0; i < 4; ++i) {
    h.srow_x[i] = get_real(L.srow_x + i * step);
    h.srow_y[i] = get_real(L.srow_x + (4 + i) * step);
    h.srow_z[i] = get_real(L.srow_x + (8 + i) * step);
  }
  h.xyzt_units = L.wide ? r.get<int32_t>(L.xyzt_units) : data[L.xyzt_units];
  h.intent_code = L.wide ? r.get<int32_t>(L.intent_code) : r.get<int16_t>(L.intent_code);
  h.descrip.assign(reinterpret_cast<const char*>(data + L.descrip), strnlen(reinterpret_cast<const char*>(data + L.descrip), 80));

  // --- validation: every problem names the field ---
  if (h.dim[0] < 1 || h.dim[0] > 7)
    throw Error(subject, "corrupt NIfTI header: dim[0] = " + std::to_string(h.dim[0]) + " (must be 1..7)");
  int64_t voxels = 1;
  for (int64_t i = 1; i <= h.dim[0]; ++i) {
    if (h.dim[i] < 1)
      throw Error(subject, "corrupt NIfTI header: dim[" + std::to_string(i) + "] = " + std::to_string(h.dim[i]));
    if (h.dim[i] > kMaxVoxels || voxels > kMaxVoxels / h.dim[i])
      throw Error(subject, "corrupt NIfTI header: absurd dimensions (more than 2^36 voxels)");
    voxels *= h.dim[i];
  }
  if (nifti_datatype_size(h.datatype) == 0)
    throw Error(subject, "unsupported NIfTI datatype " + nifti_datatype_name(h.datatype) +
                             " (supported: uint8, int8, int16, uint16, int32, float32, float64)");
  if (h.vox_offset < static_cast<int64_t>(L.size))
    throw Error(subject, "corrupt NIfTI header: vox_offset " + std::to_string(h.vox_offset) + " inside the header");
  for (int i = 1; i <= std::min<int64_t>(h.dim[0], 3); ++i)
    if (!std::isfinite(h.pixdim[i])) throw Error(subject, "corrupt NIfTI header: pixdim[" + std::to_string(i) + "] is not finite");
  return h;
}

std::array<double, 16> nifti_best_affine(const NiftiHeader& h) {
  std::array<double, 16> a{};
  a[15] = 1;
  // nibabel fixes pixdim on load: negative -> abs, 0 -> 1 (Nifti1Header._chk_pixdims).
  std::array<double, 3> zooms{};
  for (int i = 0; i < 3; ++i) {
    double z = i + 1 <= h.dim[0] ? std::abs(h.pixdim[i + 1]) : 1.0;
    zooms[i] = z == 0 ? 1.0 : z;
  }
  if (h.sform_code > 0) {
    for (int c = 0; c < 4; ++c) {
      a[c] = h.srow_x[c];
      a[4 + c] = h.srow_y[c];
      a[8 + c] = h.srow_z[c];
    }
    return a;
  }
  if (h.qform_code > 0) {
    double b = h.quatern_b, c = h.quatern_c, d = h.quatern_d;
    double w2 = 1.0 - (b * b + c * c + d * d);
    double w = w2 > 0 ? std::sqrt(w2) : 0.0;  // nibabel's fillpositive: tiny negatives -> 0
    const double n = w * w + b * b + c * c + d * d;
    const double s = n > 0 ? 2.0 / n : 0.0;
    const double R[9] = {1 - s * (c * c + d * d), s * (b * c - w * d),     s * (b * d + w * c),
                         s * (b * c + w * d),     1 - s * (b * b + d * d), s * (c * d - w * b),
                         s * (b * d - w * c),     s * (c * d + w * b),     1 - s * (b * b + c * c)};
    const double qfac = h.pixdim[0] == -1.0 ? -1.0 : 1.0;  // nibabel fixes anything else to 1
    // get_qform reads pixdim[1..3] whatever the rank (a 2D file still has pixdim[3]).
    double vox[3];
    for (int i = 0; i < 3; ++i) vox[i] = h.pixdim[i + 1] == 0 ? 1.0 : std::abs(h.pixdim[i + 1]);
    vox[2] *= qfac;
    for (int r = 0; r < 3; ++r)
      for (int cc = 0; cc < 3; ++cc) a[r * 4 + cc] = R[r * 3 + cc] * vox[cc];
    a[3] = h.qoffset_x;
    a[7] = h.qoffset_y;
    a[11] = h.qoffset_z;
    return a;
  }
  // Analyze base affine (AnalyzeHeader.get_base_affine): x flipped, origin at the centre.
  const double shape[3] = {double(h.dim[1]), h.dim[0] >= 2 ? double(h.dim[2]) : 1.0,
                           h.dim[0] >= 3 ? double(h.dim[3]) : 1.0};
  const double z[3] = {-zooms[0], zooms[1], zooms[2]};
  for (int i = 0; i < 3; ++i) {
    a[i * 4 + i] = z[i];
    a[i * 4 + 3] = -((shape[i] - 1) / 2.0) * z[i];
  }
  return a;
}

void nifti_set_affine(NiftiHeader& h, const std::array<double, 16>& A) {
  h.srow_x = {A[0], A[1], A[2], A[3]};
  h.srow_y = {A[4], A[5], A[6], A[7]};
  h.srow_z = {A[8], A[9], A[10], A[11]};
  double r[3][3];
  double zoom[3];
  for (int c = 0; c < 3; ++c) {
    zoom[c] = std::sqrt(A[c] * A[c] + A[4 + c] * A[4 + c] + A[8 + c] * A[8 + c]);
    for (int row = 0; row < 3; ++row) r[row][c] = zoom[c] > 0 ? A[row * 4 + c] / zoom[c] : (row == c);
  }
  const double det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0]) +
                     r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
  double qfac = 1.0;
  if (det < 0) {
    qfac = -1.0;
    for (int row = 0; row < 3; ++row) r[row][2] = -r[row][2];
  }
  // Rotation -> unit quaternion (nifti_mat44_to_quatern), a >= 0.
  double a = r[0][0] + r[1][1] + r[2][2] + 1.0, b, c, d;
  if (a > 0.5) {
    a = 0.5 * std::sqrt(a);
    b = 0.25 * (r[2][1] - r[1][2]) / a;
    c = 0.25 * (r[0][2] - r[2][0]) / a;
    d = 0.25 * (r[1][0] - r[0][1]) / a;
  } else {
    const double xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
    const double yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
    const double zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
    if (xd > 1.0) {
      b = 0.5 * std::sqrt(xd);
      c = 0.25 * (r[0][1] + r[1][0]) / b;
      d = 0.25 * (r[0][2] + r[2][0]) / b;
      a = 0.25 * (r[2][1] - r[1][2]) / b;
    } else if (yd > 1.0) {
      c = 0.5 * std::sqrt(yd);
      b = 0.25 * (r[0][1] + r[1][0]) / c;
      d = 0.25 * (r[1][2] + r[2][1]) / c;
      a = 0.25 * (r[0][2] - r[2][0]) / c;
    } else {
      d = 0.5 * std::sqrt(zd);
      b = 0.25 * (r[0][2] + r[2][0]) / d;
      c = 0.25 * (r[1][2] + r[2][1]) / d;
      a = 0.25 * (r[1][0] - r[0][1]) / d;
    }
    if (a < 0) b = -b, c = -c, d = -d;
  }
  h.quatern_b = b;
  h.quatern_c = c;
  h.quatern_d = d;
  h.qoffset_x = A[3];
  h.qoffset_y = A[7];
  h.qoffset_z = A[11];
  h.pixdim[0] = qfac;
  for (int i = 0; i < 3; ++i) h.pixdim[i + 1] = zoom[i];
}

std::vector<uint8_t> serialize_nifti_header(NiftiHeader h) {
  const Layout& L = h.version == 2 ? kV2 : kV1;
  std::vector<uint8_t> b(L.size + 4, 0);  // + the 4-byte extension flag (no extensions)
  h.vox_offset = static_cast<int64_t>(L.size + 4);
  put<int32_t>(b, 0, static_cast<int32_t>(L.size));
  if (L.wide) {
    std::memcpy(b.data() + 4, "n+2\0\r\n\032\n", 8);
  } else {
    std::memcpy(b.data() + 344, "n+1\0", 4);
    b[38] = 'r';  // "regular", as nibabel writes
  }
  put<int16_t>(b, L.datatype, static_cast<int16_t>(h.datatype));
  put<int16_t>(b, L.bitpix, static_cast<int16_t>(8 * nifti_datatype_size(h.datatype)));
  const std::size_t step = L.wide ? 8 : 4;
  auto put_real = [&](std::size_t off, double v) {
    if (L.wide) put<double>(b, off, v);
    else put<float>(b, off, static_cast<float>(v));
  };
  auto put_code = [&](std::size_t off, int v) {
    if (L.wide) put<int32_t>(b, off, v);
    else put<int16_t>(b, off, static_cast<int16_t>(v));
  };
  for (int i = 0; i < 8; ++i) {
    if (L.wide) put<int64_t>(b, L.dim + i * 8, h.dim[i]);
    else put<int16_t>(b, L.dim + i * 2, static_cast<int16_t>(h.dim[i]));
    put_real(L.pixdim + i * step, h.pixdim[i]);
  }
  if (L.wide) put<int64_t>(b, L.vox_offset, h.vox_offset);
  else put<float>(b, L.vox_offset, static_cast<float>(h.vox_offset));
  put_real(L.scl_slope, h.scl_slope);
  put_real(L.scl_inter, h.scl_inter);
  put_code(L.qform_code, h.qform_code);
  put_code(L.sform_code, h.sform_code);
  const double q[6] = {h.quatern_b, h.quatern_c, h.quatern_d, h.qoffset_x, h.qoffset_y, h.qoffset_z};
  for (int i = 0; i < 6; ++i) put_real(L.quatern + i * step, q[i]);
  for (int i = 0; i < 4; ++i) {
    put_real(L.srow_x + i * step, h.srow_x[i]);
    put_real(L.srow_x + (4 + i) * step, h.srow_y[i]);
    put_real(L.srow_x + (8 + i) * step, h.srow_z[i]);
  }
  if (L.wide) put<int32_t>(b, L.xyzt_units, h.xyzt_units);
  else b[L.xyzt_units] = static_cast<uint8_t>(h.xyzt_units);
  if (L.wide) put<int32_t>(b, L.intent_code, h.intent_code);
  else put<int16_t>(b, L.intent_code, static_cast<int16_t>(h.intent_code));
  std::memcpy(b.data() + L.descrip, h.descrip.data(), std::min<std::size_t>(h.descrip.size(), 79));
  return b;
}

}  // namespace neuroseg::io
