#!/usr/bin/env python3
"""SPIDER evaluation speed: the official evaluation.py (DIAGNijmegen/SPIDER-Evaluation
@052300b, run as it is through tests/fixtures/spider/run_official.py; not part of this
repository, pass its path) vs `neuroseg evaluate --benchmark spider` on the same files, side by
side, and the largest difference of their numbers.

The cases are generated here: sagittal-like lumbar-spine phantoms of 15 x 512 x 512 voxels
(array z, y, x; spacing 0.6 x 0.6 x 3.3 mm, z thick) with 7 vertebrae, a partial one at the top,
8 discs and the canal (17 structures), and predictions made of each GT label shifted by up to 2
voxels, some eroded, renumbered. Both sides are timed end to end on the folder: reading the
.mha files, scoring every case, writing metrics.json (neuroseg: also its process start-up,
about 0.8 s of loading LibTorch, which the last columns take out: `neuroseg --help` timed alone).

usage: bench/spider_bench.py EVALUATION_PY [--cases 3] [--threads 2]
needs: numpy, scipy, pandas, SimpleITK
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEUROSEG = os.path.join(ROOT, "build", "neuroseg")
RUNNER = os.path.join(ROOT, "tests", "fixtures", "spider", "run_official.py")
SPACING = (0.6, 0.6, 3.3)  # ITK (x, y, z)


def spine(shape, rng):
    """GT: 7 vertebrae (1 = lowest), disc 200 + k below vertebra k, partial 108 at the top, canal: 17."""
    Z, Y, X = shape
    z, y, x = np.ogrid[:Z, :Y, :X]
    gt = np.zeros(shape, np.uint8)
    cz, cx = Z / 2 - 0.5, X * 0.45
    body = ((z - cz) / (Z * 0.4)) ** 2 + ((x - cx) / 30.0) ** 2 <= 1
    disc = ((z - cz) / (Z * 0.36)) ** 2 + ((x - cx) / 27.0) ** 2 <= 1
    canal = ((z - cz) / (Z * 0.2)) ** 2 + ((x - (cx + 48)) / 11.0) ** 2 <= 1
    for k in range(1, 9):  # level k: disc 200 + k, then vertebra k above it; the 8th is cut by the FOV
        lo = 20 + (k - 1) * 60
        gt[body & (y >= lo + 16) & (y < lo + 60)] = k if lo + 60 <= Y else 100 + k
        gt[disc & (y >= lo) & (y < lo + 16)] = 200 + k
    gt[np.broadcast_to(canal, shape)] = 100
    return gt


def prediction(gt, rng):
    pred = np.zeros_like(gt)
    labels = [int(v) for v in np.unique(gt) if v]
    renumber = {l: (l + 30 if l < 100 else l) for l in labels}
    for l in labels:
        m = ndimage.shift((gt == l).astype(np.uint8), rng.integers(-2, 3, 3) * [0, 1, 1], order=0) > 0
        if rng.random() < 0.4:
            m = ndimage.binary_erosion(m)
        pred[m] = renumber[l]
    return pred


def write(arr, path):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING)
    img.SetOrigin((-150.0, -20.0, 12.5))
    sitk.WriteImage(img, path, useCompression=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("evaluation")
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp(prefix="spider_bench_")
    try:
        os.makedirs(os.path.join(tmp, "gt", "masks"))
        os.makedirs(os.path.join(tmp, "pred"))
        for i in range(a.cases):
            gt = spine((15, 512, 512), rng)
            write(gt, os.path.join(tmp, "gt", "masks", f"{i + 1}_t2.mha"))
            write(prediction(gt, rng), os.path.join(tmp, "pred", f"{i + 1}_t2.mha"))
        n_labels = len(np.unique(gt)) - 1
        print(f"{a.cases} case(s) of 15x512x512, {n_labels} GT structures each; neuroseg --threads {a.threads}")

        t0 = time.perf_counter()
        subprocess.run([sys.executable, RUNNER, a.evaluation, os.path.join(tmp, "pred"), os.path.join(tmp, "gt", "masks"),
                        os.path.join(tmp, "official.json")], check=True, capture_output=True)
        t_official = time.perf_counter() - t0
        official = json.load(open(os.path.join(tmp, "official.json")))

        times = {}
        for threads in sorted({1, a.threads}):
            best = math.inf
            for _ in range(2):
                t0 = time.perf_counter()
                subprocess.run([NEUROSEG, "evaluate", "--benchmark", "spider", "--pred", os.path.join(tmp, "pred"), "--gt",
                                os.path.join(tmp, "gt"), "-o", os.path.join(tmp, "out"), "--threads", str(threads)],
                               check=True, capture_output=True)
                best = min(best, time.perf_counter() - t0)
            times[threads] = best
        startup = math.inf  # loading LibTorch & co., paid once per run
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([NEUROSEG, "--help"], check=True, capture_output=True)
            startup = min(startup, time.perf_counter() - t0)
        ours = json.load(open(os.path.join(tmp, "out", "metrics.json")))
        diff = max(abs(ours[k][s] - official["aggregate"][k][s]) for k in ours for s in ("mean", "std")
                   if official["aggregate"][k][s] is not None)

        print(f"{'':28s}{'total s':>10s}{'s / case':>10s}{'speed-up':>10s}"
              f"{'s / case w/o start-up':>24s}{'speed-up':>10s}")
        print(f"{'official evaluation.py':28s}{t_official:10.2f}{t_official / a.cases:10.2f}{'1.0x':>10s}")
        for threads, t in times.items():
            per_case = (t - startup) / a.cases
            print(f"{'neuroseg, ' + str(threads) + ' thread(s)':28s}{t:10.2f}{t / a.cases:10.3f}{t_official / t:9.1f}x"
                  f"{per_case:24.3f}{t_official / a.cases / per_case:9.0f}x")
        print(f"neuroseg start-up (neuroseg --help): {startup:.2f} s")
        print(f"largest |difference| of the aggregate numbers: {diff:.2g}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
