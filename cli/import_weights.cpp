// neuroseg import-weights: a state dict saved by Python PyTorch -> a neuroseg checkpoint.
#include <cstdio>
#include <fstream>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "io/error.h"
#include "models/checkpoint.h"
#include "models/registry.h"
#include "models/sam.h"

namespace neuroseg::cli {

void add_import_weights_command(CLI::App& app) {
  struct Args {
    std::string model, args = "{}", weights, out, meta;
    std::vector<std::string> maps;
    bool lenient = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("import-weights",
                                 "Load weights saved by Python (torch.save(model.state_dict())) into a neuroseg checkpoint");
  cmd->add_option("--model", a->model, "Registry name (see list-models)")->required();
  cmd->add_option("--args", a->args, "Model arguments as JSON, e.g. '{\"out_channels\": 3}'");
  cmd->add_option("--weights", a->weights, "Python state dict file (.pt/.pth)")->required();
  cmd->add_option("--map", a->maps, "Key rename REGEX=REPLACEMENT, applied in order (e.g. '^module\\.=')");
  cmd->add_option("--meta", a->meta, "JSON file with preprocessing/labels/patch_size/training to embed");
  cmd->add_flag("--non-strict", a->lenient, "Allow missing/unexpected keys (shapes must still match)");
  cmd->add_option("-o,--output", a->out, "Checkpoint to write")->required();
  cmd->callback([a] {
    models::CheckpointMeta meta;
    if (!a->meta.empty()) {
      std::ifstream f(a->meta);
      if (!f) throw io::Error(a->meta, "cannot open file");
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(f);
      } catch (const std::exception& e) {
        throw io::Error(a->meta, std::string("invalid JSON (") + e.what() + ")");
      }
      meta = models::CheckpointMeta::from_json(j, a->meta);
    }
    meta.model = a->model;
    try {
      meta.args = nlohmann::json::parse(a->args);
    } catch (const std::exception& e) {
      throw io::Error("--args", std::string("invalid JSON (") + e.what() + ")");
    }
    auto model = models::ModelRegistry::instance().create(meta.model, meta.args);
    models::StateDictOptions options;
    options.strict = !a->lenient;
    for (const auto& m : a->maps) {
      const auto eq = m.find('=');
      if (eq == std::string::npos) throw io::Error("--map", "expected REGEX=REPLACEMENT, got '" + m + "'");
      options.key_map.emplace_back(m.substr(0, eq), m.substr(eq + 1));
    }
    auto* sam = dynamic_cast<models::SamImpl*>(model.get());
    if (sam && options.key_map.empty() && options.strict)  // SAM / MedSAM: strict over SAM's keys, adapter parts initialised
      models::load_sam_weights(*sam, a->weights);
    else
      models::load_state_dict(*model, models::read_state_dict(a->weights), options, a->weights);
    models::save_checkpoint(a->out, *model, meta);
    std::printf("wrote %s (%s, %lld parameters)\n", a->out.c_str(), meta.model.c_str(),
                static_cast<long long>(models::count_parameters(*model)));
  });
}

}  // namespace neuroseg::cli
