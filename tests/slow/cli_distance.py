#!/usr/bin/env python3
"""`neuroseg convert --distance-map` (exact EDT) against scipy.ndimage.distance_transform_edt
on a real brain mask and random masks, with anisotropic spacing (agreement to 1e-5).

usage: cli_distance.py path/to/neuroseg
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import nibabel as nib
from scipy import ndimage

from _check import NEUROSEG, check, finish

tmp = tempfile.mkdtemp(prefix="neuroseg_edt_")
try:
    rng = np.random.default_rng(0)
    brain = np.asanyarray(nib.load("/usr/share/mricron/templates/ch2bet.nii.gz").dataobj) > 0
    cases = {"brain_1mm": (brain, (1.0, 1.0, 1.0)), "brain_aniso": (brain[::2, :, ::3], (2.0, 1.0, 3.0)),
             "random_odd": (rng.random((33, 40, 27)) > 0.2, (0.7, 1.3, 2.5)), "sparse": (rng.random((16, 17, 18)) > 0.995, (1.0, 0.5, 2.0))}
    for name, (mask, spacing) in cases.items():
        path = os.path.join(tmp, name + ".nii.gz")
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.diag(list(spacing) + [1.0])), path)
        out = os.path.join(tmp, name + "_edt.nii.gz")
        subprocess.run([NEUROSEG, "convert", path, out, "--distance-map"], check=True, capture_output=True)
        ours = np.asanyarray(nib.load(out).dataobj).astype(np.float64)
        ref = ndimage.distance_transform_edt(mask, sampling=spacing)
        err = np.abs(ours - ref).max() / max(1.0, ref.max())
        ok = err < 1e-5 and ours.shape == ref.shape
        check(ok, f"{name} {mask.shape} spacing {spacing}: max relative error {err:.2e}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(finish())
