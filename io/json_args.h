#pragma once
// Reading a JSON object of arguments strictly: every key must be known (did-you-mean on
// a typo), every value must have the right type and range, and the message names the
// argument. Used for model arguments, checkpoint preprocessing and training configs.
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace neuroseg::io {

/// Levenshtein distance, for did-you-mean suggestions.
std::size_t edit_distance(const std::string& a, const std::string& b);
/// The candidate closest to `word` (case-insensitive), or "" when none is close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

class JsonArgs {
 public:
  /// `subject` names the owner in messages (e.g. "model 'unet'"); `args` must be a JSON
  /// object (or null).
  JsonArgs(std::string subject, const nlohmann::json& args);

  bool has(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback, int64_t min_value);
  double get_double(const std::string& key, double fallback, double min_value);
  bool get_bool(const std::string& key, bool fallback);
  std::string get_string(const std::string& key, const std::string& fallback);
  std::string get_choice(const std::string& key, const std::string& fallback, const std::vector<std::string>& choices);
  std::vector<double> get_double_list(const std::string& key, const std::vector<double>& fallback, double min_value);
  /// A nested object (for its own JsonArgs); null when absent.
  nlohmann::json get_object(const std::string& key);
  std::vector<int64_t> get_int_list(const std::string& key, const std::vector<int64_t>& fallback, int64_t min_value);
  /// A list whose items are either one int (all axes) or a list of `axes` ints.
  std::vector<std::vector<int64_t>> get_per_axis_list(const std::string& key,
                                                      const std::vector<std::vector<int64_t>>& fallback,
                                                      int64_t axes, int64_t min_value);
  /// Declares a key read by the caller itself (e.g. a list of pairs).
  void mark_known(const std::string& key) { known_.insert(key); }
  /// Throws for any key not read by a get_* call, suggesting the closest one read.
  void finish() const;
  /// Throws io::Error(subject, "argument '<key>': <problem>").
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const;

 private:
  const nlohmann::json* find(const std::string& key);
  std::string subject_;
  nlohmann::json args_;
  std::set<std::string> known_;
};

}  // namespace neuroseg::io
