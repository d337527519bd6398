#pragma once
// Volume = voxels (C, Z, Y, X) + physical geometry + where the voxels came from.
//
// Conventions (ITK's, so that every reader/writer agrees):
//  * index axes are (x, y, z) = (i, j, k); the tensor is laid out (C, Z, Y, X), x fastest,
//    exactly the memory order of an itk::Image, so conversions are zero-copy.
//  * physical space is LPS (+x = patient Left, +y = Posterior, +z = Superior), in mm.
//  * point(i,j,k) = origin + direction * diag(spacing) * (i,j,k).
// NIfTI and nibabel use RAS: affine_ras = diag(-1,-1,1,1) * affine_lps.
#include <array>
#include <string>

#include <ATen/core/Tensor.h>

#include "io/dtype.h"

namespace neuroseg::io {

/// \brief Spacing, origin and direction of a 3D voxel grid (ITK/LPS convention).
struct Geometry {
  std::array<double, 3> spacing{1.0, 1.0, 1.0};  ///< mm along index axes (x, y, z)
  std::array<double, 3> origin{0.0, 0.0, 0.0};   ///< LPS position of voxel (0, 0, 0)
  /// Row-major 3x3; column j is the unit LPS direction of index axis j.
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};

  double dir(int row, int col) const { return direction[row * 3 + col]; }
  /// LPS point of a (continuous) index (i, j, k).
  std::array<double, 3> index_to_point(const std::array<double, 3>& ijk) const;
  /// Continuous index of an LPS point.
  std::array<double, 3> point_to_index(const std::array<double, 3>& p) const;
  /// 4x4 row-major voxel -> LPS affine, and the RAS one NIfTI/nibabel use.
  std::array<double, 16> affine_lps() const;
  std::array<double, 16> affine_ras() const;
  /// Builds geometry from a 4x4 RAS affine. A sheared (non-orthonormal) 3x3 is replaced by
  /// its nearest rotation (polar decomposition); the residual is returned in `shear`.
  static Geometry from_affine_ras(const std::array<double, 16>& affine, double* shear = nullptr);
  /// nibabel-style axis codes: the letter each index axis points towards, e.g. "RAS", "LPS".
  std::string orientation_code() const;
  /// True when spacing/origin agree to `tol` (relative to spacing for origin) and the
  /// directions to `dir_tol`.
  bool approx_equal(const Geometry& other, double tol = 1e-5, double dir_tol = 1e-6) const;
  std::string to_string() const;
};

/// \brief Where voxels came from and how they were scaled, for faithful writing.
struct SourceInfo {
  std::string path;                 ///< file or folder read ("" for computed volumes)
  std::string format;               ///< "nifti", "metaimage", "nrrd", "dicom", "tiff", "zarr", ""
  DType dtype = DType::Float32;     ///< on-disk voxel type
  double scl_slope = 1.0;           ///< NIfTI intensity scaling applied on read: v = raw*slope + inter
  double scl_inter = 0.0;
  int spatial_dims = 3;             ///< 2 for a single image/slice stored without a z axis
  std::string channel_axis = "none";  ///< "none", "4d" (4th dim) or "vector" (vector pixel)
  int nifti_version = 1;            ///< NIfTI-1 or NIfTI-2 (kept on write to .nii)
  int qform_code = 1;               ///< NIfTI codes kept on write (0 = unknown)
  int sform_code = 1;
  int xyzt_units = 2 | 8;           ///< mm + s
  double time_step = 0.0;           ///< pixdim[4] of 4D NIfTI
  bool scaled() const { return scl_slope != 1.0 || scl_inter != 0.0; }
};

/// \brief A (C, Z, Y, X) tensor with its geometry. C >= 1 (channels, time points or
/// vector components); the tensor's dtype is memory_scalar_type(source.dtype) unless a
/// pipeline produced something else.
struct Volume {
  at::Tensor data;
  Geometry geometry;
  SourceInfo source;

  int64_t channels() const { return data.size(0); }
  /// ITK-order size (x, y, z).
  std::array<int64_t, 3> size_xyz() const { return {data.size(3), data.size(2), data.size(1)}; }
  /// Subject for error messages: the source path or "<volume>".
  std::string name() const { return source.path.empty() ? std::string("<volume>") : source.path; }
};

/// \brief Throws io::Error when `v` is not a 3D volume (read from a 2D image, or a
/// spatial axis of length 1). `what` says who needs 3D, e.g. "segmentation".
void require_3d(const Volume& v, const std::string& what);

/// \brief Throws io::Error naming `b`'s path when the two grids disagree (shape,
/// spacing, origin, direction). Used for image/label pairs.
void require_same_grid(const Volume& a, const Volume& b, double tol = 1e-4);

/// \brief Counts NaN/Inf voxels of a floating volume (0 for integer data).
int64_t count_non_finite(const Volume& v);

}  // namespace neuroseg::io
