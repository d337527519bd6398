// neuroseg evaluate --benchmark fisbe (placeholder until metrics/fisbe lands).
#include "cli/benchmarks.h"
#include "io/error.h"

namespace neuroseg::cli {

void evaluate_fisbe_benchmark(const BenchmarkArgs& args) {
  throw io::Error("--benchmark fisbe", "not available in this build yet");
}

}  // namespace neuroseg::cli
