#pragma once
// The command frame: every subcommand lives in its own cli/<name>.cpp and exposes one
// add_<name>_command(app). commands.cpp lists them in one place; adding segment, train,
// finetune, adapt, evaluate or synth is one file plus one line there.
#include <string>

#include <c10/core/Device.h>

namespace CLI {
class App;
}

namespace neuroseg::cli {

void add_info_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_list_models_command(CLI::App& app);
void add_import_weights_command(CLI::App& app);
void add_segment_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_evaluate_command(CLI::App& app);
void add_launch_command(CLI::App& app);
void add_finetune_command(CLI::App& app);
void add_adapt_command(CLI::App& app);
void add_synth_command(CLI::App& app);

/// "auto" (CUDA when available), "cpu" or "cuda:N"; throws io::Error naming the flag.
c10::Device parse_device(const std::string& text);

/// Adds every subcommand to `app` (cli/commands.cpp).
void add_all_commands(CLI::App& app);

}  // namespace neuroseg::cli
