#!/usr/bin/env python3
"""Sharded and overlapping batch segmentation (`segment --shard i/n`, claims, --resume):
4 shards of a 10-case batch run at once and write every case exactly once; a shard killed
(SIGKILL) after its first case and restarted with --resume finishes without rewriting what was
done; two unsharded --resume runs started together on one folder segment each case once between
them; bad --shard values fail with one line.

usage: segment_shards.py path/to/neuroseg [path/to/neuroseg_bench_ops]
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import nibabel as nib

from _check import NEUROSEG, check, finish


def counts(stdout):
    m = re.search(r"segmented (\d+), skipped (\d+), failed (\d+)", stdout)
    return tuple(int(x) for x in m.groups()) if m else None


env = dict(os.environ, OMP_NUM_THREADS="1")
tmp = tempfile.mkdtemp(prefix="neuroseg_shards_")
try:
    ch2 = nib.load("/usr/share/mricron/templates/ch2.nii.gz")
    data = np.asanyarray(ch2.dataobj).astype(np.float32)[::4, ::4, ::4]
    affine = ch2.affine.copy()
    affine[:3, :3] *= 4
    rng = np.random.default_rng(0)
    cases = os.path.join(tmp, "cases")
    os.makedirs(cases)
    for i in range(10):
        nib.save(nib.Nifti1Image(data + rng.normal(0, 2, data.shape).astype(np.float32), affine),
                 os.path.join(cases, f"case{i:02d}.nii.gz"))
    base = [NEUROSEG, "segment", "-i", cases, "--device", "cpu", "--no-qc", "--resume"]

    # 4 shards at once.
    out = os.path.join(tmp, "four")
    procs = [subprocess.Popen(base + ["-o", out, "--shard", f"{k}/4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for k in range(4)]
    results = [p.communicate() for p in procs]
    check(all(p.returncode == 0 for p in procs), "4 concurrent shards succeed")
    done = [counts(o) for o, _ in results]
    check([d[0] for d in done] == [3, 3, 2, 2], f"shards segmented 3/3/2/2 cases: {done}")
    outputs = sorted(glob.glob(os.path.join(out, "*_seg.nii.gz")))
    check(len(outputs) == 10, f"all 10 outputs written ({len(outputs)})")
    summaries = sorted(glob.glob(os.path.join(out, "segment_summary.shard-*-of-4.csv")))
    rows = [l.split(",")[0] for s in summaries for l in open(s).read().splitlines()[1:]]
    check(len(summaries) == 4 and sorted(rows) == [f"case{i:02d}" for i in range(10)], "one summary per shard, each case in one")
    check(not glob.glob(os.path.join(out, ".claims", "*")) and not glob.glob(os.path.join(out, "*.tmp*")),
          "no claim or temporary files left")

    # Kill a shard after its first case, restart it with --resume.
    out = os.path.join(tmp, "killed")
    p = subprocess.Popen(base + ["-o", out, "--shard", "0/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not glob.glob(os.path.join(out, "*_seg.nii.gz")):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    first = {f: os.stat(f).st_ino for f in glob.glob(os.path.join(out, "*_seg.nii.gz"))}
    check(1 <= len(first) < 5, f"killed after {len(first)} of its 5 cases")
    r = subprocess.run(base + ["-o", out, "--shard", "0/2"], capture_output=True, text=True, env=env)
    c = counts(r.stdout)
    check(r.returncode == 0 and c is not None and c[0] == 5 - len(first) and c[1] == len(first),
          f"the restart segments the other {5 - len(first)} and skips the {len(first)} done: {c}")
    check(all(os.stat(f).st_ino == ino for f, ino in first.items()), "cases written before the kill were not rewritten")
    mine = sorted(os.path.basename(f) for f in glob.glob(os.path.join(out, "*_seg.nii.gz")))
    check(mine == [f"case{i:02d}_seg.nii.gz" for i in range(0, 10, 2)], "the shard's 5 cases, and only those")

    # Two unsharded runs on one folder at once: each case once between them.
    out = os.path.join(tmp, "overlap")
    procs = [subprocess.Popen(base + ["-o", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [p.communicate() for p in procs]
    done = [counts(o) for o, _ in results]
    check(all(p.returncode == 0 for p in procs) and sum(d[0] for d in done) == 10,
          f"two overlapping runs segmented 10 cases between them: {done}")
    check(len(glob.glob(os.path.join(out, "*_seg.nii.gz"))) == 10, "10 outputs")

    for bad in ["4/4", "1", "a/b", "-1/3"]:
        r = subprocess.run([NEUROSEG, "segment", "-i", cases, "-o", os.path.join(tmp, "bad"), "--shard", bad],
                           capture_output=True, text=True, env=env)
        check(r.returncode != 0 and "--shard" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
              f"--shard {bad}: one-line error")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(finish())
