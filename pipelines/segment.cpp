#include "pipelines/segment.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <memory>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "io/error.h"
#include "io/json_args.h"
#include "io/volume_io.h"
#include "metrics/connected_components.h"
#include "pipelines/cases.h"
#include "pipelines/qc.h"
#include "pipelines/slice_inference.h"

namespace fs = std::filesystem;

namespace neuroseg::pipelines {

Postprocessing Postprocessing::from_json(const nlohmann::json& j) {
  Postprocessing p;
  io::JsonArgs a("checkpoint postprocessing", j);
  p.largest_component = a.get_bool("largest_component", p.largest_component);
  p.fill_holes = a.get_bool("fill_holes", p.fill_holes);
  p.connectivity = static_cast<int>(a.get_int("connectivity", p.connectivity, 6));
  if (p.connectivity != 6 && p.connectivity != 18 && p.connectivity != 26) a.fail("connectivity", "must be 6, 18 or 26");
  a.finish();
  return p;
}

Segmenter Segmenter::load(const std::string& checkpoint, const c10::Device& device) {
  Segmenter s;
  s.loaded = models::load_checkpoint(checkpoint);
  try {
    s.preprocessing = Preprocessing::from_json(s.loaded.meta.preprocessing);
    s.postprocessing = Postprocessing::from_json(s.loaded.meta.postprocessing);
  } catch (const io::Error& e) {
    throw io::Error(checkpoint, e.what());
  }
  const int64_t k = s.loaded.model->out_channels();
  // Labels: {"name": value}; network channel i produces the i-th smallest value.
  for (const auto& item : s.loaded.meta.labels.items()) {
    if (!item.value().is_number_integer()) throw io::Error(checkpoint, "label '" + item.key() + "' must have an integer value");
    s.label_values.push_back(item.value().get<int64_t>());
  }
  std::sort(s.label_values.begin(), s.label_values.end());
  if (s.label_values.empty())
    for (int64_t i = 0; i < k; ++i) s.label_values.push_back(i);
  if (static_cast<int64_t>(s.label_values.size()) != k)
    throw io::Error(checkpoint, std::to_string(s.label_values.size()) + " labels for a model with " + std::to_string(k) +
                                    " output channels");
  const auto& ps = s.loaded.meta.patch_size;
  if (ps.size() == 3) s.window.roi = {ps[0], ps[1], ps[2]};
  s.window.device = device;
  s.loaded.model->to(device);
  s.loaded.model->eval();
  return s;
}

io::Volume labels_from_scores(const io::Volume& scores, const std::vector<int64_t>& label_values) {
  io::Volume labels;
  const at::Tensor values = at::tensor(label_values, at::kLong);
  const int64_t max_value = *std::max_element(label_values.begin(), label_values.end());
  const at::ScalarType type = max_value <= 255 ? at::kByte : at::kShort;
  labels.data = values.index_select(0, scores.data.argmax(0).reshape({-1})).reshape(scores.data.sizes().slice(1)).unsqueeze(0).to(type);
  labels.geometry = scores.geometry;
  labels.source = scores.source;
  labels.source.dtype = type == at::kByte ? io::DType::UInt8 : io::DType::Int16;
  labels.source.scl_slope = 1.0;
  labels.source.scl_inter = 0.0;
  labels.source.channel_axis = "none";
  return labels;
}

namespace {

// The three stages of a case: read + preprocess, network, postprocess + write.
// A case claimed by this process: an exclusive flock on <out>/.claims/<case>.lock, held from
// before the case is read until its output is written (or it failed). Runs that overlap
// (two shards of one array task, a restarted job beside a slow one) skip a case another live
// process holds; the kernel drops the lock of a killed process, so a restart takes its cases
// over. The lock file is removed when done; a process that opened it just before sees the
// finished output on its re-check and skips.
class CaseClaim {
 public:
  CaseClaim() = default;
  CaseClaim(CaseClaim&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  CaseClaim& operator=(CaseClaim&& o) noexcept {
    release();
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
    return *this;
  }
  ~CaseClaim() { release(); }

  /// False when another live process holds the case.
  bool acquire(const fs::path& path) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    fd_ = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd_ < 0) throw io::Error(path.string(), "cannot create the case's claim file");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      fd_ = -1;
      return false;
    }
    path_ = path;
    return true;
  }
  void release() {
    if (fd_ < 0) return;
    std::error_code ec;
    fs::remove(path_, ec);
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  fs::path path_;
};

struct CaseWork {
  CaseClaim claim;
  CaseResult result;
  io::Volume image;
  PreparedCase prepared;
  at::Tensor logits;
  std::chrono::steady_clock::time_point start;
};

std::string one_line(const std::exception& e) {
  std::string msg = e.what();
  if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
  return msg;
}

void fail(CaseWork& w, const std::exception& e) {
  w.result.status = "failed";
  w.result.error = one_line(e);
}

CaseWork load_stage(const Segmenter& s, const std::string& input, const std::string& out_dir, const SegmentOptions& o) {
  CaseWork w;
  w.start = std::chrono::steady_clock::now();
  w.result.input = input;
  w.result.name = case_name(input);
  w.result.output = (fs::path(out_dir) / (o.output_name ? o.output_name(w.result.name) : w.result.name + "_seg.nii.gz")).string();
  if (o.resume && fs::exists(w.result.output)) {
    w.result.status = "skipped";
    return w;
  }
  try {
    if (!w.claim.acquire(fs::path(out_dir) / ".claims" / (w.result.name + ".lock"))) {
      w.result.status = "claimed";  // another live process is on it
      return w;
    }
    if (o.resume && fs::exists(w.result.output)) {  // finished while we were claiming
      w.claim.release();
      w.result.status = "skipped";
      return w;
    }
    w.image = io::read_volume(input);
    io::require_3d(w.image, "segmentation");
    if (w.image.channels() != s.loaded.model->in_channels())
      throw io::Error(input, std::to_string(w.image.channels()) + " channels, the model expects " +
                                 std::to_string(s.loaded.model->in_channels()));
    w.prepared = prepare_case(w.image, s.preprocessing);
  } catch (const std::exception& e) {
    fail(w, e);
  }
  return w;
}

void network_stage(Segmenter& s, CaseWork& w, const SegmentOptions& o) {
  if (!w.result.status.empty()) return;
  try {
    if (o.before_network) o.before_network(w.result.name);
    if (s.slice_axis > 0) {
      auto* slices = dynamic_cast<models::SliceModelImpl*>(s.loaded.model.get());
      if (!slices) throw io::Error("--axis", "model '" + s.loaded.meta.model + "' is not a 2D slice model");
      w.logits = slice_inference(*slices, w.prepared.image, s.slice_axis, s.window.device, s.window.amp);
    } else {
      w.logits = sliding_window_inference(*s.loaded.model, w.prepared.image, s.window);
    }
  } catch (const std::exception& e) {
    fail(w, e);
  }
}

CaseResult write_stage(const Segmenter& s, CaseWork& w, const std::string& out_dir, const SegmentOptions& o) {
  if (!w.result.status.empty()) {
    w.claim.release();
    w.result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - w.start).count();
    return w.result;
  }
  try {
    const io::Volume probabilities = restore_to_input(at::softmax(w.logits, 0), w.prepared);
    io::Volume labels = labels_from_scores(probabilities, s.label_values);
    if (s.postprocessing.largest_component)
      labels.data = metrics::keep_largest_component_per_label(labels.data[0], s.postprocessing.connectivity).unsqueeze(0);
    if (s.postprocessing.fill_holes) labels.data = metrics::fill_holes_per_label(labels.data[0]).unsqueeze(0);
    if (o.postprocess_labels) o.postprocess_labels(labels, w.image);
    io::write_volume(labels, w.result.output);
    if (o.probabilities) {
      io::Volume p = probabilities;
      p.source.dtype = io::DType::Float32;
      p.source.channel_axis = "4d";
      p.source.scl_slope = 1.0;
      p.source.scl_inter = 0.0;
      io::write_volume(p, (fs::path(out_dir) / (w.result.name + "_prob.nii.gz")).string());
    }
    w.result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - w.start).count();
    if (o.qc) {
      char caption[256];
      std::snprintf(caption, sizeof(caption), "%s  %.1f s", w.result.name.c_str(), w.result.seconds);
      write_qc_png(w.image, labels, (fs::path(out_dir) / "qc" / (w.result.name + ".png")).string(), caption);
    }
    w.result.status = "ok";
  } catch (const std::exception& e) {
    fail(w, e);
    w.result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - w.start).count();
  }
  w.claim.release();
  return w.result;
}

}  // namespace

CaseResult segment_case(Segmenter& s, const std::string& input, const std::string& out_dir, const SegmentOptions& o) {
  CaseWork w = load_stage(s, input, out_dir, o);
  network_stage(s, w, o);
  return write_stage(s, w, out_dir, o);
}

void segment_cases(Segmenter& s, const std::vector<std::string>& inputs, const std::string& out_dir,
                   const SegmentOptions& o, const std::function<void(const CaseResult&)>& on_done) {
  if (inputs.empty()) return;
  std::future<CaseWork> next = std::async(std::launch::async, load_stage, std::cref(s), inputs[0], out_dir, o);
  std::future<CaseResult> writing;
  std::shared_ptr<CaseWork> current;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    current = std::make_shared<CaseWork>(next.get());
    if (i + 1 < inputs.size()) next = std::async(std::launch::async, load_stage, std::cref(s), inputs[i + 1], out_dir, o);
    network_stage(s, *current, o);
    if (writing.valid()) on_done(writing.get());
    writing = std::async(std::launch::async, [&s, current, &out_dir, &o] { return write_stage(s, *current, out_dir, o); });
  }
  on_done(writing.get());
}

}  // namespace neuroseg::pipelines
