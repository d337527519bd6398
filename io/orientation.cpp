#include "io/orientation.h"

#include <ATen/ATen.h>

#include "io/error.h"

namespace neuroseg::io {
namespace {

// World row (0 = L/R, 1 = P/A, 2 = S/I) and sign (+1 towards L, P, S) of a code letter.
bool parse_letter(char c, int& row, int& sign) {
  switch (std::toupper(static_cast<unsigned char>(c))) {
    case 'L': row = 0, sign = +1; return true;
    case 'R': row = 0, sign = -1; return true;
    case 'P': row = 1, sign = +1; return true;
    case 'A': row = 1, sign = -1; return true;
    case 'S': row = 2, sign = +1; return true;
    case 'I': row = 2, sign = -1; return true;
    default: return false;
  }
}

}  // namespace

Volume reorient(const Volume& v, const std::string& target) {
  std::array<int, 3> target_row{}, target_sign{};
  std::array<bool, 3> seen{false, false, false};
  bool valid = target.size() == 3;
  for (int t = 0; valid && t < 3; ++t) {
    valid = parse_letter(target[t], target_row[t], target_sign[t]) && !seen[target_row[t]];
    if (valid) seen[target_row[t]] = true;
  }
  if (!valid) throw Error(target, "invalid orientation code (three letters, one of L/R, A/P, S/I each, e.g. RAS)");

  const std::string source = v.geometry.orientation_code();
  std::array<int, 3> source_row{}, source_sign{};
  for (int j = 0; j < 3; ++j) parse_letter(source[j], source_row[j], source_sign[j]);

  std::array<int, 3> from{};   // new axis t takes source axis from[t]
  std::array<bool, 3> flip{};  // ... reversed
  for (int t = 0; t < 3; ++t)
    for (int j = 0; j < 3; ++j)
      if (source_row[j] == target_row[t]) from[t] = j, flip[t] = source_sign[j] != target_sign[t];

  // Index axis a lives in tensor dim 3 - a (tensor is C, Z, Y, X).
  at::Tensor data = v.data.permute({0, 3 - from[2], 3 - from[1], 3 - from[0]});
  std::vector<int64_t> flip_dims;
  for (int t = 0; t < 3; ++t)
    if (flip[t]) flip_dims.push_back(3 - t);
  if (!flip_dims.empty()) data = data.flip(flip_dims);

  Volume out;
  out.data = data.contiguous();
  out.source = v.source;
  const auto size = v.size_xyz();
  std::array<double, 3> corner{};  // source index of the new voxel (0, 0, 0)
  for (int t = 0; t < 3; ++t) {
    const int j = from[t];
    out.geometry.spacing[t] = v.geometry.spacing[j];
    for (int r = 0; r < 3; ++r) out.geometry.direction[r * 3 + t] = (flip[t] ? -1.0 : 1.0) * v.geometry.dir(r, j);
    corner[j] = flip[t] ? double(size[j] - 1) : 0.0;
  }
  out.geometry.origin = v.geometry.index_to_point(corner);
  return out;
}

}  // namespace neuroseg::io
