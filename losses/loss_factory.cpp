#include "losses/loss_factory.h"

#include <algorithm>
#include <map>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "io/error.h"
#include "io/json_args.h"
#include "losses/cl_dice.h"
#include "losses/cross_entropy.h"
#include "losses/dice_ce.h"
#include "losses/tversky.h"

namespace neuroseg::losses {
namespace {

const std::map<std::string, std::vector<std::string>>& option_table() {
  static const std::map<std::string, std::vector<std::string>> table{
      {"dice_ce", {"class_weights", "include_background", "batch_dice"}},
      {"dice", {"include_background", "batch_dice"}},
      {"ce", {"class_weights"}},
      {"focal", {"gamma", "class_weights"}},
      {"tversky", {"alpha", "beta", "include_background", "batch_dice"}},
      {"dice_focal", {"gamma", "class_weights", "include_background", "batch_dice"}},
      {"cldice", {"cldice_iterations", "cldice_alpha", "include_background", "batch_dice"}},
  };
  return table;
}

void check_name(const std::string& name, const std::string& subject) {
  const auto& names = loss_names();
  if (std::find(names.begin(), names.end(), name) != names.end()) return;
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  const std::string near = io::closest_match(name, names);
  throw io::Error(subject, "unknown loss '" + name + "'" + (near.empty() ? "" : "; did you mean '" + near + "'?") +
                               " (one of " + list + ")");
}

}  // namespace

const std::vector<std::string>& loss_names() {
  static const std::vector<std::string> names{"dice_ce", "dice", "ce", "focal", "tversky", "dice_focal", "cldice"};
  return names;
}

const std::vector<std::string>& loss_option_keys(const std::string& name) {
  check_name(name, "loss");
  return option_table().at(name);
}

LossOptions LossOptions::from_json(const std::string& name, const nlohmann::json& options, const std::string& subject) {
  check_name(name, subject);
  LossOptions o;
  o.name = name;
  io::JsonArgs a(subject, options);
  const auto& keys = option_table().at(name);
  const auto uses = [&](const char* key) { return std::find(keys.begin(), keys.end(), key) != keys.end(); };
  // A real option of another loss gets its own message rather than a did-you-mean.
  if (options.is_object())
    for (const auto& item : options.items()) {
      bool elsewhere = false;
      for (const auto& entry : option_table())
        elsewhere = elsewhere || std::count(entry.second.begin(), entry.second.end(), item.key()) > 0;
      if (elsewhere && !uses(item.key().c_str())) {
        std::string list;
        for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
        a.fail(item.key(), "is not used by loss '" + name + "' (its options: " + list + ")");
      }
    }
  if (uses("class_weights")) {
    o.class_weights = a.get_double_list("class_weights", {}, 0.0);
    if (!o.class_weights.empty() && std::none_of(o.class_weights.begin(), o.class_weights.end(), [](double w) { return w > 0; }))
      a.fail("class_weights", "needs at least one value > 0");
  }
  if (uses("gamma")) o.gamma = a.get_double("gamma", o.gamma, 0.0);
  if (uses("alpha")) o.alpha = a.get_double("alpha", o.alpha, 0.0);
  if (uses("beta")) o.beta = a.get_double("beta", o.beta, 0.0);
  if (uses("cldice_iterations")) o.cldice_iterations = a.get_int("cldice_iterations", o.cldice_iterations, 1);
  if (uses("cldice_alpha")) {
    o.cldice_alpha = a.get_double("cldice_alpha", o.cldice_alpha, 0.0);
    if (o.cldice_alpha > 1) a.fail("cldice_alpha", "must be <= 1, got " + std::to_string(o.cldice_alpha));
  }
  if (uses("include_background")) o.include_background = a.get_bool("include_background", o.include_background);
  if (uses("batch_dice")) o.batch_dice = a.get_bool("batch_dice", o.batch_dice);
  a.finish();
  return o;
}

LossFn make_loss(const LossOptions& o) {
  check_name(o.name, "loss");
  DiceCEOptions dice;
  dice.include_background = o.include_background;
  dice.batch_dice = o.batch_dice;
  dice.class_weights = o.class_weights;
  dice.ignore_index = o.ignore_index;
  FocalOptions focal;
  focal.gamma = o.gamma;
  focal.alpha = o.class_weights;
  focal.ignore_index = o.ignore_index;
  if (o.name == "dice_ce") return [dice](const at::Tensor& x, const at::Tensor& t) { return dice_ce_loss(x, t, dice); };
  if (o.name == "dice") return [dice](const at::Tensor& x, const at::Tensor& t) { return soft_dice_loss(x, t, dice); };
  if (o.name == "ce") {
    CrossEntropyOptions ce;
    ce.class_weights = o.class_weights;
    ce.ignore_index = o.ignore_index;
    return [ce](const at::Tensor& x, const at::Tensor& t) { return cross_entropy_loss(x, t, ce); };
  }
  if (o.name == "focal") return [focal](const at::Tensor& x, const at::Tensor& t) { return focal_loss(x, t, focal); };
  if (o.name == "dice_focal")
    return [dice, focal](const at::Tensor& x, const at::Tensor& t) { return focal_loss(x, t, focal) + soft_dice_loss(x, t, dice); };
  if (o.name == "tversky") {
    TverskyOptions tv;
    tv.alpha = o.alpha;
    tv.beta = o.beta;
    tv.include_background = o.include_background;
    tv.batch_dice = o.batch_dice;
    tv.ignore_index = o.ignore_index;
    return [tv](const at::Tensor& x, const at::Tensor& t) { return tversky_loss(x, t, tv); };
  }
  ClDiceOptions cl;  // "cldice"
  cl.iterations = o.cldice_iterations;
  cl.alpha = o.cldice_alpha;
  cl.include_background = o.include_background;
  cl.batch_dice = o.batch_dice;
  cl.ignore_index = o.ignore_index;
  return [cl](const at::Tensor& x, const at::Tensor& t) { return dice_cldice_loss(x, t, cl); };
}

LossFn make_loss(const std::string& name, const nlohmann::json& options) {
  return make_loss(LossOptions::from_json(name, options));
}

}  // namespace neuroseg::losses
