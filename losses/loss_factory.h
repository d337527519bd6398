#pragma once
// One place that turns a loss name and its options (a training config's "loss" and
// "loss_options") into a loss function. Names and options are strict: an unknown name or
// key, or a key that the chosen loss does not use, is an io::Error with a did-you-mean.
//
//   name        loss                                           options
//   dice_ce     CE (class_weights) + soft Dice (nnU-Net)       class_weights, include_background, batch_dice
//   dice        soft Dice                                      include_background, batch_dice
//   ce          weighted cross-entropy                         class_weights
//   focal       focal loss (class_weights = per-class alpha)   gamma, class_weights
//   tversky     Tversky loss                                   alpha, beta, include_background, batch_dice
//   dice_focal  focal + soft Dice                              gamma, class_weights, include_background, batch_dice
//   cldice      (1 - a) soft Dice + a soft clDice              cldice_iterations, cldice_alpha (a), include_background, batch_dice
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "losses/deep_supervision.h"

namespace neuroseg::losses {

struct LossOptions {
  std::string name = "dice_ce";
  std::vector<double> class_weights;  ///< K values (CE weights, or focal alpha_t); empty: all 1
  double gamma = 2.0;                 ///< focal
  double alpha = 0.3, beta = 0.7;     ///< Tversky
  int64_t cldice_iterations = 3;
  double cldice_alpha = 0.5;
  bool include_background = false;   ///< Dice-style terms
  bool batch_dice = true;             ///< Dice-style terms
  std::optional<int64_t> ignore_index;  ///< API only (training labels have no ignore value)

  /// Strict parse of a "loss_options" object for loss `name`; `subject` names the errors.
  static LossOptions from_json(const std::string& name, const nlohmann::json& options,
                               const std::string& subject = "loss_options");
};

/// The valid loss names, in the order of the table above.
const std::vector<std::string>& loss_names();

/// The options a loss reads (a subset of LossOptions' JSON keys).
const std::vector<std::string>& loss_option_keys(const std::string& name);

/// The loss function for `o.name` (throws io::Error for an unknown name).
LossFn make_loss(const LossOptions& o);
LossFn make_loss(const std::string& name, const nlohmann::json& options);

}  // namespace neuroseg::losses
