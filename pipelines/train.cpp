#include "pipelines/train.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/serialize.h>

#include "adapters/adapted_model.h"
#include "io/atomic_output.h"
#include "io/error.h"
#include "io/json_args.h"
#include "io/volume_io.h"
#include "losses/loss_factory.h"
#include "models/checkpoint.h"
#include "models/registry.h"
#include "models/sam.h"
#include "pipelines/autocast_guard.h"
#include "pipelines/dataset.h"
#include "pipelines/distributed.h"
#include "pipelines/progress.h"
#include "pipelines/qc.h"
#include "pipelines/cases.h"
#include "pipelines/segment.h"
#include "pipelines/sliding_window.h"

namespace fs = std::filesystem;

namespace neuroseg::pipelines {
namespace {

std::string resolve(const std::string& base, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute() || base.empty()) return p;
  return (fs::path(base) / p).string();
}

// One generator per (seed, iteration, stream, sample of the global batch): patches and
// augmentation are pure functions of the global sample index, so resuming, changing the
// number of loader threads, or splitting the batch over any number of ranks changes nothing.
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

at::Generator generator_for(uint64_t seed, int64_t iteration, uint64_t stream, int64_t sample) {
  uint64_t h = splitmix64(seed);
  for (const uint64_t v : {static_cast<uint64_t>(iteration), stream, static_cast<uint64_t>(sample)}) h = splitmix64(h ^ v);
  return at::make_generator<at::CPUGeneratorImpl>(h);
}

// Background threads that prepare batches ahead of the training loop (bounded prefetch):
// this rank's samples [sample_first, sample_last) of each global batch.
class BatchLoader {
 public:
  BatchLoader(const std::vector<TrainingCase>& cases, const TrainConfig& c, int64_t first, int64_t last,
              std::pair<int64_t, int64_t> samples)
      : cases_(cases), config_(c), samples_(samples), next_(first), end_(last), consumed_(first) {
    const int64_t workers = std::max<int64_t>(1, c.workers);
    for (int64_t w = 0; w < workers; ++w) threads_.emplace_back([this] { run(); });
  }
  ~BatchLoader() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  /// Batch `i`; `waited` accumulates the seconds the caller spent waiting.
  Batch get(int64_t i, double& waited) {
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return ready_.count(i) > 0 || error_; });
    if (error_) throw io::Error(error_subject_, error_problem_);
    Batch b = std::move(ready_[i]);
    ready_.erase(i);
    consumed_ = i + 1;
    lock.unlock();
    cv_.notify_all();
    waited += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return b;
  }

 private:
  void run() {
    while (true) {
      int64_t i;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || (next_ < end_ && next_ - consumed_ < kPrefetch); });
        if (stop_ || next_ >= end_) return;
        i = next_++;
      }
      try {
        std::vector<at::Tensor> images, labels;
        for (int64_t j = samples_.first; j < samples_.second; ++j) {
          at::Generator gen = generator_for(config_.seed, i, 1, j);
          Batch one = sample_batch(cases_, config_.patch, 1, config_.foreground_fraction, gen);
          images.push_back(one.image);
          labels.push_back(one.label);
        }
        Batch b{at::cat(images), at::cat(labels)};
        std::lock_guard<std::mutex> lock(mutex_);
        ready_[i] = std::move(b);
      } catch (const io::Error& e) {
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = true;
        error_subject_ = e.subject();
        error_problem_ = e.problem();
      }
      cv_.notify_all();
    }
  }
  static constexpr int64_t kPrefetch = 4;
  const std::vector<TrainingCase>& cases_;
  const TrainConfig& config_;
  std::pair<int64_t, int64_t> samples_;
  int64_t next_, end_, consumed_;
  std::map<int64_t, Batch> ready_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false, error_ = false;
  std::string error_subject_, error_problem_;
};

double learning_rate(const TrainConfig& c, double progress_epochs) {
  const double total = static_cast<double>(c.epochs);
  if (c.warmup_epochs > 0 && progress_epochs < c.warmup_epochs) return c.lr * (progress_epochs + 1e-3) / c.warmup_epochs;
  const double t = std::min(1.0, (progress_epochs - c.warmup_epochs) / std::max(1e-9, total - c.warmup_epochs));
  if (c.schedule == "cosine") return 0.5 * c.lr * (1 + std::cos(M_PI * t));
  return c.lr * std::pow(1.0 - t, 0.9);  // poly (nnU-Net)
}

// A data entry: a list of [image, label] pairs, or {"images": DIR, "labels": DIR} matched
// by case name (an image "case_0000.nii.gz" pairs with "case.nii.gz", nnU-Net's naming).
std::vector<std::pair<std::string, std::string>> read_pairs(io::JsonArgs& a, const nlohmann::json& j, const std::string& key,
                                                            const std::string& base) {
  std::vector<std::pair<std::string, std::string>> out;
  const auto* v = j.contains(key) ? &j.at(key) : nullptr;
  a.mark_known(key);
  if (!v) return out;
  if (v->is_object()) {
    io::JsonArgs f("config data." + key, *v);
    const std::string images = resolve(base, f.get_string("images", "")), labels = resolve(base, f.get_string("labels", ""));
    f.finish();
    if (images.empty() || labels.empty()) f.fail("images", "needs both \"images\" and \"labels\" folders");
    std::map<std::string, std::string> label_of;
    for (const std::string& l : list_cases(labels)) label_of[case_name(l)] = l;
    for (const std::string& img : list_cases(images)) {
      std::string name = case_name(img);
      if (name.size() > 5 && name.compare(name.size() - 5, 5, "_0000") == 0) name.resize(name.size() - 5);
      const auto it = label_of.find(name);
      if (it == label_of.end()) throw io::Error(img, "no label named '" + name + "' in " + labels);
      out.emplace_back(img, it->second);
    }
    return out;
  }
  if (!v->is_array()) a.fail(key, "expected a list of [image, label] pairs or {\"images\": DIR, \"labels\": DIR}");
  for (const auto& item : *v) {
    if (!item.is_array() || item.size() != 2 || !item[0].is_string() || !item[1].is_string())
      a.fail(key, "each entry must be [\"image path\", \"label path\"], got " + item.dump());
    out.emplace_back(resolve(base, item[0].get<std::string>()), resolve(base, item[1].get<std::string>()));
  }
  return out;
}

// nnU-Net's CT normalisation statistics: the 0.5 and 99.5 percentiles of the foreground
// (label > 0) intensities over the training set, and mean/std after clipping to them.
nlohmann::json percentile_statistics(const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::vector<at::Tensor> samples;
  for (const auto& [image_path, label_path] : pairs) {
    const io::Volume image = io::read_volume(image_path), label = io::read_volume(label_path);
    io::require_same_grid(image, label);
    at::Tensor fg = image.data[0].to(at::kFloat).masked_select(label.data[0] > 0);
    if (fg.numel() > 100000) fg = fg.index_select(0, at::arange(0, fg.numel(), fg.numel() / 100000));
    samples.push_back(fg);
  }
  const at::Tensor all = std::get<0>(at::cat(samples).sort());
  if (all.numel() == 0) throw io::Error("config preprocessing", "percentile normalisation needs labelled voxels");
  auto quantile = [&](double q) { return all[static_cast<int64_t>(q * double(all.numel() - 1))].item<double>(); };
  const double low = quantile(0.005), high = quantile(0.995);
  const at::Tensor clipped = all.clamp(low, high);
  return {{"scheme", "percentile"}, {"low", low}, {"high", high}, {"mean", clipped.mean().item<double>()},
          {"std", std::max(1e-8, clipped.std().item<double>())}};
}

}  // namespace

TrainConfig TrainConfig::from_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw io::Error(path, "cannot open config");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    throw io::Error(path, std::string("invalid JSON (") + e.what() + ")");
  }
  try {
    return from_json(j, fs::absolute(path).parent_path().string());
  } catch (const io::Error& e) {
    throw io::Error(path, e.what());
  }
}

TrainConfig TrainConfig::from_json(const nlohmann::json& j, const std::string& base) {
  TrainConfig c;
  c.base_dir = base;
  io::JsonArgs a("config", j);
  const nlohmann::json data = a.get_object("data");
  if (data.is_null()) a.fail("data", "is required: {\"train\": [[image, label], ...], \"validation\": [...]}");
  {
    io::JsonArgs d("config data", data);
    c.train_pairs = read_pairs(d, data, "train", base);
    c.val_pairs = read_pairs(d, data, "validation", base);
    d.finish();
    if (c.train_pairs.empty()) d.fail("train", "needs at least one [image, label] pair");
  }
  const nlohmann::json model = a.get_object("model");
  if (!model.is_null()) {
    io::JsonArgs m("config model", model);
    c.model = m.get_string("name", c.model);
    c.model_args = m.get_object("args");
    if (c.model_args.is_null()) c.model_args = nlohmann::json::object();
    m.finish();
  }
  c.labels = a.get_object("labels");
  if (c.labels.is_null() || c.labels.empty()) a.fail("labels", "is required, e.g. {\"background\": 0, \"brain\": 1}");
  c.preprocessing_json = a.get_object("preprocessing");
  if (c.preprocessing_json.is_null()) c.preprocessing_json = nlohmann::json::object();
  c.postprocessing = a.get_object("postprocessing");
  if (c.postprocessing.is_null()) c.postprocessing = nlohmann::json::object();
  const auto patch = a.get_int_list("patch_size", {c.patch[0], c.patch[1], c.patch[2]}, 1);
  if (patch.size() != 3) a.fail("patch_size", "needs 3 values (D, H, W)");
  c.patch = {patch[0], patch[1], patch[2]};
  c.batch_size = a.get_int("batch_size", c.batch_size, 1);
  c.epochs = a.get_int("epochs", c.epochs, 1);
  c.iterations_per_epoch = a.get_int("iterations_per_epoch", c.iterations_per_epoch, 1);
  c.validation_every = a.get_int("validation_every", c.validation_every, 1);
  c.workers = a.get_int("workers", c.workers, 1);
  c.foreground_fraction = a.get_double("foreground_fraction", c.foreground_fraction, 0.0);
  c.grad_clip = a.get_double("grad_clip", c.grad_clip, 0.0);
  c.amp = a.get_choice("amp", c.amp, {"none", "fp16", "bf16"});
  c.seed = static_cast<uint64_t>(a.get_int("seed", 0, 0));
  const nlohmann::json opt = a.get_object("optimizer");
  if (!opt.is_null()) {
    io::JsonArgs o("config optimizer", opt);
    c.optimizer = o.get_choice("name", c.optimizer, {"sgd", "adamw"});
    c.lr = o.get_double("lr", c.optimizer == "adamw" ? 1e-3 : c.lr, 1e-12);
    c.momentum = o.get_double("momentum", c.momentum, 0.0);
    c.nesterov = o.get_bool("nesterov", c.nesterov);
    c.weight_decay = o.get_double("weight_decay", c.weight_decay, 0.0);
    o.finish();
  }
  const nlohmann::json sched = a.get_object("schedule");
  if (!sched.is_null()) {
    io::JsonArgs s("config schedule", sched);
    c.schedule = s.get_choice("name", c.schedule, {"poly", "cosine"});
    c.warmup_epochs = s.get_double("warmup_epochs", c.warmup_epochs, 0.0);
    s.finish();
  }
  const nlohmann::json aug = a.get_object("augmentation");
  if (!aug.is_null()) c.augmentation = AugmentOptions::from_json(aug);
  c.loss = a.get_choice("loss", c.loss, losses::loss_names());
  c.loss_options = a.get_object("loss_options");
  if (c.loss_options.is_null()) c.loss_options = nlohmann::json::object();
  a.finish();
  {
    const auto lo = losses::LossOptions::from_json(c.loss, c.loss_options, "config loss_options");
    if (!lo.class_weights.empty() && lo.class_weights.size() != c.labels.size())
      throw io::Error("config loss_options", "argument 'class_weights': needs one value per label (" +
                                                 std::to_string(c.labels.size()) + "), got " +
                                                 std::to_string(lo.class_weights.size()));
  }
  // Fail early on model arguments and preprocessing, before any data is read.
  models::ModelRegistry::instance().create(c.model, c.model_args);
  nlohmann::json pp = c.preprocessing_json;
  if (pp.contains("target_spacing") && pp["target_spacing"] == "median") pp.erase("target_spacing");
  Preprocessing::from_json(pp);
  Postprocessing::from_json(c.postprocessing);
  return c;
}

double mean_foreground_dice(const at::Tensor& pred, const at::Tensor& ref, int64_t classes) {
  double sum = 0;
  int64_t n = 0;
  for (int64_t k = 1; k < classes; ++k) {
    const at::Tensor p = pred == k, r = ref == k;
    const double denom = p.sum().item<double>() + r.sum().item<double>();
    if (denom == 0) continue;  // class absent from both: not counted
    sum += 2.0 * (p & r).sum().item<double>() / denom;
    ++n;
  }
  return n ? sum / static_cast<double>(n) : 1.0;
}

namespace {
double run_training(const TrainConfig& c, const std::string& run_dir, const TrainOptions& opt, const FinetuneOptions* ft);
}  // namespace

double train(const TrainConfig& c, const std::string& run_dir, const TrainOptions& opt) {
  return run_training(c, run_dir, opt, nullptr);
}

double finetune(const TrainConfig& c, const std::string& run_dir, const TrainOptions& opt, const FinetuneOptions& ft) {
  return run_training(c, run_dir, opt, &ft);
}

namespace {

double run_training(const TrainConfig& c, const std::string& run_dir, const TrainOptions& opt, const FinetuneOptions* ft) {
  const std::string last = run_dir + "/checkpoint_last.pt", state_path = run_dir + "/train_state.pt",
                    state_json = run_dir + "/train_state.json", adapter_last = run_dir + "/adapter_last.nsa";
  if (opt.resume && (!fs::exists(last) || !fs::exists(state_path) || !fs::exists(state_json) ||
                     (ft && ft->mode == "adapter" && !fs::exists(adapter_last))))
    throw io::Error(run_dir, "nothing to resume (no checkpoint_last.pt / train_state.pt / train_state.json" +
                                 std::string(ft && ft->mode == "adapter" ? " / adapter_last.nsa)" : ")"));
  std::optional<models::LoadedModel> base;
  std::shared_ptr<adapters::AdaptedModelImpl> adapted;
  if (ft) {  // before any data is read: a bad base, labels or target globs fail at once
    torch::manual_seed(c.seed);  // the adapter factors' initialisation
    base = models::load_checkpoint(ft->base_checkpoint);
    if (base->meta.labels != c.labels)
      throw io::Error("config labels", c.labels.dump() + " differ from the base checkpoint's " + base->meta.labels.dump() +
                                           " (" + ft->base_checkpoint + ")");
    if (ft->mode == "adapter") {
      adapted = adapters::AdaptedModel(base->model, base->meta.model, base->meta.args, ft->adapter, ft->targets).ptr();
    } else if (ft->mode == "layers") {
      for (const auto& p : base->model->parameters()) p.set_requires_grad(false);
      int64_t matched = 0;
      for (const auto& item : base->model->named_modules("", false))
        if (std::any_of(ft->targets.begin(), ft->targets.end(), [&](const std::string& t) { return adapters::name_matches(item.key(), t); }))
          for (auto& p : item.value()->parameters(/*recurse=*/false)) p.set_requires_grad(true), ++matched;
      if (matched == 0) throw io::Error("--target", "matches no module with weights in " + ft->base_checkpoint);
    } else if (ft->mode == "sam4em") {
      std::tie(base->model, base->meta.args) =
          models::prepare_sam4em(*base, ft->adapter.rank, ft->adapter.alpha, ft->memory_slots, !ft->freeze_decoder);
      const auto* sam = dynamic_cast<const models::SamImpl*>(base->model.get());
      std::fprintf(stderr, "neuroseg finetune (sam4em): LoRA rank %lld on q and v of %lld encoder blocks: %lld parameters (= blocks x 2 x r x 2 x %lld)\n",
                   static_cast<long long>(ft->adapter.rank), static_cast<long long>(sam->options.depth()),
                   static_cast<long long>(sam->lora_parameters()), static_cast<long long>(sam->options.embed_dim()));
    } else if (ft->mode != "full") {
      throw io::Error("finetune mode " + ft->mode, "expected adapter, full, layers or sam4em");
    }
  }
  fs::create_directories(run_dir);
  TrainConfig config = c;
  if (opt.epochs) config.epochs = *opt.epochs;

  // Data parallelism (docs/distributed.md): `batch_size` is the global batch; this rank
  // draws, augments and back-propagates its share of the samples, the gradients are summed
  // across ranks (each rank's loss weighted by its share), and rank 0 writes every file.
  const Rendezvous rendezvous = Rendezvous::from_environment();
  const bool distributed = opt.distributed || rendezvous.world_size > 1;
  c10::Device device = opt.device;
  if (distributed && device.is_cuda())  // one GPU per rank, as torchrun: cuda:LOCAL_RANK
    device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(rendezvous.local_rank));
  std::unique_ptr<ProcessGroup> group;
  if (distributed) group = ProcessGroup::join(rendezvous, device);
  const int rank = group ? group->rank() : 0, world = group ? group->world_size() : 1;
  const bool leader = rank == 0;
  if (world > config.batch_size)
    throw io::Error("config batch_size", std::to_string(config.batch_size) + " is smaller than the " + std::to_string(world) +
                                             " ranks (batch_size is the global batch, split over the ranks)");
  const auto samples = batch_share(config.batch_size, rank, world);
  const double share = static_cast<double>(samples.second - samples.first) / static_cast<double>(config.batch_size);
  if (group) {
    const double seed0 = group->sum_values({leader ? static_cast<double>(config.seed) : 0.0})[0];
    if (seed0 != static_cast<double>(config.seed))
      throw io::Error("config seed", "rank " + std::to_string(rank) + " has seed " + std::to_string(config.seed) +
                                         " but rank 0 has " + std::to_string(static_cast<uint64_t>(seed0)) + " (configs differ)");
    if (leader)
      std::fprintf(stderr, "neuroseg train: %d ranks (%s rendezvous at %s:%d), %lld sample(s) per rank of a global batch of %lld\n",
                   world, rendezvous.source.c_str(), rendezvous.master_addr.c_str(), rendezvous.master_port,
                   static_cast<long long>(samples.second - samples.first), static_cast<long long>(config.batch_size));
  }

  // Labels: class k <-> k-th smallest value.
  std::vector<int64_t> label_values;
  for (const auto& item : config.labels.items()) {
    if (!item.value().is_number_integer()) throw io::Error("config labels", "'" + item.key() + "' needs an integer value");
    label_values.push_back(item.value().get<int64_t>());
  }
  std::sort(label_values.begin(), label_values.end());
  const int64_t classes = static_cast<int64_t>(label_values.size());

  // Preprocessing, with "median" target spacing resolved from the training images (the base
  // checkpoint's when fine-tuning: the network was trained on those).
  nlohmann::json pp = base ? base->meta.preprocessing : config.preprocessing_json;
  if (pp.contains("target_spacing") && pp["target_spacing"] == "median") {
    const auto m = median_spacing(config.train_pairs, pp.value("orientation", std::string()));
    pp["target_spacing"] = {m[0], m[1], m[2]};
  }
  if (pp.contains("normalization") && pp["normalization"].value("scheme", "") == "percentile" &&
      !pp["normalization"].contains("low"))
    pp["normalization"] = percentile_statistics(config.train_pairs);
  const Preprocessing preprocessing = Preprocessing::from_json(pp);

  if (leader)
    std::fprintf(stderr, "neuroseg train: loading %zu training and %zu validation case(s)\n", config.train_pairs.size(),
                 config.val_pairs.size());
  const std::vector<TrainingCase> train_cases = load_training_cases(config.train_pairs, preprocessing, label_values);
  const std::vector<TrainingCase> val_cases =
      config.val_pairs.empty() ? train_cases : load_training_cases(config.val_pairs, preprocessing, label_values);

  torch::manual_seed(config.seed);
  models::SegmentationModel model{nullptr};
  if (adapted) {
    model = models::SegmentationModel(adapted);
    config.model = base->meta.model;
    config.model_args = base->meta.args;
    if (leader) adapted->print_table(stderr);
  } else if (base) {  // full or layer-wise fine-tuning of the base weights
    model = base->model;
    config.model = base->meta.model;
    config.model_args = base->meta.args;
    if (leader) {
      int64_t trainable_count = 0, all = 0;
      for (const auto& p : model->parameters()) all += p.numel(), trainable_count += p.requires_grad() ? p.numel() : 0;
      std::fprintf(stderr, "neuroseg finetune (%s): %lld trainable parameters = %.3f%% of %lld\n", ft->mode.c_str(),
                   static_cast<long long>(trainable_count), 100.0 * trainable_count / all, static_cast<long long>(all));
    }
  } else {
    model = models::ModelRegistry::instance().create(config.model, config.model_args);
  }
  if (model->out_channels() != classes)
    throw io::Error("config", "the model has " + std::to_string(model->out_channels()) + " output channels but \"labels\" lists " +
                                  std::to_string(classes));
  model->to(device);
  const auto div = model->size_divisor();
  for (int a = 0; a < 3; ++a)
    if (config.patch[a] % div[a] != 0)
      throw io::Error("config", "patch_size " + std::to_string(config.patch[a]) + " is not a multiple of the model's stride " +
                                    std::to_string(div[a]));

  std::vector<at::Tensor> trainable;
  for (const auto& p : model->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (config.optimizer == "adamw")
    optimizer = std::make_unique<torch::optim::AdamW>(trainable,
                                                      torch::optim::AdamWOptions(config.lr).weight_decay(config.weight_decay));
  else
    optimizer = std::make_unique<torch::optim::SGD>(
        trainable,
        torch::optim::SGDOptions(config.lr).momentum(config.momentum).nesterov(config.nesterov).weight_decay(config.weight_decay));

  models::CheckpointMeta meta;
  meta.model = config.model;
  meta.args = config.model_args;
  meta.preprocessing = preprocessing.to_json();
  meta.labels = config.labels;
  meta.patch_size = {config.patch[0], config.patch[1], config.patch[2]};
  meta.postprocessing = config.postprocessing;
  if (base) meta.training["finetune"] = {{"base", ft->base_checkpoint}, {"mode", ft->mode}, {"adapter", adapters::to_string(ft->adapter.kind)},
                                         {"rank", ft->adapter.rank}, {"alpha", ft->adapter.alpha}, {"targets", ft->targets},
                                         {"train_norms", ft->adapter.train_norms}};
  // A plain run saves the model; a fine-tuning run the adapter file and the base with the
  // updates merged in (merge then unmerge restores the frozen base bit for bit).
  auto save_model = [&](const std::string& checkpoint, const std::string& adapter_file) {
    if (!adapted) return models::save_checkpoint(checkpoint, *model, meta);
    adapted->save(adapter_file);
    adapted->merge();
    models::save_checkpoint(checkpoint, *adapted->base(), meta);
    adapted->unmerge();
  };

  // Resume: weights, optimizer, epoch, history and loss scale.
  int64_t start_epoch = 0;
  double best_dice = -1, loss_scale = 65536.0;
  std::vector<double> loss_history, dice_epochs, dice_history;
  if (opt.resume && adapted) {
    adapted->load(adapter_last);  // the base comes from --model again; the file is checked against it
  } else if (opt.resume) {
    auto loaded = models::load_checkpoint(last);
    if (loaded.meta.model != config.model || loaded.meta.args != config.model_args)
      throw io::Error(last, "was trained with another model or model arguments than this config");
    models::load_state_dict(*model, [&] {
      std::map<std::string, at::Tensor> t;
      for (const auto& p : loaded.model->named_parameters()) t[p.key()] = p.value();
      for (const auto& b : loaded.model->named_buffers()) t[b.key()] = b.value();
      return t;
    }(), {}, last);
  }
  if (opt.resume) {
    torch::load(*optimizer, state_path, device);
    std::ifstream f(state_json);
    const nlohmann::json s = nlohmann::json::parse(f);
    start_epoch = s.at("epoch").get<int64_t>() + 1;
    best_dice = s.at("best_dice").get<double>();
    loss_scale = s.at("loss_scale").get<double>();
    loss_history = s.at("loss").get<std::vector<double>>();
    dice_epochs = s.at("dice_epochs").get<std::vector<double>>();
    dice_history = s.at("dice").get<std::vector<double>>();
    if (leader)
      std::fprintf(stderr, "neuroseg train: resuming after epoch %lld (best Dice %.4f)\n", static_cast<long long>(start_epoch),
                   best_dice);
  }
  if (group) {  // every rank starts from rank 0's weights and buffers
    std::vector<at::Tensor> state;
    for (const auto& p : model->parameters()) state.push_back(p);
    for (const auto& b : model->buffers()) state.push_back(b);
    group->broadcast(state);
  }
  if (leader) {
    std::ofstream(run_dir + "/config.json") << nlohmann::json{{"model", config.model}, {"args", config.model_args},
                                                               {"preprocessing", meta.preprocessing}, {"labels", config.labels},
                                                               {"patch_size", meta.patch_size}, {"epochs", config.epochs},
                                                               {"loss", config.loss}, {"loss_options", config.loss_options}}
                                                   .dump(2);
  }
  const bool deep = config.model_args.value("deep_supervision", false);
  const at::ScalarType amp_type = config.amp == "fp16" ? at::kHalf : at::kBFloat16;
  const bool use_amp = config.amp != "none";
  const bool scale_loss = config.amp == "fp16";
  const losses::LossFn loss_fn =
      losses::make_loss(losses::LossOptions::from_json(config.loss, config.loss_options, "config loss_options"));

  const int64_t ipe = config.iterations_per_epoch;
  if (start_epoch >= config.epochs) return best_dice;
  BatchLoader loader(train_cases, config, start_epoch * ipe, config.epochs * ipe, samples);
  bool log_exists = opt.resume && fs::exists(run_dir + "/log.csv");
  std::ofstream log;
  if (leader) log.open(run_dir + "/log.csv", log_exists ? std::ios::app : std::ios::trunc);
  if (leader && !log_exists) log << "epoch,lr,train_loss,val_dice,seconds,loader_wait_fraction,voxels_per_s,allreduce_seconds\n";

  const int64_t stop = opt.stop_after_epoch ? std::min(config.epochs, *opt.stop_after_epoch) : config.epochs;
  for (int64_t epoch = start_epoch; epoch < stop; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    model->train();
    double waited = 0, loss_sum = 0, reduce_seconds = 0;
    double lr = config.lr;
    std::optional<ProgressBar> bar;
    if (leader) bar.emplace(ipe, "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(config.epochs));
    for (int64_t it = 0; it < ipe; ++it) {
      const int64_t global = epoch * ipe + it;
      lr = learning_rate(config, static_cast<double>(global) / static_cast<double>(ipe));
      for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
      Batch batch = loader.get(global, waited);
      at::Tensor image = batch.image.to(device), label = batch.label.to(device);
      {  // each sample with its own generator (see generator_for)
        std::vector<at::Tensor> images, labels;
        for (int64_t k = 0; k < image.size(0); ++k) {
          at::Tensor im = image.narrow(0, k, 1), lb = label.narrow(0, k, 1);
          at::Generator gen = generator_for(config.seed, global, 2, samples.first + k);
          augment_batch(im, lb, config.augmentation, gen);
          images.push_back(im);
          labels.push_back(lb);
        }
        image = at::cat(images);
        label = at::cat(labels);
      }
      optimizer->zero_grad();
      at::Tensor loss;
      {
        AutocastGuard amp(device.type(), amp_type, use_amp);
        loss = deep ? losses::deep_supervision_loss(model->forward_deep_supervision(image), label, loss_fn)
                    : loss_fn(model->forward(image), label);
      }
      // This rank's share of the global mean: the summed gradients are those of the global
      // batch (exactly, for losses that are means over samples; docs/distributed.md).
      loss = loss * share;
      (scale_loss ? loss * loss_scale : loss).backward();
      if (group) {
        const auto r0 = std::chrono::steady_clock::now();
        std::vector<at::Tensor> grads;
        for (auto& p : model->parameters())
          if (p.grad().defined()) grads.push_back(p.mutable_grad());
        group->allreduce_sum(grads);
        reduce_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - r0).count();
      }
      bool finite = true;
      if (scale_loss) {  // dynamic loss scaling (torch.cuda.amp.GradScaler's rule)
        for (auto& p : model->parameters())
          if (p.grad().defined()) {
            p.mutable_grad().div_(loss_scale);
            finite = finite && at::isfinite(p.grad()).all().item<bool>();
          }
        loss_scale = finite ? loss_scale : loss_scale / 2;
      }
      if (finite) {
        if (config.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), config.grad_clip);
        optimizer->step();
      }
      const double l = group ? group->sum_values({loss.item<double>()})[0] : loss.item<double>();
      if (!std::isfinite(l)) throw io::Error("training", "the loss became " + std::to_string(l) + " at epoch " + std::to_string(epoch + 1));
      loss_sum += l;
      char note[128];
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::snprintf(note, sizeof(note), "loss %.4f lr %.2g %.2f it/s %.2f MVx/s", l, lr, (it + 1) / elapsed,
                    (it + 1) * config.batch_size * config.patch[0] * config.patch[1] * config.patch[2] / elapsed / 1e6);
      if (bar) bar->update(it + 1, note);
    }
    const double epoch_loss = loss_sum / static_cast<double>(ipe);
    loss_history.push_back(epoch_loss);
    double val_dice = std::nan("");
    if ((epoch + 1) % config.validation_every == 0 || epoch + 1 == config.epochs) {
      model->eval();
      SlidingWindowOptions sw;
      sw.roi = config.patch;
      sw.overlap = 0.25;
      sw.device = device;
      // Validation cases round-robin over the ranks; sums gathered from all of them.
      double sum = 0, count = 0;
      for (size_t k = static_cast<size_t>(rank); k < val_cases.size(); k += static_cast<size_t>(world)) {
        const at::Tensor logits = sliding_window_inference(*model, val_cases[k].image, sw);
        sum += mean_foreground_dice(logits.argmax(0), val_cases[k].label.to(at::kLong), classes);
        count += 1;
      }
      if (group) {
        const auto totals = group->sum_values({sum, count});
        sum = totals[0];
        count = totals[1];
      }
      val_dice = sum / count;
      dice_epochs.push_back(static_cast<double>(epoch + 1));
      dice_history.push_back(val_dice);
      meta.training = {{"epoch", epoch + 1}, {"val_dice", val_dice}, {"train_loss", epoch_loss}};
      if (val_dice > best_dice) {
        best_dice = val_dice;
        if (leader) save_model(run_dir + "/checkpoint_best.pt", run_dir + "/adapter_best.nsa");
      }
    }
    if (!leader) continue;
    meta.training = {{"epoch", epoch + 1}, {"train_loss", epoch_loss}, {"best_val_dice", best_dice}};
    save_model(last, adapter_last);
    {
      io::AtomicOutput out(state_path);
      torch::save(*optimizer, out.path());
      out.commit();
      io::AtomicOutput js(state_json);
      std::ofstream(js.path()) << nlohmann::json{{"epoch", epoch}, {"best_dice", best_dice}, {"loss_scale", loss_scale},
                                                 {"loss", loss_history}, {"dice_epochs", dice_epochs}, {"dice", dice_history}}
                                      .dump();
      js.commit();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double voxels = static_cast<double>(ipe * config.batch_size * config.patch[0] * config.patch[1] * config.patch[2]);
    log << epoch + 1 << "," << lr << "," << epoch_loss << "," << (std::isnan(val_dice) ? "" : std::to_string(val_dice)) << ","
        << seconds << "," << waited / seconds << "," << voxels / seconds << "," << reduce_seconds << "\n";
    log.flush();
    std::vector<double> epochs(loss_history.size());
    for (std::size_t i = 0; i < epochs.size(); ++i) epochs[i] = static_cast<double>(i + 1);
    write_curves_png(run_dir + "/curves.png", {{"training loss", "epoch", epochs, loss_history},
                                               {"validation Dice (foreground mean)", "epoch", dice_epochs, dice_history, 0.0, 1.0}});
    std::fprintf(stderr, "epoch %lld: loss %.4f%s  %.1f s  (loader wait %.0f%%)\n", static_cast<long long>(epoch + 1), epoch_loss,
                 std::isnan(val_dice) ? "" : ("  val Dice " + std::to_string(val_dice)).c_str(), seconds,
                 100.0 * waited / seconds);
  }
  return best_dice;
}

}  // namespace

}  // namespace neuroseg::pipelines
