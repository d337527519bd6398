#pragma once
// Batch segmentation: every case of a file or folder through
//   read -> preprocess (checkpoint) -> sliding window -> softmax -> back to the input grid
//   -> argmax -> label values -> postprocess -> write (atomically) -> QC picture,
// with per-case timing, resume, and a failing case reported without stopping the batch.
// Each case is claimed (an flock under <out>/.claims/) while it is processed, so runs that
// overlap on one output folder never segment a case twice at once.
#include <functional>
#include <string>
#include <vector>

#include "models/checkpoint.h"
#include "pipelines/preprocess.h"
#include "pipelines/sliding_window.h"

namespace neuroseg::pipelines {

struct Postprocessing {
  bool largest_component = false;  ///< keep the largest connected component of each label
  bool fill_holes = false;         ///< fill enclosed background inside each label
  int connectivity = 26;
  static Postprocessing from_json(const nlohmann::json& j);  ///< strict
};

/// A checkpoint made ready for segmentation.
struct Segmenter {
  models::LoadedModel loaded;
  Preprocessing preprocessing;
  Postprocessing postprocessing;
  std::vector<int64_t> label_values;  ///< output value of each network channel (argmax index -> value)
  SlidingWindowOptions window;
  /// 1, 2 or 3: run a 2D slice model over whole slices along that axis of the (C, D, H, W)
  /// preprocessed image, memory carried along (pipelines/slice_inference.h); 0: sliding window.
  int slice_axis = 0;

  /// Loads the checkpoint and moves the model to `device`.
  static Segmenter load(const std::string& checkpoint, const c10::Device& device);
};

struct SegmentOptions {
  bool probabilities = false;  ///< also write <name>_prob.nii.gz (float32, one channel per class)
  bool resume = false;         ///< skip cases whose output exists (outputs are written atomically)
  bool qc = true;              ///< <out>/qc/<name>.png and <out>/index.html
  /// Called with the case name right before its network pass, on the thread that runs the
  /// network (e.g. to switch the model's adapter per case); may throw to fail that case.
  std::function<void(const std::string& case_name)> before_network;
  /// Called with the final label map and the input image right before the labels are
  /// written (after the checkpoint's postprocessing), e.g. to turn semantic labels into
  /// instances; may replace the labels or throw.
  std::function<void(io::Volume& labels, const io::Volume& image)> postprocess_labels;
  /// The labels' file, relative to the output folder (default "<case>_seg.nii.gz").
  std::function<std::string(const std::string& case_name)> output_name;
};

struct CaseResult {
  std::string name, input, output, error;
  std::string status;  ///< "ok", "skipped" (resume), "claimed" (another live process has it) or "failed"
  double seconds = 0;
};


/// Segments one case into `out_dir`; never throws for bad input (the result says why).
CaseResult segment_case(Segmenter& s, const std::string& input, const std::string& out_dir, const SegmentOptions& o);

/// Segments many cases as a pipeline: while case i runs through the network, case i+1 is
/// read and preprocessed and case i-1 is postprocessed and written, on other threads.
/// `on_done` is called in order, once per case, from the calling thread.
void segment_cases(Segmenter& s, const std::vector<std::string>& inputs, const std::string& out_dir,
                   const SegmentOptions& o, const std::function<void(const CaseResult&)>& on_done);

/// The labels (argmax -> label values) of a (K, D, H, W) probability/logit volume, as int16/uint8.
io::Volume labels_from_scores(const io::Volume& scores, const std::vector<int64_t>& label_values);

}  // namespace neuroseg::pipelines
