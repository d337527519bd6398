#!/usr/bin/env python3
"""The README's main job: `neuroseg segment` with the shipped default model (no --model) on
the real T1 of mricron-data's ch2, checked against the ch2bet brain mask (voxels > 0) with
nibabel: Dice >= 0.95 and ch2's exact grid. Prints the wall time (not asserted).

usage: cli_default_model.py path/to/neuroseg
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import nibabel as nib

NEUROSEG = sys.argv[1]
T = "/usr/share/mricron/templates/"
tmp = tempfile.mkdtemp(prefix="neuroseg_default_")
try:
    t0 = time.perf_counter()
    p = subprocess.run([NEUROSEG, "segment", "-i", T + "ch2.nii.gz", "-o", tmp, "--device", "cpu"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    print(p.stdout.strip())
    if p.returncode != 0:
        print(p.stderr)
        sys.exit(1)
    seg = nib.load(os.path.join(tmp, "ch2_seg.nii.gz"))
    ref_img = nib.load(T + "ch2.nii.gz")
    mask = np.asanyarray(nib.load(T + "ch2bet.nii.gz").dataobj) > 0
    pred = np.asanyarray(seg.dataobj) > 0
    dice = 2.0 * (pred & mask).sum() / (pred.sum() + mask.sum())
    ok_grid = seg.shape == ref_img.shape and np.allclose(seg.affine, ref_img.affine, atol=1e-6)
    print(f"default model on ch2: Dice {dice:.4f} vs ch2bet > 0, grid {'equal' if ok_grid else 'DIFFERENT'}, {seconds:.1f} s wall")
    if dice < 0.95 or not ok_grid:
        sys.exit(1)
    print("default model check passed")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
