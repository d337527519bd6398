#!/usr/bin/env python3
"""Surface distances (HD95 / ASSD / NSD path): neuroseg (metrics/surface_distance: on the CPU
one pass for both surfaces and an exact grid + k-d tree nearest-surface search; on CUDA crop,
surfaces and exact EDT) vs MONAI's compute_hausdorff_distance(percentile=95) and
compute_average_surface_distance on the same masks, side by side. neuroseg's timed part is
masks in memory -> HD, HD95, ASSD and NSD (all four from one pair of directed distance sets);
MONAI recomputes the distances per metric, so the "HD95+ASSD" column is what a user asking for
both pays. The last column is the largest relative difference of HD95 and ASSD between the two.
A second table times the DeepMind surfel convention (--param deepmind) against DeepMind's
surface-distance package (compute_surface_distances + compute_robust_hausdorff(95)).

usage: bench/surface_bench.py [--sizes 64 128 256] [--threads 2] [--device cpu]
"""
import argparse
import json
import os

# Both sides with OpenMP's passive wait policy (what the neuroseg CLI uses, see cli/main.cpp);
# must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import subprocess
import tempfile
import time
import warnings

import numpy as np
import nibabel as nib
import torch
from scipy import ndimage
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
import surface_distance

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bench", "neuroseg_bench_ops")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    spacing = (1.2, 0.8, 2.0)
    cases = []
    for n in a.sizes:
        noise = ndimage.gaussian_filter(rng.random((n, n, n)), n / 16)
        ref = noise > np.quantile(noise, 0.6)
        pred = np.roll(ref, 2, axis=0) ^ (rng.random(ref.shape) > 0.999)
        cases.append((f"blobs {n}^3", pred, ref))
    brain = np.asanyarray(nib.load("/usr/share/mricron/templates/ch2bet.nii.gz").dataobj) > 0
    cases.append(("ch2bet brain vs eroded", ndimage.binary_erosion(brain, iterations=2), brain))
    aal = np.asanyarray(nib.load("/usr/share/mricron/templates/aal.nii.gz").dataobj)
    cases.append(("aal label 37 vs shifted", np.roll(aal == 37, 2, axis=0), aal == 37))
    tmp = tempfile.mkdtemp(prefix="neuroseg_surfbench_")
    print(f"{'case':26} {'neuroseg s':>11} {'MONAI HD95 s':>13} {'ratio':>7} {'MONAI HD95+ASSD s':>18} {'ratio':>7}"
          f" {'max rel diff':>13}  device {a.device}, {a.threads} threads")
    deepmind_rows = []

    # Enough calls to fill about half a second: a fresh process's first milliseconds (thread
    # pool start-up) would otherwise weigh on the small volumes.
    def repeats_for(path, param=""):
        probe = subprocess.run([BIN, "--op", "surface", "--input", path, "--repeats", "1", "--threads", str(a.threads),
                                "--device", a.device] + (["--param", param] if param else []),
                               check=True, capture_output=True, text=True)
        t = json.loads(probe.stdout.strip().splitlines()[-1])["seconds"]
        return max(a.repeats, min(200, int(0.5 / max(t, 1e-4))))

    def path_for(name, pred, ref):
        path = os.path.join(tmp, name.replace(" ", "_").replace("^", "") + ".nii.gz")
        if not os.path.exists(path):
            nib.save(nib.Nifti1Image((pred.astype(np.uint8) | (ref.astype(np.uint8) << 1)), np.diag(list(spacing) + [1.0])), path)
        return path

    for name, pred, ref in cases:
        path = path_for(name, pred, ref)
        out = subprocess.run([BIN, "--op", "surface", "--input", path, "--repeats", str(repeats_for(path)),
                              "--threads", str(a.threads), "--device", a.device], check=True, capture_output=True, text=True)
        line = json.loads(out.stdout.strip().splitlines()[-1])
        ours, values = line["seconds"], line["values"]  # hd, hd95, assd, nsd
        p = torch.from_numpy(pred)[None, None]
        r = torch.from_numpy(ref)[None, None]
        t0 = time.perf_counter()
        for _ in range(a.repeats):
            monai_hd95 = float(compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=list(spacing)))
        hd95 = (time.perf_counter() - t0) / a.repeats
        t0 = time.perf_counter()
        for _ in range(a.repeats):
            monai_assd = float(compute_average_surface_distance(p, r, include_background=True, symmetric=True,
                                                                spacing=list(spacing)))
        assd = (time.perf_counter() - t0) / a.repeats
        diff = max(abs(values[1] - monai_hd95) / max(abs(monai_hd95), 1e-12), abs(values[2] - monai_assd) / max(abs(monai_assd), 1e-12))
        print(f"{name:26} {ours:>11.4f} {hd95:>13.4f} {hd95 / ours:>7.1f} {hd95 + assd:>18.4f} {(hd95 + assd) / ours:>7.1f}"
              f" {diff:>13.1e}", flush=True)
        deepmind_rows.append((name, path_for(name, pred, ref)))
    print(f"\n{'case (DeepMind surfels)':26} {'neuroseg s':>11} {'surface-distance s':>19} {'ratio':>7} {'HD95 rel diff':>14}")
    for name, path in deepmind_rows:
        out = subprocess.run([BIN, "--op", "surface", "--param", "deepmind", "--input", path, "--repeats", str(repeats_for(path, "deepmind")),
                              "--threads", str(a.threads), "--device", a.device], check=True, capture_output=True, text=True)
        line = json.loads(out.stdout.strip().splitlines()[-1])
        v = np.asanyarray(nib.load(path).dataobj)
        t0 = time.perf_counter()
        for _ in range(a.repeats):
            d = surface_distance.compute_surface_distances((v & 2) != 0, (v & 1) != 0, spacing)
            theirs = surface_distance.compute_robust_hausdorff(d, 95)
        peer = (time.perf_counter() - t0) / a.repeats
        diff = abs(line["values"][1] - theirs) / max(abs(theirs), 1e-12)
        print(f"{name:26} {line['seconds']:>11.4f} {peer:>19.4f} {peer / line['seconds']:>7.1f} {diff:>14.1e}", flush=True)


if __name__ == "__main__":
    main()
