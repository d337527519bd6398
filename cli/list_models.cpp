// neuroseg list-models [--verbose]: the registry's models, one line each.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "models/registry.h"

namespace neuroseg::cli {

void add_list_models_command(CLI::App& app) {
  auto verbose = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("list-models", "List the models neuroseg can build, with a one-line summary");
  cmd->add_flag("-v,--verbose", *verbose, "Also build each model with its example arguments and count its parameters");
  cmd->callback([verbose] {
    for (const auto& e : models::ModelRegistry::instance().entries()) {
      std::printf("%-12s %s\n", e.name.c_str(), e.summary.c_str());
      if (*verbose && !e.example_args.is_null()) {
        auto model = e.factory(e.example_args);
        std::printf("%-12s   %s: %lld parameters\n", "", e.example_args.dump().c_str(),
                    static_cast<long long>(models::count_parameters(*model)));
      }
    }
  });
}

}  // namespace neuroseg::cli
