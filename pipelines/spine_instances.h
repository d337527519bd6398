#pragma once
// Semantic -> instance labels for lumbar-spine MR, in the SPIDER label scheme (metrics/spider.h),
// for models that predict three classes: 1 vertebra, 2 intervertebral disc, 3 spinal canal
// (0 background). `neuroseg segment --instances spine` applies it to the label map before it
// is written.
//
//  1. Connected components of each class (6-connected by default: adjacent vertebrae touching
//     only along an edge or a corner across a thin disc stay apart); fragments, components
//     smaller than `min_volume_mm3` or than `min_fraction` of the class's largest component,
//     become background.
//  2. Order along the cranio-caudal axis from the image geometry: the height of a component is
//     the LPS z (+z = superior) of its centroid, whatever the direction matrix (a flipped or
//     oblique grid numbers the same way as an axial-aligned one).
//  3. Vertebrae are numbered from the bottom: the lowest is 1 (SPIDER: L5 = 1). Discs take
//     200 + the number of the vertebra directly ABOVE them (SPIDER: the L5/S1 disc, below L5,
//     is 201), i.e. 200 + 1 + the number of vertebrae below the disc: the lowest disc, with only
//     the unlabelled sacrum below, is 201 as well. Two disc components between the same two
//     vertebrae get the same label.
//  4. Partial vertebrae: a vertebra touching the first or last slice of the index axis most
//     aligned with the cranio-caudal direction is cut by the field of view and becomes 100 + k
//     (SPIDER's 101-125) with `mark_partial` (the default); its number k still counts in the
//     sequence. The official evaluation matches by overlap, so this only changes which category
//     a prediction is reported in, never its score.
//  5. The canal is the largest canal component, labelled 100; other canal components are
//     dropped.
// Splitting vertebrae merged through touching posterior elements is not attempted: a merged
// component is one vertebra (the evaluator then matches it to both GT vertebrae it covers).
#include <cstdint>

#include "io/volume.h"

namespace neuroseg::pipelines {

struct SpineInstanceOptions {
  int64_t vertebra_class = 1, disc_class = 2, canal_class = 3;  ///< semantic values of the model
  int connectivity = 6;           ///< 6, 18 or 26
  double min_volume_mm3 = 100;    ///< smaller components are fragments (a lumbar disc is ~10 cm^3)
  double min_fraction = 0.1;      ///< ... and so are those below this fraction of the class's largest
  bool mark_partial = true;       ///< vertebrae cut by the cranio-caudal FOV ends -> 100 + k
};

/// What the conversion found (for logs and tests).
struct SpineInstanceSummary {
  int64_t vertebrae = 0, partial_vertebrae = 0, discs = 0, dropped_components = 0;
  bool canal = false;
};

/// `semantic`: one-channel label volume holding only 0 and the three class values (io::Error
/// naming the volume otherwise). Returns a uint8 volume on the same grid with SPIDER labels.
io::Volume spine_instances(const io::Volume& semantic, const SpineInstanceOptions& options = {},
                           SpineInstanceSummary* summary = nullptr);

}  // namespace neuroseg::pipelines
