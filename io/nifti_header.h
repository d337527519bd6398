#pragma once
// NIfTI-1 and NIfTI-2 headers: parsing (either byte order), the affine nibabel would
// report, and writing. Torch-free so that a libFuzzer target can drive it.
//
// Why not ITK's NIfTI IO: ITK 5.2 cannot read NIfTI-2, prefers the qform when both
// qform and sform are set (nibabel, FSL and SPM prefer the sform), reads 4D files as
// 3D and drops their direction, and refuses sheared affines. See docs/io.md.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace neuroseg::io {

struct NiftiHeader {
  int version = 1;                 ///< 1 (348-byte header) or 2 (540-byte header)
  bool byte_swapped = false;       ///< file is in the other byte order
  std::array<int64_t, 8> dim{};    ///< dim[0] = rank, dim[1..7] = sizes
  std::array<double, 8> pixdim{};  ///< pixdim[0] = qfac
  int datatype = 0;
  int bitpix = 0;
  int64_t vox_offset = 0;
  double scl_slope = 0, scl_inter = 0;
  int qform_code = 0, sform_code = 0;
  double quatern_b = 0, quatern_c = 0, quatern_d = 0;
  double qoffset_x = 0, qoffset_y = 0, qoffset_z = 0;
  std::array<double, 4> srow_x{}, srow_y{}, srow_z{};
  int xyzt_units = 0;
  int intent_code = 0;
  std::string descrip;

  int64_t voxel_count() const;           ///< product of dim[1..dim[0]]
  int64_t payload_bytes() const;         ///< voxel_count * bytes per voxel
};

/// Bytes per voxel of a NIfTI datatype code; 0 when neuroseg does not support it.
int nifti_datatype_size(int datatype);
/// Human name of a datatype code ("int16", "complex64", "RGB24", ...).
std::string nifti_datatype_name(int datatype);

/// Parses the first 348/540 bytes. Validates magic, rank, sizes (no absurd dimensions),
/// vox_offset and datatype. Throws io::Error naming `subject`.
NiftiHeader parse_nifti_header(const uint8_t* data, std::size_t size, const std::string& subject);

/// The voxel->RAS affine nibabel's get_best_affine() returns: sform if sform_code > 0,
/// else qform if qform_code > 0, else the Analyze base affine (x flipped, centred).
std::array<double, 16> nifti_best_affine(const NiftiHeader& h);

/// Sets qform (quaternion + qfac) and sform from a voxel->RAS affine whose 3x3 is
/// orthogonal up to column scaling (nifti_mat44_to_quatern).
void nifti_set_affine(NiftiHeader& h, const std::array<double, 16>& affine_ras);

/// Little-endian header + 4 zero extension bytes; vox_offset is set to 352 (v1) / 544 (v2).
std::vector<uint8_t> serialize_nifti_header(NiftiHeader h);

}  // namespace neuroseg::io
