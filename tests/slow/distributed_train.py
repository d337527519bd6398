#!/usr/bin/env python3
"""Data-parallel training on c10d/Gloo over loopback (`neuroseg launch --nproc 2 -- train`):
the final weights equal a single-process run over the same global batch to 1e-6 (instance
norm, per-sample Dice: losses that are means over samples), and a run resumed with another
world size (2 ranks for epoch 1, then 1 process) ends with the same weights too. Only rank 0
writes files. Bad rendezvous variables fail with a one-line message.

usage: distributed_train.py path/to/neuroseg [path/to/neuroseg_bench_ops]
"""
import json
import os
import random
import shutil
import sys
import tempfile

import numpy as np
import nibabel as nib
import torch

from _check import check, finish, neuroseg


def ball(path_img, path_seg, centre, seed):
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:12, :16, :16]
    seg = ((z - 6) ** 2 + (y - centre) ** 2 + (x - 8) ** 2 < 16).astype(np.uint8)
    img = (seg * 2.0 + rng.normal(0, 0.3, seg.shape)).astype(np.float32)
    nib.save(nib.Nifti1Image(img, np.diag([1.2, 1.0, 1.0, 1.0])), path_img)
    nib.save(nib.Nifti1Image(seg, np.diag([1.2, 1.0, 1.0, 1.0])), path_seg)


def weights(ckpt):
    sd = torch.load(ckpt, weights_only=False)["state_dict"]
    return {k: v.double() for k, v in sd.items()}


def run(args, env=None):
    return neuroseg(args, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


tmp = tempfile.mkdtemp(prefix="neuroseg_dist_")
try:
    pairs = []
    for i, (c, s) in enumerate([(6, 1), (9, 2), (7, 3)]):
        img, seg = os.path.join(tmp, f"c{i}_img.nii.gz"), os.path.join(tmp, f"c{i}_seg.nii.gz")
        ball(img, seg, c, s)
        pairs.append([img, seg])
    config = {"data": {"train": pairs},
              "model": {"name": "unet", "args": {"channels": [4, 8], "out_channels": 2}},
              "labels": {"background": 0, "ball": 1},
              "preprocessing": {"orientation": "RAS"},
              "patch_size": [8, 8, 8], "batch_size": 4, "epochs": 2, "iterations_per_epoch": 3,
              "validation_every": 1, "optimizer": {"name": "sgd", "lr": 0.02},
              "loss": "dice_ce", "loss_options": {"batch_dice": False},
              "augmentation": {"probability": 0.5, "elastic": 1.0}, "workers": 1, "seed": 5}
    cfg = os.path.join(tmp, "config.json")
    json.dump(config, open(cfg, "w"))
    port = str(random.randint(30000, 39000))

    single = run(["train", "--config", cfg, "-o", os.path.join(tmp, "single"), "--threads", "1"])
    check(single.returncode == 0, "single-process training runs" + ("" if single.returncode == 0 else ": " + single.stderr[-400:]))
    dist = run(["launch", "--nproc", "2", "--master-port", port, "--",
                "train", "--config", cfg, "-o", os.path.join(tmp, "dist"), "--threads", "1"])
    check(dist.returncode == 0, "2 ranks (Gloo, loopback) train" + ("" if dist.returncode == 0 else ": " + dist.stderr[-600:]))
    if single.returncode == 0 and dist.returncode == 0:
        a, b = weights(os.path.join(tmp, "single", "checkpoint_last.pt")), weights(os.path.join(tmp, "dist", "checkpoint_last.pt"))
        diff = max((a[k] - b[k]).abs().max().item() for k in a)
        check(set(a) == set(b) and diff <= 1e-6, f"2-rank weights equal the single process over the global batch (max diff {diff:.2e})")
        la = open(os.path.join(tmp, "single", "log.csv")).read().splitlines()
        lb = open(os.path.join(tmp, "dist", "log.csv")).read().splitlines()
        check(len(la) == len(lb) == 3, "rank 0 alone wrote the log (one header, one row per epoch)")
        va = [float(r.split(",")[3]) for r in la[1:]]
        vb = [float(r.split(",")[3]) for r in lb[1:]]
        check(max(abs(x - y) for x, y in zip(va, vb)) < 1e-5, f"validation Dice gathered from both ranks {vb} equals {va}")
        # Resume with another world size: epoch 1 on 2 ranks, epoch 2 in one process.
        mixed = os.path.join(tmp, "mixed")
        r1 = run(["launch", "--nproc", "2", "--master-port", str(int(port) + 1), "--",
                  "train", "--config", cfg, "-o", mixed, "--threads", "1", "--stop-after-epoch", "1"])
        r2 = run(["train", "--config", cfg, "-o", mixed, "--threads", "1", "--resume"])
        check(r1.returncode == 0 and r2.returncode == 0, "2 ranks then --resume in 1 process" + ("" if r2.returncode == 0 else r1.stderr[-300:] + r2.stderr[-300:]))
        if r2.returncode == 0:
            c = weights(os.path.join(mixed, "checkpoint_last.pt"))
            diff = max((a[k] - c[k]).abs().max().item() for k in a)
            check(diff <= 1e-6, f"resumed with another world size: weights equal the straight run (max diff {diff:.2e})")
    # A global batch smaller than the world, and malformed rendezvous variables.
    bad = run(["train", "--config", cfg, "-o", os.path.join(tmp, "bad")], {"RANK": "0", "WORLD_SIZE": "two"})
    check(bad.returncode != 0 and "WORLD_SIZE" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1,
          "malformed WORLD_SIZE: one-line error: " + bad.stderr.strip()[:200])
    config["batch_size"] = 1
    json.dump(config, open(cfg, "w"))
    small = run(["launch", "--nproc", "2", "--master-port", str(int(port) + 2), "--", "train", "--config", cfg, "-o",
                 os.path.join(tmp, "small")])
    check(small.returncode != 0 and "batch_size" in small.stderr, "a global batch smaller than the ranks is refused")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(finish())
