#include "metrics/cldice.h"

#include <ATen/ATen.h>

#include "io/error.h"
#include "metrics/skeleton.h"

namespace neuroseg::metrics {
namespace {

// |S(a) ∩ b| and |S(a)|.
std::pair<int64_t, int64_t> skeleton_overlap(const at::Tensor& a, const at::Tensor& b_foreground) {
  const at::Tensor skel = skeletonize(a).to(at::kBool);
  return {(skel & b_foreground).sum().item<int64_t>(), skel.sum().item<int64_t>()};
}

}  // namespace

ClDice cl_dice_parts(const at::Tensor& pred, const at::Tensor& ref) {
  if (pred.sizes() != ref.sizes())
    throw io::Error("clDice", "prediction " + c10::str(pred.sizes()) + " and reference " + c10::str(ref.sizes()) +
                                  " differ in shape");
  const at::Tensor pred_fg = pred.cpu().ne(0), ref_fg = ref.cpu().ne(0);
  const auto [pred_in_ref, pred_skel] = skeleton_overlap(pred_fg, ref_fg);
  const auto [ref_in_pred, ref_skel] = skeleton_overlap(ref_fg, pred_fg);
  ClDice r;
  if (pred_skel == 0 && ref_skel == 0) return {1.0, 1.0, 1.0};
  r.precision = pred_skel > 0 ? static_cast<double>(pred_in_ref) / static_cast<double>(pred_skel) : 0.0;
  r.sensitivity = ref_skel > 0 ? static_cast<double>(ref_in_pred) / static_cast<double>(ref_skel) : 0.0;
  const double sum = r.precision + r.sensitivity;
  r.score = sum > 0 ? 2.0 * r.precision * r.sensitivity / sum : 0.0;
  return r;
}

double cl_dice(const at::Tensor& pred, const at::Tensor& ref) { return cl_dice_parts(pred, ref).score; }

}  // namespace neuroseg::metrics
