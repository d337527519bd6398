#!/usr/bin/env python3
"""`neuroseg evaluate --benchmark spider` against the official SPIDER evaluation.py
(DIAGNijmegen/SPIDER-Evaluation @052300b) on the fixture cases of tests/fixtures/spider: the
numbers the script produced (expected_official.json; expected_correct.json from the script
with the spacing reversed) must be matched to 1e-6, aggregate and per case, for
--spacing official and correct. Then bad input: a batch with a corrupt, a mismatched and a
missing prediction scores the rest and exits non-zero; a single bad pair is one stderr line
naming the file, and nothing is written. Last, `neuroseg segment --instances spine` end to end.

With SPIDER_EVALUATION_PY=/path/to/evaluation.py (and SimpleITK + pandas importable) the
official script is also run here and its numbers compared with the committed ones.

usage: spider_vs_official.py path/to/neuroseg [path/to/neuroseg_bench_ops]
"""
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

from _check import check, finish, neuroseg

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "spider")
NAMES = ["DiceScoreVertebrae", "DiceScoreDiscs", "DiceScoreSpinalCanal", "OveralDiceScore", "DetectionRateVertebrae",
         "DetectionRateDiscs", "ASDVertebrae", "ASDDiscs", "ASDSpinalCanal", "OveralASD"]
TOL = 1e-6
max_diff = 0.0


def same(got, want):
    global max_diff
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return got is None or (isinstance(got, float) and math.isnan(got))
    if got is None or math.isnan(got):
        return False
    max_diff = max(max_diff, abs(got - want))
    return abs(got - want) <= TOL


def compare(got_aggregate, got_cases, expected, label):
    check(list(got_aggregate) == NAMES, f"{label}: metrics.json keys {list(got_aggregate)}")
    for k in NAMES:
        for stat in ("mean", "std"):
            g, w = got_aggregate[k][stat], expected["aggregate"][k][stat]
            check(same(g, w), f"{label}: aggregate {k} {stat}: neuroseg {g!r}, official {w!r}")
    check(sorted(got_cases) == sorted(expected["cases"]), f"{label}: cases {sorted(got_cases)}")
    for name, want in expected["cases"].items():
        for k in NAMES:
            g = got_cases.get(name, {}).get(k)
            check(same(g, want[k]), f"{label}: {name} {k}: neuroseg {g!r}, official {want[k]!r}")


def run(*args):
    return neuroseg(args)


def write_float_mha(path, values, dims):
    """An uncompressed MET_FLOAT MetaImage (x fastest), identity geometry."""
    header = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              "CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\n"
              "ElementSpacing = 1 1 1\nDimSize = %d %d %d\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n" % dims)
    with open(path, "wb") as f:
        f.write(header.encode() + struct.pack("<%df" % len(values), *values))


tmp = tempfile.mkdtemp(prefix="neuroseg_spider_")
try:
    # 1. Agreement with the official numbers, both spacings.
    for mode in ("official", "correct"):
        expected = json.load(open(os.path.join(FIXTURES, f"expected_{mode}.json")))
        out = os.path.join(tmp, f"out_{mode}")
        p = run("evaluate", "--benchmark", "spider", "--pred", os.path.join(FIXTURES, "pred"), "--gt",
                os.path.join(FIXTURES, "gt"), "-o", out, "--spacing", mode)
        check(p.returncode == 0, f"{mode}: exit {p.returncode}: {p.stderr}")
        if p.returncode != 0:
            continue
        aggregate = json.load(open(os.path.join(out, "metrics.json")))
        cases = json.load(open(os.path.join(out, "cases.json")))
        per_case = {c["case"]: c["metrics"] for c in cases["cases"]}
        compare(aggregate, per_case, expected, mode)
        csv = open(os.path.join(out, "cases.csv")).read().splitlines()
        check(len(csv) == 1 + len(expected["cases"]) and csv[0].endswith(",".join(NAMES)), f"{mode}: cases.csv {csv[:1]}")
        # The branches the cases were built for, seen in the per-label details.
        labels = {c["case"]: {l["label"]: l for l in c["labels"]} for c in cases["cases"]}
        check(labels["2_t2"][2]["match"] == 2 and labels["2_t2"][3]["match"] == 2, "2_t2: merged vertebrae share a match")
        check(labels["2_t2"][4]["match"] == 4, "2_t2: split vertebra matched to its larger part")
        check(labels["2_t2"][5]["match"] == 50, "2_t2: tie goes to the smaller label")
        check(labels["3_t1"][202]["dice"] == 0.1 and labels["3_t1"][202]["detected"], "3_t1: Dice 0.1 detected")
        check(labels["3_t1"][203]["dice"] < 0.1 and not labels["3_t1"][203]["detected"], "3_t1: Dice < 0.1 missed")
        check(labels["4_t2"][3]["match"] == 0 and math.isnan(labels["4_t2"][3]["asd"]), "4_t2: unmatched vertebra has NaN ASD")
    print(f"agreement with the official script: max |diff| {max_diff:.3g} (tolerance {TOL})")

    # 2. Optionally, the official script itself, here and now.
    script = os.environ.get("SPIDER_EVALUATION_PY")
    if script:
        for mode in ("official", "correct"):
            live = os.path.join(tmp, f"live_{mode}.json")
            subprocess.run([sys.executable, os.path.join(FIXTURES, "run_official.py"), script, os.path.join(FIXTURES, "pred"),
                            os.path.join(FIXTURES, "gt", "masks"), live] + (["--reverse-spacing"] if mode == "correct" else []),
                           check=True)
            got = json.load(open(live))
            compare({k: got["aggregate"][k] for k in NAMES}, got["cases"],
                    json.load(open(os.path.join(FIXTURES, f"expected_{mode}.json"))), f"live official script ({mode})")
    else:
        print("SPIDER_EVALUATION_PY not set: the committed official numbers are used")

    # 3. A batch with bad cases: corrupt, other grid, missing prediction. The rest is scored.
    bad = os.path.join(tmp, "bad")
    shutil.copytree(os.path.join(FIXTURES, "pred"), os.path.join(bad, "pred"))
    shutil.copytree(os.path.join(FIXTURES, "gt"), os.path.join(bad, "gt"))
    corrupt = os.path.join(bad, "pred", "1_t1.mha")
    data = open(corrupt, "rb").read()
    open(corrupt, "wb").write(data[: len(data) - 200])
    moved = os.path.join(bad, "pred", "2_t2.mha")
    data = open(moved, "rb").read()
    open(moved, "wb").write(re.sub(rb"ElementSpacing = [^\n]*", b"ElementSpacing = 0.5 0.5 4.5", data, count=1))
    os.remove(os.path.join(bad, "pred", "5_t1.mha"))
    out = os.path.join(bad, "out")
    p = run("evaluate", "--benchmark", "spider", "--pred", os.path.join(bad, "pred"), "--gt", os.path.join(bad, "gt"), "-o", out)
    errors = [l for l in p.stderr.splitlines() if "error:" in l]
    check(p.returncode != 0, "bad batch: exit 0")
    check(any("1_t1.mha" in l for l in errors) and any("2_t2.mha" in l for l in errors), f"bad batch: errors {errors}")
    check("no prediction for case '5_t1'" in p.stderr, "bad batch: the missing prediction is not reported")
    if os.path.exists(os.path.join(out, "cases.json")):
        c = json.load(open(os.path.join(out, "cases.json")))
        check(sorted(x["case"] for x in c["cases"]) == ["3_t1", "4_t2", "6_space"] and len(c["failed"]) == 2,
              f"bad batch: scored {[x['case'] for x in c['cases']]}, failed {c['failed']}")
        check(os.path.exists(os.path.join(out, "metrics.json")), "bad batch: no metrics.json for the scored cases")
    else:
        check(False, "bad batch: no cases.json")
    check(not any(n.startswith(".") for n in os.listdir(out)), f"bad batch: leftovers {os.listdir(out)}")

    # 4. A single bad pair: one line naming the file, non-zero, nothing written.
    gt_one = os.path.join(FIXTURES, "gt", "masks", "2_t2.mha")
    for pred, problem in ((corrupt, ""), (moved, "spacing")):
        out1 = os.path.join(tmp, "single_" + os.path.basename(pred))
        p = run("evaluate", "--benchmark", "spider", "--pred", pred, "--gt", gt_one, "-o", out1)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        ok = p.returncode != 0 and len(lines) == 1 and lines[0].startswith("neuroseg: error:") and os.path.basename(pred) in lines[0]
        check(ok and problem in lines[0].lower() and not os.path.exists(out1), f"single bad pair {pred}: {p.returncode} {lines}")
    flt_pred, flt_gt = os.path.join(tmp, "float_pred.mha"), os.path.join(tmp, "float_gt.mha")
    write_float_mha(flt_pred, [0.5] + [0.0] * 23, (4, 3, 2))
    write_float_mha(flt_gt, [1.0] + [0.0] * 23, (4, 3, 2))
    p = run("evaluate", "--benchmark", "spider", "--pred", flt_pred, "--gt", flt_gt, "-o", os.path.join(tmp, "single_float"))
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    check(p.returncode != 0 and len(lines) == 1 and "float_pred.mha" in lines[0] and "non-integer" in lines[0],
          f"non-integer prediction: {p.returncode} {lines}")
    p = run("evaluate", "--benchmark", "spider", "--pred", os.path.join(tmp, "nope.mha"), "--gt", flt_gt, "-o", os.path.join(tmp, "x"))
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    check(p.returncode != 0 and len(lines) == 1 and "nope.mha" in lines[0], f"missing prediction file: {lines}")

    # 5. segment --instances spine through the CLI: the shipped brain-extraction model's mask,
    # cut at the top of the field of view, is one "vertebra" touching the cranio-caudal end: 101.
    import nibabel as nib
    import numpy as np
    src = nib.load(os.path.join(HERE, "..", "..", "data_samples", "ch2bet_2mm.nii.gz"))  # RAS, axis 2 = S
    nib.save(nib.Nifti1Image(np.asanyarray(src.dataobj)[:, :, :60], src.affine, src.header), os.path.join(tmp, "top.nii.gz"))
    seg = os.path.join(tmp, "seg")
    p = run("segment", "-i", os.path.join(tmp, "top.nii.gz"), "-o", seg, "--instances", "spine", "--no-qc")
    labels = np.unique(np.asanyarray(nib.load(os.path.join(seg, "top_seg.nii.gz")).dataobj)) if p.returncode == 0 else None
    check(p.returncode == 0 and list(labels) == [0, 101], f"segment --instances spine: {p.returncode} {labels} {p.stderr[-300:]}")
    p = run("segment", "-i", os.path.join(tmp, "top.nii.gz"), "-o", seg, "--instances", "neuronz")
    check(p.returncode != 0 and "--instances" in p.stderr, f"segment --instances neuronz: {p.returncode} {p.stderr}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

sys.exit(finish())
