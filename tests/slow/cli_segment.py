#!/usr/bin/env python3
"""`neuroseg segment` end to end on a folder of real volumes plus a corrupt one: outputs on
each input's exact grid (checked with nibabel), the bad case reported while the others are
written, QC pictures and gallery, summary CSV, --resume, and determinism.

usage: cli_segment.py path/to/neuroseg
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import nibabel as nib

from _check import NEUROSEG, check, finish

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NIBABEL = "/usr/lib/python3/dist-packages/nibabel/tests/data/"


tmp = tempfile.mkdtemp(prefix="neuroseg_segment_")
try:
    # A checkpoint: Python-made weights of a tiny U-Net plus preprocessing metadata.
    subprocess.run([sys.executable, os.path.join(ROOT, "tests/fixtures/make_torch_fixtures.py"), tmp], check=True, capture_output=True)
    meta = os.path.join(tmp, "meta.json")
    json.dump({"preprocessing": {"orientation": "RAS", "target_spacing": [3.0, 3.0, 3.0],
                                 "normalization": {"scheme": "zscore_case", "foreground_only": True}},
               "labels": {"background": 0, "a": 1, "b": 2}, "patch_size": [16, 32, 32],
               "postprocessing": {"largest_component": True}}, open(meta, "w"))
    model = os.path.join(tmp, "model.pt")
    args = json.dumps({"channels": [4, 8, 16], "strides": [[1, 1, 1], [2, 2, 2], [1, 2, 2]], "out_channels": 3})
    subprocess.run([NEUROSEG, "import-weights", "--model", "unet", "--args", args, "--weights",
                    os.path.join(tmp, "unet_state_dict.pt"), "--meta", meta, "-o", model], check=True, capture_output=True)

    cases = os.path.join(tmp, "cases")
    os.makedirs(cases)
    shutil.copy(os.path.join(ROOT, "data_samples/ch2bet_2mm.nii.gz"), cases)
    shutil.copy(NIBABEL + "anatomical.nii", cases)            # big-endian, sform
    shutil.copy(NIBABEL + "reoriented_anat_moved.nii", cases)  # oblique
    open(os.path.join(cases, "broken.nii.gz"), "wb").write(b"\x1f\x8b" + os.urandom(500))

    out = os.path.join(tmp, "out")
    p = subprocess.run([NEUROSEG, "segment", "-i", cases, "-o", out, "--model", model, "--device", "cpu"],
                       capture_output=True, text=True)
    print(p.stdout.strip())
    check(p.returncode == 1, f"a failing case makes the exit code non-zero (got {p.returncode})")
    check("broken.nii.gz" in p.stderr and "segmented 3, skipped 0, failed 1 of 4" in p.stdout, "the bad case is reported, the batch goes on")
    for name in ["ch2bet_2mm", "anatomical", "reoriented_anat_moved"]:
        src = [f for f in os.listdir(cases) if f.startswith(name)][0]
        ref = nib.load(os.path.join(cases, src))
        seg_path = os.path.join(out, name + "_seg.nii.gz")
        if not os.path.exists(seg_path):
            check(False, f"{name}: no output")
            continue
        seg = nib.load(seg_path)
        check(seg.shape == ref.shape[:3], f"{name}: shape {seg.shape} == input {ref.shape[:3]}")
        check(np.allclose(seg.affine, ref.affine, atol=1e-5), f"{name}: affine equals the input's (nibabel)")
        vals = set(np.unique(np.asanyarray(seg.dataobj)).tolist())
        check(vals <= {0, 1, 2}, f"{name}: label values {sorted(vals)}")
        check(os.path.getsize(os.path.join(out, "qc", name + ".png")) > 1000, f"{name}: QC picture")
    rows = list(csv.DictReader(open(os.path.join(out, "segment_summary.csv"))))
    check([r["status"] for r in rows] == ["ok", "failed", "ok", "ok"], f"summary statuses {[r['status'] for r in rows]}")
    check("broken.nii.gz" in rows[1]["error"], "summary names the failure")
    html = open(os.path.join(out, "index.html")).read()
    check(html.count("<figure>") == 4 and "qc/anatomical.png" in html, "gallery lists every case")
    check(not [f for f in os.listdir(out) if f.startswith(".neuroseg-tmp")], "no temporary files left")

    first = np.asanyarray(nib.load(os.path.join(out, "anatomical_seg.nii.gz")).dataobj).copy()
    p = subprocess.run([NEUROSEG, "segment", "-i", cases, "-o", out, "--model", model, "--resume"], capture_output=True, text=True)
    check("segmented 0, skipped 3, failed 1 of 4" in p.stdout, "--resume skips finished cases")
    out2 = os.path.join(tmp, "out2")
    subprocess.run([NEUROSEG, "segment", "-i", os.path.join(cases, "anatomical.nii"), "-o", out2, "--model", model,
                    "--probabilities", "--no-qc"], check=True, capture_output=True)
    check(np.array_equal(np.asanyarray(nib.load(os.path.join(out2, "anatomical_seg.nii.gz")).dataobj), first), "deterministic on CPU")
    prob = nib.load(os.path.join(out2, "anatomical_prob.nii.gz"))
    pa = np.asanyarray(prob.dataobj)
    check(prob.shape[3] == 3 and np.allclose(pa.sum(-1), 1, atol=1e-4), "probabilities: 3 classes summing to 1")
    check(not os.path.exists(os.path.join(out2, "qc")), "--no-qc writes no pictures")
    p = subprocess.run([NEUROSEG, "segment", "-i", cases, "-o", out, "--model", os.path.join(tmp, "nope.pt")], capture_output=True, text=True)
    check(p.returncode == 1 and p.stderr.strip().endswith("nope.pt: cannot open file (missing or unreadable)"), "missing model named")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

sys.exit(finish())
