#pragma once
// The command frame: every subcommand lives in its own cli/<name>.cpp and exposes one
// add_<name>_command(app). commands.cpp lists them in one place; adding segment, train,
// finetune, adapt, evaluate or synth is one file plus one line there.
namespace CLI {
class App;
}

namespace neuroseg::cli {

void add_info_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_list_models_command(CLI::App& app);
void add_import_weights_command(CLI::App& app);
void add_segment_command(CLI::App& app);

/// Adds every subcommand to `app` (cli/commands.cpp).
void add_all_commands(CLI::App& app);

}  // namespace neuroseg::cli
