#pragma once
// Source-free domain adaptation loss of Bateson, Kervadec, Dolz, Lombaert & Ben Ayed
// ("Source-free domain adaptation for image segmentation", MedIA 2022; their code's
// `EntKLProp`, spec ../shared/specs/spine_sfda_plsnet_lora.md §B.2), for N-d patches:
//   L = lambda_entropy · Σ_{b,c,p} w_c · (-s log(s + 1e-10)) / Σ_{b,c,p} s
//     + lambda_prior · (1/B) Σ_b Σ_c τ̂_bc (log(τ̂_bc + 1e-10) - log(τ_bc + 1e-10))
// with s the softmax, τ̂ the predicted class ratio with the authors' max-normalisation
// (τ̂_bc = Σ_p (s_bcp / (max_c' s_bc'p + 1e-10))^power, divided by its sum over c (+1e-10);
// power 1 in all the authors' configurations) and τ the prior class ratio of each patch:
// KL(τ̂ ‖ τ). A higher power brings τ̂ closer to the hard (argmax) class ratio: with power 1
// the small ratios of a large, uncertain background add up to a sizeable share of every
// foreground class (docs/adaptation.md).
#include <vector>

#include <ATen/core/Tensor.h>

namespace neuroseg::losses {

struct EntropyKLOptions {
  std::vector<double> class_weights;  ///< w_c (K values); empty: all 1
  double lambda_entropy = 1.0, lambda_prior = 1.0;
  double size_power = 1.0;  ///< the authors' `power` of norm_soft_size
};

/// `logits` (N, K, *spatial); `prior` (N, K) class fractions per patch (rows sum to 1).
at::Tensor entropy_kl_loss(const at::Tensor& logits, const at::Tensor& prior, const EntropyKLOptions& o);

/// Mean Shannon entropy of the softmax (tent's objective, Wang et al. 2021).
at::Tensor entropy_loss(const at::Tensor& logits);

}  // namespace neuroseg::losses
