#!/usr/bin/env python3
"""Domain-shift experiment for docs/adaptation.md, end to end through the CLI on generated
phantoms: a U-Net trained on a "source site" (bright spheres of random size and place,
mild noise) is applied to a "target site" (lower contrast, a strong multiplicative bias
field, more noise); then `neuroseg adapt` (none / tent / entropy-kl with the source model's
own per-patch prior / entropy-kl with a JSON prior), `neuroseg finetune` and `neuroseg train`
on the target labels (upper bounds). Prints Dice on held-out target cases.

usage: scripts/adaptation_experiment.py [--out DIR] [--epochs 8] [--iterations 60]
"""
import argparse
import json
import os
import subprocess

import numpy as np
import nibabel as nib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEUROSEG = os.path.join(ROOT, "build", "neuroseg")


def phantom(path_img, path_seg, rng, target):
    shape = (24, 32, 32)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    seg = np.zeros(shape, np.uint8)
    for _ in range(rng.integers(1, 3)):
        c = rng.uniform([6, 8, 8], [18, 24, 24])
        r = rng.uniform(3, 6)
        seg |= (((z - c[0]) * 1.2) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r).astype(np.uint8)
    if target:  # lower contrast, strong bias field, more noise
        bias = np.exp(0.6 * np.sin(y / 9.0 + rng.uniform(0, 6)) * np.cos(x / 11.0))
        img = (1.0 + 0.7 * seg) * bias + rng.normal(0, 0.35, shape)
    else:
        img = 1.0 + 1.5 * seg + rng.normal(0, 0.15, shape)
    aff = np.diag([1.2, 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(img.astype(np.float32), aff), path_img)
    nib.save(nib.Nifti1Image(seg, aff), path_seg)
    return [path_img, path_seg]


def make_sites(out):
    """8 source cases, 6 labelled target cases for training, 6 held-out target cases (seed 0)."""
    rng = np.random.default_rng(0)
    dirs = {k: os.path.join(out, k) for k in ["source", "target_train", "target_test", "labels"]}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    def site(folder, prefix, n, target):
        return [phantom(os.path.join(dirs[folder], f"{prefix}{i}.nii.gz"), os.path.join(dirs["labels"], f"{prefix}{i}.nii.gz"),
                        rng, target) for i in range(n)]
    return dirs, site("source", "s", 8, False), site("target_train", "t", 6, True), site("target_test", "u", 6, True)


def sh(args):
    r = subprocess.run([NEUROSEG] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"neuroseg {' '.join(args[:2])} failed: {r.stderr[-500:]}")
    return r


def dice_of(model, cases, out):
    sh(["segment", "-i", os.path.dirname(cases[0][0]), "-o", out, "--model", model, "--device", "cpu", "--no-qc"])
    d = []
    for img, seg in cases:
        name = os.path.basename(img).replace(".nii.gz", "")
        p = np.asanyarray(nib.load(os.path.join(out, name + "_seg.nii.gz")).dataobj) > 0
        g = np.asanyarray(nib.load(seg).dataobj) > 0
        d.append(2 * (p & g).sum() / max(1, p.sum() + g.sum()))
    return float(np.mean(d))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/neuroseg_adaptation")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=60)
    a = ap.parse_args()
    dirs, src, tgt, test = make_sites(a.out)
    cfg = lambda pairs: {"data": {"train": pairs}, "model": {"name": "unet", "args": {"channels": [8, 16, 32], "out_channels": 2}},
                         "labels": {"background": 0, "sphere": 1}, "preprocessing": {"orientation": "RAS"},
                         "patch_size": [16, 16, 16], "batch_size": 2, "epochs": a.epochs, "iterations_per_epoch": 20,
                         "validation_every": a.epochs, "optimizer": {"name": "adamw", "lr": 0.003}, "workers": 1, "seed": 1}
    for name, pairs in [("source_cfg.json", src), ("target_cfg.json", tgt)]:
        json.dump(cfg(pairs), open(os.path.join(a.out, name), "w"))
    sh(["train", "--config", os.path.join(a.out, "source_cfg.json"), "-o", os.path.join(a.out, "source_run")])
    source = os.path.join(a.out, "source_run", "checkpoint_last.pt")
    rows = [("source model on source cases", dice_of(source, src, os.path.join(a.out, "seg_src"))),
            ("source model on target (no adaptation)", dice_of(source, test, os.path.join(a.out, "seg_none")))]
    frac = float(np.mean([(np.asanyarray(nib.load(s).dataobj) > 0).mean() for _, s in tgt]))
    json.dump({"fractions": {"background": 1 - frac, "sphere": frac}}, open(os.path.join(a.out, "prior.json"), "w"))
    for label, extra in [("tent", ["--method", "tent"]),
                         ("entropy-kl, prior = source predictions x 1.2", ["--method", "entropy-kl", "--overestimate", "1.2"]),
                         ("entropy-kl, prior = JSON sphere fraction x 1.5", ["--method", "entropy-kl", "--prior",
                                                                             os.path.join(a.out, "prior.json"), "--overestimate", "1.5"])]:
        out = os.path.join(a.out, label.split(",")[0].replace(" ", "_") + str(len(rows)) + ".pt")
        sh(["adapt", "--model", source, "-i", dirs["target_train"], "-o", out, "--iterations", str(a.iterations), "--lr", "3e-4",
            "--batch", "2"] + extra)
        rows.append((f"adapt {label}", dice_of(out, test, os.path.join(a.out, "seg_" + str(len(rows))))))
    sh(["finetune", "--model", source, "--adapter", "cp-lora", "--rank", "8", "--alpha", "16", "--config",
        os.path.join(a.out, "target_cfg.json"), "-o", os.path.join(a.out, "finetune_run")])
    rows.append(("finetune cp-lora r8 with target labels", dice_of(os.path.join(a.out, "finetune_run", "checkpoint_last.pt"), test,
                                                                   os.path.join(a.out, "seg_ft"))))
    sh(["train", "--config", os.path.join(a.out, "target_cfg.json"), "-o", os.path.join(a.out, "target_run")])
    rows.append(("trained on target labels (upper bound)", dice_of(os.path.join(a.out, "target_run", "checkpoint_last.pt"), test,
                                                                   os.path.join(a.out, "seg_tgt"))))
    print(f"{'setting':52} {'Dice (6 held-out target cases)':>30}")
    for name, d in rows:
        print(f"{name:52} {d:>30.4f}")


if __name__ == "__main__":
    main()
