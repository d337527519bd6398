#pragma once
// `neuroseg synth fisbe`: look-alikes of the FISBe benchmark (light-microscopy MCFO images
// of fly neurons, Mais et al. CVPR 2024), in its exact on-disk format (see
// /work/shared/specs/fisbe.md §1):
//   <name>.zarr/volumes/raw            (3, Z, Y, X) uint16, 12-bit-ish, three colour channels
//   <name>.zarr/volumes/gt_instances   (N, Z, Y, X) uint8, channel k = neuron k with value k+1
// zarr v2 groups (.zgroup) around the arrays, so Python's zarr.open(path)['volumes/raw'] works.
// Each neuron is a branching tree of thin tapered tubes (radius 1-3 voxels) from a soma to
// shared "neuropil" regions where the arbors of several neurons interweave, so GT channels
// overlap; raw = uneven illumination x (autofluorescent background + per-neuron MCFO colour x
// a soft partial-volume profile) with Poisson-like and read noise. Every voxel's value is a
// function of (seed, sample index, voxel index): bytes do not depend on the thread count.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::pipelines {

struct FisbeSynthOptions {
  std::array<int64_t, 3> shape{128, 256, 256};  ///< (Z, Y, X) voxels; FISBe is ~400 x 690 x 690
  uint64_t seed = 0;
  /// Leave some neurons unlabelled (in raw, not in gt_instances), like FISBe's "partly" set.
  /// The anatomy and raw image of a sample are the same with and without it.
  bool partly = false;
  std::string zarr_compressor = "blosc";  ///< "blosc" (lz4, as zarr's default), "zlib", "gzip", "zstd" or ""
};

/// One generated sample, in memory.
struct FisbeSample {
  std::string name;
  at::Tensor raw;  ///< (3, Z, Y, X) int16 holding the uint16 values in [0, 4095] (written as uint16)
  at::Tensor gt;   ///< (N, Z, Y, X) uint8: channel k is 0 or k+1 (N = labelled neurons)
  int64_t neurons = 0;              ///< neurons in the image (labelled or not)
  std::vector<int64_t> dim_neurons; ///< instance ids (k+1) of labelled neurons drawn dim
  int64_t overlap_voxels = 0;       ///< voxels in >= 2 GT channels
};

/// Name of sample `index` of a run with `seed`, e.g. "synth_s7_003" (no ".zarr").
std::string fisbe_sample_name(uint64_t seed, int64_t index);

/// Generates sample `index` (independent of how many samples the run makes).
FisbeSample synth_fisbe_sample(const FisbeSynthOptions& options, int64_t index);

/// Writes `sample` as a FISBe zarr folder at `zarr_path` (e.g. out/synth_s0_000.zarr).
void write_fisbe_sample(const FisbeSample& sample, const std::string& zarr_path, const std::string& zarr_compressor);

/// The official split file's text (evaluate-instance-segmentation's
/// assets/sample_list_per_split.txt layout): sections "(1) samples for FlyLight completely:"
/// and "(2) samples for FlyLight partly:", each with train/val/test name lists.
std::string fisbe_split_file_text(const std::vector<std::string>& completely_train,
                                  const std::vector<std::string>& completely_val,
                                  const std::vector<std::string>& completely_test,
                                  const std::vector<std::string>& partly_train, const std::vector<std::string>& partly_val,
                                  const std::vector<std::string>& partly_test);

/// `neuroseg synth fisbe`: `n` samples into `out_dir` (<name>.zarr each, plus
/// sample_list_per_split.txt: 60/20/20 % train/val/test in the "completely" or, with
/// `partly`, the "partly" section). Everything is written into a temporary folder inside
/// `out_dir` and moved into place at the end; other files in `out_dir` are left alone.
/// Prints one line per sample. Throws io::Error for bad options or unwritable output.
void synth_fisbe(const std::string& out_dir, int64_t n, const FisbeSynthOptions& options);

}  // namespace neuroseg::pipelines
