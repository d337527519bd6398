#include "io/volume.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <ATen/ATen.h>

#include "io/error.h"
#include "io/finite_stats.h"

namespace neuroseg::io {
namespace {

using Mat3 = std::array<double, 9>;

Mat3 inverse3(const Mat3& m) {
  const double a = m[0], b = m[1], c = m[2], d = m[3], e = m[4], f = m[5], g = m[6], h = m[7], i = m[8];
  const double det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
  if (std::abs(det) < 1e-300) throw Error("", "singular direction/spacing matrix");
  const double s = 1.0 / det;
  return {(e * i - f * h) * s, (c * h - b * i) * s, (b * f - c * e) * s,
          (f * g - d * i) * s, (a * i - c * g) * s, (c * d - a * f) * s,
          (d * h - e * g) * s, (b * g - a * h) * s, (a * e - b * d) * s};
}

Mat3 transpose3(const Mat3& m) { return {m[0], m[3], m[6], m[1], m[4], m[7], m[2], m[5], m[8]}; }

// Orthogonal polar factor of a non-singular matrix by Newton's iteration
// R <- (R + R^-T) / 2 (Higham 1986); converges quadratically, keeps det's sign.
Mat3 nearest_rotation(Mat3 r) {
  for (int it = 0; it < 100; ++it) {
    const Mat3 inv_t = transpose3(inverse3(r));
    double delta = 0;
    for (int k = 0; k < 9; ++k) {
      const double next = 0.5 * (r[k] + inv_t[k]);
      delta = std::max(delta, std::abs(next - r[k]));
      r[k] = next;
    }
    if (delta < 1e-15) break;
  }
  return r;
}

}  // namespace

std::array<double, 3> Geometry::index_to_point(const std::array<double, 3>& ijk) const {
  std::array<double, 3> p{};
  for (int r = 0; r < 3; ++r) {
    p[r] = origin[r];
    for (int c = 0; c < 3; ++c) p[r] += dir(r, c) * spacing[c] * ijk[c];
  }
  return p;
}

std::array<double, 3> Geometry::point_to_index(const std::array<double, 3>& p) const {
  Mat3 m{};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) m[r * 3 + c] = dir(r, c) * spacing[c];
  const Mat3 inv = inverse3(m);
  std::array<double, 3> ijk{};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) ijk[r] += inv[r * 3 + c] * (p[c] - origin[c]);
  return ijk;
}

std::array<double, 16> Geometry::affine_lps() const {
  std::array<double, 16> a{};
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) a[r * 4 + c] = dir(r, c) * spacing[c];
    a[r * 4 + 3] = origin[r];
  }
  a[15] = 1.0;
  return a;
}

std::array<double, 16> Geometry::affine_ras() const {
  std::array<double, 16> a = affine_lps();
  for (int c = 0; c < 4; ++c) {
    a[0 * 4 + c] = -a[0 * 4 + c];
    a[1 * 4 + c] = -a[1 * 4 + c];
  }
  return a;
}

Geometry Geometry::from_affine_ras(const std::array<double, 16>& affine, double* shear) {
  Geometry g;
  Mat3 m{};
  for (int r = 0; r < 3; ++r) {
    const double flip = r < 2 ? -1.0 : 1.0;  // RAS -> LPS
    for (int c = 0; c < 3; ++c) m[r * 3 + c] = flip * affine[r * 4 + c];
    g.origin[r] = flip * affine[r * 4 + 3];
  }
  for (int c = 0; c < 3; ++c) {
    const double n = std::sqrt(m[c] * m[c] + m[3 + c] * m[3 + c] + m[6 + c] * m[6 + c]);
    if (!(n > 0) || !std::isfinite(n)) throw Error("", "affine has a zero or non-finite column " + std::to_string(c));
    g.spacing[c] = n;
    for (int r = 0; r < 3; ++r) m[r * 3 + c] /= n;
  }
  const Mat3 rot = nearest_rotation(m);
  double residual = 0;
  for (int k = 0; k < 9; ++k) residual = std::max(residual, std::abs(rot[k] - m[k]));
  g.direction = residual > 1e-12 ? rot : m;
  if (shear) *shear = residual;
  return g;
}

std::string Geometry::orientation_code() const {
  // Greedy assignment of index axes to world axes by the largest |cosine|, so that a
  // slightly oblique scan still gets three distinct letters (as nibabel's io_orientation).
  std::array<int, 3> world_of_axis{-1, -1, -1};
  std::array<bool, 3> row_used{false, false, false};
  for (int pass = 0; pass < 3; ++pass) {
    double best = -1;
    int best_r = 0, best_c = 0;
    for (int c = 0; c < 3; ++c) {
      if (world_of_axis[c] >= 0) continue;
      for (int r = 0; r < 3; ++r)
        if (!row_used[r] && std::abs(dir(r, c)) > best) best = std::abs(dir(r, c)), best_r = r, best_c = c;
    }
    world_of_axis[best_c] = best_r;
    row_used[best_r] = true;
  }
  static const char kPositive[3] = {'L', 'P', 'S'};  // LPS +x, +y, +z
  static const char kNegative[3] = {'R', 'A', 'I'};
  std::string code(3, '?');
  for (int c = 0; c < 3; ++c) {
    const int r = world_of_axis[c];
    code[c] = dir(r, c) >= 0 ? kPositive[r] : kNegative[r];
  }
  return code;
}

bool Geometry::approx_equal(const Geometry& o, double tol, double dir_tol) const {
  for (int k = 0; k < 3; ++k) {
    if (std::abs(spacing[k] - o.spacing[k]) > tol * std::max(1.0, std::abs(spacing[k]))) return false;
    if (std::abs(origin[k] - o.origin[k]) > tol * std::max(1.0, std::abs(origin[k]))) return false;
  }
  for (int k = 0; k < 9; ++k)
    if (std::abs(direction[k] - o.direction[k]) > dir_tol) return false;
  return true;
}

std::string Geometry::to_string() const {
  std::ostringstream s;
  s.precision(6);
  s << "spacing (" << spacing[0] << ", " << spacing[1] << ", " << spacing[2] << "), origin ("
    << origin[0] << ", " << origin[1] << ", " << origin[2] << "), orientation " << orientation_code();
  return s.str();
}

void require_3d(const Volume& v, const std::string& what) {
  const auto s = v.size_xyz();
  if (v.source.spatial_dims < 3 || s[0] < 2 || s[1] < 2 || s[2] < 2)
    throw Error(v.name(), what + " needs a 3D volume, got a 2D image of " + std::to_string(s[0]) + "x" +
                              std::to_string(s[1]) + "x" + std::to_string(s[2]) + " voxels");
}

void require_same_grid(const Volume& a, const Volume& b, double tol) {
  const auto sa = a.size_xyz(), sb = b.size_xyz();
  if (sa != sb)
    throw Error(b.name(), "size " + std::to_string(sb[0]) + "x" + std::to_string(sb[1]) + "x" +
                              std::to_string(sb[2]) + " differs from " + a.name() + " (" +
                              std::to_string(sa[0]) + "x" + std::to_string(sa[1]) + "x" +
                              std::to_string(sa[2]) + ")");
  if (!a.geometry.approx_equal(b.geometry, tol, tol))
    throw Error(b.name(), "geometry differs from " + a.name() + ": " + b.geometry.to_string() + " vs " +
                              a.geometry.to_string());
}

int64_t count_non_finite(const Volume& v) {
  if (!at::isFloatingType(v.data.scalar_type())) return 0;
  return finite_stats(v.data).non_finite;
}

}  // namespace neuroseg::io
