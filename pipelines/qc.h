#pragma once
// Quality-control pictures: three orthogonal slices (axial, coronal, sagittal) through the
// segmentation's centroid with the labels overlaid, and an HTML gallery for a batch.
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

}  // namespace neuroseg::pipelines
