#!/usr/bin/env python3
"""Converts an official Segment Anything ViT-B checkpoint (sam_vit_b_01ec64.pth) or a MedSAM
one (medsam_vit_b.pth, same keys) into the plain file neuroseg reads:

    torch.save({name: float32 contiguous tensor}, OUT)

LibTorch's unpickler cannot read the OrderedDict a state_dict() is saved as (pytorch/pytorch
#100741, spec shared/specs/mamba_sam.md §C.6), and a training checkpoint may wrap the weights
({"model": ...}, {"state_dict": ...}) or prefix them ("module.", "sam."); this script unwraps,
strips the prefixes, checks the key set against SAM's (image_encoder., prompt_encoder.,
mask_decoder.) and writes a plain dict. Nothing is downloaded.

usage: convert_sam_checkpoint.py IN.pth OUT.pt
then:  neuroseg import-weights --model sam_vit_b --weights OUT.pt -o sam.pt
"""
import argparse
import sys
from collections import OrderedDict

import torch

PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
# Registered non-persistent in segment_anything (sam.py) but present in some re-saved files.
DROP = ("pixel_mean", "pixel_std")


def unwrap(obj):
    """The tensor dict inside a checkpoint: bare, or under "model" / "state_dict"."""
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            return unwrap(obj[key])
    if not isinstance(obj, dict):
        raise SystemExit(f"error: expected a state dict, found {type(obj).__name__}")
    return obj


def strip_prefix(name):
    for prefix in ("module.", "sam.", "model."):
        if name.startswith(prefix) and name[len(prefix):].startswith(PARTS):
            return name[len(prefix):]
    return name


def convert(state):
    out = {}
    ignored = []
    for name, value in state.items():
        if not torch.is_tensor(value):
            ignored.append(name)
            continue
        key = strip_prefix(name)
        if key in DROP:
            continue
        if not key.startswith(PARTS):
            raise SystemExit(f"error: '{name}' is not a SAM key (expected {', '.join(PARTS)}...)")
        out[key] = value.detach().to(torch.float32).contiguous()
    if not out:
        raise SystemExit("error: no tensors found")
    missing = [p for p in PARTS if not any(k.startswith(p) for k in out)]
    if missing:
        raise SystemExit(f"error: no {', '.join(missing)} weights: not a full SAM checkpoint")
    return out, ignored


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="official SAM / MedSAM .pth")
    ap.add_argument("output", help="converted file for neuroseg")
    a = ap.parse_args()
    state = torch.load(a.input, map_location="cpu", weights_only=True)
    out, ignored = convert(unwrap(state))
    if isinstance(out, OrderedDict):
        out = dict(out)
    torch.save(out, a.output)
    values = sum(v.numel() for v in out.values())
    embed = out.get("image_encoder.pos_embed")
    grid = f", embedding grid {embed.shape[1]}x{embed.shape[2]}, width {embed.shape[3]}" if embed is not None else ""
    print(f"wrote {a.output}: {len(out)} tensors, {values:,} values{grid}"
          + (f" (ignored non-tensor entries: {', '.join(ignored)})" if ignored else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
