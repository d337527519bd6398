#!/usr/bin/env python3
"""`neuroseg evaluate` against MONAI's metric functions (HD, HD95, ASSD, NSD: the default
convention) and nnU-Net's overlap formulas, on real atlases of mricron-data compared with
shifted and eroded copies of themselves, on random masks with anisotropic spacing, and on the
edge cases (a label missing from the prediction, from the reference, from both; masks
touching the image border). Values must agree to 1e-5 relative.

usage: evaluate_vs_monai.py path/to/neuroseg [path/to/neuroseg_bench_ops]
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import nibabel as nib
import torch
from scipy import ndimage
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

warnings.filterwarnings("ignore")
from _check import NEUROSEG, check, finish

TEMPLATES = "/usr/share/mricron/templates"
TOL = 1.5  # NSD tolerance in mm


def monai_surface(pred, ref, spacing):
    p = torch.from_numpy(pred)[None, None]
    r = torch.from_numpy(ref)[None, None]
    hd = compute_hausdorff_distance(p, r, include_background=True, spacing=list(spacing)).item()
    hd95 = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=list(spacing)).item()
    assd = compute_average_surface_distance(p, r, include_background=True, symmetric=True, spacing=list(spacing)).item()
    nsd = compute_surface_dice(p, r, class_thresholds=[TOL], include_background=True, spacing=list(spacing)).item()
    # Documented difference (docs/metrics.md): with exactly one mask empty MONAI's HD is inf but
    # its HD95 is NaN (torch.quantile interpolates inf - inf); neuroseg reports inf for both.
    if math.isinf(hd) and math.isnan(hd95):
        hd95 = math.inf
    return {"HD": hd, "HD95": hd95, "ASSD": assd, "NSD": nsd}


def expected_overlap(pred, ref):
    tp = float(np.sum(pred & ref)); fp = float(np.sum(pred & ~ref)); fn = float(np.sum(~pred & ref))
    nan = float("nan")
    return {"Dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan, "IoU": tp / (tp + fp + fn) if tp + fp + fn else nan,
            "precision": tp / (tp + fp) if tp + fp else nan, "recall": tp / (tp + fn) if tp + fn else nan,
            "volume_difference": (fp - fn) / (tp + fn) if tp + fn else nan, "TP": tp, "FP": fp, "FN": fn}


def same(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-5 * max(1.0, abs(b))


def compare(case, label, got, want):
    """One check per (case, label): every metric of `want` equals neuroseg's."""
    wrong = [f"{k}: neuroseg {got[k]!r} expected {v!r}" for k, v in want.items() if not same(got[k], v)]
    check(not wrong, f"{case} label {label}: {len(want)} metrics" + ("; " + "; ".join(wrong) if wrong else ""))


tmp = tempfile.mkdtemp(prefix="neuroseg_eval_")
try:
    rng = np.random.default_rng(0)
    pred_dir, ref_dir = os.path.join(tmp, "pred"), os.path.join(tmp, "ref")
    os.makedirs(pred_dir); os.makedirs(ref_dir)
    cases = {}
    # Real atlases: a label subset keeps MONAI's side short; shift / erode per label.
    aal = np.asanyarray(nib.load(f"{TEMPLATES}/aal.nii.gz").dataobj).astype(np.uint8)
    keep = [1, 2, 17, 37, 38, 45, 71, 91, 108]
    aal_ref = np.where(np.isin(aal, keep), aal, 0).astype(np.uint8)
    cases["aal_shifted"] = (np.roll(aal_ref, (2, -1, 1), axis=(0, 1, 2)), aal_ref, (1.0, 1.0, 1.0))
    brod = np.asanyarray(nib.load(f"{TEMPLATES}/brodmann.nii.gz").dataobj).astype(np.uint8)[::2, ::2, ::2]
    brod = np.where(np.isin(brod, [4, 6, 17, 44]), brod, 0).astype(np.uint8)
    eroded = np.zeros_like(brod)
    for l in (4, 6, 17):  # 44 vanishes from the prediction: inf distances, NSD 0
        eroded[ndimage.binary_erosion(brod == l)] = l
    cases["brodmann_eroded_aniso"] = (eroded, brod, (2.0, 2.0, 3.5))
    # Random blobs, odd sizes, anisotropic; label 3 only in the prediction; label 1 touching the border.
    def blobs(shape, level):
        n = ndimage.gaussian_filter(rng.random(shape), 2.0)
        return n > np.quantile(n, level)
    shape = (37, 30, 23)
    ref = np.zeros(shape, np.uint8); pred = np.zeros(shape, np.uint8)
    ref[blobs(shape, 0.6)] = 1; pred[blobs(shape, 0.6)] = 1
    ref[5:12, 4:9, 3:10] = 2; pred[6:13, 4:10, 3:9] = 2
    pred[30:34, 20:25, 15:20] = 3
    cases["random_aniso"] = (pred, ref, (0.8, 1.7, 2.4))
    # A single voxel each, and identical masks.
    a = np.zeros((9, 8, 7), np.uint8); b = np.zeros((9, 8, 7), np.uint8)
    a[4, 4, 3] = 1; b[1, 6, 5] = 1
    cases["single_voxels"] = (a, b, (1.0, 2.0, 3.0))
    cases["identical"] = (ref, ref.copy(), (1.0, 1.0, 1.0))

    for name, (p, r, spacing) in cases.items():
        affine = np.diag(list(spacing) + [1.0])
        nib.save(nib.Nifti1Image(p, affine), os.path.join(pred_dir, name + "_seg.nii.gz"))  # segment's naming
        nib.save(nib.Nifti1Image(r, affine), os.path.join(ref_dir, name + ".nii.gz"))
    out = os.path.join(tmp, "results", "summary.json")
    run = subprocess.run([NEUROSEG, "evaluate", "-p", pred_dir, "-r", ref_dir, "-o", out, "--tolerance-mm", str(TOL)],
                         capture_output=True, text=True)
    print(run.stdout)
    if run.returncode != 0:
        print(run.stderr)
        raise SystemExit("neuroseg evaluate failed")
    summary = json.load(open(out))  # Python's json reads NaN/Infinity, as nnU-Net's files
    per_case = {os.path.basename(c["reference_file"]).replace(".nii.gz", ""): c["metrics"] for c in summary["metric_per_case"]}
    assert set(per_case) == set(cases), per_case.keys()
    checked = 0
    all_labels = sorted(set().union(*[set(np.unique(p)) | set(np.unique(r)) for p, r, _ in cases.values()]) - {0})
    for name, (p, r, spacing) in cases.items():
        # Every case reports every label; one absent from both images there is NaN throughout.
        assert sorted(int(k) for k in per_case[name]) == all_labels, (name, per_case[name].keys())
        for l in all_labels:
            want = expected_overlap(p == l, r == l)
            want.update(monai_surface(p == l, r == l, spacing))
            compare(name, l, per_case[name][str(l)], want)
            checked += 1
    # Aggregates: NaN left out of the mean (label 3 has NaN Dice? no: Dice 0; recall NaN where the reference lacks it).
    recall3 = [c["3"]["recall"] for c in per_case.values()]
    check(all(math.isnan(v) for v in recall3) and math.isnan(summary["mean"]["3"]["recall"]),
          "label 3: recall NaN in every case and in the mean")
    dice1 = [per_case[n]["1"]["Dice"] for n in per_case if not math.isnan(per_case[n]["1"]["Dice"])]
    check(same(summary["mean"]["1"]["Dice"], float(np.mean(dice1))),
          f"label 1: mean Dice {summary['mean']['1']['Dice']} = {np.mean(dice1)}")
    csv_lines = open(out.replace(".json", ".csv")).read().splitlines()
    check(len(csv_lines) == 1 + sum(len(c) for c in per_case.values()), f"CSV: {len(csv_lines)} lines")
    print(f"{checked} (case, label) pairs checked against MONAI and the nnU-Net formulas")

    # Bad input: a missing prediction and a geometry mismatch are reported, the rest evaluated, exit 1.
    os.remove(os.path.join(pred_dir, "identical_seg.nii.gz"))
    nib.save(nib.Nifti1Image(cases["single_voxels"][0], np.diag([1.0, 2.0, 3.1, 1.0])), os.path.join(pred_dir, "single_voxels_seg.nii.gz"))
    out2 = os.path.join(tmp, "results2", "summary.json")
    run = subprocess.run([NEUROSEG, "evaluate", "-p", pred_dir, "-r", ref_dir, "-o", out2], capture_output=True, text=True)
    s2 = json.load(open(out2))
    ok = (run.returncode == 1 and "no prediction for case 'identical'" in run.stderr and "single_voxels_seg.nii.gz" in run.stderr
          and len(s2["metric_per_case"]) == 3 and len(s2["failed"]) == 1)
    check(ok, f"bad input: exit {run.returncode}, {len(s2['metric_per_case'])} cases evaluated; {run.stderr.strip()}")
    # clDice on request: against skimage skeletons and the clDice formula (Shit et al. 2021).
    from skimage.morphology import skeletonize_3d
    out3 = os.path.join(tmp, "results3", "summary.json")
    subprocess.run([NEUROSEG, "evaluate", "-p", os.path.join(pred_dir, "random_aniso_seg.nii.gz"), "-r",
                    os.path.join(ref_dir, "random_aniso.nii.gz"), "-o", out3, "--metrics", "dice,cldice"], check=True,
                   capture_output=True)
    got = json.load(open(out3))["metric_per_case"][0]["metrics"]
    p, r, _ = cases["random_aniso"]
    for l in (1, 2):
        # neuroseg holds volumes as (z, y, x), nibabel's arrays are (x, y, z): Lee's thinning
        # depends on the scan order, so skeletonize the same (z, y, x) array skimage-side.
        zyx = lambda a: np.ascontiguousarray(a.transpose(2, 1, 0))
        sp_ = (skeletonize_3d(zyx(p == l).astype(np.uint8)) > 0).transpose(2, 1, 0)
        sr_ = (skeletonize_3d(zyx(r == l).astype(np.uint8)) > 0).transpose(2, 1, 0)
        # 0/0 -> 0 (FISBe's nan_to_num): skimage thins a 7x6x6 box to nothing.
        tprec = np.sum(sp_ & (r == l)) / np.sum(sp_) if np.sum(sp_) else 0.0
        tsens = np.sum(sr_ & (p == l)) / np.sum(sr_) if np.sum(sr_) else 0.0
        want = 2 * tprec * tsens / (tprec + tsens) if tprec + tsens else 0.0
        check(same(got[str(l)]["clDice"], want) and "HD95" not in got[str(l)],
              f"clDice label {l}: {got[str(l)]} expected {want}")
    run = subprocess.run([NEUROSEG, "evaluate", "-p", os.path.join(pred_dir, "random_aniso_seg.nii.gz"), "-r",
                          os.path.join(ref_dir, "random_aniso.nii.gz"), "-o", out3, "--labels", "1,3"],
                         capture_output=True, text=True)
    check(run.returncode == 0 and "label 3 is in no reference" in run.stderr,
          f"--labels: a label in no reference is warned about (exit {run.returncode}; {run.stderr.strip()})")
    run = subprocess.run([NEUROSEG, "evaluate", "-p", pred_dir, "-r", ref_dir, "-o", out2, "--metrics", "dice,hd96"],
                         capture_output=True, text=True)
    check(run.returncode != 0 and "unknown metric 'hd96'" in run.stderr and len(run.stderr.strip().splitlines()) == 1,
          f"an unknown metric is one line (exit {run.returncode}; {run.stderr.strip()})")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

sys.exit(finish())
