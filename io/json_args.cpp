#include "io/json_args.h"

#include <algorithm>
#include <cctype>

#include "io/error.h"

namespace neuroseg::io {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) == std::tolower(static_cast<unsigned char>(b[j - 1]));
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

JsonArgs::JsonArgs(std::string subject, const nlohmann::json& args) : subject_(std::move(subject)), args_(args) {
  if (args_.is_null()) args_ = nlohmann::json::object();
  if (!args_.is_object()) throw Error(subject_, "arguments must be a JSON object");
}

void JsonArgs::fail(const std::string& key, const std::string& problem) const {
  throw Error(subject_, "argument '" + key + "': " + problem);
}

bool JsonArgs::has(const std::string& key) const { return args_.contains(key); }

const nlohmann::json* JsonArgs::find(const std::string& key) {
  known_.insert(key);
  return args_.contains(key) ? &args_.at(key) : nullptr;
}

int64_t JsonArgs::get_int(const std::string& key, int64_t fallback, int64_t min_value) {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_number_integer()) fail(key, "expected an integer, got " + v->dump());
  const int64_t x = v->get<int64_t>();
  if (x < min_value) fail(key, "must be >= " + std::to_string(min_value) + ", got " + std::to_string(x));
  return x;
}

double JsonArgs::get_double(const std::string& key, double fallback, double min_value) {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_number()) fail(key, "expected a number, got " + v->dump());
  const double x = v->get<double>();
  if (!(x >= min_value)) fail(key, "must be >= " + std::to_string(min_value) + ", got " + v->dump());
  return x;
}

bool JsonArgs::get_bool(const std::string& key, bool fallback) {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_boolean()) fail(key, "expected true or false, got " + v->dump());
  return v->get<bool>();
}

std::string JsonArgs::get_string(const std::string& key, const std::string& fallback) {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_string()) fail(key, "expected a string, got " + v->dump());
  return v->get<std::string>();
}

std::string JsonArgs::get_choice(const std::string& key, const std::string& fallback,
                                  const std::vector<std::string>& choices) {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_string()) fail(key, "expected a string, got " + v->dump());
  std::string s = v->get<std::string>();
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (std::find(choices.begin(), choices.end(), s) != choices.end()) return s;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  const std::string near = closest_match(s, choices);
  fail(key, "unknown value '" + s + "'" + (near.empty() ? "" : "; did you mean '" + near + "'?") + " (one of " + list + ")");
}

std::vector<double> JsonArgs::get_double_list(const std::string& key, const std::vector<double>& fallback,
                                              double min_value) {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_array() || v->empty()) fail(key, "expected a non-empty list of numbers, got " + v->dump());
  std::vector<double> out;
  for (const auto& item : *v) {
    if (!item.is_number()) fail(key, "expected numbers, got " + item.dump());
    if (!(item.get<double>() >= min_value)) fail(key, "values must be >= " + std::to_string(min_value) + ", got " + item.dump());
    out.push_back(item.get<double>());
  }
  return out;
}

nlohmann::json JsonArgs::get_object(const std::string& key) {
  const auto* v = find(key);
  if (!v) return nullptr;
  if (!v->is_object()) fail(key, "expected a JSON object, got " + v->dump());
  return *v;
}

std::vector<int64_t> JsonArgs::get_int_list(const std::string& key, const std::vector<int64_t>& fallback,
                                             int64_t min_value) {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_array() || v->empty()) fail(key, "expected a non-empty list of integers, got " + v->dump());
  std::vector<int64_t> out;
  for (const auto& item : *v) {
    if (!item.is_number_integer()) fail(key, "expected integers, got " + item.dump());
    if (item.get<int64_t>() < min_value) fail(key, "values must be >= " + std::to_string(min_value) + ", got " + item.dump());
    out.push_back(item.get<int64_t>());
  }
  return out;
}

std::vector<std::vector<int64_t>> JsonArgs::get_per_axis_list(const std::string& key,
                                                               const std::vector<std::vector<int64_t>>& fallback,
                                                               int64_t axes, int64_t min_value) {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_array() || v->empty()) fail(key, "expected a list (one entry per stage), got " + v->dump());
  std::vector<std::vector<int64_t>> out;
  for (const auto& item : *v) {
    std::vector<int64_t> per_axis;
    if (item.is_number_integer()) per_axis.assign(axes, item.get<int64_t>());
    else if (item.is_array() && static_cast<int64_t>(item.size()) == axes) {
      for (const auto& x : item) {
        if (!x.is_number_integer()) fail(key, "expected integers, got " + x.dump());
        per_axis.push_back(x.get<int64_t>());
      }
    } else {
      fail(key, "each entry must be an integer or a list of " + std::to_string(axes) + " integers, got " + item.dump());
    }
    for (int64_t x : per_axis)
      if (x < min_value) fail(key, "values must be >= " + std::to_string(min_value) + ", got " + item.dump());
    out.push_back(per_axis);
  }
  return out;
}

void JsonArgs::finish() const {
  const std::vector<std::string> known(known_.begin(), known_.end());
  for (const auto& item : args_.items()) {
    if (known_.count(item.key())) continue;
    const std::string near = closest_match(item.key(), known);
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    throw Error(subject_, "unknown argument '" + item.key() + "'" +
                                                  (near.empty() ? "" : "; did you mean '" + near + "'?") +
                                                  " (valid: " + list + ")");
  }
}

}  // namespace neuroseg::io
