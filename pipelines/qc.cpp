#include "pipelines/qc.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "io/atomic_output.h"
#include "io/error.h"
#include "io/orientation.h"
#include "io/png.h"

namespace neuroseg::pipelines {
namespace {

// Label colours (BGR), cycling: red, green, blue, yellow, magenta, cyan, orange, purple.
const cv::Scalar kColours[] = {{60, 60, 230}, {80, 200, 80}, {230, 130, 50}, {40, 220, 230},
                               {200, 60, 200}, {210, 200, 40}, {30, 140, 250}, {170, 60, 120}};

// One slice as an 8-bit grey image and a label image, both (rows, cols), with the physical
// pixel size of rows and columns.
cv::Mat to_panel(const at::Tensor& grey2d, const at::Tensor& labels2d, double row_mm, double col_mm, int height) {
  const int rows = static_cast<int>(grey2d.size(0)), cols = static_cast<int>(grey2d.size(1));
  cv::Mat grey(rows, cols, CV_8UC1, grey2d.contiguous().data_ptr<uint8_t>());
  cv::Mat lab(rows, cols, CV_32SC1, labels2d.contiguous().data_ptr<int32_t>());
  cv::Mat rgb;
  cv::cvtColor(grey, rgb, cv::COLOR_GRAY2BGR);
  cv::Mat overlay = rgb.clone();
  double max_label = 0;
  cv::minMaxLoc(lab, nullptr, &max_label);
  for (int v = 1; v <= static_cast<int>(max_label); ++v) {
    cv::Mat mask = lab == v;
    if (cv::countNonZero(mask) == 0) continue;
    overlay.setTo(kColours[(v - 1) % 8], mask);
  }
  cv::addWeighted(overlay, 0.35, rgb, 0.65, 0.0, rgb);
  // Square physical pixels, then a common panel height.
  const double w_mm = cols * col_mm, h_mm = rows * row_mm;
  const int width = std::max(1, static_cast<int>(height * w_mm / h_mm + 0.5));
  cv::Mat scaled, scaled_lab;
  cv::resize(rgb, scaled, cv::Size(width, height), 0, 0, cv::INTER_LINEAR);
  cv::resize(lab, scaled_lab, cv::Size(width, height), 0, 0, cv::INTER_NEAREST);
  for (int v = 1; v <= static_cast<int>(max_label); ++v) {
    cv::Mat mask = scaled_lab == v;
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(mask, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
    cv::drawContours(scaled, contours, -1, kColours[(v - 1) % 8], 1, cv::LINE_AA);
  }
  return scaled;
}

}  // namespace

void write_qc_png(const io::Volume& image_in, const io::Volume& labels_in, const std::string& path,
                  const std::string& caption) {
  io::Volume image = image_in, labels = labels_in;
  image.data = image.data.slice(0, 0, 1).to(at::kFloat);
  labels.data = labels.data.to(at::kInt);
  image = io::to_canonical(image);
  labels = io::to_canonical(labels);
  const at::Tensor img = image.data[0], lab = labels.data[0];  // (Z, Y, X) in RAS: x->R, y->A, z->S
  // Grey levels from the 1st..99th percentile, so one bright voxel does not blacken the picture.
  at::Tensor sample = img.reshape({-1});
  if (sample.numel() > 1000000) sample = sample.index_select(0, at::arange(0, sample.numel(), sample.numel() / 1000000));
  const at::Tensor sorted = std::get<0>(sample.sort());
  const double lo = sorted[static_cast<int64_t>(0.01 * (sorted.numel() - 1))].item<double>();
  const double hi = std::max(lo + 1e-6, sorted[static_cast<int64_t>(0.99 * (sorted.numel() - 1))].item<double>());
  const at::Tensor grey = ((img - lo) / (hi - lo) * 255.0).clamp(0, 255).to(at::kByte);
  // Centre: the centroid of the labels, or the volume centre when there are none.
  std::array<int64_t, 3> c{img.size(0) / 2, img.size(1) / 2, img.size(2) / 2};
  const at::Tensor fg = (lab > 0).nonzero();
  if (fg.size(0) > 0) {
    const at::Tensor mean = fg.to(at::kDouble).mean(0);
    for (int a = 0; a < 3; ++a) c[a] = static_cast<int64_t>(std::llround(mean[a].item<double>()));
  }
  const auto& sp = image.geometry.spacing;  // (x, y, z)
  const int height = 256;
  // Flip rows so that anterior (axial) and superior (coronal, sagittal) point up.
  const cv::Mat axial = to_panel(grey[c[0]].flip({0}), lab[c[0]].flip({0}).contiguous(), sp[1], sp[0], height);
  const cv::Mat coronal = to_panel(grey.select(1, c[1]).flip({0}), lab.select(1, c[1]).flip({0}).contiguous(), sp[2], sp[0], height);
  const cv::Mat sagittal = to_panel(grey.select(2, c[2]).flip({0}), lab.select(2, c[2]).flip({0}).contiguous(), sp[2], sp[1], height);
  cv::Mat row;
  cv::hconcat(std::vector<cv::Mat>{axial, coronal, sagittal}, row);
  cv::Mat canvas(row.rows + 24, row.cols, CV_8UC3, cv::Scalar(0, 0, 0));
  row.copyTo(canvas(cv::Rect(0, 24, row.cols, row.rows)));
  cv::putText(canvas, caption, cv::Point(4, 17), cv::FONT_HERSHEY_SIMPLEX, 0.5, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);

  cv::Mat rgb;
  cv::cvtColor(canvas, rgb, cv::COLOR_BGR2RGB);
  io::write_png_rgb(rgb.data, rgb.cols, rgb.rows, path);
}

void write_gallery(const std::string& path, const std::string& title, const std::vector<GalleryEntry>& entries) {
  io::AtomicOutput file(path);
  {
    std::ofstream html(file.path());
    html << "<!doctype html><html><head><meta charset=\"utf-8\"><title>" << title << "</title><style>"
         << "body{font-family:sans-serif;background:#111;color:#ddd}figure{display:inline-block;margin:8px}"
         << "img{max-width:100%;border:1px solid #444}.failed{color:#f66}</style></head><body><h1>" << title << "</h1>\n";
    for (const auto& e : entries) {
      html << "<figure><figcaption class=\"" << (e.status == "ok" || e.status == "skipped" ? "" : "failed") << "\">"
           << e.name << " &mdash; " << e.status;
      if (e.seconds > 0) html << " &mdash; " << static_cast<int>(e.seconds * 10) / 10.0 << " s";
      if (!e.output.empty()) html << " &mdash; <a href=\"" << e.output << "\">mask</a>";
      html << "</figcaption>";
      if (!e.png.empty()) html << "<img src=\"" << e.png << "\" alt=\"" << e.name << "\">";
      html << "</figure>\n";
    }
    html << "</body></html>\n";
  }
  file.commit();
}

void write_curves_png(const std::string& path, const std::vector<CurvePanel>& panels) {
  const int w = 420, h = 300, margin = 40;
  cv::Mat canvas(h, w * static_cast<int>(std::max<size_t>(1, panels.size())), CV_8UC3, cv::Scalar(255, 255, 255));
  const cv::Scalar colours[] = {cv::Scalar(200, 80, 30), cv::Scalar(40, 160, 40), cv::Scalar(30, 30, 200)};
  for (std::size_t k = 0; k < panels.size(); ++k) {
    const CurvePanel& c = panels[k];
    const int x0 = static_cast<int>(k) * w;
    double lo = c.y_lo, hi = c.y_hi;
    if (std::isnan(lo) || std::isnan(hi)) {
      lo = 0, hi = 1;
      if (!c.y.empty()) {
        lo = *std::min_element(c.y.begin(), c.y.end());
        hi = *std::max_element(c.y.begin(), c.y.end());
      }
    }
    if (hi - lo < 1e-6) hi = lo + 1e-6;
    const cv::Rect area(x0 + margin, 20, w - margin - 10, h - 20 - margin);
    cv::rectangle(canvas, area, cv::Scalar(0, 0, 0));
    cv::putText(canvas, c.title, cv::Point(x0 + margin, 14), cv::FONT_HERSHEY_SIMPLEX, 0.45, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.3g", hi);
    cv::putText(canvas, buf, cv::Point(x0 + 2, area.y + 10), cv::FONT_HERSHEY_SIMPLEX, 0.35, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
    std::snprintf(buf, sizeof(buf), "%.3g", lo);
    cv::putText(canvas, buf, cv::Point(x0 + 2, area.y + area.height), cv::FONT_HERSHEY_SIMPLEX, 0.35, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
    cv::putText(canvas, c.x_label, cv::Point(area.x + area.width / 2 - 15, h - 12), cv::FONT_HERSHEY_SIMPLEX, 0.4,
                cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
    const double x_hi = std::max(1.0, c.x.empty() ? 1.0 : c.x.back());
    std::vector<cv::Point> pts;
    for (std::size_t i = 0; i < c.y.size() && i < c.x.size(); ++i) {
      const double fx = c.x[i] / x_hi, fy = (c.y[i] - lo) / (hi - lo);
      pts.emplace_back(area.x + static_cast<int>(fx * area.width), area.y + area.height - static_cast<int>(fy * area.height));
    }
    const cv::Scalar colour = colours[k % 3];
    if (pts.size() > 1) cv::polylines(canvas, pts, false, colour, 2, cv::LINE_AA);
    if (pts.size() <= 200)
      for (const auto& p : pts) cv::circle(canvas, p, 2, colour, cv::FILLED);
  }
  cv::Mat rgb;
  cv::cvtColor(canvas, rgb, cv::COLOR_BGR2RGB);
  io::write_png_rgb(rgb.data, rgb.cols, rgb.rows, path);
}

}  // namespace neuroseg::pipelines
