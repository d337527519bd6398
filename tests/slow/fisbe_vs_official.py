#!/usr/bin/env python3
"""`neuroseg evaluate --benchmark fisbe` against the official FISBe evaluator.

The cases in tests/fixtures/fisbe/cases were made by tests/fixtures/fisbe/make_cases.py
(GT overlaps, partly-labelled samples, predictions <= 800 voxels, an empty prediction, exact
ties, many-to-many splits and merges with consumption, dim neurons, binary channels,
non-sequential ids, centre cropping). tests/fixtures/fisbe/expected holds what the official
evaluator (Kainmueller-Lab/evaluate-instance-segmentation @cc34f4d, `--app flylight`, Debian
12's numpy 1.24 / scikit-image 0.19) wrote for them: per-volume TOML and summary CSVs. Every
number must agree to 1e-6.

With NEUROSEG_EVALINSTSEG=/path/to/evaluate-instance-segmentation the official evaluator is
also run live on the same files.

Also: a single pair, a NIfTI prediction, and bad input (a prediction without GT in a batch,
a corrupt chunk) give one-line errors without stopping the other volumes.

usage: fisbe_vs_official.py path/to/neuroseg [...]
"""
import csv
import glob
import math
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

import numpy as np

from _check import check, finish, neuroseg

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures", "fisbe")
CASES = os.path.join(FIX, "cases")


def run(*args):
    return neuroseg(["evaluate", "--benchmark", "fisbe", *args])


def close(a, b):
    a, b = float(a), float(b)
    return abs(a - b) <= 1e-6 or (math.isnan(a) and math.isnan(b))


def diff_tree(a, b, path, out):
    """Every leaf of the reference's TOML `a` must be in `b` and agree."""
    if isinstance(a, dict):
        for k in a:
            if k not in b:
                out.append(f"{path}.{k} missing")
            else:
                diff_tree(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list):
        if len(a) != len(b):
            out.append(f"{path}: {a} vs {b}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff_tree(x, y, f"{path}[{i}]", out)
    elif not close(a, b):
        out.append(f"{path}: {a} vs {b}")


def compare_outputs(expected_dir, ours_dir, names=None):
    problems, compared = [], 0
    for f in sorted(glob.glob(os.path.join(expected_dir, "*.toml"))):
        name = os.path.basename(f)[: -len(".toml")].split("_volumes_")[0]
        if names is not None and name not in names:
            continue
        mine = os.path.join(ours_dir, name + ".toml")
        if not os.path.exists(mine):
            problems.append(f"{name}.toml not written")
            continue
        with open(f, "rb") as fa, open(mine, "rb") as fb:
            diff_tree(tomllib.load(fa), tomllib.load(fb), name, problems)
        compared += 1
    return problems, compared


def compare_csv(a, b):
    problems = []
    ra = list(csv.reader(open(a), delimiter=";"))
    rb = list(csv.reader(open(b), delimiter=";"))
    if ra[0] != rb[0]:
        problems.append(f"{os.path.basename(a)}: header differs")
    if len(ra) != len(rb):
        problems.append(f"{os.path.basename(a)}: {len(ra)} vs {len(rb)} rows")
    for x, y in zip(ra[1:], rb[1:]):
        if x[0] != y[0]:
            problems.append(f"{os.path.basename(a)}: row {x[0]} vs {y[0]}")
        for h, u, v in zip(ra[0][1:], x[1:], y[1:]):
            if not close(u, v):
                problems.append(f"{os.path.basename(a)} {x[0]} {h}: {u} vs {v}")
    return problems


tmp = tempfile.mkdtemp(prefix="neuroseg_fisbe_")
try:
    # 1. The whole suite as one batch with the official split file (completely + partly sets).
    out = os.path.join(tmp, "ours")
    r = run("--pred", os.path.join(CASES, "pred"), "--gt", os.path.join(CASES, "gt"), "--split-file",
            os.path.join(CASES, "sample_list_per_split.txt"), "-o", out)
    check(r.returncode == 0, f"batch of the fixture cases exits 0 (rc {r.returncode}) {r.stderr.strip()[-300:]}")
    problems, n = compare_outputs(os.path.join(FIX, "expected"), out)
    for s in ("summary.csv", "summary_complete.csv", "summary_partly.csv"):
        problems += compare_csv(os.path.join(FIX, "expected", s), os.path.join(out, s))
    for p in problems[:20]:
        print("     " + p)
    check(n == 11 and not problems, f"{n} volumes and 3 summaries equal the official evaluator's to 1e-6 "
          f"({len(problems)} differences)")
    print(r.stdout)

    # 2. A single pair, and the same prediction as NIfTI (one channel) give the same numbers.
    one = os.path.join(tmp, "one")
    r = run("--pred", os.path.join(CASES, "pred", "random_neurons.zarr"), "--gt",
            os.path.join(CASES, "gt", "random_neurons.zarr"), "-o", one)
    problems, n = compare_outputs(os.path.join(FIX, "expected"), one, {"random_neurons"})
    check(r.returncode == 0 and n == 1 and not problems, f"single zarr pair: {problems[:3]}")
    try:
        import nibabel as nib
        import zarr
        arr = np.asarray(zarr.open(os.path.join(CASES, "pred", "dim_neurons.zarr"), "r")["volumes/pred_instances"])
        nii_dir = os.path.join(tmp, "nii")
        os.makedirs(nii_dir)
        # Our (C, Z, Y, X) arrays are x-fastest: a NIfTI stores them as (X, Y, Z).
        nib.save(nib.Nifti1Image(arr.transpose(2, 1, 0).astype(np.int32), np.eye(4)), os.path.join(nii_dir, "dim_neurons.nii.gz"))
        r = run("--pred", nii_dir, "--gt", os.path.join(CASES, "gt"), "-o", os.path.join(tmp, "nii_out"))
        problems, n = compare_outputs(os.path.join(FIX, "expected"), os.path.join(tmp, "nii_out"), {"dim_neurons"})
        check(r.returncode == 0 and n == 1 and not problems, f"NIfTI prediction (int32 ids up to 70000): {problems[:3]}")
    except ImportError as e:
        print(f"skip NIfTI prediction check ({e})")

    # 3. Bad input: a prediction without GT and a corrupt GT chunk fail alone, the rest is scored.
    bad = os.path.join(tmp, "bad")
    shutil.copytree(os.path.join(CASES, "pred"), os.path.join(bad, "pred"))
    shutil.copytree(os.path.join(CASES, "gt"), os.path.join(bad, "gt"))
    shutil.copytree(os.path.join(bad, "pred", "exact_ties.zarr"), os.path.join(bad, "pred", "orphan.zarr"))
    chunk = [c for c in glob.glob(os.path.join(bad, "gt", "many_to_many.zarr", "volumes", "gt_instances", "*"))
             if not os.path.basename(c).startswith(".")][0]
    with open(chunk, "r+b") as f:
        f.truncate(40)
    r = run("--pred", os.path.join(bad, "pred"), "--gt", os.path.join(bad, "gt"), "-o", os.path.join(bad, "out"))
    errors = [l for l in r.stderr.splitlines() if "error:" in l]
    written = sorted(os.path.basename(p) for p in glob.glob(os.path.join(bad, "out", "*.toml")))
    check(r.returncode != 0 and len(written) == 10 and any("orphan" in l for l in errors)
          and any(os.path.basename(chunk) in l and "many_to_many" in l for l in errors),
          f"orphan prediction and corrupt chunk: rc {r.returncode}, {len(written)} volumes scored, errors: {errors}")
    check(not glob.glob(os.path.join(bad, "out", ".neuroseg-tmp*")), "no temporary files left behind")
    r = run("--pred", os.path.join(CASES, "pred", "exact_ties.zarr"), "--gt", os.path.join(tmp, "missing.zarr"),
            "-o", os.path.join(tmp, "x"))
    check(r.returncode != 0 and "missing.zarr" in r.stderr and not os.path.exists(os.path.join(tmp, "x")),
          f"missing GT: one-line error, no output ({r.stderr.strip()})")

    # 4. Optional: the official evaluator run live on the same files.
    evaluator = os.environ.get("NEUROSEG_EVALINSTSEG")
    if evaluator:
        live = os.path.join(tmp, "official")
        env = dict(os.environ, PYTHONPATH=evaluator)
        subprocess.run([sys.executable, "-m", "evalinstseg.evaluate", "--res_file", os.path.join(CASES, "pred"),
                        "--gt_file", os.path.join(CASES, "gt"), "--res_key", "volumes/pred_instances", "--gt_key",
                        "volumes/gt_instances", "--out_dir", live, "--split_file",
                        os.path.join(CASES, "sample_list_per_split.txt"), "--app", "flylight", "--from_scratch"],
                       env=env, check=True, capture_output=True)
        problems, n = compare_outputs(live, out)
        check(n == 11 and not problems, f"live official evaluator: {n} volumes, {problems[:5]}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(finish())
