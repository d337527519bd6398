// neuroseg evaluate --benchmark spider (placeholder until metrics/spider lands).
#include "cli/benchmarks.h"
#include "io/error.h"

namespace neuroseg::cli {

void evaluate_spider_benchmark(const BenchmarkArgs& args) {
  throw io::Error("--benchmark spider", "not available in this build yet");
}

}  // namespace neuroseg::cli
