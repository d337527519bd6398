#pragma once
// Synthetic electron-microscopy stacks with labels (`neuroseg synth em`), for tests and the
// SAM-adapter demonstrations (docs/models.md): anisotropic serial-section EM like Lucchi's
// hippocampus stack, where mitochondria are the target.
//
// One stack is made in physical space (x, y in pixels, z in pixels · anisotropy) and
// sampled on the slice grid:
//  * cells: a 3D Voronoi tessellation of random seeds; membranes are the voxels where the
//    nearest and second-nearest seeds are almost equidistant (dark lines, a few px thick);
//  * cytoplasm: smooth low-frequency intensity variation plus small dark vesicles;
//  * mitochondria (label 1): elongated ellipsoids at random in-plane orientations,
//    spanning several slices, with a dark double outer membrane and cristae (dark stripes
//    across the long axis) inside a mid-grey matrix;
//  * imaging: a Gaussian point-spread blur in-plane, Gaussian noise, a slow per-slice
//    brightness drift, quantised to uint8.
// The same seed gives the same stack bit for bit.
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/volume.h"

namespace neuroseg::pipelines {

struct SynthEmOptions {
  std::array<int64_t, 3> size{24, 160, 160};  ///< (D, H, W) voxels
  double anisotropy = 4.0;   ///< z spacing / in-plane spacing (serial sections: 4-10)
  double spacing_nm = 5.0;   ///< in-plane pixel size; written as mm (5 nm = 5e-6 mm)
  int64_t cells = 0;         ///< Voronoi seeds; 0: one per 45³ px³ of physical volume
  int64_t mitochondria = 0;  ///< 0: about one per 2500 px² of slice area
  double noise = 0.08;       ///< Gaussian noise sigma (intensities in [0, 1] before quantising)
  uint64_t seed = 0;
};

struct SynthEmCase {
  io::Volume image;   ///< uint8 (1, D, H, W)
  io::Volume labels;  ///< uint8 (1, D, H, W): 0 background, 1 mitochondria
};

/// One stack.
SynthEmCase synth_em(const SynthEmOptions& options);

/// `cases` stacks (seeds seed, seed+1, ...) as <dir>/em_NNN_img.nii.gz and _seg.nii.gz;
/// returns the (image, labels) paths.
std::vector<std::pair<std::string, std::string>> write_synth_em(const std::string& dir, int64_t cases,
                                                                const SynthEmOptions& options);

}  // namespace neuroseg::pipelines
