#pragma once
// Voxel-overlap metrics of label images, per label, from one confusion count per label.
// Conventions follow nnU-Net's evaluation (nnunetv2/evaluation/evaluate_predictions.py):
// a metric whose denominator is zero is NaN (e.g. Dice of a label absent from both images),
// and NaN values are left out of the means.
#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::metrics {

struct LabelCounts {
  int64_t tp = 0, fp = 0, fn = 0, tn = 0;
  int64_t n_pred() const { return tp + fp; }
  int64_t n_ref() const { return tp + fn; }
};

/// One pass over two integer label images of the same shape (any device): the confusion
/// counts of `pred == l` against `ref == l` for every l in `labels`.
std::vector<LabelCounts> label_counts(const at::Tensor& pred, const at::Tensor& ref, const std::vector<int64_t>& labels);

struct OverlapMetrics {
  double dice, iou, precision, recall;
  /// (V_pred - V_ref) / V_ref: signed relative volume difference (NaN when the label is
  /// absent from the reference). Volumes in mm^3 are n_pred/n_ref times the voxel volume.
  double volume_difference;
};

/// Dice = 2TP/(2TP+FP+FN), IoU = TP/(TP+FP+FN), precision = TP/(TP+FP), recall = TP/(TP+FN);
/// NaN where the denominator is 0.
OverlapMetrics overlap_metrics(const LabelCounts& c);

/// Inclusive bounding box of one label in a (D, H, W) image; empty when the label is absent.
struct LabelBox {
  std::array<int64_t, 3> lo{0, 0, 0}, hi{-1, -1, -1};
  bool empty() const { return hi[0] < lo[0]; }
  /// The smallest box holding both.
  LabelBox merged(const LabelBox& o) const;
};

/// Bounding boxes of every value of `labels` in a (D, H, W) label image: one pass on the
/// CPU (per-label boxes let the surface metrics of a many-label atlas work on small crops).
std::vector<LabelBox> label_boxes(const at::Tensor& image, const std::vector<int64_t>& labels);

/// The non-zero values present in a label image, sorted (any device).
std::vector<int64_t> present_labels(const at::Tensor& labels);

}  // namespace neuroseg::metrics
