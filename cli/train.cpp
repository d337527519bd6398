// neuroseg train --config cfg.json -o RUN_DIR [--resume]: trains a model; the run folder
// holds checkpoint_best.pt / checkpoint_last.pt (use with `segment --model`), log.csv,
// curves.png and the resolved config.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>
#include <ATen/Parallel.h>

#include "cli/commands.h"
#include "pipelines/distributed.h"
#include "pipelines/train.h"

namespace neuroseg::cli {

void add_train_command(CLI::App& app) {
  struct Args {
    std::string config, out, device = "auto";
    bool resume = false, distributed = false;
    int64_t epochs = 0, threads = 0, stop_after = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("train", "Train a segmentation model from a JSON config");
  cmd->add_option("--config", a->config, "Training config (JSON; see docs/training.md)")->required();
  cmd->add_option("-o,--output", a->out, "Run folder")->required();
  cmd->add_option("--device", a->device, "auto, cpu or cuda:N");
  cmd->add_flag("--resume", a->resume, "Continue the run in the output folder where it stopped");
  cmd->add_option("--epochs", a->epochs, "Override the config's number of epochs (e.g. to extend a run)")->check(CLI::PositiveNumber);
  cmd->add_option("--stop-after-epoch", a->stop_after, "Stop after this epoch (continue later with --resume)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--distributed", a->distributed,
                "Data-parallel over c10d (Gloo): one process per rank, rendezvous from RANK/WORLD_SIZE/MASTER_ADDR/"
                "MASTER_PORT or SLURM (implied when they name more than one rank; see `neuroseg launch`)");
  cmd->add_option("--threads", a->threads, "CPU threads for LibTorch (default: all cores)")->check(CLI::PositiveNumber);
  cmd->callback([a] {
    if (a->threads > 0) at::set_num_threads(static_cast<int>(a->threads));
    const pipelines::TrainConfig config = pipelines::TrainConfig::from_file(a->config);
    pipelines::TrainOptions options;
    options.device = parse_device(a->device);
    options.resume = a->resume;
    options.distributed = a->distributed;
    if (a->epochs > 0) options.epochs = a->epochs;
    if (a->stop_after > 0) options.stop_after_epoch = a->stop_after;
    const double best = pipelines::train(config, a->out, options);
    if (pipelines::Rendezvous::from_environment().rank == 0)  // one summary line, from rank 0
      std::printf("best validation Dice %.4f -> %s/checkpoint_best.pt\n", best, a->out.c_str());
  });
}

}  // namespace neuroseg::cli
