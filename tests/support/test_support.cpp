#include "support/test_support.h"

#include <cmath>
#include <mutex>

#include "io/error.h"
#include "io/volume_io.h"

namespace neuroseg::testing {
namespace {
std::mutex g_mutex;
std::string g_warnings;
io::WarningSink g_previous = nullptr;
void capture(const std::string& m) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_warnings += m + "\n";
}
}  // namespace

ScratchDir::ScratchDir(const std::string& name) {
  path_ = std::filesystem::path(NEUROSEG_BINARY_DIR) / "test_scratch" / name;
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

io::Volume make_volume(io::DType dtype, int64_t c, int64_t z, int64_t y, int64_t x) {
  io::Volume v;
  at::Tensor t = at::arange(c * z * y * x, at::TensorOptions().dtype(at::kDouble)).reshape({c, z, y, x});
  t = (t * 7).remainder(101);  // deterministic, no symmetry
  if (dtype == io::DType::Int8 || dtype == io::DType::Int16 || dtype == io::DType::Int32) t = t - 50;
  if (dtype == io::DType::UInt16) t = t * 600;  // exceed int16 range
  if (dtype == io::DType::Float32 || dtype == io::DType::Float64) t = t / 3.0 - 10.0;
  v.data = t.to(io::memory_scalar_type(dtype));
  v.source.dtype = dtype;
  v.geometry.spacing = {0.7, 1.3, 2.5};
  v.geometry.origin = {-12.5, 30.25, 7.0};
  const double a = 0.3;  // rotation about z, then a flip of the y axis
  v.geometry.direction = {std::cos(a), std::sin(a), 0, std::sin(a), -std::cos(a), 0, 0, 0, 1};
  v.source.channel_axis = c > 1 ? "4d" : "none";
  return v;
}

WarningCapture::WarningCapture() {
  g_warnings.clear();
  g_previous = io::set_warning_sink(&capture);
}
WarningCapture::~WarningCapture() { io::set_warning_sink(g_previous); }
const std::string& WarningCapture::text() const { return g_warnings; }

std::string mricron(const std::string& name) { return "/usr/share/mricron/templates/" + name; }
std::string nibabel_data(const std::string& name) { return "/usr/lib/python3/dist-packages/nibabel/tests/data/" + name; }
std::string pydicom_data(const std::string& name) {
  return "/usr/lib/python3/dist-packages/pydicom/data/test_files/" + name;
}

void write_ball_case(const ScratchDir& dir, const std::string& name, int64_t d, int64_t h, int64_t w, double cx,
                     double radius, uint64_t seed) {
  at::manual_seed(seed);
  auto z = at::arange(d, at::kFloat).view({d, 1, 1}), y = at::arange(h, at::kFloat).view({1, h, 1}),
       x = at::arange(w, at::kFloat).view({1, 1, w});
  const at::Tensor r2 = (z - static_cast<double>(d / 2)).pow(2) + (y - static_cast<double>(h / 2)).pow(2) + (x - cx).pow(2);
  const at::Tensor ball = (r2 < radius * radius).to(at::kByte);
  io::Volume img = make_volume(io::DType::Float32, 1, d, h, w);
  img.data = (ball.to(at::kFloat) * 2 + at::randn({d, h, w}) * 0.3).unsqueeze(0);
  io::Volume lab = img;
  lab.data = ball.unsqueeze(0);
  lab.source.dtype = io::DType::UInt8;
  io::write_volume(img, dir.file(name + "_img.nii.gz"));
  io::write_volume(lab, dir.file(name + "_seg.nii.gz"));
}

}  // namespace neuroseg::testing
