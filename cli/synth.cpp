// neuroseg synth fisbe|spine (placeholder until the generators land).
#include <CLI/CLI.hpp>

#include "cli/commands.h"

namespace neuroseg::cli {

void add_synth_command(CLI::App& app) {}

}  // namespace neuroseg::cli
