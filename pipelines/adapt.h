#pragma once
// `neuroseg adapt`: source-free domain adaptation of a trained checkpoint to unlabelled target
// images (no source images are read). Methods:
//   entropy-kl  Bateson et al. (MedIA 2022): weighted entropy + KL(predicted class ratio ‖
//               prior) (losses/entropy_kl.h), every weight trained;
//   tent        Wang et al. (ICLR 2021): entropy minimisation of the normalisation layers'
//               affine parameters only;
//   none        the source model, unchanged (for comparison).
// The prior τ comes from
//   - a JSON of class fractions of whole volumes (then, by default, every step adapts on whole
//     volumes);
//   - the same JSON with slice tags: per case and foreground class, 0/1 per slice along one input
//     index axis (i, j or k), saying whether the class is present in that slice. The fractions
//     then describe a slice where the class is present, a slice where it is absent gets 0, and
//     the loss takes each slice as one sample, as the authors' headline setting does (their
//     per-slice csv column `dumbpredwtags`; image-level tags are weak supervision, not labels);
//   - or the source model's own prediction on the target volume (computed once, before
//     adaptation) cropped like each patch.
// Foreground fractions can be multiplied by an over-estimation factor (the authors found
// over-estimating a structure's size works better than under-estimating).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "pipelines/preprocess.h"

namespace neuroseg::pipelines {

struct AdaptOptions {
  std::string method = "entropy-kl";
  std::string prior_json;            ///< {"fractions": {"<label name>": f, ...}[, "slice_tags": {"axis": "k",
                                     ///<   "cases": {"<file name>": {"<label name>": [0/1, ...]}}}]}; empty: source predictions
  double overestimate = 1.0;         ///< factor on the prior's foreground fractions
  double size_power = 1.0;           ///< power of the max-normalised probabilities in τ̂ (losses/entropy_kl.h)
  std::vector<double> entropy_weights;  ///< per class; empty: 0.1 background, 0.9 foreground (the authors')
  int64_t iterations = 200, batch = 2;
  double lr = 1e-4;
  uint64_t seed = 0;
  std::vector<int64_t> patch;        ///< (D, H, W); empty: whole volumes with a JSON prior, else the checkpoint's
  c10::Device device = c10::kCPU;
};

/// The prior rows (N, K) of N regions (patches or slices) from class fractions (K, background
/// first): foreground fractions × overestimate (background takes the rest), diluted by the share
/// covered (N) of each region the volume fills, since zero padding is background, and, when
/// `tags` (N, K-1; 0/1) is defined, zero for a class not tagged in the region.
at::Tensor region_prior(const std::vector<double>& fractions, const at::Tensor& covered, const at::Tensor& tags,
                        double overestimate);

/// Slice tags (per foreground class, 0/1 per input slice along input index axis `axis`, 0 = i)
/// on a case's network grid: a (D, H, W) uint8 code volume, bit 0 = inside the volume (padding
/// added later stays 0), bit c = class c tagged in the input slice nearest to the network slice
/// (through the reorientation and resampling). `dim` gets the dimension of (D, H, W) the slices
/// run along.
at::Tensor slice_tag_codes(const std::vector<std::vector<uint8_t>>& tags, int axis, const io::Geometry& input,
                           const PreparedCase& prepared, int64_t& dim);

/// Adapts `checkpoint` to `targets` (image files) and writes the adapted checkpoint to
/// `output` (atomically), with the method and its settings recorded in its training metadata,
/// `<output>.log.csv` (iteration, loss) and `<output>.loss.png` (the loss curve). Returns the
/// final mean loss of the last 10%.
double adapt(const std::string& checkpoint, const std::vector<std::string>& targets, const std::string& output,
             const AdaptOptions& options);

}  // namespace neuroseg::pipelines
