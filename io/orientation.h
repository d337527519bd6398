#pragma once
// Exact reorientation: permute and flip voxel axes (no interpolation) so that the index
// axes point towards a given orientation code, keeping every voxel's physical position.
// Codes follow nibabel's "towards" convention: "RAS" = i->Right, j->Anterior, k->Superior.
#include <string>

#include "io/volume.h"

namespace neuroseg::io {

/// Canonical orientation used by the pipelines (nibabel's as_closest_canonical).
inline constexpr const char* kCanonicalOrientation = "RAS";

/// \brief Reorients `v` so that geometry.orientation_code() == target. Undo with
/// reorient(result, original.geometry.orientation_code()), which restores the original
/// voxels, shape and geometry exactly. Throws io::Error for an invalid code.
Volume reorient(const Volume& v, const std::string& target);

inline Volume to_canonical(const Volume& v) { return reorient(v, kCanonicalOrientation); }

}  // namespace neuroseg::io
