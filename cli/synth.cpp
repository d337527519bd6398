// neuroseg synth fisbe|spine -o DIR --n N --seed S: look-alike benchmark data, generated.
//   fisbe: light-microscopy neuron volumes in FISBe's zarr format (pipelines/synth_fisbe.h)
//   spine: sagittal lumbar MRI phantoms, T1 and T2 of one anatomy, in SPIDER's layout
//          (pipelines/synth_spine.h)
// Same seed, same bytes, whatever the thread count.
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/synth_em.h"
#include "pipelines/synth_fisbe.h"
#include "pipelines/synth_spine.h"

namespace neuroseg::cli {

void add_synth_command(CLI::App& app) {
  struct Args {
    std::string out, zarr_compressor = "blosc";
    int64_t n = 1, threads = 0;
    uint64_t seed = 0;
    pipelines::FisbeSynthOptions fisbe;
    pipelines::SpineSynthOptions spine;
    std::vector<int64_t> shape, size;
    std::vector<double> spacing;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("synth", "Generate look-alike benchmark data (FISBe neurons, SPIDER spine MRI, EM stacks)");
  cmd->require_subcommand(1);
  auto common = [a](CLI::App* sub) {
    sub->add_option("-o,--output", a->out, "Output folder (existing files other than the generated ones are kept)")->required();
    // Range checks live in the pipelines (one-line io::Error naming the flag).
    sub->add_option("--n", a->n, "Number of volumes / cases");
    sub->add_option("--seed", a->seed, "Seed: same seed, same bytes");
    sub->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::PositiveNumber);
  };

  auto* fisbe = cmd->add_subcommand("fisbe", "FISBe-like light-microscopy volumes: <name>.zarr/volumes/{raw,gt_instances}");
  common(fisbe);
  fisbe->add_flag("--partly", a->fisbe.partly,
                  "Leave 1..N/3 neurons per volume unlabelled (in raw, not in gt_instances), as FISBe's 'partly' set");
  fisbe->add_option("--shape", a->shape, "Volume shape Z Y X (default 128 256 256; FISBe's are ~400 690 690)")->expected(3);
  fisbe->add_option("--zarr-compressor", a->zarr_compressor, "zarr compressor")
      ->check(CLI::IsMember({"blosc", "zlib", "gzip", "zstd", "none"}));
  fisbe->callback([a] {
    if (a->threads > 0) at::set_num_threads(static_cast<int>(a->threads));
    if (!a->shape.empty()) a->fisbe.shape = {a->shape[0], a->shape[1], a->shape[2]};
    a->fisbe.seed = a->seed;
    a->fisbe.zarr_compressor = a->zarr_compressor == "none" ? "" : a->zarr_compressor;
    pipelines::synth_fisbe(a->out, a->n, a->fisbe);
  });

  auto* spine = cmd->add_subcommand("spine", "SPIDER-like sagittal lumbar MRI: images/<id>_t1.mha, masks/<id>_t1.mha (and _t2)");
  common(spine);
  spine->add_option("--contrast", a->spine.contrast, "t1, t2 or both (the same anatomy and mask)")
      ->check(CLI::IsMember({"t1", "t2", "both"}));
  spine->add_option("--size", a->size, "Voxels along ITK x (left-right slices), y (AP), z (SI); default 17 448 448")->expected(3);
  spine->add_option("--spacing", a->spacing, "mm along x y z; default 3.3 0.6 0.6")->expected(3);
  spine->callback([a] {
    if (a->threads > 0) at::set_num_threads(static_cast<int>(a->threads));
    if (!a->size.empty()) a->spine.size = {a->size[0], a->size[1], a->size[2]};
    if (!a->spacing.empty()) a->spine.spacing = {a->spacing[0], a->spacing[1], a->spacing[2]};
    a->spine.seed = a->seed;
    pipelines::synth_spine(a->out, a->n, a->spine);
  });
  add_synth_em_subcommand(*cmd);
}

}  // namespace neuroseg::cli
