#pragma once
// Error types for everything a user can get wrong: files, configs, checkpoints.
// The CLI prints what() as one line, so messages name the file and the problem.
#include <stdexcept>
#include <string>

namespace neuroseg::io {

/// \brief A failure caused by user input (a file, a config, an argument).
/// what() is "<subject>: <problem>", one line.
class Error : public std::runtime_error {
 public:
  Error(const std::string& subject, const std::string& problem)
      : std::runtime_error(subject.empty() ? problem : subject + ": " + problem),
        subject_(subject), problem_(problem) {}
  const std::string& subject() const { return subject_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string subject_;
  std::string problem_;
};

/// \brief Prints "neuroseg: warning: <msg>" to stderr (one line). Tests can capture
/// the warnings by installing a sink.
void warn(const std::string& message);

/// \brief Replaces the warning sink (nullptr restores stderr); returns the previous one.
using WarningSink = void (*)(const std::string&);
WarningSink set_warning_sink(WarningSink sink);

}  // namespace neuroseg::io
