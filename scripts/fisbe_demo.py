#!/usr/bin/env python3
"""End to end on generated FISBe-like data: synth -> train -> segment --instances neurons ->
evaluate --benchmark fisbe, all through the neuroseg CLI.

1. `neuroseg synth fisbe`: a training set and a test set (completely labelled) plus a partly
   labelled test set, each sample <name>.zarr/volumes/{raw,gt_instances};
2. the foreground label of each training sample (any GT channel > 0) is written beside it as
   <name>.zarr/volumes/fg (Python zarr: the only step outside neuroseg);
3. `neuroseg train`: a small 3D U-Net on the three colour channels, foreground vs background;
4. `neuroseg segment --instances neurons`: foreground, then neurons by colour and connectivity
   (pipelines/neuron_instances.h), written as <name>.zarr/volumes/pred_instances;
5. `neuroseg evaluate --benchmark fisbe` with the split file: S, avF1, C, clDice_TP, tp, FS, FM.

usage: scripts/fisbe_demo.py [--work DIR] [--neuroseg build/neuroseg] [--train 6] [--test 3]
                             [--shape 96 192 192] [--epochs 12] [--iterations 40] [--threads 2]
                             [--patch 32 64 64] [--channels 8 16 32 64]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import zarr
from numcodecs import Blosc


def sh(*cmd):
    print("$ " + " ".join(map(str, cmd)), flush=True)
    t0 = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True)
    return time.perf_counter() - t0


def samples(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".zarr"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--work", default="/tmp/neuroseg_fisbe_demo")
    ap.add_argument("--neuroseg", default=os.path.join(root, "build", "neuroseg"))
    ap.add_argument("--train", type=int, default=6)
    ap.add_argument("--test", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 192, 192])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64])
    ap.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32, 64])
    a = ap.parse_args()
    ns, w = a.neuroseg, a.work
    os.makedirs(w, exist_ok=True)
    shape = list(map(str, a.shape))
    sh(ns, "synth", "fisbe", "-o", f"{w}/train", "--n", a.train, "--seed", 11, "--shape", *shape)
    sh(ns, "synth", "fisbe", "-o", f"{w}/test", "--n", a.test, "--seed", 12, "--shape", *shape)
    sh(ns, "synth", "fisbe", "-o", f"{w}/test_partly", "--n", a.test, "--seed", 13, "--shape", *shape, "--partly")

    pairs = []
    for s in samples(f"{w}/train"):
        root_group = zarr.open_group(s, mode="a")
        fg = (np.asarray(root_group["volumes/gt_instances"]) > 0).any(axis=0).astype(np.uint8)
        root_group.create_dataset("volumes/fg", data=fg, chunks=(64, 64, 64), compressor=Blosc("lz4", 5), overwrite=True)
        # Same geometry as the raw image (neuroseg keeps it in .zattrs: 0.44 um voxels).
        attrs = dict(root_group["volumes/raw"].attrs.asdict())
        attrs.pop("channel_axis", None)
        root_group["volumes/fg"].attrs.update(attrs)
        pairs.append([f"{s}/volumes/raw", f"{s}/volumes/fg"])
    cfg = {
        "data": {"train": pairs[1:], "validation": pairs[:1]},
        "model": {"name": "unet", "args": {"in_channels": 3, "out_channels": 2, "channels": a.channels}},
        "labels": {"background": 0, "neuron": 1},
        "preprocessing": {"normalization": {"scheme": "percentile", "low": 0, "high": 1500, "mean": 300, "std": 300}},
        "patch_size": a.patch,
        "batch_size": 2,
        "epochs": a.epochs,
        "iterations_per_epoch": a.iterations,
        "foreground_fraction": 0.6,
        "optimizer": {"name": "adamw", "lr": 2e-3},
        "loss": "dice_ce",
        "validation_every": 4,
        "seed": 0,
    }
    with open(f"{w}/train.json", "w") as f:
        json.dump(cfg, f, indent=2)
    t_train = sh(ns, "train", "--config", f"{w}/train.json", "-o", f"{w}/run", "--threads", a.threads)
    results = {}
    for name in ("test", "test_partly"):
        t_seg = sh(ns, "segment", "-i", f"{w}/{name}", "-o", f"{w}/pred_{name}", "--model", f"{w}/run/checkpoint_best.pt",
                   "--instances", "neurons", "--no-qc")
        sh(ns, "evaluate", "--benchmark", "fisbe", "-p", f"{w}/pred_{name}", "--gt", f"{w}/{name}", "--split-file",
           f"{w}/{name}/sample_list_per_split.txt", "-o", f"{w}/eval_{name}")
        with open(f"{w}/eval_{name}/results.json") as f:
            results[name] = json.load(f)["sets"]
        results[name]["segment_seconds"] = t_seg
    results["train_seconds"] = t_train
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
