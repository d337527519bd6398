#pragma once
// Quality-control pictures: three orthogonal slices (axial, coronal, sagittal) through the
// segmentation's centroid with the labels overlaid, an HTML gallery for a batch, and line
// plots of training and adaptation curves.
#include <cmath>
#include <string>
#include <vector>

#include "io/volume.h"

namespace neuroseg::pipelines {

/// Writes a PNG (RGB) of `image` (first channel) with `labels` overlaid. Slices are shown
/// in RAS with square physical pixels, superior/anterior up. Written atomically.
void write_qc_png(const io::Volume& image, const io::Volume& labels, const std::string& path, const std::string& caption);

struct GalleryEntry {
  std::string name, png, output, status;  ///< png/output relative to the gallery
  double seconds = 0;
};
/// Writes index.html listing every case with its picture, output and time.
void write_gallery(const std::string& path, const std::string& title, const std::vector<GalleryEntry>& entries);

/// One panel of a curves picture: y against x, on [y_lo, y_hi] (both NaN: the data's range).
struct CurvePanel {
  std::string title, x_label;
  std::vector<double> x, y;
  double y_lo = std::nan(""), y_hi = std::nan("");
};
/// Writes a PNG with the panels side by side (training loss and validation Dice per epoch;
/// adaptation loss per iteration).
void write_curves_png(const std::string& path, const std::vector<CurvePanel>& panels);

}  // namespace neuroseg::pipelines
