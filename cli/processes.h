#pragma once
// Child processes of this executable, for `neuroseg launch` (one training rank each) and
// `segment --devices all` (one shard per GPU).
#include <map>
#include <string>
#include <vector>

namespace neuroseg::cli {

struct ChildProcess {
  std::vector<std::string> args;            ///< arguments after the program name
  std::map<std::string, std::string> env;   ///< added to (or replacing in) this environment
};

/// Starts every child as this executable (/proc/self/exe), waits for all, and returns 0 when
/// all succeeded; on the first failure the others are terminated (SIGTERM) and that child's
/// exit status (or 128 + signal) is returned.
int run_children(const std::vector<ChildProcess>& children);

}  // namespace neuroseg::cli
