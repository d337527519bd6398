#!/usr/bin/env python3
"""`neuroseg evaluate --surface deepmind` against DeepMind's surface-distance package (PyPI
surface-distance 0.1: compute_surface_distances, compute_robust_hausdorff,
compute_surface_dice_at_tolerance, and the area-weighted mean of both surfaces from its
distance/area lists) on a real atlas and its shifted copy, random blobs with anisotropic
spacing touching the border, exact ties (boxes one voxel apart), single voxels, identical
masks, a label missing from the prediction and one missing from both. The package is called on
nibabel's (x, y, z) arrays, as a NIfTI user would; neuroseg works on (z, y, x). Values must
agree to 1e-6 relative.

usage: surface_vs_deepmind.py path/to/neuroseg [path/to/neuroseg_bench_ops]
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
from scipy import ndimage
import surface_distance as sd

warnings.filterwarnings("ignore")
from _check import NEUROSEG, check, finish

TOL = 1.5


def deepmind(pred, ref, spacing):
    d = sd.compute_surface_distances(ref.astype(bool), pred.astype(bool), spacing)  # (gt, pred)
    gt_d, pr_d = d["distances_gt_to_pred"], d["distances_pred_to_gt"]
    gt_a, pr_a = d["surfel_areas_gt"], d["surfel_areas_pred"]
    with np.errstate(all="ignore"):
        assd = (np.sum(gt_d * gt_a) + np.sum(pr_d * pr_a)) / (np.sum(gt_a) + np.sum(pr_a))
        nsd = sd.compute_surface_dice_at_tolerance(d, TOL)
    return {"HD": sd.compute_robust_hausdorff(d, 100), "HD95": sd.compute_robust_hausdorff(d, 95),
            "ASSD": float(assd), "NSD": float(nsd)}


def same(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


tmp = tempfile.mkdtemp(prefix="neuroseg_deepmind_")
try:
    rng = np.random.default_rng(3)
    pred_dir, ref_dir = os.path.join(tmp, "pred"), os.path.join(tmp, "ref")
    os.makedirs(pred_dir); os.makedirs(ref_dir)
    cases = {}
    aal = np.asanyarray(nib.load("/usr/share/mricron/templates/aal.nii.gz").dataobj).astype(np.uint8)
    aal_ref = np.where(np.isin(aal, [2, 37, 71]), aal, 0).astype(np.uint8)
    cases["aal_shifted"] = (np.roll(aal_ref, (2, -1, 1), axis=(0, 1, 2)), aal_ref, (1.0, 1.0, 1.0))

    def blobs(shape, level):
        n = ndimage.gaussian_filter(rng.random(shape), 2.0)
        return n > np.quantile(n, level)
    shape = (33, 28, 21)
    ref = np.zeros(shape, np.uint8); pred = np.zeros(shape, np.uint8)
    ref[blobs(shape, 0.55)] = 1; pred[blobs(shape, 0.55)] = 1  # touch every face
    pred[rng.random(shape) > 0.995] = 1  # scattered far voxels
    ref[4:11, 3:9, 2:9] = 2; pred[5:12, 3:10, 2:8] = 2
    pred[25:29, 20:25, 14:19] = 3  # only in the prediction
    cases["random_aniso"] = (pred, ref, (0.8, 1.7, 2.4))
    # Exact ties: two boxes one voxel apart, isotropic and anisotropic.
    box_a = np.zeros((12, 12, 12), np.uint8); box_b = np.zeros((12, 12, 12), np.uint8)
    box_a[3:8, 3:8, 3:8] = 1; box_b[4:9, 3:8, 3:8] = 1
    cases["ties_iso"] = (box_a, box_b, (1.0, 1.0, 1.0))
    cases["ties_aniso"] = (box_a, box_b, (1.0, 1.0, 2.0))
    a = np.zeros((9, 8, 7), np.uint8); b = np.zeros((9, 8, 7), np.uint8)
    a[4, 4, 3] = 1; b[1, 6, 5] = 1
    cases["single_voxels"] = (a, b, (1.0, 2.0, 3.0))
    cases["identical"] = (ref, ref.copy(), (1.3, 0.9, 1.1))

    for name, (p, r, spacing) in cases.items():
        affine = np.diag(list(spacing) + [1.0])
        nib.save(nib.Nifti1Image(p, affine), os.path.join(pred_dir, name + ".nii.gz"))
        nib.save(nib.Nifti1Image(r, affine), os.path.join(ref_dir, name + ".nii.gz"))
    out = os.path.join(tmp, "summary.json")
    # Label 9 is in no image: both masks empty.
    run = subprocess.run([NEUROSEG, "evaluate", "-p", pred_dir, "-r", ref_dir, "-o", out, "--surface", "deepmind",
                          "--metrics", "hd,hd95,assd,nsd", "--tolerance-mm", str(TOL), "--labels", "1,2,3,9,37"],
                         capture_output=True, text=True)
    print(run.stdout)
    if run.returncode != 0:
        print(run.stderr)
        raise SystemExit("neuroseg evaluate --surface deepmind failed")
    summary = json.load(open(out))
    assert summary["settings"]["surface"] == "deepmind", summary["settings"]
    per_case = {os.path.basename(c["reference_file"]).replace(".nii.gz", ""): c["metrics"] for c in summary["metric_per_case"]}
    checked = 0
    for name, (p, r, spacing) in cases.items():
        for l in (1, 2, 3, 9, 37):
            want = deepmind(p == l, r == l, spacing)
            got = per_case[name][str(l)]
            wrong = [f"{k}: neuroseg {got[k]!r} surface-distance {v!r}" for k, v in want.items() if not same(got[k], v)]
            check(not wrong, f"{name} label {l}: {len(want)} metrics" + ("; " + "; ".join(wrong) if wrong else ""))
            checked += 1
    print(f"{checked} (case, label) pairs checked against DeepMind's surface-distance package")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(finish())
