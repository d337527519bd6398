// neuroseg finetune --model base.pt --adapter cp-lora --rank 8 --alpha 16 --target 'decoder*'
//   --config cfg.json -o RUN: trains low-rank updates of a base checkpoint's layers on a new
// site's data with the training pipeline (adapters/, docs/training.md).
#include <cstdio>
#include <cstdlib>
#include <string>

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include "adapters/low_rank.h"
#include "cli/commands.h"
#include "pipelines/distributed.h"
#include "pipelines/train.h"

namespace neuroseg::cli {

void add_finetune_command(CLI::App& app) {
  struct Args {
    std::string model, adapter = "lora-c", config, out, device = "auto";
    std::vector<std::string> targets{"*"};
    int64_t rank = 8, epochs = 0, threads = 0;
    double alpha = 16;
    bool rslora = false, resume = false, distributed = false, train_norms = false, freeze_decoder = false;
    int64_t memory_slots = -1;
  };
  auto a = std::make_shared<Args>();
  std::string kinds;
  for (const auto& k : adapters::adapter_kind_names()) kinds += (kinds.empty() ? "" : ", ") + k;
  auto* cmd = app.add_subcommand("finetune", "Fine-tune a checkpoint on new data with low-rank adapters (LoRA family)");
  cmd->add_option("--model", a->model, "Base checkpoint (neuroseg train / import-weights)")->required();
  cmd->add_option("--adapter", a->adapter,
                  "Adapter: " + kinds + "; or full (every weight trains) / layers (the --target modules' own weights); "
                  "or sam4em (sam_vit_b: LoRA of --rank on q and v of every encoder block, encoder frozen, "
                  "decoder trained, both decoding stages supervised)");
  cmd->add_option("--memory-slots", a->memory_slots, "sam4em: memory slots across slices (default: the base's; 0: none)")
      ->check(CLI::Range(int64_t(0), int64_t(64)));
  cmd->add_flag("--freeze-decoder", a->freeze_decoder, "sam4em: keep SAM's prompt encoder and mask decoder frozen");
  cmd->add_option("--rank", a->rank, "Rank r (CP: number of rank-one terms)")->check(CLI::Range(int64_t(1), int64_t(4096)));
  cmd->add_option("--alpha", a->alpha, "Scale alpha (updates are scaled by alpha / r)")->check(CLI::PositiveNumber);
  cmd->add_flag("--rslora", a->rslora, "Scale by alpha / sqrt(r) (rsLoRA)");
  cmd->add_flag("--train-norms", a->train_norms,
                "Also train the normalisation layers' affine parameters (kept in the adapter file)");
  cmd->add_option("--target", a->targets, "Layer-name globs to adapt, e.g. 'decoder*' '*.conv' (default: every conv/linear)")
      ->expected(1, 64);
  cmd->add_option("--config", a->config, "Training config (data, patch, optimizer, epochs, loss; the model comes from --model)")
      ->required();
  cmd->add_option("-o,--output", a->out, "Run folder (adapter_best.nsa, adapter_last.nsa, merged checkpoints, log)")->required();
  cmd->add_option("--device", a->device, "auto, cpu or cuda:N");
  cmd->add_option("--epochs", a->epochs, "Override the config's epochs")->check(CLI::PositiveNumber);
  cmd->add_flag("--resume", a->resume, "Continue the run in the output folder");
  cmd->add_flag("--distributed", a->distributed, "Data-parallel over c10d (see `neuroseg train --help`)");
  cmd->add_option("--threads", a->threads, "CPU threads for LibTorch (default: all cores)")->check(CLI::PositiveNumber);
  cmd->callback([a] {
    if (a->threads > 0) at::set_num_threads(static_cast<int>(a->threads));
    pipelines::FinetuneOptions ft;
    ft.base_checkpoint = a->model;
    if (a->adapter == "full" || a->adapter == "layers" || a->adapter == "sam4em")
      ft.mode = a->adapter;
    else
      ft.adapter.kind = adapters::parse_adapter_kind(a->adapter);
    ft.adapter.rank = a->rank;
    ft.adapter.alpha = a->alpha;
    ft.adapter.rslora = a->rslora;
    ft.adapter.train_norms = a->train_norms;
    ft.targets = a->targets;
    ft.memory_slots = a->memory_slots;
    ft.freeze_decoder = a->freeze_decoder;
    const pipelines::TrainConfig config = pipelines::TrainConfig::from_file(a->config);
    pipelines::TrainOptions options;
    options.device = parse_device(a->device);
    options.resume = a->resume;
    options.distributed = a->distributed;
    if (a->epochs > 0) options.epochs = a->epochs;
    const double best = pipelines::finetune(config, a->out, options, ft);
    if (pipelines::Rendezvous::from_environment().rank == 0)  // one summary line, from rank 0
      std::printf(ft.mode == "adapter" ? "best validation Dice %.4f -> %s/adapter_best.nsa (merged: %s/checkpoint_best.pt)\n"
                                       : "best validation Dice %.4f -> %s/checkpoint_best.pt\n",
                  best, a->out.c_str(), a->out.c_str());
  });
}

}  // namespace neuroseg::cli
