// neuroseg evaluate --pred PRED --ref REF -o results.json: per-case, per-label overlap and
// surface metrics (pipelines/evaluate.h), nnU-Net summary.json layout plus a CSV.
#include <cstdio>
#include <sstream>

#include <unistd.h>

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/benchmarks.h"
#include "cli/commands.h"
#include "io/error.h"
#include "pipelines/evaluate.h"
#include "pipelines/progress.h"

namespace neuroseg::cli {
namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

void add_evaluate_command(CLI::App& app) {
  struct Args {
    std::string pred, ref, out, labels, metrics, device = "cpu", surface = "monai";
    double tolerance_mm = 1.0, percentile = 95.0;
    std::string benchmark = "none";
    BenchmarkArgs bench;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("evaluate", "Score predicted label images against references (Dice, HD95, ASSD, NSD, ...)");
  cmd->add_option("-p,--pred", a->pred, "Predicted label image, or a folder of them")->required();
  cmd->add_option("-r,--ref,--gt", a->ref,
                  "Reference label image, or a folder (matched by case name; <case>_seg matches <case>)")
      ->required();
  cmd->add_option("-o,--output", a->out,
                  "Summary JSON (nnU-Net summary.json layout; the CSV goes beside it), or with --benchmark an output "
                  "folder")
      ->required();
  cmd->add_option("--benchmark", a->benchmark,
                  "none (per-label metrics), fisbe (FISBe instance metrics, the official flylight evaluator's) or "
                  "spider (SPIDER lumbar-spine metrics, the official evaluation.py's)")
      ->check(CLI::IsMember({"none", "fisbe", "spider"}));
  cmd->add_option("--split-file", a->bench.split_file,
                  "fisbe: sample_list_per_split.txt; samples in its 'partly' section are scored as partly labelled");
  cmd->add_flag("--partly", a->bench.partly, "fisbe: score every sample as partly labelled");
  cmd->add_option("--spacing", a->bench.spacing,
                  "spider: ASD spacing, official (the script's swapped axis order, leaderboard-comparable) or correct")
      ->check(CLI::IsMember({"official", "correct"}));
  cmd->add_option("--threads", a->bench.threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--labels", a->labels, "Comma-separated labels (default: every non-zero label present)");
  std::string names;
  for (const auto& n : pipelines::evaluation_metric_names()) names += (names.empty() ? "" : ",") + n;
  cmd->add_option("--metrics", a->metrics, "Comma-separated subset of " + names + " (default: all but cldice)");
  cmd->add_option("--tolerance-mm", a->tolerance_mm, "NSD tolerance in mm")->check(CLI::NonNegativeNumber);
  cmd->add_option("--percentile", a->percentile, "Percentile of the robust Hausdorff distance")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--surface", a->surface,
                  "Surface-distance convention: monai (surface voxels, MONAI's metrics) or deepmind (surfels weighted by "
                  "area, DeepMind's surface-distance package)")
      ->check(CLI::IsMember({"monai", "deepmind"}));
  cmd->add_option("--device", a->device, "cpu, cuda:N or auto");
  cmd->callback([a] {
    if (a->bench.threads > 0) at::set_num_threads(a->bench.threads);
    if (a->benchmark != "none") {
      BenchmarkArgs b = a->bench;
      b.pred = a->pred;
      b.gt = a->ref;
      b.out = a->out;
      b.device = a->device;
      if (a->benchmark == "fisbe") evaluate_fisbe_benchmark(b);
      else evaluate_spider_benchmark(b);
      return;
    }
    pipelines::EvaluateOptions o;
    o.tolerance_mm = a->tolerance_mm;
    o.percentile = a->percentile;
    o.surface = metrics::parse_surface_convention(a->surface);
    o.device = parse_device(a->device);
    for (const auto& l : split_list(a->labels)) {
      try {
        size_t used = 0;
        o.labels.push_back(std::stoll(l, &used));
        if (used != l.size()) throw std::invalid_argument(l);
      } catch (const std::exception&) {
        throw io::Error("--labels " + a->labels, "'" + l + "' is not an integer label");
      }
    }
    const auto& known = pipelines::evaluation_metric_names();
    for (const auto& m : split_list(a->metrics)) {
      if (std::find(known.begin(), known.end(), m) == known.end())
        throw io::Error("--metrics " + a->metrics, "unknown metric '" + m + "' (known: " + [&] {
          std::string s;
          for (const auto& k : known) s += (s.empty() ? "" : ", ") + k;
          return s;
        }() + ")");
      o.metrics.push_back(m);
    }
    std::vector<std::string> problems;
    const std::vector<pipelines::CasePair> pairs = pipelines::match_cases(a->pred, a->ref, problems);
    const char* clear = isatty(2) ? "\r\033[K" : "";
    for (const auto& p : problems) std::fprintf(stderr, "neuroseg: warning: %s\n", p.c_str());
    if (pairs.empty()) throw io::Error(a->pred, "no prediction matches a reference in " + a->ref);
    std::fprintf(stderr, "neuroseg evaluate: %zu case(s) on %s\n", pairs.size(), o.device.str().c_str());
    pipelines::ProgressBar bar(static_cast<int64_t>(pairs.size()), "evaluate");
    int64_t done = 0, failed = 0;
    const std::vector<pipelines::CaseEvaluation> cases =
        pipelines::evaluate_cases(pairs, o, [&](const pipelines::CaseEvaluation& c) {
          for (const auto& w : c.warnings) std::fprintf(stderr, "%sneuroseg: warning: %s\n", clear, w.c_str());
          if (!c.error.empty()) {
            ++failed;
            std::fprintf(stderr, "%sneuroseg: error: %s\n", clear, c.error.c_str());
          }
          char note[256];
          std::snprintf(note, sizeof(note), "%s %.2f s", c.pair.name.c_str(), c.seconds);
          bar.update(++done, note);
        });
    // A requested label that no reference holds is usually a wrong --labels (or label scheme).
    for (int64_t l : o.labels) {
      bool in_some_reference = false;
      for (const auto& c : cases)
        if (c.error.empty() && c.labels.count(l) && c.labels.at(l).at("n_ref") > 0) in_some_reference = true;
      if (!in_some_reference)
        std::fprintf(stderr, "neuroseg: warning: --labels: label %lld is in no reference of %s\n", static_cast<long long>(l),
                     a->ref.c_str());
    }
    const nlohmann::json summary = pipelines::summarize_evaluation(cases, o);
    pipelines::write_evaluation(summary, cases, a->out);
    // A short table of the per-label means on stdout.
    const std::vector<std::string> shown = {"Dice", "IoU", "HD95", "ASSD", "NSD"};
    std::printf("%-8s", "label");
    for (const auto& k : shown) std::printf(" %10s", k.c_str());
    std::printf("\n");
    for (int64_t l : summary["settings"]["labels"].get<std::vector<int64_t>>()) {
      const std::string label = std::to_string(l);
      const nlohmann::json& values = summary["mean"][label];
      std::printf("%-8s", label.c_str());
      for (const auto& k : shown) {
        if (!values.contains(k)) {
          std::printf(" %10s", "-");
        } else if (values[k].is_number()) {
          std::printf(" %10.4f", values[k].get<double>());
        } else {
          const std::string s = values[k].get<std::string>();
          std::printf(" %10s", s == "__NaN__" ? "nan" : (s == "__Infinity__" ? "inf" : "-inf"));
        }
      }
      std::printf("\n");
    }
    std::printf("evaluated %lld of %zu case(s) -> %s\n", static_cast<long long>(done - failed), pairs.size(), a->out.c_str());
    const int64_t missing = static_cast<int64_t>(problems.size());
    if (failed > 0 || missing > 0)
      throw io::Error(a->out, std::to_string(failed) + " case(s) failed and " + std::to_string(missing) +
                                  " unmatched (see the messages above; the summary lists the evaluated cases)");
  });
}

}  // namespace neuroseg::cli
