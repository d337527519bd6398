#pragma once
// Shared by the losses of losses/: input checks, the compute dtype, one-hot targets and the
// Dice-style reductions. Not a public API (namespace detail).
#include <cstdint>
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

namespace neuroseg::losses::detail {

/// Every loss runs with autocast off for all devices, so that reductions, pow/exp and the
/// pooling of clDice stay in float32 even when the network ran under fp16/bf16 autocast
/// (the same exclusion torchvision's autocast wrappers use). Gradients flow back into the
/// half-precision logits through the explicit cast.
class NoAutocast {
 public:
  NoAutocast() : guard_(c10::autocast_dispatch_keyset) {}

 private:
  c10::impl::ExcludeDispatchKeyGuard guard_;
};

/// Logits and targets after the checks, in the compute dtype.
struct Prepared {
  at::Tensor logits;  ///< (N, K, *spatial): float32, or float64 when given float64 (gradient checks)
  at::Tensor target;  ///< (N, *spatial) int64; ignored voxels set to class 0
  at::Tensor valid;   ///< (N, 1, *spatial) 1/0 in the compute dtype; undefined without ignore_index
  int64_t classes = 0;
};

/// Checks logits (N, K, D, H, W) / targets (N, D, H, W), or (N, K, H, W) / (N, H, W);
/// `subject` names the loss in the io::Error.
Prepared prepare(const char* subject, const at::Tensor& logits, const at::Tensor& target,
                 std::optional<int64_t> ignore_index);

/// One-hot targets (N, K, *spatial) in the compute dtype, 0 at ignored voxels.
at::Tensor one_hot(const Prepared& in);

/// Softmax probabilities (N, K, *spatial), 0 at ignored voxels.
at::Tensor probabilities(const Prepared& in);

/// The axes summed by Dice-style losses: spatial (per sample), or batch + spatial.
std::vector<int64_t> reduction_dims(int64_t dim, bool batch);

/// Mean over the last axis (classes) of a per-class score, without class 0 unless
/// `include_background` (or when there is only one class).
at::Tensor class_mean(const at::Tensor& per_class, bool include_background);

/// Soft Dice loss of probabilities p and one-hot g (N, K, *spatial), both already masked:
/// 1 - mean over classes of (2 sum(p g) + s) / (sum(p) + sum(g) + s).
at::Tensor soft_dice_of(const at::Tensor& p, const at::Tensor& g, bool batch_dice, bool include_background, double smooth);

/// Per-class weights as a tensor of the compute dtype on the logits' device; checks the count.
at::Tensor class_weight_tensor(const char* subject, const std::vector<double>& weights, const Prepared& in);

}  // namespace neuroseg::losses::detail
