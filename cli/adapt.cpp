// neuroseg adapt --model source.pt -i TARGET_DIR -o adapted.pt --method entropy-kl [--prior p.json]:
// source-free domain adaptation (pipelines/adapt.h, docs/adaptation.md).
#include <cstdio>

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "pipelines/adapt.h"
#include "pipelines/cases.h"

namespace neuroseg::cli {

void add_adapt_command(CLI::App& app) {
  struct Args {
    std::string model, input, out, device = "auto";
    pipelines::AdaptOptions o;
    int64_t threads = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("adapt", "Adapt a checkpoint to unlabelled target images (source-free: entropy-kl, tent)");
  cmd->add_option("--model", a->model, "Source checkpoint")->required();
  cmd->add_option("-i,--input", a->input, "Target image or folder of images (no labels)")->required();
  cmd->add_option("-o,--output", a->out, "Adapted checkpoint")->required();
  cmd->add_option("--method", a->o.method, "entropy-kl (Bateson et al.), tent (norm affine only) or none")
      ->check(CLI::IsMember({"entropy-kl", "tent", "none"}));
  cmd->add_option("--prior", a->o.prior_json,
                  "JSON {\"fractions\": {\"<label>\": f, ...}[, \"slice_tags\": {...}]} (docs/adaptation.md); default: the source model's predictions per patch");
  cmd->add_option("--overestimate", a->o.overestimate, "Factor on the prior's foreground fractions")->check(CLI::PositiveNumber);
  cmd->add_option("--size-power", a->o.size_power,
                  "Power of the max-normalised probabilities in the predicted class ratio (the authors' `power`, 1; "
                  "3 with equal --entropy-weights did best on multi-class 3D volumes, docs/adaptation.md)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--entropy-weights", a->o.entropy_weights, "Per-class entropy weights (default 0.1 background, 0.9 others)");
  cmd->add_option("--iterations", a->o.iterations, "Optimisation steps")->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch", a->o.batch, "Patches per step")->check(CLI::PositiveNumber);
  cmd->add_option("--lr", a->o.lr, "Adam learning rate")->check(CLI::PositiveNumber);
  cmd->add_option("--patch", a->o.patch, "Patch D H W (default: whole volumes with --prior, else the checkpoint's)")->expected(3);
  cmd->add_option("--seed", a->o.seed, "Seed of the patch sampling");
  cmd->add_option("--device", a->device, "auto, cpu or cuda:N");
  cmd->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber);
  cmd->callback([a] {
    if (a->threads > 0) at::set_num_threads(static_cast<int>(a->threads));
    a->o.device = parse_device(a->device);
    const double loss = pipelines::adapt(a->model, pipelines::list_cases(a->input), a->out, a->o);
    std::printf("adapted (%s), final loss %.4f -> %s\n", a->o.method.c_str(), loss, a->out.c_str());
  });
}

}  // namespace neuroseg::cli
