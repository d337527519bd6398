#pragma once
// `neuroseg synth em`: added to the `synth` command by cli/synth.cpp.
namespace CLI {
class App;
}

namespace neuroseg::cli {

/// Adds the `em` subcommand (pipelines/synth_em.h) to `synth`.
void add_synth_em_subcommand(CLI::App& synth);

}  // namespace neuroseg::cli
