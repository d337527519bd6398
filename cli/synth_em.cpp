// neuroseg synth em -o DIR [--n N] [--size D H W] [--anisotropy A] [--seed S]: EM-like
// stacks with mitochondria labels (pipelines/synth_em.h).
#include <cstdio>

#include <CLI/CLI.hpp>

#include "cli/synth_em.h"
#include "pipelines/synth_em.h"

namespace neuroseg::cli {

void add_synth_em_subcommand(CLI::App& synth) {
  struct Args {
    std::string out;
    int64_t cases = 1;
    std::vector<int64_t> size{24, 160, 160};
    pipelines::SynthEmOptions o;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = synth.add_subcommand("em", "EM-like stacks (membranes, mitochondria, vesicles, noise, anisotropic z) with "
                                         "mitochondria labels: <out>/em_NNN_img.nii.gz, em_NNN_seg.nii.gz");
  cmd->add_option("-o,--output", a->out, "Output folder")->required();
  cmd->add_option("--n", a->cases, "Number of stacks (seeds seed, seed+1, ...)")->check(CLI::Range(int64_t(1), int64_t(10000)));
  cmd->add_option("--size", a->size, "Stack size D H W (slices, rows, columns)")->expected(3);
  cmd->add_option("--anisotropy", a->o.anisotropy, "z spacing / in-plane spacing")->check(CLI::Range(0.1, 100.0));
  cmd->add_option("--spacing-nm", a->o.spacing_nm, "In-plane pixel size in nm")->check(CLI::PositiveNumber);
  cmd->add_option("--mitochondria", a->o.mitochondria, "Mitochondria per stack (default: by slice area)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--cells", a->o.cells, "Voronoi cells per stack (default: by volume)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--noise", a->o.noise, "Gaussian noise sigma (intensities in [0, 1])")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", a->o.seed, "Random seed");
  cmd->callback([a] {
    a->o.size = {a->size[0], a->size[1], a->size[2]};
    const auto written = pipelines::write_synth_em(a->out, a->cases, a->o);
    std::printf("wrote %zu EM stack(s) of %lldx%lldx%lld to %s\n", written.size(), static_cast<long long>(a->size[0]),
                static_cast<long long>(a->size[1]), static_cast<long long>(a->size[2]), a->out.c_str());
  });
}

}  // namespace neuroseg::cli
