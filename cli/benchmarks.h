#pragma once
// `neuroseg evaluate --benchmark fisbe|spider`: the official scores of the two public
// benchmarks the toolkit targets. Each benchmark lives in its own cli/evaluate_<name>.cpp on
// top of metrics/<name>.h; cli/evaluate.cpp parses the shared flags and dispatches here.
#include <string>

namespace neuroseg::cli {

struct BenchmarkArgs {
  std::string pred;        ///< prediction file or folder
  std::string gt;          ///< ground-truth file or folder
  std::string out;         ///< output folder (per-volume files + summary)
  std::string split_file;  ///< FISBe: sample_list_per_split.txt ("" = none)
  bool partly = false;     ///< FISBe: treat every sample as partly labelled
  std::string spacing = "official";  ///< SPIDER ASD spacing: official (the script's axis order) or correct
  std::string device = "cpu";
  int threads = 0;  ///< 0 = all cores
};

void evaluate_fisbe_benchmark(const BenchmarkArgs& args);   // cli/evaluate_fisbe.cpp
void evaluate_spider_benchmark(const BenchmarkArgs& args);  // cli/evaluate_spider.cpp

}  // namespace neuroseg::cli
