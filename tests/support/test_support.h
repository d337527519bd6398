#pragma once
// Helpers shared by the test files: a scratch folder per test and small synthetic volumes.
#include <filesystem>
#include <string>

#include <ATen/ATen.h>

#include "io/volume.h"

namespace neuroseg::testing {

/// A fresh, empty folder under the build tree, removed at the end of the scope.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name);
  ~ScratchDir();
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// A (C, Z, Y, X) volume of `dtype` with deterministic, non-symmetric content and an
/// oblique, anisotropic geometry, so that axis mix-ups and flips change the numbers.
io::Volume make_volume(io::DType dtype, int64_t c = 1, int64_t z = 5, int64_t y = 6, int64_t x = 7);

/// A training case for the tiny training tests: a bright ball (label 1) of `radius` voxels
/// centred at (d/2, h/2, cx) in Gaussian noise, on make_volume's oblique anisotropic grid,
/// written as <name>_img.nii.gz and <name>_seg.nii.gz in `dir`.
void write_ball_case(const ScratchDir& dir, const std::string& name, int64_t d, int64_t h, int64_t w, double cx,
                     double radius, uint64_t seed);

/// Captures io::warn() messages while alive.
class WarningCapture {
 public:
  WarningCapture();
  ~WarningCapture();
  const std::string& text() const;
};

/// Absolute paths of real data installed from Debian packages.
std::string mricron(const std::string& name);   // /usr/share/mricron/templates/<name>
std::string nibabel_data(const std::string& name);
std::string pydicom_data(const std::string& name);

}  // namespace neuroseg::testing
