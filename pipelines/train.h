#pragma once
// `neuroseg train`: configuration, the training loop and its outputs (checkpoints, CSV
// log, curves). The loop follows nnU-Net's recipe: patches with foreground oversampling,
// heavy augmentation, Dice+CE or another loss of losses/ (deep supervision when the model
// has heads), SGD Nesterov
// with poly decay (or AdamW / cosine, with warm-up), gradient clipping, AMP, periodic
// sliding-window validation, best/last checkpoints and exact resume.
#include <array>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "adapters/low_rank.h"
#include "pipelines/augment.h"
#include "pipelines/preprocess.h"

namespace neuroseg::pipelines {

struct TrainConfig {
  std::vector<std::pair<std::string, std::string>> train_pairs, val_pairs;  ///< (image, label)
  std::string model = "unet";
  nlohmann::json model_args = nlohmann::json::object();
  nlohmann::json labels = nlohmann::json::object();  ///< {"background": 0, "brain": 1}
  nlohmann::json preprocessing_json = nlohmann::json::object();  ///< target_spacing may be "median"
  nlohmann::json postprocessing = nlohmann::json::object();
  std::array<int64_t, 3> patch{64, 64, 64};
  int64_t batch_size = 2, epochs = 50, iterations_per_epoch = 50, validation_every = 5, workers = 2;
  std::string optimizer = "sgd", schedule = "poly", amp = "none";
  double lr = 0.01, momentum = 0.99, weight_decay = 3e-5, warmup_epochs = 0, grad_clip = 12.0;
  bool nesterov = true;
  double foreground_fraction = 0.33;
  std::string loss = "dice_ce";  ///< a name of losses::loss_names()
  nlohmann::json loss_options = nlohmann::json::object();  ///< losses::LossOptions::from_json
  AugmentOptions augmentation;
  uint64_t seed = 0;
  std::string base_dir;  ///< relative data paths are resolved against the config's folder

  /// Strict parse (unknown keys: did-you-mean). `path` is used to name errors and resolve paths.
  static TrainConfig from_file(const std::string& path);
  static TrainConfig from_json(const nlohmann::json& j, const std::string& base_dir);
};

struct TrainOptions {
  c10::Device device = c10::Device(c10::kCPU);
  bool resume = false;
  std::optional<int64_t> epochs;  ///< override the config (e.g. to extend a run)
  /// Stop after this many epochs in total (the schedule still spans all epochs), e.g. to fit
  /// a job's time limit; continue later with resume.
  std::optional<int64_t> stop_after_epoch;
  /// Join a c10d process group (pipelines/distributed.h); also implied when the environment
  /// names more than one rank (torchrun's WORLD_SIZE, SLURM's SLURM_NTASKS).
  bool distributed = false;
};

/// Fine-tuning with adapters (`neuroseg finetune`): the model, its arguments, preprocessing and
/// labels come from the base checkpoint (the config's labels must equal them); only the
/// low-rank updates of the layers matching `targets` train. The run folder gets
/// adapter_best.nsa / adapter_last.nsa (the updates alone) and checkpoint_best.pt /
/// checkpoint_last.pt (the base with the updates merged, for `segment --model`).
struct FinetuneOptions {
  /// "adapter" (low-rank updates), "full" (every weight trains) or "layers" (the own weights
  /// of the modules matching `targets` train, e.g. decoder-only) — the last two are the
  /// baselines the adapters are compared with, and save plain checkpoints.
  /// "sam4em": a sam_vit_b base with LoRA (adapter.rank / alpha) on the encoder's q and v, the
  /// encoder otherwise frozen, both decoding stages supervised (models::prepare_sam4em).
  std::string mode = "adapter";
  std::string base_checkpoint;
  int64_t memory_slots = -1;    ///< sam4em: memory slots (-1: the base's)
  bool freeze_decoder = false;  ///< sam4em: keep the prompt encoder and mask decoder frozen
  adapters::AdapterOptions adapter;
  std::vector<std::string> targets{"*"};
};

/// train() starting from a base checkpoint with adapters.
double finetune(const TrainConfig& config, const std::string& run_dir, const TrainOptions& options,
                const FinetuneOptions& finetune);

/// Trains into `run_dir`: checkpoint_last.pt, checkpoint_best.pt (neuroseg checkpoints),
/// train_state.pt (optimizer), log.csv, curves.png, config.json. Returns the best
/// validation Dice.
double train(const TrainConfig& config, const std::string& run_dir, const TrainOptions& options);

/// Mean Dice over foreground classes of a label volume vs a reference (class indices).
double mean_foreground_dice(const at::Tensor& pred, const at::Tensor& ref, int64_t classes);


}  // namespace neuroseg::pipelines
