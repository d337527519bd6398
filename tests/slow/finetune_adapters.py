#!/usr/bin/env python3
"""`neuroseg finetune` (and `neuroseg adapt`, source-free) with every adapter kind, reproducible for a seed, on a "new site" (inverted contrast) after a base
training, then `segment --adapter` / `--adapter-csv`: adapter files are kilobytes, the base
checkpoint is untouched, segmenting with base + adapter equals segmenting with the merged
checkpoint, a per-case CSV applies adapters case by case, and an adapter made for other base
weights, an unknown adapter kind or target globs that match nothing fail with one line.

usage: finetune_adapters.py path/to/neuroseg [path/to/neuroseg_bench_ops]
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import nibabel as nib

from _check import check, finish, neuroseg

os.environ["OMP_NUM_THREADS"] = "1"


def ball(folder, name, centre, seed, inverted):
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:12, :16, :16]
    seg = ((z - 6) ** 2 + (y - centre) ** 2 + (x - 8) ** 2 < 16).astype(np.uint8)
    img = ((3.0 - 2.0 * seg) if inverted else (seg * 2.0)) + rng.normal(0, 0.3, seg.shape)
    aff = np.diag([1.2, 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(img.astype(np.float32), aff), os.path.join(folder, f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(seg, aff), os.path.join(folder, f"{name}_seg.nii.gz"))
    return [os.path.join(folder, f"{name}.nii.gz"), os.path.join(folder, f"{name}_seg.nii.gz")]


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


tmp = tempfile.mkdtemp(prefix="neuroseg_finetune_")
try:
    a = [ball(tmp, f"a{i}", c, i, False) for i, c in enumerate([6, 9, 7])]
    b = [ball(tmp, f"b{i}", c, 10 + i, True) for i, c in enumerate([7, 8, 6])]
    def config(pairs, epochs, seed=5):
        return {"data": {"train": pairs}, "model": {"name": "unet", "args": {"channels": [4, 8], "out_channels": 2}},
                "labels": {"background": 0, "ball": 1}, "preprocessing": {"orientation": "RAS"},
                "patch_size": [8, 8, 8], "batch_size": 2, "epochs": epochs, "iterations_per_epoch": 3,
                "validation_every": 1, "optimizer": {"name": "sgd", "lr": 0.02}, "workers": 1, "seed": seed}
    for name, cfg in [("base_cfg.json", config(a, 2)), ("other_cfg.json", config(a, 1, seed=9)), ("site_cfg.json", config(b, 1))]:
        json.dump(cfg, open(os.path.join(tmp, name), "w"))
    r = neuroseg(["train", "--config", os.path.join(tmp, "base_cfg.json"), "-o", os.path.join(tmp, "base"), "--threads", "1"])
    check(r.returncode == 0, "base training" + ("" if r.returncode == 0 else r.stderr[-300:]))
    r = neuroseg(["train", "--config", os.path.join(tmp, "other_cfg.json"), "-o", os.path.join(tmp, "other"), "--threads", "1"])
    base = os.path.join(tmp, "base", "checkpoint_last.pt")
    base_hash = sha(base)
    for kind in ["lora-c", "convlora", "cp-lora", "dora-c", "convdora", "cp-dora"]:
        out = os.path.join(tmp, kind)
        r = neuroseg(["finetune", "--model", base, "--adapter", kind, "--rank", "2", "--alpha", "4", "--target", "decoder*",
                 "--config", os.path.join(tmp, "site_cfg.json"), "-o", out, "--threads", "1"])
        ok = r.returncode == 0 and "trainable parameters" in r.stderr
        size = os.path.getsize(os.path.join(out, "adapter_last.nsa")) if ok else -1
        check(ok and 0 < size < 64 * 1024 and size < os.path.getsize(base) / 3,
              f"finetune {kind}: runs, prints the layer table, adapter file {size} bytes vs base {os.path.getsize(base)}"
              + ("" if ok else r.stderr[-300:]))
    check(sha(base) == base_hash, "the base checkpoint is untouched")
    again = os.path.join(tmp, "cp-dora-again")
    r = neuroseg(["finetune", "--model", base, "--adapter", "cp-dora", "--rank", "2", "--alpha", "4", "--target", "decoder*",
             "--config", os.path.join(tmp, "site_cfg.json"), "-o", again, "--threads", "1"])
    check(r.returncode == 0 and sha(os.path.join(again, "adapter_last.nsa")) == sha(os.path.join(tmp, "cp-dora", "adapter_last.nsa")),
          "the same seed gives the same adapter, byte for byte")

    # segment with base + adapter == segment with the merged checkpoint
    run_dir = os.path.join(tmp, "cp-dora")
    case = b[0][0]
    r1 = neuroseg(["segment", "-i", case, "-o", os.path.join(tmp, "seg_adapter"), "--model", base, "--adapter",
              os.path.join(run_dir, "adapter_last.nsa"), "--device", "cpu", "--probabilities", "--no-qc"])
    r2 = neuroseg(["segment", "-i", case, "-o", os.path.join(tmp, "seg_merged"), "--model", os.path.join(run_dir, "checkpoint_last.pt"),
              "--device", "cpu", "--probabilities", "--no-qc"])
    r3 = neuroseg(["segment", "-i", case, "-o", os.path.join(tmp, "seg_base"), "--model", base, "--device", "cpu", "--probabilities", "--no-qc"])
    check(r1.returncode == r2.returncode == r3.returncode == 0, "segment with --adapter, merged and base checkpoints")
    if r1.returncode == r2.returncode == r3.returncode == 0:
        p = {k: np.asanyarray(nib.load(os.path.join(tmp, k, "b0_prob.nii.gz")).dataobj) for k in ["seg_adapter", "seg_merged", "seg_base"]}
        d = float(np.abs(p["seg_adapter"] - p["seg_merged"]).max())
        check(d < 1e-5, f"base + adapter equals the merged checkpoint (max probability difference {d:.1e})")
        moved = float(np.abs(p["seg_adapter"] - p["seg_base"]).max())
        check(moved > 1e-4, f"and differs from the base alone (max probability difference {moved:.1e})")
        # per-case adapters: b0 adapted, b1 not
        csv = os.path.join(tmp, "adapters.csv")
        open(csv, "w").write("case,adapter\nb0," + os.path.join(run_dir, "adapter_last.nsa") + "\n")
        cases = os.path.join(tmp, "cases")
        os.makedirs(cases)
        for c in (b[0][0], b[1][0]):
            shutil.copy(c, cases)
        r = neuroseg(["segment", "-i", cases, "-o", os.path.join(tmp, "seg_csv"), "--model", base, "--adapter-csv", csv,
                 "--device", "cpu", "--probabilities", "--no-qc"])
        r4 = neuroseg(["segment", "-i", b[1][0], "-o", os.path.join(tmp, "seg_base1"), "--model", base, "--device", "cpu",
                  "--probabilities", "--no-qc"])
        pc0 = np.asanyarray(nib.load(os.path.join(tmp, "seg_csv", "b0_prob.nii.gz")).dataobj)
        pc1 = np.asanyarray(nib.load(os.path.join(tmp, "seg_csv", "b1_prob.nii.gz")).dataobj)
        pb1 = np.asanyarray(nib.load(os.path.join(tmp, "seg_base1", "b1_prob.nii.gz")).dataobj)
        check(r.returncode == 0 and float(np.abs(pc0 - p["seg_adapter"]).max()) < 1e-5 and float(np.abs(pc1 - pb1).max()) < 1e-6,
              "--adapter-csv: the listed case gets its adapter, the other the base model")
    # bad input: another base's weights, unknown kind, targets matching nothing
    other = os.path.join(tmp, "other", "checkpoint_last.pt")
    r = neuroseg(["segment", "-i", case, "-o", os.path.join(tmp, "seg_bad"), "--model", other, "--adapter",
             os.path.join(run_dir, "adapter_last.nsa"), "--device", "cpu"])
    check(r.returncode != 0 and "other weights" in r.stderr and len(r.stderr.strip().splitlines()) == 1
          and not os.path.exists(os.path.join(tmp, "seg_bad", "b0_seg.nii.gz")),
          "an adapter made for other base weights: one-line error, no output: " + r.stderr.strip()[:160])
    r = neuroseg(["finetune", "--model", base, "--adapter", "lora-x", "--config", os.path.join(tmp, "site_cfg.json"), "-o",
             os.path.join(tmp, "bad1")])
    check(r.returncode != 0 and "unknown adapter" in r.stderr, "unknown adapter kind: " + r.stderr.strip()[:120])
    r = neuroseg(["finetune", "--model", base, "--target", "nothing*", "--config", os.path.join(tmp, "site_cfg.json"), "-o",
             os.path.join(tmp, "bad2")])
    check(r.returncode != 0 and "matches no" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
          "--target matching nothing: " + r.stderr.strip()[:160])
    # Source-free adaptation: every method runs on unlabelled target images and records itself.
    import torch
    targets = os.path.join(tmp, "targets")
    os.makedirs(targets)
    for img, _ in b:
        shutil.copy(img, targets)
    for method, extra in [("none", []), ("tent", []), ("entropy-kl", ["--overestimate", "1.2", "--size-power", "3"])]:
        out = os.path.join(tmp, f"adapted_{method}.pt")
        r = neuroseg(["adapt", "--model", base, "-i", targets, "-o", out, "--method", method, "--iterations", "4", "--threads", "1"] + extra)
        ok = r.returncode == 0 and os.path.exists(out)
        meta = json.loads(torch.load(out, weights_only=False)["meta"]) if ok else {}
        recorded = meta.get("training", {}).get("adaptation", {})
        check(ok and recorded.get("method") == method and recorded.get("size_power") == (3 if method == "entropy-kl" else 1),
              f"adapt --method {method}: checkpoint written with its method and size power recorded" + ("" if ok else r.stderr[-300:]))
        png = out + ".loss.png"
        check(os.path.exists(png) == (method != "none") and (method == "none" or open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"),
              f"adapt --method {method}: loss curve PNG " + ("not written (no iterations)" if method == "none" else "written"))
    # A JSON prior of volume fractions: whole volumes by default, patches when --patch is given.
    names = sorted(json.loads(torch.load(base, weights_only=False)["meta"])["labels"].items(), key=lambda kv: kv[1])
    good = os.path.join(tmp, "prior_good.json")
    json.dump({"fractions": {n: (0.9 if v == 0 else 0.1 / (len(names) - 1)) for n, v in names}}, open(good, "w"))
    for extra, expect in [([], "whole volume"), (["--patch", "16", "16", "16"], [16, 16, 16])]:
        out = os.path.join(tmp, "adapted_prior.pt")
        r = neuroseg(["adapt", "--model", base, "-i", targets, "-o", out, "--prior", good, "--iterations", "2", "--threads", "1"] + extra)
        meta = json.loads(torch.load(out, weights_only=False)["meta"]) if r.returncode == 0 else {}
        got = meta.get("training", {}).get("adaptation", {}).get("patch")
        check(got == expect, f"adapt --prior {' '.join(extra)}: adapts on {got} (expected {expect})" + ("" if r.returncode == 0 else r.stderr[-300:]))
    # Slice tags (the authors' per-slice priors): one list per foreground label and case, along k.
    fg = [n for n, v in names if v != 0]
    tags = {os.path.basename(img): {n: [int(z % 2) for z in range(nib.load(img).shape[2])] for n in fg} for img, _ in b}
    tagged = os.path.join(tmp, "prior_tags.json")
    json.dump({"fractions": json.load(open(good))["fractions"], "slice_tags": {"axis": "k", "cases": tags}}, open(tagged, "w"))
    out = os.path.join(tmp, "adapted_tags.pt")
    r = neuroseg(["adapt", "--model", base, "-i", targets, "-o", out, "--prior", tagged, "--iterations", "2", "--threads", "1"])
    meta = json.loads(torch.load(out, weights_only=False)["meta"]) if r.returncode == 0 else {}
    check(meta.get("training", {}).get("adaptation", {}).get("slice_tags") == "k" and "tagged slices" in r.stderr,
          "adapt --prior with slice tags along k: runs on tagged slices and records them" + ("" if r.returncode == 0 else r.stderr[-300:]))
    out = os.path.join(tmp, "adapted_tags_patch.pt")
    r = neuroseg(["adapt", "--model", base, "-i", targets, "-o", out, "--prior", tagged, "--patch", "16", "16", "16", "--iterations", "2"])
    check(r.returncode != 0 and "drop --patch" in r.stderr and len(r.stderr.strip().splitlines()) == 1 and not os.path.exists(out),
          "slice tags with --patch: one-line error, no checkpoint: " + r.stderr.strip()[:160])
    first = os.path.basename(b[0][0])
    tags[first][fg[0]] = tags[first][fg[0]][:-1]
    json.dump({"fractions": json.load(open(good))["fractions"], "slice_tags": {"axis": "k", "cases": tags}}, open(tagged, "w"))
    out = os.path.join(tmp, "adapted_tags_bad.pt")
    r = neuroseg(["adapt", "--model", base, "-i", targets, "-o", out, "--prior", tagged, "--iterations", "2", "--threads", "1"])
    check(r.returncode != 0 and "prior_tags.json" in r.stderr and "slice tags" in r.stderr and len(r.stderr.strip().splitlines()) == 1
          and not os.path.exists(out), "a case with one slice tag too few: one-line error naming the prior, no checkpoint: " + r.stderr.strip()[:160])
    prior = os.path.join(tmp, "prior.json")
    json.dump({"fractions": {"background": 0.9, "tumour": 0.1}}, open(prior, "w"))
    out = os.path.join(tmp, "adapted_bad.pt")
    r = neuroseg(["adapt", "--model", base, "-i", targets, "-o", out, "--prior", prior, "--iterations", "2"])
    check(r.returncode != 0 and ("tumour" in r.stderr or "ball" in r.stderr) and len(r.stderr.strip().splitlines()) == 1 and not os.path.exists(out),
          "a prior naming an unknown label: one-line error, no checkpoint: " + r.stderr.strip()[:160])
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(finish())
