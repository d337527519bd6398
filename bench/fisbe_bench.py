#!/usr/bin/env python3
"""FISBe evaluation: `neuroseg evaluate --benchmark fisbe` vs the official evaluator
(Kainmueller-Lab/evaluate-instance-segmentation, `--app flylight`) on the same FISBe-sized
volume, side by side: wall time, peak memory (RSS of each process), and whether every number
of the per-volume results agrees (1e-6).

The volume mimics a FISBe sample: (Z, Y, X) = --shape (default 400 690 690, FISBe's size),
--neurons GT neurons as wandering tubes (radius 1.5-3 voxels) stored one per channel (uint8,
value = channel + 1) with some crossing each other, and a prediction (int32 labels) derived
from them: neurons split in two, two neurons merged, a shifted copy, small fragments under the
800-voxel filter. Both are zarr v2 (blosc-lz4, 64^3 chunks) as the official files.

usage: bench/fisbe_bench.py --evaluator PATH/evaluate-instance-segmentation
                            [--neuroseg build/neuroseg] [--shape 400 690 690] [--neurons 6]
                            [--threads 2] [--keep DIR]
The evaluator runs with Debian 12's Python packages (python3-zarr, -skimage, -toml, -natsort,
-h5py, -tifffile, -matplotlib); its code is never copied into neuroseg.
"""
import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

import numpy as np
import zarr
from numcodecs import Blosc


def ball(r):
    R = int(math.ceil(r))
    z, y, x = np.mgrid[-R:R + 1, -R:R + 1, -R:R + 1]
    return (z * z + y * y + x * x) <= r * r


def neuron(rng, shape, steps):
    """A branching random walk with momentum: (centre points, radius) of its stamps."""
    pts = []
    p = rng.uniform(0.3, 0.7, 3) * shape  # near the centre: neurons interweave
    v = rng.normal(size=3)
    branches = [(p, v)]
    while branches and len(pts) < steps:
        p, v = branches.pop()
        for _ in range(steps // 3):
            v = 0.9 * v / np.linalg.norm(v) + 0.35 * rng.normal(size=3)
            p = np.clip(p + 1.5 * v / np.linalg.norm(v), 3, np.array(shape) - 4)
            pts.append(p.copy())
            if rng.random() < 0.004 and len(branches) < 4:
                branches.append((p.copy(), rng.normal(size=3)))
    return np.array(pts), rng.uniform(1.5, 3.0)


def stamp(mask, pts, r):
    b = ball(r)
    R = b.shape[0] // 2
    for p in np.round(pts).astype(int):
        sl = tuple(slice(c - R, c + R + 1) for c in p)
        mask[sl] |= b


def make_volume(shape, n, seed):
    rng = np.random.default_rng(seed)
    gt = np.zeros((n,) + tuple(shape), np.uint8)
    masks = []
    for k in range(n):
        pts, r = neuron(rng, np.array(shape), 6000)
        m = np.zeros(shape, bool)
        stamp(m, pts, r)
        gt[k][m] = k + 1
        masks.append(m)
    pred = np.zeros(shape, np.int32)
    nid = 1
    for k, m in enumerate(masks):
        zz = np.nonzero(m.any(axis=(1, 2)))[0]
        if k == 0:  # split in two along z
            cut = (zz.min() + zz.max()) // 2
            top = m.copy()
            top[cut:] = False
            pred[top] = nid
            pred[m & ~top] = nid + 1
            nid += 2
        elif k == 1 and n > 2:  # merged with neuron 2
            pred[m | masks[2]] = nid
            nid += 1
        elif k == 2 and n > 2:
            continue
        elif k == 3:  # shifted copy
            pred[np.roll(m, 2, axis=2)] = nid
            nid += 1
        else:
            pred[m] = nid
            nid += 1
    for _ in range(20):  # fragments under the 800-voxel filter
        c = rng.integers(10, np.array(shape) - 10)
        pred[c[0] - 3:c[0] + 3, c[1] - 4:c[1] + 4, c[2] - 5:c[2] + 5] = nid
        nid += 1
    return gt, pred


def write(path, key, arr):
    root = zarr.open_group(path, mode="w")
    chunks = (1,) + (64,) * 3 if arr.ndim == 4 else (64,) * 3
    root.create_dataset(key, data=arr, chunks=chunks, compressor=Blosc("lz4", 5, Blosc.SHUFFLE), overwrite=True)


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time -v: (seconds, peak RSS MB, completed process)."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    return dt, (int(m.group(1)) / 1024 if m else float("nan")), r


def leaves(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(leaves(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evaluator", default=os.environ.get("NEUROSEG_EVALINSTSEG"), required=False)
    ap.add_argument("--neuroseg", default=os.path.join(os.path.dirname(__file__), "..", "build", "neuroseg"))
    ap.add_argument("--shape", type=int, nargs=3, default=[400, 690, 690])
    ap.add_argument("--neurons", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", help="write the volume here and keep it")
    ap.add_argument("--skip-official", action="store_true")
    a = ap.parse_args()
    tmp = a.keep or tempfile.mkdtemp(prefix="fisbe_bench_")
    try:
        t0 = time.perf_counter()
        gt, pred = make_volume(a.shape, a.neurons, a.seed)
        overl = int(np.count_nonzero((gt > 0).sum(0) > 1))
        write(os.path.join(tmp, "gt", "sample.zarr"), "volumes/gt_instances", gt)
        write(os.path.join(tmp, "pred", "sample.zarr"), "volumes/pred_instances", pred)
        input_mb = (gt.nbytes + pred.nbytes) / 2**20
        print(f"volume {tuple(a.shape)}: {a.neurons} GT neurons ({overl} voxels in >= 2), "
              f"{len(np.unique(pred)) - 1} predicted labels; labels in memory {input_mb:.0f} MB; "
              f"made in {time.perf_counter() - t0:.1f} s", flush=True)
        del gt, pred
        out_ns = os.path.join(tmp, "neuroseg")
        t_ns, rss_ns, r = timed([a.neuroseg, "evaluate", "--benchmark", "fisbe", "--threads", str(a.threads), "-p",
                                 os.path.join(tmp, "pred", "sample.zarr"), "--gt",
                                 os.path.join(tmp, "gt", "sample.zarr"), "-o", out_ns])
        if r.returncode:
            sys.exit(r.stderr)
        print(f"neuroseg  {t_ns:8.2f} s  peak RSS {rss_ns:7.0f} MB ({rss_ns / input_mb:.2f}x the label arrays)",
              flush=True)
        print(r.stdout.strip())
        if a.skip_official or not a.evaluator:
            return
        out_off = os.path.join(tmp, "official")
        env = dict(os.environ, PYTHONPATH=a.evaluator, OMP_NUM_THREADS=str(a.threads))
        t_off, rss_off, r = timed([sys.executable, "-m", "evalinstseg.evaluate", "--res_file",
                                   os.path.join(tmp, "pred", "sample.zarr"), "--gt_file",
                                   os.path.join(tmp, "gt", "sample.zarr"), "--res_key", "volumes/pred_instances",
                                   "--gt_key", "volumes/gt_instances", "--out_dir", out_off, "--app", "flylight",
                                   "--from_scratch", "--split_file", "none"], env=env)
        if r.returncode:
            sys.exit(r.stderr[-2000:])
        print(f"official  {t_off:8.2f} s  peak RSS {rss_off:7.0f} MB", flush=True)
        with open(os.path.join(out_off, "sample_volumes_pred_instances_cldice_greedy_rm800.toml"), "rb") as f:
            ref = leaves(tomllib.load(f))
        with open(os.path.join(out_ns, "sample.toml"), "rb") as f:
            ours = leaves(tomllib.load(f))
        bad = []
        for k, v in ref.items():
            w = ours.get(k)
            vs, ws = (v if isinstance(v, list) else [v]), (w if isinstance(w, list) else [w])
            if w is None or len(vs) != len(ws) or any(abs(float(x) - float(y)) > 1e-6 for x, y in zip(vs, ws)):
                bad.append(f"{k}: {v} vs {w}")
        print(f"agreement: {len(ref) - len(bad)}/{len(ref)} values equal to 1e-6" + ("" if not bad else f"; {bad[:5]}"))
        print(f"ratio: neuroseg {t_off / t_ns:.1f}x faster, {rss_off / rss_ns:.1f}x less memory")
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
