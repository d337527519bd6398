#!/usr/bin/env python3
"""Connected components through neuroseg_bench_ops (--op components, argv[2]) on real atlases
(AAL and Brodmann, multi-label), the ch2bet brain mask, a 2D slice and random noise, at
6/18/26 (4/8 on the slice): labels identical to cc3d.connected_components, and to
scipy.ndimage.label where the semantics coincide (binary images; both number components in
raster order of their first voxel).

usage: components_vs_cc3d.py path/to/neuroseg path/to/neuroseg_bench_ops
"""
import os
import shutil
import subprocess
import sys
import tempfile

import cc3d
import nibabel as nib
import numpy as np
from scipy import ndimage

from _check import BENCH_OPS, check, finish

TEMPLATES = "/usr/share/mricron/templates"
STRUCTURE = {4: ndimage.generate_binary_structure(2, 1), 8: np.ones((3, 3)), 6: ndimage.generate_binary_structure(3, 1),
             18: ndimage.generate_binary_structure(3, 2), 26: np.ones((3, 3, 3))}

tmp = tempfile.mkdtemp(prefix="neuroseg_cc_")
try:
    rng = np.random.default_rng(0)
    aal = nib.load(f"{TEMPLATES}/aal.nii.gz")
    brodmann = nib.load(f"{TEMPLATES}/brodmann.nii.gz")
    brain = nib.load(f"{TEMPLATES}/ch2bet.nii.gz")
    brain_mask = (np.asanyarray(brain.dataobj) > 0).astype(np.uint8)
    cases = [
        ("aal", np.asanyarray(aal.dataobj), aal.affine, False, (6, 18, 26)),
        ("brodmann", np.asanyarray(brodmann.dataobj), brodmann.affine, False, (6, 18, 26)),
        ("ch2bet_mask", brain_mask, brain.affine, True, (6, 18, 26)),
        ("noise_odd", (rng.random((61, 47, 33)) > 0.6).astype(np.uint8), np.eye(4), True, (6, 18, 26)),
        ("noise_multi", rng.integers(0, 4, (40, 41, 42)).astype(np.int16), np.eye(4), False, (6, 18, 26)),
        ("aal_slice", np.asanyarray(aal.dataobj)[:, :, 90:91], aal.affine, False, (4, 8)),
        ("mask_slice", brain_mask[:, 100:101, :].transpose(0, 2, 1).copy(), np.eye(4), True, (4, 8)),
    ]
    for name, volume, affine, binary, connectivities in cases:
        path = os.path.join(tmp, name + ".nii.gz")
        nib.save(nib.Nifti1Image(volume, affine), path)
        # neuroseg's (D, H, W) raster order is the NIfTI storage order: x fastest.
        array = np.asfortranarray(volume)
        two_d = connectivities == (4, 8)
        for k in connectivities:
            out = os.path.join(tmp, f"{name}_{k}.nii.gz")
            subprocess.run([BENCH_OPS, "--op", "components", "--input", path, "--param", str(k), "--repeats", "0",
                            "--output", out], check=True, capture_output=True)
            ours = np.asanyarray(nib.load(out).dataobj)
            if two_d:
                ours = ours.reshape(volume.shape[:2])
                ref = cc3d.connected_components(array[:, :, 0], connectivity=k)
            else:
                ref = cc3d.connected_components(array, connectivity=k)
            ok = ours.shape == ref.shape and np.array_equal(ours, ref)
            line = f"{name} {volume.shape} {volume.dtype} connectivity {k}: {int(ref.max())} components, " \
                   f"cc3d {'equal' if ok else 'DIFFERENT'}"
            if binary:
                # scipy's raster order is C order: label the transposed (z, y, x) array.
                sp, n = ndimage.label(array.T if not two_d else array[:, :, 0].T, structure=STRUCTURE[k])
                same = ours.shape == sp.T.shape and np.array_equal(ours, sp.T) and n == ref.max()
                line += f", scipy {'equal' if same else 'DIFFERENT'}"
                ok = ok and same
            check(ok, line)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(finish())
