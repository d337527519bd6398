#!/usr/bin/env python3
"""SAM ViT-B image-encoder throughput: neuroseg (bench/neuroseg_bench_sam) beside the
reference PyTorch module (PyPI segment-anything's ImageEncoderViT, eager) on the same
threads, one JSON line each.

usage: sam_bench.py BUILD_DIR [--sizes 1024 512] [--threads 2] [--repeats 2] [--device cpu]
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from functools import partial

import torch


def reference_encoder(size):
    if "segment_anything" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        if spec is None:
            return None
        pkg = types.ModuleType("segment_anything")  # skip the package __init__ (it needs torchvision)
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = pkg
    from segment_anything.modeling import ImageEncoderViT
    return ImageEncoderViT(depth=12, embed_dim=768, img_size=size, mlp_ratio=4,
                           norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=12, patch_size=16,
                           qkv_bias=True, use_rel_pos=True, global_attn_indexes=[2, 5, 8, 11], window_size=14,
                           out_chans=256)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 512])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for size in a.sizes:
        out = subprocess.run([os.path.join(a.build, "bench", "neuroseg_bench_sam"), "--size", str(size), "--threads",
                              str(a.threads), "--repeats", str(a.repeats), "--device", a.device],
                             check=True, capture_output=True, text=True).stdout.strip()
        print(out, flush=True)
        enc = reference_encoder(size)
        if enc is None:
            print(json.dumps({"model": "segment_anything ImageEncoderViT", "skipped": "segment-anything not installed"}))
            continue
        enc = enc.eval().to(a.device)
        x = torch.randn(1, 3, size, size, device=a.device)
        with torch.inference_mode():
            enc(x)
            if a.device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(a.repeats):
                enc(x)
            if a.device != "cpu":
                torch.cuda.synchronize()
        s = (time.perf_counter() - t0) / a.repeats
        print(json.dumps({"model": "segment_anything ImageEncoderViT (eager)", "size": size, "device": a.device,
                          "threads": a.threads, "seconds_per_batch": s, "images_per_s": 1 / s}), flush=True)


if __name__ == "__main__":
    main()
