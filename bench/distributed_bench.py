#!/usr/bin/env python3
"""Data-parallel training step time on this machine: one process over the global batch vs
`neuroseg launch --nproc N` over the same global batch (Gloo on loopback), same total CPU
threads. Prints seconds per iteration, the all-reduce seconds per iteration (log.csv), the
model's parameter count and the bytes each rank sends per step (ring all-reduce:
2 (N - 1) / N x 4 bytes x parameters), for docs/distributed.md.

usage: bench/distributed_bench.py [--nproc 2] [--threads 2] [--patch 32] [--batch 4] [--iterations 6]
"""
import argparse
import json
import os
import random
import subprocess
import tempfile

import numpy as np
import nibabel as nib
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEUROSEG = os.path.join(ROOT, "build", "neuroseg")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="total CPU threads, split over the ranks")
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128])
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="neuroseg_distbench_")
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(2):
        z, y, x = np.mgrid[:48, :48, :48]
        seg = ((z - 24) ** 2 + (y - 20 - 4 * i) ** 2 + (x - 24) ** 2 < 150).astype(np.uint8)
        img = (seg * 2.0 + rng.normal(0, 0.5, seg.shape)).astype(np.float32)
        pi, ps = os.path.join(tmp, f"i{i}.nii.gz"), os.path.join(tmp, f"s{i}.nii.gz")
        nib.save(nib.Nifti1Image(img, np.eye(4)), pi)
        nib.save(nib.Nifti1Image(seg, np.eye(4)), ps)
        pairs.append([pi, ps])
    cfg = {"data": {"train": pairs[:1], "validation": pairs[1:]},
           "model": {"name": "unet", "args": {"channels": a.channels, "out_channels": 2}},
           "labels": {"background": 0, "fg": 1}, "preprocessing": {"orientation": "RAS"},
           "patch_size": [a.patch] * 3, "batch_size": a.batch, "epochs": 1, "iterations_per_epoch": a.iterations,
           "validation_every": 100, "loss_options": {"batch_dice": False}, "workers": 1, "seed": 1}
    path = os.path.join(tmp, "cfg.json")
    json.dump(cfg, open(path, "w"))
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    rows = {}
    for name, cmd in [("1 process", [NEUROSEG, "train", "--config", path, "-o", os.path.join(tmp, "one"),
                                     "--threads", str(a.threads)]),
                      (f"{a.nproc} ranks", [NEUROSEG, "launch", "--nproc", str(a.nproc), "--master-port",
                                            str(random.randint(40000, 49000)), "--", "train", "--config", path, "-o",
                                            os.path.join(tmp, "many"), "--threads", str(max(1, a.threads // a.nproc))])]:
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        log = open(os.path.join(tmp, "one" if name == "1 process" else "many", "log.csv")).read().splitlines()
        hdr, row = log[0].split(","), log[1].split(",")
        rows[name] = (float(row[hdr.index("seconds")]) / a.iterations, float(row[hdr.index("allreduce_seconds")]) / a.iterations)
    params = sum(v.numel() for v in torch.load(os.path.join(tmp, "one", "checkpoint_last.pt"), weights_only=False)["state_dict"].values())
    sent = 2 * (a.nproc - 1) / a.nproc * 4 * params
    print(f"U-Net channels {a.channels}, {params} parameters, patch {a.patch}^3, global batch {a.batch}, {a.threads} threads in all")
    print(f"{'run':12} {'s/iteration':>12} {'all-reduce s/it':>16}")
    for name, (it, red) in rows.items():
        print(f"{name:12} {it:>12.3f} {red:>16.4f}")
    print(f"bytes sent per rank per step (ring all-reduce): {sent / 1e6:.2f} MB; speed-up {rows['1 process'][0] / rows[f'{a.nproc} ranks'][0]:.2f}")


if __name__ == "__main__":
    main()
