#!/usr/bin/env python3
"""Connected components: neuroseg (metrics/connected_components, CPU threads or CUDA) vs
cc3d.connected_components (and scipy.ndimage.label on binary cases) on the same arrays:
thresholded noise, smoothed blobs, a multi-label field (the blobs' field cut into 8 quantile
bands: thin shells, short runs, a hard case), and the real AAL atlas
(multi-label) and ch2bet brain mask. Prints MVx/s, the speed ratio to cc3d (> 1: neuroseg is
faster) and whether neuroseg's labels equal cc3d's (the numbering included).

neuroseg's time is the op alone (bench/bench_ops.cpp, labels only as cc3d returns them, after
a warm-up); cc3d and scipy are timed in this process on the array neuroseg reads (x fastest:
the NIfTI storage order). Each contender's time is the mean over --repeats calls (more on
volumes under 2M voxels); with
--rounds R the contenders take turns R times and each keeps its best round, so that a burst
of load from other processes on a shared machine hits one round, not one contender.

--cpu-time adds the ratio of CPU times (user + system) at one thread: neuroseg's from its
process's usage with --repeats N minus that with 0 (start, reading, warm-up), cc3d's from
this process. Unlike the wall-clock ratios it hardly moves when other processes share the
cores, which on a busy 2-core machine can halve either contender's wall-clock speed.

usage: bench/cc_bench.py [--sizes 64 128 256 [512]] [--threads 1 2] [--connectivity 6 18 26]
                         [--device cpu] [--repeats 3] [--rounds 1] [--cpu-time] [--no-scipy]
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time

import cc3d
import nibabel as nib
import numpy as np
from scipy import ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bench", "neuroseg_bench_ops")
TEMPLATES = "/usr/share/mricron/templates"


def cases(sizes, rng):
    for n in sizes:
        noise = rng.random((n, n, n), dtype=np.float32)
        yield f"noise 50% {n}^3", (noise > 0.5).astype(np.uint8), True
        yield f"noise 20% {n}^3", (noise > 0.8).astype(np.uint8), True
        smooth = ndimage.gaussian_filter(noise, 3)
        yield f"blobs {n}^3", (smooth > np.median(smooth)).astype(np.uint8), True
        edges = np.quantile(smooth, np.linspace(0, 1, 9)[1:-1])
        yield f"multi: 8 bands {n}^3", np.digitize(smooth, edges).astype(np.uint8), False
        del noise, smooth
    yield "aal atlas 181x217x181", np.asanyarray(nib.load(f"{TEMPLATES}/aal.nii.gz").dataobj), False
    yield "ch2bet mask 181x217x181", (np.asanyarray(nib.load(f"{TEMPLATES}/ch2bet.nii.gz").dataobj) > 0).astype(np.uint8), True


def timed(fn, repeats):
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def cpu_timed(fn, repeats):
    fn()
    t0 = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - t0) / repeats


def child_cpu(cmd):
    """CPU seconds (user + system) the command's process used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def scipy_structure(connectivity):
    return ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--connectivity", type=int, nargs="+", default=[6, 18, 26])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cpu-time", action="store_true")
    ap.add_argument("--no-scipy", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp(prefix="neuroseg_ccbench_")
    ours_cols = " ".join(f"{'ns ' + str(t) + 't':>8}" for t in a.threads)
    ratio_cols = " ".join(f"{'x cc3d ' + str(t) + 't':>10}" for t in a.threads)
    print(f"MVx/s; device {a.device}; ns = neuroseg, t = threads (cc3d and scipy: 1 thread)")
    cpu_col = f" {'cpu x 1t':>9}" if a.cpu_time else ""
    print(f"{'case':26} {'conn':>4} {ours_cols} {'cc3d':>8} {'scipy':>8} {ratio_cols}{cpu_col}  same as cc3d")
    mismatches = 0
    try:
        for name, volume, binary in cases(a.sizes, rng):
            path = os.path.join(tmp, "in.nii")
            nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
            # neuroseg's (D, H, W) raster order is the NIfTI storage order: x fastest.
            array = np.asfortranarray(volume)
            mvox = volume.size / 1e6
            # Small volumes take about a millisecond: more calls, so that both means span the
            # same ~0.1 s and one scheduler hiccup on a shared machine does not decide the ratio.
            reps = max(a.repeats, int(a.repeats * 2**21 / volume.size))
            for k in a.connectivity:
                ours, same = [float("inf")] * len(a.threads), True
                cc = sp = ours_cpu = cc_cpu = float("inf")
                for round_ in range(a.rounds):
                    if a.cpu_time:
                        # ~75M voxels per measurement, so that the two process starts subtracted
                        # (about 0.5 s each, +- tens of ms) are small against the calls.
                        cpu_reps = max(reps, -(-75_000_000 // volume.size))
                        cmd = [BIN, "--op", "components", "--input", path, "--param", str(k), "--threads", "1",
                               "--device", a.device, "--repeats"]
                        ours_cpu = min(ours_cpu, (child_cpu(cmd + [str(cpu_reps)]) - child_cpu(cmd + ["0"])) / cpu_reps)
                        cc_cpu = min(cc_cpu, cpu_timed(lambda: cc3d.connected_components(array, connectivity=k), cpu_reps))
                    for i, t in enumerate(a.threads):
                        out = os.path.join(tmp, "out.nii")
                        write = ["--output", out] if round_ == 0 else []

                        def ours_seconds(n):
                            run = subprocess.run([BIN, "--op", "components", "--input", path, "--param", str(k),
                                                  "--repeats", str(n), "--threads", str(t), "--device", a.device] + write,
                                                 check=True, capture_output=True, text=True)
                            return json.loads(run.stdout.strip().splitlines()[-1])["seconds"]

                        s = ours_seconds(reps)
                        # At least 0.5 s of calls: for ~0.1-0.2 s after start-up a libtorch worker
                        # thread spins and, with --threads 2, takes a core from the timed calls
                        # (as in bench/skeleton_bench.py).
                        if s * reps < 0.5:
                            s = ours_seconds(int(np.ceil(0.5 / max(s, 1e-6))))
                        ours[i] = min(ours[i], s)
                        if round_ == 0:
                            labels = np.asanyarray(nib.load(out).dataobj)
                            same = same and np.array_equal(labels, cc3d.connected_components(array, connectivity=k))
                    cc = min(cc, timed(lambda: cc3d.connected_components(array, connectivity=k), reps))
                if binary and not a.no_scipy:
                    sp = timed(lambda: ndimage.label(array, structure=scipy_structure(k)), max(1, a.repeats // 3))
                else:
                    sp = float("nan")
                mismatches += not same
                ours_txt = " ".join(f"{mvox / s:>8.1f}" for s in ours)
                ratio_txt = " ".join(f"{cc / s:>10.2f}" for s in ours)
                cpu_txt = f" {cc_cpu / ours_cpu:>9.2f}" if a.cpu_time else ""
                print(f"{name:26} {k:>4} {ours_txt} {mvox / cc:>8.1f} {mvox / sp:>8.1f} {ratio_txt}{cpu_txt}  "
                      f"{'yes' if same else 'NO'}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if mismatches:
        print(f"{mismatches} case(s) differ from cc3d")


if __name__ == "__main__":
    main()
