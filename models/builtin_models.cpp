// The one list of models neuroseg ships. Adding a model = one entry here.
#include <nlohmann/json.hpp>

#include "models/mamba.h"
#include "models/plsnet.h"
#include "models/registry.h"
#include "models/sam.h"
#include "models/torchscript_model.h"
#include "models/unet.h"

namespace neuroseg::models {

void register_builtin_models(ModelRegistry& r) {
  r.add({"unet", "3D U-Net with nnU-Net's plain-conv defaults (depth, strides, kernels, blocks, norm configurable)",
         [](const nlohmann::json& a) -> SegmentationModel { return UNet(UNetOptions::from_json(a, 3)).ptr(); },
         {{"in_channels", 1}, {"out_channels", 2}}});
  r.add({"unet2d", "2D U-Net run slice by slice along z (the 3D U-Net's twin)",
         [](const nlohmann::json& a) -> SegmentationModel {
           return UNet2dSlices(UNetOptions::from_json(a, 2)).ptr();
         },
         {{"in_channels", 1}, {"out_channels", 2}}});
  r.add({"plsnet", "PLS-Net: lightweight 3D net, depthwise-separable convs + dilated residual dense blocks (Lee 2019)",
         [](const nlohmann::json& a) -> SegmentationModel { return PLSNet(PLSNetOptions::from_json(a)).ptr(); },
         {{"in_channels", 1}, {"out_channels", 2}}});
  r.add({"umamba_bot", "U-Mamba_Bot: residual U-Net with LayerNorm + Mamba over the bottleneck's voxels (Ma 2024)",
         [](const nlohmann::json& a) -> SegmentationModel { return UMamba(UMambaOptions::from_json(a, false)).ptr(); },
         {{"in_channels", 1}, {"out_channels", 2}}});
  r.add({"umamba_enc", "U-Mamba_Enc: residual U-Net with LayerNorm + Mamba after every encoder stage (Ma 2024)",
         [](const nlohmann::json& a) -> SegmentationModel { return UMamba(UMambaOptions::from_json(a, true)).ptr(); },
         {{"in_channels", 1}, {"out_channels", 2}}});
  r.add({"segmamba", "SegMamba: gated spatial conv + tri-orientated Mamba encoder, UNETR-style decoder (Xing 2024)",
         [](const nlohmann::json& a) -> SegmentationModel { return SegMamba(SegMambaOptions::from_json(a)).ptr(); },
         {{"in_channels", 1}, {"out_channels", 2}}});
  r.add({"sam_vit_b",
         "Segment Anything ViT-B as a prompt-free 2D slice model (SAM/MedSAM weights load by key; two-stage decoding, "
         "LoRA on q/v, memory across slices after SAM4EM)",
         [](const nlohmann::json& a) -> SegmentationModel { return Sam(SamOptions::from_json(a)).ptr(); },
         {{"in_channels", 1}, {"out_channels", 2}}});
  r.add({"torchscript", "a TorchScript file exported from Python (torch.jit.script/trace), run as a model",
         [](const nlohmann::json& a) -> SegmentationModel { return std::make_shared<TorchScriptModelImpl>(a); },
         nullptr});
}

}  // namespace neuroseg::models
