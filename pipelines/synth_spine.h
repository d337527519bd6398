#pragma once
// `neuroseg synth spine`: sagittal lumbar-spine MRI phantoms in the SPIDER benchmark's layout
// (van der Graaf et al., Sci Data 2024; /work/shared/specs/spine_sfda_plsnet_lora.md §A.2-A.3):
//   DIR/images/<id>_t1.mha, DIR/masks/<id>_t1.mha (and _t2): uint16 image, uint8 mask,
//   thick sagittal slices along ITK x (left-right, 3.3 mm), 0.6 mm in-plane (y: AP, z: SI).
// Labels as SPIDER: vertebrae 1.. numbered from the bottom (L5 = 1), 100 the spinal canal,
// 100 + k a vertebra cut by the field of view, 200 + k the disc below vertebra k (L5/S1 =
// 201). The sacrum is bone in the image but unlabelled, as in SPIDER.
// T1 and T2 of one case share the anatomy and the mask (same grid) and differ in contrast
// (T1: marrow and fat bright, discs intermediate, CSF dark; T2: disc nuclei and CSF bright,
// marrow intermediate), bias field and noise: a controlled domain shift.
#include <array>
#include <cstdint>
#include <string>

#include "io/volume.h"

namespace neuroseg::pipelines {

struct SpineSynthOptions {
  std::array<int64_t, 3> size{17, 448, 448};    ///< voxels along ITK (x: left-right, y: AP, z: SI)
  std::array<double, 3> spacing{3.3, 0.6, 0.6};  ///< mm along ITK (x, y, z)
  uint64_t seed = 0;
  std::string contrast = "both";  ///< "t1", "t2" or "both"
};

/// One generated case: the two contrasts of the same anatomy and their shared mask.
struct SpineCase {
  std::string id;  ///< SPIDER-like patient id: "1", "2", ... (index + 1)
  io::Volume t1, t2;  ///< (1, Z, Y, X) int32 holding uint16 values
  io::Volume mask;    ///< (1, Z, Y, X) uint8 SPIDER labels
  int64_t complete_vertebrae = 0;
  bool partial_vertebra = false;  ///< a vertebra cut by the field of view (label 100 + k)
  int64_t discs = 0;
};

/// Generates case `index` (independent of how many cases the run makes).
SpineCase synth_spine_case(const SpineSynthOptions& options, int64_t index);

/// `neuroseg synth spine`: `n` cases into `out_dir`/images and `out_dir`/masks (plus
/// `out_dir`/synth_spine.csv, one row per case). Written into a temporary folder inside
/// `out_dir` and moved into place at the end; other files are left alone. Throws io::Error
/// for bad options or unwritable output.
void synth_spine(const std::string& out_dir, int64_t n, const SpineSynthOptions& options);

}  // namespace neuroseg::pipelines
