#include "losses/entropy_kl.h"

#include <ATen/ATen.h>

#include "losses/loss_support.h"

namespace neuroseg::losses {

at::Tensor entropy_kl_loss(const at::Tensor& logits_in, const at::Tensor& prior, const EntropyKLOptions& o) {
  detail::NoAutocast no_autocast;
  TORCH_CHECK(logits_in.dim() >= 3, "entropy_kl_loss: logits (N, K, *spatial)");
  const int64_t n = logits_in.size(0), k = logits_in.size(1);
  TORCH_CHECK(prior.dim() == 2 && prior.size(0) == n && prior.size(1) == k, "entropy_kl_loss: prior (N, K) = (", n, ", ", k,
              "), got ", prior.sizes());
  TORCH_CHECK(o.class_weights.empty() || static_cast<int64_t>(o.class_weights.size()) == k,
              "entropy_kl_loss: one class weight per class (", k, ")");
  const at::Tensor logits = logits_in.scalar_type() == at::kDouble ? logits_in : logits_in.to(at::kFloat);
  const at::Tensor s = at::softmax(logits, 1);
  const at::Tensor flat = s.reshape({n, k, -1});  // (N, K, P)
  at::Tensor w = o.class_weights.empty() ? at::ones({k}, flat.options())
                                         : at::tensor(o.class_weights, at::kDouble).to(flat.options());
  const at::Tensor entropy = -(w.view({1, k, 1}) * flat * at::log(flat + 1e-10)).sum() / flat.sum();
  const at::Tensor amax = std::get<0>(flat.max(1, /*keepdim=*/true)) + 1e-10;
  const at::Tensor sizes = (o.size_power == 1.0 ? flat / amax : (flat / amax).pow(o.size_power)).sum(2);  // (N, K)
  const at::Tensor ratio = sizes / (sizes.sum(1, /*keepdim=*/true) + 1e-10);  // τ̂
  const at::Tensor tau = prior.to(ratio.options());
  const at::Tensor kl = (ratio * (at::log(ratio + 1e-10) - at::log(tau + 1e-10))).sum() / static_cast<double>(n);
  return o.lambda_entropy * entropy + o.lambda_prior * kl;
}

at::Tensor entropy_loss(const at::Tensor& logits_in) {
  detail::NoAutocast no_autocast;
  const at::Tensor logits = logits_in.scalar_type() == at::kDouble ? logits_in : logits_in.to(at::kFloat);
  const at::Tensor logp = at::log_softmax(logits, 1);
  return -(logp.exp() * logp).sum(1).mean();
}

}  // namespace neuroseg::losses
