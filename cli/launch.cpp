// neuroseg launch --nproc N -- train --config cfg.json -o RUN: starts N local ranks of a
// neuroseg command with torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT), as `torchrun --nproc-per-node N` does; several nodes: docs/distributed.md.
#include <cstdlib>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/processes.h"
#include "io/error.h"

namespace neuroseg::cli {

void add_launch_command(CLI::App& app) {
  struct Args {
    int nproc = 1, master_port = 29500;
    std::string master_addr = "127.0.0.1";
    std::vector<std::string> command;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("launch", "Start N local ranks of a distributed neuroseg command (like torchrun)");
  cmd->add_option("--nproc", a->nproc, "Processes (ranks) on this machine")->check(CLI::Range(1, 1024));
  cmd->add_option("--master-port", a->master_port, "Rendezvous port (TCPStore on rank 0)")->check(CLI::Range(1, 65535));
  cmd->add_option("--master-addr", a->master_addr, "Rendezvous address");
  cmd->add_option("command", a->command, "The neuroseg command to run, after --, e.g. -- train --config c.json -o run")
      ->required()
      ->expected(-1);
  cmd->callback([a] {
    if (a->command.front() == "launch") throw io::Error("neuroseg launch", "cannot launch itself");
    std::vector<ChildProcess> children;
    for (int r = 0; r < a->nproc; ++r) {
      ChildProcess c;
      c.args = a->command;
      c.env = {{"RANK", std::to_string(r)},
               {"LOCAL_RANK", std::to_string(r)},
               {"WORLD_SIZE", std::to_string(a->nproc)},
               {"LOCAL_WORLD_SIZE", std::to_string(a->nproc)},
               {"MASTER_ADDR", a->master_addr},
               {"MASTER_PORT", std::to_string(a->master_port)}};
      children.push_back(std::move(c));
    }
    const int status = run_children(children);
    if (status != 0) std::exit(status);
  });
}

}  // namespace neuroseg::cli
