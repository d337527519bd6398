#pragma once
// 8-bit RGB PNG writing through ITK's PNG IO (OpenCV's imgcodecs is not linked: on Debian
// it drags in GDAL). Written atomically.
#include <cstdint>
#include <string>

namespace neuroseg::io {

/// `rgb`: height x width x 3 bytes, row-major, R first.
void write_png_rgb(const uint8_t* rgb, int width, int height, const std::string& path);

}  // namespace neuroseg::io
