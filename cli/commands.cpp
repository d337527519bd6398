#include "cli/commands.h"

namespace neuroseg::cli {

void add_all_commands(CLI::App& app) {
  add_info_command(app);
  add_convert_command(app);
  add_list_models_command(app);
  add_import_weights_command(app);
  add_segment_command(app);
  add_train_command(app);
  add_finetune_command(app);
  add_adapt_command(app);
  add_evaluate_command(app);
  add_launch_command(app);
  add_synth_command(app);
}

}  // namespace neuroseg::cli
