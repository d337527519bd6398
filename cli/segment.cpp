// neuroseg segment -i FILE|DIR -o OUT_DIR --model CKPT: batch segmentation with the
// preprocessing stored in the checkpoint, outputs on the input's exact grid.
#include <cstdio>
#include <filesystem>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <torch/cuda.h>

#include "cli/commands.h"
#include "cli/processes.h"
#include "adapters/adapted_model.h"
#include "io/atomic_output.h"
#include "io/error.h"
#include "pipelines/progress.h"
#include "pipelines/qc.h"
#include "pipelines/cases.h"
#include "pipelines/segment.h"
#include "pipelines/slice_inference.h"
#include "pipelines/neuron_instances.h"
#include "pipelines/spine_instances.h"

namespace fs = std::filesystem;

namespace neuroseg::cli {

c10::Device parse_device(const std::string& text) {
  if (text == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  try {
    const c10::Device d(text);
    if (d.is_cuda() && !torch::cuda::is_available()) throw io::Error("--device " + text, "no CUDA device is available");
    if (d.is_cuda() && d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
      throw io::Error("--device " + text, "only " + std::to_string(torch::cuda::device_count()) + " CUDA devices");
    return d;
  } catch (const c10::Error&) {
    throw io::Error("--device " + text, "expected auto, cpu or cuda:N");
  }
}

// The embedded default model (3D brain extraction, data_samples/brain_extraction.pt): from
// $NEUROSEG_DEFAULT_MODEL, beside the executable's tree, or in the source tree it was built from.
std::string default_model_path() {
  if (const char* env = std::getenv("NEUROSEG_DEFAULT_MODEL")) return env;
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / "data_samples" / "brain_extraction.pt");
    candidates.push_back(exe.parent_path().parent_path() / "data_samples" / "brain_extraction.pt");
    candidates.push_back(exe.parent_path().parent_path() / "share" / "neuroseg" / "brain_extraction.pt");
  }
  candidates.push_back(fs::path(NEUROSEG_SOURCE_DIR) / "data_samples" / "brain_extraction.pt");
  for (const auto& c : candidates)
    if (fs::exists(c)) return c.string();
  throw io::Error("--model", "not given, and the default model data_samples/brain_extraction.pt was not found "
                             "(retrain it with scripts/train_default_model.sh or set NEUROSEG_DEFAULT_MODEL)");
}

namespace {

struct SegmentArgs {
  std::string input, out, model, device = "auto";
  double overlap = 0.5;
  int64_t batch = 2;
  std::vector<int64_t> roi;
  bool tta = false, probabilities = false, resume = false, no_qc = false, amp = false;
  std::string shard, devices, adapter, adapter_csv;
  std::string instances = "none";
  std::string axis;
};

// --adapter FILE / --adapter-csv CSV (case,adapter): every adapter is loaded (and checked
// against the base) up front; before each case the one it needs is merged into the base
// weights (the previous one unmerged bit for bit), so inference runs at the base model's speed.
class AdapterSwitch {
 public:
  AdapterSwitch(pipelines::Segmenter& s, const std::string& single, const std::string& csv,
                const std::vector<std::string>& cases) {
    if (!single.empty()) default_ = load(s, single);
    if (csv.empty()) return;
    std::ifstream f(csv);
    if (!f) throw io::Error(csv, "cannot read the adapter table");
    std::string line;
    std::set<std::string> known;
    for (const auto& c : cases) known.insert(pipelines::case_name(c));
    int64_t row = 0;
    while (std::getline(f, line)) {
      ++row;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || (row == 1 && line.rfind("case,", 0) == 0)) continue;
      const auto comma = line.find(',');
      if (comma == std::string::npos) throw io::Error(csv, "line " + std::to_string(row) + ": expected case,adapter");
      const std::string name = line.substr(0, comma), path = line.substr(comma + 1);
      if (!known.count(name)) io::warn(csv + ": case '" + name + "' (line " + std::to_string(row) + ") is not among the inputs");
      per_case_[name] = load(s, path);
    }
  }
  void before(const std::string& case_name) {
    auto it = per_case_.find(case_name);
    adapters::AdaptedModelImpl* want = it != per_case_.end() ? it->second : default_;
    if (want == current_) return;
    if (current_) current_->unmerge();
    if (want) want->merge();
    current_ = want;
  }
  bool active() const { return default_ || !per_case_.empty(); }

 private:
  adapters::AdaptedModelImpl* load(pipelines::Segmenter& s, const std::string& path) {
    auto& slot = loaded_[path];
    if (!slot) {
      slot = adapters::load_adapted(s.loaded, path).ptr();
      slot->eval();
    }
    return slot.get();
  }
  std::map<std::string, std::shared_ptr<adapters::AdaptedModelImpl>> loaded_;
  std::map<std::string, adapters::AdaptedModelImpl*> per_case_;
  adapters::AdaptedModelImpl* default_ = nullptr;
  adapters::AdaptedModelImpl* current_ = nullptr;
};

// "i/n" with 0 <= i < n.
std::pair<int64_t, int64_t> parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument(text);
    size_t u1 = 0, u2 = 0;
    const int64_t i = std::stoll(text.substr(0, slash), &u1), n = std::stoll(text.substr(slash + 1), &u2);
    if (u1 != slash || u2 != text.size() - slash - 1 || n < 1 || i < 0 || i >= n) throw std::invalid_argument(text);
    return {i, n};
  } catch (const std::exception&) {
    throw io::Error("--shard " + text, "expected i/n with 0 <= i < n (e.g. 0/4)");
  }
}

// --devices all: one child per visible GPU, child k segmenting shard k/n on cuda:k with the
// same options; the claims keep overlapping children and reruns from doubling any case.
void run_on_all_devices(const SegmentArgs& a) {
  if (a.devices != "all") throw io::Error("--devices " + a.devices, "expected all");
  if (!a.shard.empty()) throw io::Error("--devices all", "shards the cases itself; drop --shard");
  const int64_t n = static_cast<int64_t>(torch::cuda::device_count());
  if (n == 0) throw io::Error("--devices all", "no CUDA device is visible");
  std::vector<ChildProcess> children;
  for (int64_t k = 0; k < n; ++k) {
    ChildProcess c;
    c.args = {"segment", "-i", a.input, "-o", a.out, "--device", "cuda:" + std::to_string(k), "--shard",
              std::to_string(k) + "/" + std::to_string(n), "--overlap", std::to_string(a.overlap), "--batch",
              std::to_string(a.batch)};
    if (!a.model.empty()) c.args.insert(c.args.end(), {"--model", a.model});
    if (!a.adapter.empty()) c.args.insert(c.args.end(), {"--adapter", a.adapter});
    if (!a.adapter_csv.empty()) c.args.insert(c.args.end(), {"--adapter-csv", a.adapter_csv});
    if (!a.axis.empty()) c.args.insert(c.args.end(), {"--axis", a.axis});
    if (a.instances != "none") c.args.insert(c.args.end(), {"--instances", a.instances});
    if (!a.roi.empty())
      c.args.insert(c.args.end(), {"--roi", std::to_string(a.roi[0]), std::to_string(a.roi[1]), std::to_string(a.roi[2])});
    for (const auto& [on, flag] : {std::pair{a.tta, "--tta"}, std::pair{a.amp, "--amp"}, std::pair{a.probabilities, "--probabilities"},
                                   std::pair{a.resume, "--resume"}, std::pair{a.no_qc, "--no-qc"}})
      if (on) c.args.push_back(flag);
    children.push_back(std::move(c));
  }
  std::fprintf(stderr, "neuroseg segment: %lld GPU(s), one shard each\n", static_cast<long long>(n));
  if (const int status = run_children(children); status != 0) std::exit(status);
}

}  // namespace

void add_segment_command(CLI::App& app) {
  using Args = SegmentArgs;
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("segment", "Segment a volume or a folder of volumes with a trained checkpoint");
  cmd->add_option("-i,--input", a->input, "Volume, DICOM folder, zarr array, or a folder of them")->required();
  cmd->add_option("-o,--output", a->out, "Output folder (<case>_seg.nii.gz, qc/<case>.png, index.html)")->required();
  cmd->add_option("--model", a->model,
                  "Checkpoint written by neuroseg (train or import-weights); default: the shipped brain-extraction model");
  cmd->add_option("--device", a->device, "auto, cpu or cuda:N");
  cmd->add_option("--overlap", a->overlap, "Sliding-window overlap in [0, 1)")->check(CLI::Range(0.0, 0.95));
  cmd->add_option("--batch", a->batch, "Windows per forward pass")->check(CLI::PositiveNumber);
  cmd->add_option("--roi", a->roi, "Window size D H W (default: the checkpoint's patch size)")->expected(3);
  cmd->add_flag("--tta", a->tta, "Average the 8 mirrored predictions (8x slower)");
  cmd->add_flag("--amp", a->amp, "Mixed precision (fp16 on CUDA, bf16 on CPU)");
  cmd->add_flag("--probabilities", a->probabilities, "Also write <case>_prob.nii.gz (float32 per class)");
  cmd->add_flag("--resume", a->resume, "Skip cases whose output already exists");
  cmd->add_flag("--no-qc", a->no_qc, "Do not write QC pictures and index.html");
  cmd->add_option("--shard", a->shard,
                  "i/n: segment only cases i, i+n, i+2n, ... of the sorted list (0 <= i < n; e.g. "
                  "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)");
  cmd->add_option("--adapter", a->adapter, "Adapter file (.nsa from neuroseg finetune) applied to --model");
  cmd->add_option("--adapter-csv", a->adapter_csv,
                  "CSV of case,adapter: a per-case adapter (cases not listed use --adapter, or none)");
  cmd->add_option("--axis", a->axis,
                  "z, y or x: run a 2D slice model (unet2d, sam_vit_b) over whole slices along this axis of the "
                  "preprocessed volume, in order, with its memory carried along (instead of sliding windows)")
      ->check(CLI::IsMember({"z", "y", "x"}));
  cmd->add_option("--devices", a->devices, "all: one process per visible GPU, each segmenting its shard of the cases");
  cmd->add_option("--instances", a->instances,
                  "Semantic -> instance labels before writing: none; spine (model classes 1 vertebra, 2 disc, "
                  "3 canal -> SPIDER labels: vertebrae 1.. from the bottom, discs 200 + the vertebra above, canal 100; "
                  "pipelines/spine_instances.h); or neurons (foreground split by colour and connectivity into "
                  "neurons, written in FISBe's format <case>.zarr/volumes/pred_instances; "
                  "pipelines/neuron_instances.h)")
      ->check(CLI::IsMember({"none", "spine", "neurons"}));
  cmd->callback([a] {
    if (!a->devices.empty()) {
      run_on_all_devices(*a);
      return;
    }
    std::vector<std::string> cases = pipelines::list_cases(a->input);
    std::string suffix;  // summary/gallery names of a shard
    if (!a->shard.empty()) {
      const auto [index, count] = parse_shard(a->shard);
      std::vector<std::string> mine;
      for (size_t k = static_cast<size_t>(index); k < cases.size(); k += static_cast<size_t>(count)) mine.push_back(cases[k]);
      cases = std::move(mine);
      suffix = ".shard-" + std::to_string(index) + "-of-" + std::to_string(count);
    }
    if (a->model.empty()) a->model = default_model_path();
    pipelines::Segmenter segmenter = pipelines::Segmenter::load(a->model, parse_device(a->device));
    segmenter.window.overlap = a->overlap;
    segmenter.window.batch = a->batch;
    segmenter.window.mirror_tta = a->tta;
    segmenter.window.amp = a->amp;
    if (!a->roi.empty()) segmenter.window.roi = {a->roi[0], a->roi[1], a->roi[2]};
    if (!a->axis.empty()) {
      if (!dynamic_cast<models::SliceModelImpl*>(segmenter.loaded.model.get()))
        throw io::Error("--axis " + a->axis, "model '" + segmenter.loaded.meta.model + "' is not a 2D slice model");
      if (a->tta) throw io::Error("--axis " + a->axis, "--tta is for sliding windows; drop one of them");
      segmenter.slice_axis = pipelines::parse_slice_axis(a->axis);
    }
    AdapterSwitch adapter_switch(segmenter, a->adapter, a->adapter_csv, cases);
    pipelines::SegmentOptions options;
    if (adapter_switch.active()) options.before_network = [&adapter_switch](const std::string& c) { adapter_switch.before(c); };
    if (a->instances == "spine")
      options.postprocess_labels = [](io::Volume& labels, const io::Volume&) { labels = pipelines::spine_instances(labels); };
    if (a->instances == "neurons") {
      options.postprocess_labels = [](io::Volume& labels, const io::Volume& image) {
        labels.data = pipelines::neuron_instances(labels.data[0], image.data).unsqueeze(0);
        labels.source.dtype = io::DType::Int32;
      };
      options.output_name = [](const std::string& c) { return c + ".zarr/volumes/pred_instances"; };
    }
    options.probabilities = a->probabilities;
    options.resume = a->resume;
    options.qc = !a->no_qc;
    fs::create_directories(a->out);

    std::fprintf(stderr, "neuroseg segment: %zu case(s), model %s (%s) on %s\n", cases.size(), a->model.c_str(),
                 segmenter.loaded.meta.model.c_str(), segmenter.window.device.str().c_str());
    pipelines::ProgressBar bar(static_cast<int64_t>(cases.size()), "segment");
    std::vector<pipelines::CaseResult> results;
    std::vector<pipelines::GalleryEntry> gallery;
    int failures = 0;
    double total_seconds = 0;
    int64_t finished = 0;
    const auto wall_start = std::chrono::steady_clock::now();
    pipelines::segment_cases(segmenter, cases, a->out, options, [&](const pipelines::CaseResult& r) {
      if (r.status == "failed") {
        ++failures;
        std::fprintf(stderr, "%sneuroseg: error: %s\n", isatty(2) ? "\r\033[K" : "", r.error.c_str());
      }
      total_seconds += r.seconds;
      char note[256];
      std::snprintf(note, sizeof(note), "%s %s %.1f s", r.name.c_str(), r.status.c_str(), r.seconds);
      bar.update(++finished, note);
      const bool has_png = r.status == "ok" || (r.status != "failed" && fs::exists(fs::path(a->out) / "qc" / (r.name + ".png")));
      gallery.push_back({r.name, has_png ? "qc/" + r.name + ".png" : "", r.status == "failed" ? "" : fs::path(r.output).filename().string(),
                         r.status, r.seconds});
      results.push_back(r);
    });
    // Summary CSV, gallery and a one-line summary.
    {
      io::AtomicOutput csv(a->out + "/segment_summary" + suffix + ".csv");
      std::ofstream f(csv.path());
      f << "case,input,output,status,seconds,error\n";
      for (const auto& r : results)
        f << r.name << ",\"" << r.input << "\"," << (r.status == "failed" ? "" : r.output) << "," << r.status << ","
          << r.seconds << ",\"" << r.error << "\"\n";
      f.close();
      csv.commit();
    }
    if (options.qc) pipelines::write_gallery(a->out + "/index" + suffix + ".html", "neuroseg segment: " + a->input, gallery);
    const int64_t done = static_cast<int64_t>(std::count_if(results.begin(), results.end(), [](const auto& r) { return r.status == "ok"; }));
    const int64_t skipped = static_cast<int64_t>(results.size()) - done - failures;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    std::printf("segmented %lld, skipped %lld, failed %d of %zu case(s); %.2f s per segmented case, %.1f s in all -> %s\n",
                static_cast<long long>(done), static_cast<long long>(skipped), failures, results.size(),
                done > 0 ? total_seconds / static_cast<double>(done) : 0.0, wall, a->out.c_str());
    if (failures > 0) throw io::Error(a->out, std::to_string(failures) + " of " + std::to_string(results.size()) + " case(s) failed (see segment_summary.csv)");
  });
}

}  // namespace neuroseg::cli
