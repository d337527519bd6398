#!/usr/bin/env python3
"""The README's main job: `neuroseg segment` with the shipped default model (no --model) on
the real T1 of mricron-data's ch2, checked against the ch2bet brain mask (voxels > 0) with
nibabel: Dice >= 0.95 and ch2's exact grid. Prints the wall time (not asserted).

usage: cli_default_model.py path/to/neuroseg
"""
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import nibabel as nib

from _check import check, finish, neuroseg

T = "/usr/share/mricron/templates/"
tmp = tempfile.mkdtemp(prefix="neuroseg_default_")
try:
    t0 = time.perf_counter()
    p = neuroseg(["segment", "-i", T + "ch2.nii.gz", "-o", tmp, "--device", "cpu"], must_succeed=True)
    seconds = time.perf_counter() - t0
    print(p.stdout.strip())
    seg = nib.load(os.path.join(tmp, "ch2_seg.nii.gz"))
    ref_img = nib.load(T + "ch2.nii.gz")
    mask = np.asanyarray(nib.load(T + "ch2bet.nii.gz").dataobj) > 0
    pred = np.asanyarray(seg.dataobj) > 0
    dice = 2.0 * (pred & mask).sum() / (pred.sum() + mask.sum())
    ok_grid = seg.shape == ref_img.shape and np.allclose(seg.affine, ref_img.affine, atol=1e-6)
    check(dice >= 0.95, f"default model on ch2: Dice {dice:.4f} vs ch2bet > 0 ({seconds:.1f} s wall)")
    check(ok_grid, "the segmentation has ch2's grid")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(finish())
