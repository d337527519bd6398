#include "cli/processes.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <sys/wait.h>
#include <unistd.h>

#include "io/error.h"

namespace neuroseg::cli {

int run_children(const std::vector<ChildProcess>& children) {
  std::vector<pid_t> pids;
  for (const ChildProcess& c : children) {
    std::vector<char*> argv;
    std::string self = "neuroseg";
    argv.push_back(self.data());
    std::vector<std::string> args = c.args;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) throw io::Error("neuroseg launch", "fork failed");
    if (pid == 0) {
      for (const auto& [k, v] : c.env) setenv(k.c_str(), v.c_str(), 1);
      execv("/proc/self/exe", argv.data());
      std::perror("neuroseg: exec /proc/self/exe");
      _exit(127);
    }
    pids.push_back(pid);
  }
  int result = 0;
  size_t running = pids.size();
  while (running > 0) {
    int status = 0;
    const pid_t pid = wait(&status);
    if (pid < 0) break;
    --running;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && result == 0) {
      result = code;
      for (size_t i = 0; i < pids.size(); ++i)
        if (pids[i] != pid) kill(pids[i], SIGTERM);
      std::fprintf(stderr, "neuroseg: child %d exited with %d; stopping the others\n", static_cast<int>(pid), code);
    }
  }
  return result;
}

}  // namespace neuroseg::cli
