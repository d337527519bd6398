#pragma once
// Low-rank weight updates for Conv3d, Conv2d and Linear layers: the LoRA family compared in
// "LoRA-based methods on Unet for transfer learning in Subarachnoid Hematoma Segmentation"
// (Minoccheri et al. 2025), spec ../shared/specs/spine_sfda_plsnet_lora.md §D.
//
// Every update lives in weight space: the layer runs with W = W0 + s·ΔW (one conv with the
// base layer's own stride, padding, dilation and groups, which is why dilated and depthwise
// convs, wrong in peft, are right here), s = alpha / r (alpha / sqrt(r) with rsLoRA). W0 is
// frozen; ΔW = 0 at the start, so the adapted model equals the base model at step 0.
// For a weight W0 of shape (C_out, C_in/groups, k_1, ..., k_d):
//   - lora-c    (LoRA-C, Ding et al. 2024 as a plain matrix factorisation): ΔW = reshape(B·A),
//               B (C_out × r), A (r × C_in/g·k_1···k_d): the (C_out) × (C_in·∏k) unfolding;
//               r·(C_out + C_in/g·∏k) parameters (= peft's conv LoRA).
//   - convlora  (ConvLoRA, Aleem et al. 2024; Microsoft loralib's layout with the Conv3d fix of
//               its PR #157): ΔW = reshape(B·A, W0.shape), B (C_out·k_1···k_{d-1} × r·k_d),
//               A (r·k_d × C_in/g·k_d); r·k_d·(C_out·k_1···k_{d-1} + C_in/g·k_d) parameters.
//   - cp-lora   (CP / PARAFAC): ΔW = Σ_r u_r ∘ v_r ∘ κ1_r ∘ ... ∘ κd_r, R·(C_out + C_in/g + Σk).
//   - dora-c, convdora, cp-dora (DoRA, Liu et al. 2024): W = m · V / ||V||_c with V = W0 + s·ΔW
//               of the matching update, ||·||_c the per-output-channel norm (treated as a
//               constant in backprop, as the paper's Sec. 4.3), m initialised to ||W0||_c:
//               C_out more parameters.
// A Linear weight (C_out, C_in) has no kernel: the three factorisations all reduce to LoRA.
// Init: B / u zero; A kaiming-uniform (a = sqrt(5), loralib's); v and κ uniform(±1/sqrt(n)).
#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace neuroseg::adapters {

enum class AdapterKind { kLoraC, kConvLora, kCpLora, kDoraC, kConvDora, kCpDora };

/// "lora-c", "convlora", "cp-lora", "dora-c", "convdora", "cp-dora"; io::Error otherwise.
AdapterKind parse_adapter_kind(const std::string& name);
std::string to_string(AdapterKind kind);
const std::vector<std::string>& adapter_kind_names();
bool is_dora(AdapterKind kind);

struct AdapterOptions {
  AdapterKind kind = AdapterKind::kLoraC;
  int64_t rank = 8;
  double alpha = 16;
  bool rslora = false;  ///< scale alpha / sqrt(rank) instead of alpha / rank
  /// Also train the affine parameters of every normalisation layer (instance, batch, group,
  /// layer norm), as trainable copies kept in the adapter (adapters/adapted_model.h).
  bool train_norms = false;
  double scaling() const;
};

/// The update of one layer. `base_weight` is the layer's own weight parameter (a handle: it is
/// read, and written only by merge/unmerge); it is not registered here.
class LowRankUpdateImpl : public torch::nn::Module {
 public:
  LowRankUpdateImpl(const AdapterOptions& options, at::Tensor base_weight);

  /// s·ΔW, W0's shape.
  at::Tensor delta() const;
  /// The weight the layer runs with: W0 itself once merged, else W0 + s·ΔW or DoRA's.
  at::Tensor effective_weight() const;
  /// W0 <- the effective weight (no grad); unmerge restores W0 bit for bit (from the copy
  /// kept at merge time: subtracting s·ΔW would leave rounding error in the frozen base, and
  /// DoRA's normalisation cannot be inverted without it).
  void merge();
  void unmerge();
  bool merged() const { return merged_; }
  int64_t trainable_parameters() const;
  const AdapterOptions& options() const { return options_; }

 private:
  at::Tensor adapted_weight() const;  ///< the effective weight when unmerged
  AdapterOptions options_;
  at::Tensor w0_;                     ///< the base layer's parameter
  at::Tensor a_, b_;                  ///< lora-c / convlora factors
  std::vector<at::Tensor> cp_;        ///< cp-lora: u (C_out×R), v (C_in×R), κ_j (k_j×R)
  at::Tensor magnitude_;              ///< DoRA: (C_out)
  at::Tensor w0_before_merge_;        ///< W0 while merged
  bool merged_ = false;
};
TORCH_MODULE(LowRankUpdate);

}  // namespace neuroseg::adapters
