// neuroseg evaluate --benchmark fisbe: the official FISBe scores (metrics/fisbe.h) of one
// prediction or a folder of them, with the reference evaluator's outputs: a TOML per volume,
// summary.csv (+ summary_complete.csv / summary_partly.csv for mixed sets), and a leaderboard.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "cli/benchmarks.h"
#include "io/atomic_output.h"
#include "io/error.h"
#include "pipelines/fisbe.h"
#include "pipelines/progress.h"

namespace fs = std::filesystem;

namespace neuroseg::cli {
namespace {

bool is_single_case(const fs::path& p) {
  return !fs::is_directory(p) || p.extension() == ".zarr" || fs::exists(p / ".zarray") || fs::exists(p / ".zgroup");
}

nlohmann::json set_json(const metrics::FisbeSetScores& s) {
  return {{"volumes", s.volumes}, {"S", s.score}, {"avF1", s.av_f1}, {"C", s.coverage}, {"clDice_TP", s.cldice_tp},
          {"tp", s.tp_05_rel}, {"FS", s.false_splits}, {"FM", s.false_merges}, {"num_gt", s.num_gt},
          {"num_pred", s.num_pred}, {"TP_05", s.tp_05}, {"F1", s.fscore}};
}

std::string leaderboard_row(const std::string& name, const metrics::FisbeSetScores& s, double cldice_mean_of_sets) {
  using pipelines::python_float;
  return name + ";" + std::to_string(s.volumes) + ";" + python_float(s.score) + ";" + python_float(s.av_f1) + ";" +
         python_float(s.coverage) + ";" + python_float(s.cldice_tp) + ";" + python_float(cldice_mean_of_sets) + ";" +
         python_float(s.tp_05_rel) + ";" + std::to_string(s.false_splits) + ";" + std::to_string(s.false_merges) + ";" +
         std::to_string(s.num_gt) + ";" + std::to_string(s.num_pred) + "\n";
}

}  // namespace

void evaluate_fisbe_benchmark(const BenchmarkArgs& a) {
  // Pairs as the reference's CLI forms them: a folder of predictions -> <gt>/<sample>.zarr.
  std::vector<std::pair<std::string, std::string>> pairs;
  const fs::path pred(a.pred), gt(a.gt);
  if (!fs::exists(pred)) throw io::Error(a.pred, "no such file or folder");
  if (!fs::exists(gt)) throw io::Error(a.gt, "no such file or folder");
  if (is_single_case(pred)) {
    pairs.emplace_back(a.pred, is_single_case(gt) ? a.gt : pipelines::fisbe_gt_for(a.pred, a.gt));
  } else {
    if (is_single_case(gt)) throw io::Error(a.gt, "--pred is a folder, so --gt must be a folder of <sample>.zarr");
    for (const auto& p : pipelines::list_fisbe_predictions(a.pred)) pairs.emplace_back(p, pipelines::fisbe_gt_for(p, a.gt));
    if (pairs.empty()) throw io::Error(a.pred, "no predictions (*.zarr samples or label volumes) in this folder");
  }
  std::set<std::string> partly_names;
  if (!a.split_file.empty()) partly_names = pipelines::read_partly_samples(a.split_file);

  std::fprintf(stderr, "neuroseg evaluate --benchmark fisbe: %zu volume(s)\n", pairs.size());
  const char* clear = isatty(2) ? "\r\033[K" : "";
  pipelines::ProgressBar bar(static_cast<int64_t>(pairs.size()), "fisbe");
  std::vector<pipelines::FisbeCase> cases;
  nlohmann::json per_volume = nlohmann::json::array();
  int64_t failed = 0, done = 0;
  for (const auto& [pred_path, gt_path] : pairs) {
    pipelines::FisbeCase c;
    c.name = pipelines::fisbe_sample_name(pred_path);
    c.partly = partly_names.empty() ? a.partly : partly_names.count(c.name) > 0;
    const auto t0 = std::chrono::steady_clock::now();
    nlohmann::json entry = {{"sample", c.name}, {"prediction", pred_path}, {"ground_truth", gt_path}, {"partly", c.partly}};
    try {
      if (!fs::exists(gt_path)) throw io::Error(gt_path, "ground truth not found for prediction " + pred_path);
      pipelines::FisbeLabels g = pipelines::read_fisbe_labels(gt_path, {"volumes/gt_instances"});
      pipelines::FisbeLabels p = pipelines::read_fisbe_labels(pred_path, pipelines::fisbe_prediction_keys());
      if (std::getenv("NEUROSEG_FISBE_TIMING"))
        std::fprintf(stderr, "fisbe: reading     %.3f s\n",
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      metrics::FisbeOptions o;
      o.partly = c.partly;
      o.dim_instances = g.dim_neurons;
      try {
        c.result = metrics::evaluate_fisbe_volume(std::move(g.labels), std::move(p.labels), o);
      } catch (const io::Error& e) {  // name the pair: the metric knows only "prediction"/"ground truth"
        throw io::Error(pred_path, e.subject() + ": " + e.problem());
      }
      c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      io::write_text_atomic((fs::path(a.out) / (c.name + ".toml")).string(), pipelines::fisbe_volume_toml(c.result));
      for (const auto& w : c.result.warnings) std::fprintf(stderr, "%sneuroseg: warning: %s: %s\n", clear, c.name.c_str(), w.c_str());
      const auto& r = c.result;
      entry.update({{"seconds", c.seconds}, {"num_gt", r.num_gt}, {"num_pred", r.num_pred},
                    {"removed_small", r.removed_small}, {"S", r.avg_f1_cov_score}, {"avF1", r.av_f1},
                    {"C", r.avg_gt_coverage}, {"gt_coverage", r.gt_coverage}, {"TP_05", r.tp_05},
                    {"TP_05_cldice", r.tp_05_cldice}, {"FS", r.false_splits}, {"FM", r.false_merges},
                    {"gt_overlaps", r.gt_overlaps}, {"pred_overlaps", r.pred_overlaps}, {"warnings", r.warnings}});
      nlohmann::json th = nlohmann::json::array();
      for (const auto& t : r.thresholds)
        th.push_back({{"threshold", t.threshold}, {"TP", t.tp}, {"FP", t.fp}, {"FN", t.fn}, {"F1", t.fscore}});
      entry["thresholds"] = th;
      cases.push_back(std::move(c));
    } catch (const io::Error& e) {
      ++failed;
      entry["error"] = e.what();
      std::fprintf(stderr, "%sneuroseg: error: %s\n", clear, e.what());
    }
    per_volume.push_back(entry);
    char note[256];
    std::snprintf(note, sizeof(note), "%s %.2f s", pipelines::fisbe_sample_name(pred_path).c_str(),
                  entry.value("seconds", 0.0));
    bar.update(++done, note);
  }

  // Sets and the leaderboard (summarize.py: aggregate_and_report).
  std::vector<const pipelines::FisbeCase*> all, cpt, prt;
  std::vector<const metrics::FisbeVolumeResult*> cpt_r, prt_r, all_r;
  for (const auto& c : cases) {
    all.push_back(&c), all_r.push_back(&c.result);
    (c.partly ? prt : cpt).push_back(&c);
    (c.partly ? prt_r : cpt_r).push_back(&c.result);
  }
  nlohmann::json sets;
  std::string board = "set;volumes;S;avF1;C;clDice_TP;clDice_TP_mean_of_sets;tp;FS;FM;Num GT;Num Pred\n";
  std::printf("%-11s %7s %7s %7s %9s %7s %4s %4s\n", "set", "S", "avF1", "C", "clDice_TP", "tp", "FS", "FM");
  auto print = [](const char* name, const metrics::FisbeSetScores& s, double cl) {
    std::printf("%-11s %7.4f %7.4f %7.4f %9.4f %7.4f %4lld %4lld\n", name, s.score, s.av_f1, s.coverage, cl, s.tp_05_rel,
                static_cast<long long>(s.false_splits), static_cast<long long>(s.false_merges));
  };
  if (!cpt.empty() && !prt.empty()) {
    const metrics::FisbeSetScores sc = metrics::pool_fisbe_volumes(cpt_r), sp = metrics::pool_fisbe_volumes(prt_r);
    const metrics::FisbeCombinedScores comb = metrics::combine_fisbe_sets(sc, sp);
    io::write_text_atomic((fs::path(a.out) / "summary.csv").string(), pipelines::fisbe_summary_csv(all, sc, &comb));
    io::write_text_atomic((fs::path(a.out) / "summary_complete.csv").string(), pipelines::fisbe_summary_csv(cpt, sc, nullptr));
    io::write_text_atomic((fs::path(a.out) / "summary_partly.csv").string(), pipelines::fisbe_summary_csv(prt, sp, nullptr));
    sets["completely"] = set_json(sc);
    sets["partly"] = set_json(sp);
    sets["combined"] = set_json(comb.pooled);
    sets["combined"]["clDice_TP_mean_of_sets"] = comb.cldice_tp_mean_of_sets;
    board += leaderboard_row("completely", sc, sc.cldice_tp) + leaderboard_row("partly", sp, sp.cldice_tp) +
             leaderboard_row("combined", comb.pooled, comb.cldice_tp_mean_of_sets);
    print("completely", sc, sc.cldice_tp);
    print("partly", sp, sp.cldice_tp);
    print("combined", comb.pooled, comb.cldice_tp_pooled);
    std::printf("combined clDice_TP: %.4f pooled over matches (evaluator HEAD), %.4f mean of the two sets (published "
                "leaderboard)\n",
                comb.cldice_tp_pooled, comb.cldice_tp_mean_of_sets);
  } else if (!all.empty()) {
    const metrics::FisbeSetScores s = metrics::pool_fisbe_volumes(all_r);
    io::write_text_atomic((fs::path(a.out) / "summary.csv").string(), pipelines::fisbe_summary_csv(all, s, nullptr));
    const char* name = prt.empty() ? "completely" : "partly";
    sets[name] = set_json(s);
    board += leaderboard_row(name, s, s.cldice_tp);
    print(name, s, s.cldice_tp);
  }
  io::write_text_atomic((fs::path(a.out) / "leaderboard.csv").string(), board);
  io::write_text_atomic((fs::path(a.out) / "results.json").string(),
                        nlohmann::json{{"benchmark", "fisbe"}, {"volumes", per_volume}, {"sets", sets}}.dump(2) + "\n");
  std::printf("evaluated %zu of %zu volume(s) -> %s\n", cases.size(), pairs.size(), a.out.c_str());
  if (failed > 0) throw io::Error(a.out, std::to_string(failed) + " volume(s) failed (see the messages above)");
}

}  // namespace neuroseg::cli
