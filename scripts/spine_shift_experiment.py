#!/usr/bin/env python3
"""Spine T1 -> T2 domain-shift experiment for docs/adaptation.md, end to end through the CLI
on `neuroseg synth spine` phantoms (SPIDER layout; T1 and T2 of one case share the anatomy):

- a 3D U-Net trained on the T1 images of cases 1-8 (classes: vertebra = SPIDER 1-25 and
  101-125, disc = 201-225, canal = 100; mapped here);
- scored (Dice per class on the original 3.3 x 0.6 x 0.6 mm grid) on the T2 images of
  held-out cases 15-20: without adaptation, after `neuroseg adapt` (tent; entropy-kl with a
  class-fraction prior JSON taken from the source labels, i.e. anatomical knowledge, no target
  label; entropy-kl with the source model's own predictions as prior) on the unlabelled T2
  images of cases 9-14, and the upper bounds: the source model fine-tuned (every weight) and a
  model trained from scratch on the T2 labels of cases 1-8;
- entropy-kl with the authors' per-slice priors: slice tags (which slices of each adaptation
  image hold which structure; weak supervision read off the masks) along each index axis;
- a source model trained with random Bézier intensity curves (cross-modality style
  augmentation), on T2 as it is and after entropy-kl;
- a control shift without contrast inversion (the T1 images of cases 9-20 with a strong
  multiplicative bias field, gamma 0.6 and 6 % noise), adapted and scored the same way.

usage: scripts/spine_shift_experiment.py [--out DIR] [--epochs 30] [--iterations 120] [--lr 3e-4]
"""
import argparse
import json
import os
import shutil
import subprocess
import time

import numpy as np
import nibabel as nib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEUROSEG = os.path.join(ROOT, "build", "neuroseg")
CLASSES = {"background": 0, "vertebra": 1, "disc": 2, "canal": 3}
SOURCE, ADAPT, TEST = range(1, 9), range(9, 15), range(15, 21)


def sh(args):
    t0 = time.time()
    r = subprocess.run([NEUROSEG] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"neuroseg {' '.join(args[:2])} failed: {r.stderr[-800:]}")
    print(f"  neuroseg {' '.join(args[:1])} ... {time.time() - t0:.0f} s", flush=True)
    return r


def spider_to_classes(mask):
    """SPIDER labels -> 0 background, 1 vertebra (complete or cut), 2 disc, 3 canal."""
    out = np.zeros(mask.shape, np.uint8)
    out[((mask >= 1) & (mask < 100)) | ((mask > 100) & (mask < 200))] = 1
    out[mask > 200] = 2
    out[mask == 100] = 3
    return out


def prepare(out):
    data = os.path.join(out, "data")
    if not os.path.exists(os.path.join(data, "synth_spine.csv")):
        sh(["synth", "spine", "-o", data, "--n", "20", "--seed", "0", "--contrast", "both"])
    folders = {k: os.path.join(out, k) for k in ["labels", "t1_source", "t2_source", "t2_adapt", "t2_test", "t1_test"]}
    for f in folders.values():
        os.makedirs(f, exist_ok=True)
    for case in range(1, 21):
        lab = os.path.join(folders["labels"], f"{case}.nii.gz")
        if not os.path.exists(lab):  # the masks as NIfTI (same grid), mapped to the 3 classes
            tmp = os.path.join(folders["labels"], f"{case}_spider.nii.gz")
            sh(["convert", os.path.join(data, "masks", f"{case}_t1.mha"), tmp])
            m = nib.load(tmp)
            nib.save(nib.Nifti1Image(spider_to_classes(np.asanyarray(m.dataobj)), m.affine, m.header), lab)
            os.remove(tmp)
        for contrast, group, cases in [("t1", "t1_source", SOURCE), ("t2", "t2_source", SOURCE), ("t2", "t2_adapt", ADAPT),
                                       ("t2", "t2_test", TEST), ("t1", "t1_test", TEST)]:
            if case in cases:
                dst = os.path.join(folders[group], f"{case}_{contrast}.mha")
                if not os.path.exists(dst):
                    shutil.copy(os.path.join(data, "images", f"{case}_{contrast}.mha"), dst)
    # Control: T1 under a shift that keeps the contrast order (bias field, gamma, noise).
    for group, cases in [("t1s_adapt", ADAPT), ("t1s_test", TEST)]:
        folders[group] = os.path.join(out, group)
        os.makedirs(folders[group], exist_ok=True)
        for case in cases:
            dst = os.path.join(folders[group], f"{case}_t1s.nii.gz")
            if os.path.exists(dst):
                continue
            tmp = os.path.join(folders[group], f"{case}_tmp.nii.gz")
            sh(["convert", os.path.join(data, "images", f"{case}_t1.mha"), tmp])
            im = nib.load(tmp)
            x = np.asanyarray(im.dataobj).astype(np.float32)
            rng = np.random.default_rng(case)
            i, j, k = np.meshgrid(*[np.arange(n) for n in x.shape], indexing="ij")
            bias = np.exp(0.5 * np.sin(j / 90.0 + rng.uniform(0, 6)) * np.cos(k / 110.0 + rng.uniform(0, 6)))
            m = x.max()
            y = m * (x / m) ** 0.6 * bias + rng.normal(0, 0.06 * m, x.shape)
            nib.save(nib.Nifti1Image(np.clip(y, 0, None).astype(np.float32), im.affine, im.header), dst)
            os.remove(tmp)
    return folders


def tagged_prior(folders, axis, path):
    """The authors' per-slice prior (their csv column `dumbpredwtags`) along index axis `axis`
    ("i", "j" or "k"): fractions = the mean share of a slice that holds the class, over the
    source label slices holding it (anatomy); tags = which slices of each unlabelled adaptation
    image hold each class (image-level weak supervision, here read off the masks)."""
    ax = "ijk".index(axis)
    other = tuple(a for a in range(3) if a != ax)

    def per_slice(g):
        n = np.prod([g.shape[a] for a in other])
        return {name: (g == k).sum(axis=other) / n for name, k in CLASSES.items() if k}
    shares = {name: [] for name, k in CLASSES.items() if k}
    for c in SOURCE:
        for name, f in per_slice(np.asanyarray(nib.load(os.path.join(folders["labels"], f"{c}.nii.gz")).dataobj)).items():
            shares[name] += list(f[f > 0])
    fractions = {name: float(np.mean(v)) for name, v in shares.items()}
    fractions["background"] = 1.0 - sum(fractions.values())
    cases = {}
    for c in ADAPT:
        g = np.asanyarray(nib.load(os.path.join(folders["labels"], f"{c}.nii.gz")).dataobj)
        cases[f"{c}_t2.mha"] = {name: [int(x > 0) for x in f] for name, f in per_slice(g).items()}
    json.dump({"fractions": fractions, "slice_tags": {"axis": axis, "cases": cases}}, open(path, "w"))
    return path


def pairs(folders, group, contrast, cases):
    return [[os.path.join(folders[group], f"{c}_{contrast}.mha"), os.path.join(folders["labels"], f"{c}.nii.gz")] for c in cases]


def dice_of(model, folders, group, contrast, out):
    """Mean over test cases of the Dice of each class, on the original grid."""
    sh(["segment", "-i", folders[group], "-o", out, "--model", model, "--device", "cpu", "--no-qc"])
    per_class = {k: [] for k in ["vertebra", "disc", "canal"]}
    for case in TEST:
        p = np.asanyarray(nib.load(os.path.join(out, f"{case}_{contrast}_seg.nii.gz")).dataobj)
        g = np.asanyarray(nib.load(os.path.join(folders["labels"], f"{case}.nii.gz")).dataobj)
        for name, k in CLASSES.items():
            if k:
                per_class[name].append(2 * ((p == k) & (g == k)).sum() / max(1, (p == k).sum() + (g == k).sum()))
    d = {k: float(np.mean(v)) for k, v in per_class.items()}
    d["mean"] = float(np.mean(list(d.values())))
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/neuroseg_spine_shift")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--iterations", type=int, default=120, help="adaptation steps")
    ap.add_argument("--lr", default="3e-4", help="adaptation learning rate (some variants set their own)")
    a = ap.parse_args()
    t_start = time.time()
    os.makedirs(a.out, exist_ok=True)
    folders = prepare(a.out)

    def cfg(train, epochs):
        return {"data": {"train": train, "validation": train[:2]},
                "model": {"name": "unet", "args": {"channels": [8, 16, 32], "out_channels": 4}},
                "labels": CLASSES, "preprocessing": {"target_spacing": [3.3, 1.8, 1.8]},
                "patch_size": [64, 64, 16], "batch_size": 2, "epochs": epochs, "iterations_per_epoch": 20,
                "validation_every": epochs, "optimizer": {"name": "adamw", "lr": 0.003}, "workers": 1, "seed": 1}
    json.dump(cfg(pairs(folders, "t1_source", "t1", SOURCE), a.epochs), open(os.path.join(a.out, "source_cfg.json"), "w"))
    json.dump(cfg(pairs(folders, "t2_source", "t2", SOURCE), a.epochs), open(os.path.join(a.out, "t2_cfg.json"), "w"))
    json.dump(cfg(pairs(folders, "t2_source", "t2", SOURCE), max(1, a.epochs // 3)), open(os.path.join(a.out, "t2_ft_cfg.json"), "w"))

    source = os.path.join(a.out, "source_run", "checkpoint_last.pt")
    if not os.path.exists(source):
        sh(["train", "--config", os.path.join(a.out, "source_cfg.json"), "-o", os.path.join(a.out, "source_run")])
    rows = [("source model on T1 test cases (no shift)", dice_of(source, folders, "t1_test", "t1", os.path.join(a.out, "seg_t1"))),
            ("source model on T2 (no adaptation)", dice_of(source, folders, "t2_test", "t2", os.path.join(a.out, "seg_none")))]

    # Prior from anatomy: the class fractions of the source (T1) label volumes; no target label.
    fr = np.zeros(4)
    for c in SOURCE:
        g = np.asanyarray(nib.load(os.path.join(folders["labels"], f"{c}.nii.gz")).dataobj)
        fr += np.bincount(g.ravel(), minlength=4)[:4] / g.size
    fr /= len(SOURCE)
    prior = os.path.join(a.out, "prior.json")
    json.dump({"fractions": {name: float(fr[k]) for name, k in CLASSES.items()}}, open(prior, "w"))
    print("prior class fractions:", {name: round(float(fr[k]), 4) for name, k in CLASSES.items()})

    def common(extra):  # the run's defaults, unless the variant sets its own
        out = ["--seed", "0"]
        for key, value in [("--iterations", str(a.iterations)), ("--batch", "2")]:
            if key not in extra:
                out += [key, value]
        return out + extra
    lr = ["--lr", a.lr]
    gentle = ["--method", "entropy-kl", "--overestimate", "1.2", "--entropy-weights", "0.1", "0.1", "0.1", "0.1", "--lr", "1e-4"]
    patches = ["--patch", "64", "64", "16"]  # random patches (the JSON prior's default is whole volumes)
    whole = ["--method", "entropy-kl", "--prior", prior, "--batch", "1", "--lr", "1e-4", "--iterations", "200"]
    # The authors' headline setting: per-slice priors with slice tags (see tagged_prior), along
    # each index axis: i sagittal, j coronal, k axial (this phantom is 17 x 448 x 448 RPI).
    tag_priors = {axis: tagged_prior(folders, axis, os.path.join(a.out, f"prior_tags_{axis}.json")) for axis in "ijk"}

    def tagged(axis):
        return ["--method", "entropy-kl", "--prior", tag_priors[axis], "--overestimate", "1.8", "--size-power", "3",
                "--entropy-weights", "0.1", "0.1", "0.1", "0.1", "--batch", "1", "--lr", "1e-4", "--iterations", "200"]
    slice_names = {"i": "sagittal", "j": "coronal", "k": "axial"}
    variants = [("tent", ["--method", "tent"] + lr),
                ("entropy-kl, prior JSON (source label fractions), random patches", ["--method", "entropy-kl", "--prior", prior] + patches + lr),
                ("entropy-kl, prior JSON x 1.3, random patches", ["--method", "entropy-kl", "--prior", prior, "--overestimate", "1.3"] + patches + lr),
                ("entropy-kl, prior JSON, random patches, lr 1e-5", ["--method", "entropy-kl", "--prior", prior, "--lr", "1e-5"] + patches),
                ("entropy-kl, prior JSON, whole volumes", whole),
                ("entropy-kl, prior JSON x 1.2, whole volumes", whole + ["--overestimate", "1.2"]),
                ("entropy-kl, prior JSON x 1.8, whole volumes", whole + ["--overestimate", "1.8"]),
                ("entropy-kl, prior = source predictions x 1.2", ["--method", "entropy-kl", "--overestimate", "1.2"] + lr),
                ("entropy-kl, source predictions x 1.2, weights 0.1 x 4, lr 1e-4", gentle),
                ("entropy-kl, source predictions x 1.2, lr 1e-5", ["--method", "entropy-kl", "--overestimate", "1.2", "--lr", "1e-5"])]
    # τ̂ with size power 3 (closer to the hard class ratio; docs/adaptation.md) and equal entropy weights.
    sharp = whole + ["--overestimate", "1.8", "--size-power", "3", "--entropy-weights", "0.1", "0.1", "0.1", "0.1"]
    sharp_name = "entropy-kl, prior JSON x 1.8, whole volumes, size power 3, weights 0.1 x 4"
    variants += [(sharp_name, sharp)]
    variants += [(f"entropy-kl, slice tags along {axis} ({slice_names[axis]}) x 1.8, size power 3, weights 0.1 x 4", tagged(axis))
                 for axis in "ijk"]
    for i, (label, extra) in enumerate(variants):
        ckpt = os.path.join(a.out, f"adapt{i}.pt")
        sh(["adapt", "--model", source, "-i", folders["t2_adapt"], "-o", ckpt] + common(extra))
        rows.append((f"adapt {label}", dice_of(ckpt, folders, "t2_test", "t2", os.path.join(a.out, f"seg_adapt{i}"))))

    control = [("control (T1 + bias, gamma, noise): no adaptation", dice_of(source, folders, "t1s_test", "t1s", os.path.join(a.out, "seg_c_none")))]
    for i, (label, extra) in enumerate([("tent", ["--method", "tent"] + lr),
                                        ("entropy-kl, prior = source predictions x 1.2", ["--method", "entropy-kl", "--overestimate", "1.2"] + lr),
                                        ("entropy-kl, source predictions x 1.2, weights 0.1 x 4, lr 1e-4", gentle),
                                        (sharp_name, sharp)]):
        ckpt = os.path.join(a.out, f"control{i}.pt")
        sh(["adapt", "--model", source, "-i", folders["t1s_adapt"], "-o", ckpt] + common(extra))
        control.append((f"control: adapt {label}", dice_of(ckpt, folders, "t1s_test", "t1s", os.path.join(a.out, f"seg_c{i}"))))

    ft = os.path.join(a.out, "finetune_run")
    sh(["finetune", "--model", source, "--adapter", "full", "--config", os.path.join(a.out, "t2_ft_cfg.json"), "-o", ft])
    rows.append((f"finetune (every weight, {max(1, a.epochs // 3)} epochs) on T2 labels of cases 1-8",
                 dice_of(os.path.join(ft, "checkpoint_last.pt"), folders, "t2_test", "t2", os.path.join(a.out, "seg_ft"))))
    sh(["train", "--config", os.path.join(a.out, "t2_cfg.json"), "-o", os.path.join(a.out, "t2_run")])
    rows.append(("trained on T2 labels of cases 1-8 (upper bound)",
                 dice_of(os.path.join(a.out, "t2_run", "checkpoint_last.pt"), folders, "t2_test", "t2", os.path.join(a.out, "seg_t2"))))

    # A source model trained with cross-modality style augmentation (random Bézier intensity
    # curves, half of them decreasing; config augmentation.intensity_curve), then adapted.
    aug_cfg = cfg(pairs(folders, "t1_source", "t1", SOURCE), a.epochs)
    aug_cfg["augmentation"] = {"intensity_curve": 0.5}
    json.dump(aug_cfg, open(os.path.join(a.out, "source_aug_cfg.json"), "w"))
    aug = os.path.join(a.out, "source_aug_run", "checkpoint_last.pt")
    if not os.path.exists(aug):
        sh(["train", "--config", os.path.join(a.out, "source_aug_cfg.json"), "-o", os.path.join(a.out, "source_aug_run")])
    augmented = [("source trained with intensity curves: on T1 test cases", dice_of(aug, folders, "t1_test", "t1", os.path.join(a.out, "seg_aug_t1"))),
                 ("source trained with intensity curves: on T2, no adaptation", dice_of(aug, folders, "t2_test", "t2", os.path.join(a.out, "seg_aug_none")))]
    for i, (label, extra) in enumerate([("entropy-kl, prior JSON x 1.2, whole volumes", whole + ["--overestimate", "1.2"]),
                                        ("entropy-kl, prior JSON x 1.8, whole volumes", whole + ["--overestimate", "1.8"]),
                                        (sharp_name, sharp)] +
                                       [(f"entropy-kl, slice tags along {axis} ({slice_names[axis]}) x 1.8, size power 3, "
                                         "weights 0.1 x 4", tagged(axis)) for axis in "ijk"]):
        ckpt = os.path.join(a.out, f"aug_adapt{i}.pt")
        sh(["adapt", "--model", aug, "-i", folders["t2_adapt"], "-o", ckpt] + common(extra))
        augmented.append((f"source trained with intensity curves: adapt {label}", dice_of(ckpt, folders, "t2_test", "t2", os.path.join(a.out, f"seg_aug{i}"))))

    rows += augmented + control
    print(f"\n{'setting':66} {'vertebra':>8} {'disc':>6} {'canal':>6} {'mean':>6}")
    for name, d in rows:
        print(f"{name:66} {d['vertebra']:>8.3f} {d['disc']:>6.3f} {d['canal']:>6.3f} {d['mean']:>6.3f}")
    print(f"total {time.time() - t_start:.0f} s")
    json.dump(rows, open(os.path.join(a.out, "results.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
