#pragma once
// A terminal progress bar for long loops (cases, epochs): "[#####.....] 3/10 00:12<00:18 name".
// On a terminal it redraws one line; otherwise (logs, CI) it prints one line per step.
#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace neuroseg::pipelines {

class ProgressBar {
 public:
  ProgressBar(int64_t total, std::string label)
      : total_(total), label_(std::move(label)), start_(std::chrono::steady_clock::now()), tty_(isatty(2)) {}

  /// Marks `done` of `total` finished; `note` describes the last step (e.g. "case1 2.1 s").
  void update(int64_t done, const std::string& note) {
    // Off a terminal, long loops report every tenth of the way only.
    if (!tty_ && total_ > 20 && done != total_ && done % (total_ / 10) != 0) return;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double eta = done > 0 ? elapsed / done * (total_ - done) : 0.0;
    const int width = 24;
    const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
    std::string bar(filled, '#');
    bar += std::string(width - filled, '.');
    std::fprintf(stderr, "%s%s [%s] %lld/%lld %s<%s %s%s", tty_ ? "\r\033[K" : "", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), clock(elapsed).c_str(), clock(eta).c_str(),
                 note.c_str(), tty_ ? "" : "\n");
    if (tty_ && done == total_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  static std::string clock(double s) {
    char buf[32];
    const long t = static_cast<long>(s + 0.5);
    std::snprintf(buf, sizeof(buf), "%02ld:%02ld", t / 60, t % 60);
    return buf;
  }
  int64_t total_;
  std::string label_;
  std::chrono::steady_clock::time_point start_;
  bool tty_;
};

}  // namespace neuroseg::pipelines
