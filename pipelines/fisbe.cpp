#include "pipelines/fisbe.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/compression.h"
#include "io/error.h"
#include "io/volume_io.h"
#include "pipelines/cases.h"

namespace fs = std::filesystem;

namespace neuroseg::pipelines {
namespace {

bool is_zarr_array(const fs::path& p) { return fs::exists(p / ".zarray"); }
bool is_zarr_group(const fs::path& p) {
  return fs::is_directory(p) && (fs::exists(p / ".zgroup") || p.extension() == ".zarr");
}

std::string threshold_table(double th) {
  std::string s = python_float(th);
  std::replace(s.begin(), s.end(), '.', '_');
  return "th_" + s;
}

/// natsort's order for names like sample_2 < sample_10.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const std::string na = a.substr(i, ie - i), nb = b.substr(j, je - j);
      const std::string ta = na.substr(std::min(na.find_first_not_of('0'), na.size()));
      const std::string tb = nb.substr(std::min(nb.find_first_not_of('0'), nb.size()));
      if (ta.size() != tb.size()) return ta.size() < tb.size();
      if (ta != tb) return ta < tb;
      i = ie, j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

std::string toml_list(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : " ") + python_float(v[i]) + (i + 1 == v.size() ? " " : "");
  return s + "]";
}

}  // namespace

std::string python_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

const std::vector<std::string>& fisbe_prediction_keys() {
  static const std::vector<std::string> keys = {"volumes/pred_instances", "volumes/instances",
                                                "volumes/gmm_label_cleaned", "volumes/labels", "volumes/gt_instances"};
  return keys;
}

FisbeLabels read_fisbe_labels(const std::string& path, const std::vector<std::string>& keys) {
  const fs::path p(path);
  if (!fs::exists(p)) throw io::Error(path, "no such file or folder");
  FisbeLabels out;
  fs::path array = p;
  if (!is_zarr_array(p) && is_zarr_group(p)) {
    bool found = false;
    for (const auto& k : keys)
      if (is_zarr_array(p / k)) {
        array = p / k, found = true;
        break;
      }
    if (!found) {
      std::string list;
      for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
      throw io::Error(path, "zarr sample holds none of the arrays " + list);
    }
  }
  if (p.extension() == ".hdf" || p.extension() == ".h5")
    throw io::Error(path, "HDF5 is not read by neuroseg; convert the labels to zarr or NIfTI (neuroseg convert)");
  out.path = array.string();
  io::Volume v = io::read_volume(out.path);
  out.labels = std::move(v.data);
  const fs::path attrs = array / ".zattrs";
  if (fs::exists(attrs)) {
    const io::Bytes bytes = io::read_file_bytes(attrs.string());
    try {
      const auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
      if (j.contains("dim_neurons")) {
        for (const auto& d : j.at("dim_neurons")) out.dim_neurons.push_back(d.get<int64_t>());
      }
    } catch (const nlohmann::json::exception& e) {
      throw io::Error(attrs.string(), std::string("corrupt .zattrs (") + e.what() + ")");
    }
  }
  return out;
}

std::string fisbe_sample_name(const std::string& path) {
  std::string base = fs::path(path).filename().string();
  if (base.empty()) base = fs::path(path).parent_path().filename().string();
  return base.substr(0, base.find('.'));
}

std::string fisbe_gt_for(const std::string& pred_path, const std::string& gt_folder) {
  return (fs::path(gt_folder) / (fisbe_sample_name(pred_path) + ".zarr")).string();
}

std::vector<std::string> list_fisbe_predictions(const std::string& folder) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(folder, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (e.is_directory() && e.path().extension() == ".zarr") {
      out.push_back(e.path().string());
      continue;
    }
    if (has_volume_extension(name) || (e.is_directory() && fs::exists(e.path() / ".zarray")))
      out.push_back(e.path().string());
  }
  if (ec) throw io::Error(folder, "cannot list folder (" + ec.message() + ")");
  std::sort(out.begin(), out.end(), natural_less);
  return out;
}

std::set<std::string> read_partly_samples(const std::string& split_file) {
  std::ifstream in(split_file);
  if (!in) throw io::Error(split_file, "cannot open the split file");
  std::set<std::string> partly;
  bool in_partly = false;
  for (std::string line; std::getline(in, line);) {
    const auto b = line.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) continue;
    line = line.substr(b, line.find_last_not_of(" \t\r\n") - b + 1);
    if (line.find("(1) samples for FlyLight completely:") != std::string::npos) in_partly = false;
    else if (line.find("(2) samples for FlyLight partly:") != std::string::npos) in_partly = true;
    else if (line == "train:" || line == "val:" || line == "test:") continue;
    else if (in_partly) partly.insert(line);
  }
  return partly;
}

std::string fisbe_volume_toml(const metrics::FisbeVolumeResult& r) {
  std::ostringstream o;
  auto f = [](double v) { return python_float(v); };
  o << "[general]\n"
    << "\"Num GT\" = " << r.num_gt << "\n"
    << "\"Num Pred\" = " << r.num_pred << "\n"
    << "TP_05 = " << r.tp_05 << "\n"
    << "TP_05_rel = " << f(r.tp_05_rel) << "\n"
    << "TP_05_cldice = " << toml_list(r.tp_05_cldice) << "\n"
    << "avg_TP_05_cldice = " << f(r.avg_tp_05_cldice) << "\n"
    << "gt_skel_coverage = " << toml_list(r.gt_coverage) << "\n"
    << "avg_gt_skel_coverage = " << f(r.avg_gt_coverage) << "\n"
    << "avg_f1_cov_score = " << f(r.avg_f1_cov_score) << "\n"
    << "FM = " << r.false_merges << "\n"
    << "FS = " << r.false_splits << "\n"
    << "GT_dim = " << r.dim.count << "\n"
    << "TP_05_dim = " << r.dim.tp_05 << "\n"
    << "TP_05_rel_dim = " << f(r.dim.tp_05_rel) << "\n"
    << "gt_covs_dim = " << toml_list(r.dim.coverage) << "\n"
    << "avg_gt_cov_dim = " << f(r.dim.avg_coverage) << "\n"
    << "GT_overlap = " << r.overlap.count << "\n"
    << "TP_05_overlap = " << r.overlap.tp_05 << "\n"
    << "TP_05_rel_overlap = " << f(r.overlap.tp_05_rel) << "\n"
    << "gt_covs_overlap = " << toml_list(r.overlap.coverage) << "\n"
    << "avg_gt_cov_overlap = " << f(r.overlap.avg_coverage) << "\n\n"
    << "[confusion_matrix]\n"
    << "avAP = " << f(r.av_ap) << "\navAP59 = " << f(r.av_ap) << "\navAP19 = " << f(r.av_ap19) << "\n"
    << "avFscore = " << f(r.av_f1) << "\navFscore59 = " << f(r.av_f1_59) << "\navFscore19 = " << f(r.av_f1) << "\n";
  for (const auto& t : r.thresholds) {
    o << "\n[confusion_matrix." << threshold_table(t.threshold) << "]\n"
      << "AP_TP = " << t.tp << "\nAP_FP = " << t.fp << "\nAP_FN = " << t.fn << "\n"
      << "precision = " << f(t.precision) << "\nrecall = " << f(t.recall) << "\nAP = " << f(t.ap)
      << "\nfscore = " << f(t.fscore) << "\n";
    if (t.false_split >= 0) o << "false_split = " << t.false_split << "\nfalse_merge = " << t.false_merge << "\n";
  }
  return o.str();
}

std::string fisbe_summary_csv(const std::vector<const FisbeCase*>& cases, const metrics::FisbeSetScores& pooled,
                              const metrics::FisbeCombinedScores* combined) {
  // evaluate.py main(): the flylight preset's summary columns.
  const std::vector<std::string> header = {
      "general Num GT", "general Num Pred", "general avg_f1_cov_score", "confusion_matrix avFscore",
      "general avg_gt_skel_coverage", "th_0_5 AP_TP", "th_0_5 AP_FP", "th_0_5 AP_FN", "general FM", "general FS",
      "general TP_05", "general TP_05_rel", "general avg_TP_05_cldice", "general GT_dim", "general TP_05_dim",
      "general TP_05_rel_dim", "general avg_gt_cov_dim", "general GT_overlap", "general TP_05_overlap",
      "general TP_05_rel_overlap", "general avg_gt_cov_overlap", "th_0_1 fscore", "th_0_2 fscore", "th_0_3 fscore",
      "th_0_4 fscore", "th_0_5 fscore", "th_0_6 fscore", "th_0_7 fscore", "th_0_8 fscore", "th_0_9 fscore"};
  auto volume_row = [](const metrics::FisbeVolumeResult& r) {
    std::vector<double> v = {double(r.num_gt), double(r.num_pred), r.avg_f1_cov_score, r.av_f1, r.avg_gt_coverage,
                             double(r.thresholds[4].tp), double(r.thresholds[4].fp), double(r.thresholds[4].fn),
                             double(r.false_merges), double(r.false_splits), double(r.tp_05), r.tp_05_rel,
                             r.avg_tp_05_cldice, double(r.dim.count), double(r.dim.tp_05), r.dim.tp_05_rel,
                             r.dim.avg_coverage, double(r.overlap.count), double(r.overlap.tp_05), r.overlap.tp_05_rel,
                             r.overlap.avg_coverage};
    for (int i = 0; i < 9; ++i) v.push_back(r.thresholds[i].fscore);
    return v;
  };
  std::ostringstream o;
  o << "sample";
  for (const auto& h : header) o << ';' << h;
  o << '\n';
  std::vector<double> sum(header.size(), 0.0);
  for (const FisbeCase* c : cases) {
    const std::vector<double> v = volume_row(c->result);
    o << c->name;
    for (size_t k = 0; k < v.size(); ++k) o << ';' << python_float(v[k]), sum[k] += v[k];
    o << '\n';
  }
  const double n = static_cast<double>(std::max<size_t>(1, cases.size()));
  o << "mean";
  for (double s : sum) o << ';' << python_float(cases.empty() ? std::nan("") : s / n);
  o << "\nsum";
  for (double s : sum) o << ';' << python_float(s);
  o << "\navg_inst";
  // summarize.py: the pooled dict; average_sets' dict lacks the dim/overlap keys (0.0).
  const metrics::FisbeSetScores& p = combined ? combined->pooled : pooled;
  auto i = [](int64_t v) { return std::to_string(v); };
  auto f = [](double v) { return python_float(v); };
  std::vector<std::string> cells = {
      i(p.num_gt), i(p.num_pred), f(p.score), f(p.av_f1), f(p.coverage), i(p.tp[4]), i(p.fp[4]), i(p.fn[4]),
      i(p.false_merges), i(p.false_splits), i(p.tp_05), f(p.tp_05_rel), f(p.cldice_tp)};
  if (combined) {
    for (int k = 0; k < 8; ++k) cells.push_back("0.0");
  } else {
    for (const std::string& s : {i(p.gt_dim), i(p.tp_05_dim), f(p.tp_05_rel_dim), f(p.avg_gt_cov_dim), i(p.gt_overlap),
                                 i(p.tp_05_overlap), f(p.tp_05_rel_overlap), f(p.avg_gt_cov_overlap)})
      cells.push_back(s);
  }
  for (int k = 0; k < 9; ++k) cells.push_back(f(p.fscore[k]));
  for (const auto& c : cells) o << ';' << c;
  o << '\n';
  return o.str();
}

}  // namespace neuroseg::pipelines
