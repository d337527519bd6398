#pragma once
// Dimension-generic building blocks (2D or 3D chosen at construction), shared by the
// networks. Each returns a module registered under stable names, because those names are
// the state-dict keys that Python weights must map onto.
#include <string>
#include <vector>

#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>

namespace neuroseg::models {

/// A Sequential with a plain forward(Tensor), so chains can nest inside chains
/// (torch::nn::Sequential's templated forward cannot be stored in another Sequential).
class ChainImpl : public torch::nn::SequentialImpl {
 public:
  using SequentialImpl::SequentialImpl;
  at::Tensor forward(at::Tensor x) { return SequentialImpl::forward(x); }
};
TORCH_MODULE(Chain);

struct ConvSpec {
  int spatial_dims = 3;
  int64_t in = 1, out = 1;
  std::vector<int64_t> kernel{3, 3, 3};
  std::vector<int64_t> stride{1, 1, 1};
  std::vector<int64_t> dilation{1, 1, 1};
  int64_t groups = 1;
  bool bias = true;
};

/// Conv2d/Conv3d with "same" padding (kernel/2 * dilation) per axis.
torch::nn::AnyModule make_conv(const ConvSpec& s);
/// ConvTranspose2d/3d with kernel = stride (nnU-Net's upsampling).
torch::nn::AnyModule make_transposed_conv(int spatial_dims, int64_t in, int64_t out, const std::vector<int64_t>& stride);
/// "instance" (affine, eps 1e-5), "batch" or "group" (num_groups) normalisation.
torch::nn::AnyModule make_norm(const std::string& kind, int spatial_dims, int64_t channels, int64_t num_groups = 8);
/// "relu" or "leakyrelu" (slope 0.01, nnU-Net's).
torch::nn::AnyModule make_act(const std::string& kind);

/// conv -> norm -> act, as a Chain with children "conv", "norm", "act".
Chain conv_norm_act(const ConvSpec& s, const std::string& norm, const std::string& act,
                                    int64_t num_groups);

}  // namespace neuroseg::models
