#!/usr/bin/env python3
"""`neuroseg_bench_ops --op skeleton / skeleton_labels` (metrics/skeleton) against
scikit-image's skeletonize_3d, voxel for voxel, on the real ch2bet brain mask (full and
2x downsampled), neuron-like random-walk tubes, smoothed-noise blobs, anisotropic and
one-slice volumes, and a label image (one skeleton per instance).

usage: skeleton_vs_skimage.py path/to/neuroseg path/to/neuroseg_bench_ops
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import nibabel as nib
from scipy import ndimage
from skimage.morphology import skeletonize_3d

from _check import BENCH_OPS as OPS, check, finish


def tubes(rng, shape, walks, radius=(1.0, 3.0)):
    """Random walks with momentum, dilated to a radius per walk: neuron-like branches."""
    centre = np.zeros(shape, bool)
    rad = np.zeros(shape, np.float32)
    for _ in range(walks):
        p = rng.uniform(0.2, 0.8, 3) * shape
        v = rng.normal(size=3)
        r = rng.uniform(*radius)
        for _ in range(4 * max(shape)):
            v = 0.85 * v / np.linalg.norm(v) + 0.5 * rng.normal(size=3)
            p = np.clip(p + v / np.linalg.norm(v), 0, np.array(shape) - 1)
            i = tuple(np.round(p).astype(int))
            centre[i] = True
            rad[i] = r
    dist, idx = ndimage.distance_transform_edt(~centre, return_indices=True)
    return dist <= rad[tuple(idx)]


def run_op(op, array, tmp, threads=2):
    path, out = os.path.join(tmp, "in.nii.gz"), os.path.join(tmp, "out.nii.gz")
    # neuroseg reads NIfTI (x, y, z) as (z, y, x): store the transpose so both see `array`.
    nib.save(nib.Nifti1Image(np.ascontiguousarray(array.T), np.eye(4)), path)
    r = subprocess.run([OPS, "--op", op, "--input", path, "--output", out, "--repeats", "1", "--threads", str(threads)],
                       check=True, capture_output=True, text=True)
    seconds = json.loads(r.stdout.strip().splitlines()[-1])["seconds"]
    return np.asanyarray(nib.load(out).dataobj).T, seconds


tmp = tempfile.mkdtemp(prefix="neuroseg_skeleton_")
try:
    rng = np.random.default_rng(0)
    brain = np.asanyarray(nib.load("/usr/share/mricron/templates/ch2bet.nii.gz").dataobj) > 0
    noise = ndimage.gaussian_filter(rng.random((96, 96, 96)), 3)
    cases = {
        "brain 181x217x181": brain,
        "brain/2": brain[::2, ::2, ::2],
        "brain one slice": brain[90:91],
        "tubes 128^3": tubes(rng, (128, 128, 128), walks=8),
        "thick tubes anisotropic": tubes(rng, (40, 150, 90), walks=5, radius=(2.0, 5.0)),
        "blobs 96^3": noise > np.quantile(noise, 0.7),
        "slab 3x120x110": ndimage.gaussian_filter(rng.random((3, 120, 110)), 2) > 0.5,
        # Planes of >= 2^17 padded voxels: several passes in flight per thread (4 on one
        # thread, 2 each on two; metrics/skeleton.cpp, Thinner::pass_depth).
        "blobs, wide planes 9x420x330": ndimage.gaussian_filter(rng.random((9, 420, 330)), 3) > 0.5,
    }
    for name, mask in cases.items():
        ref = skeletonize_3d(mask.astype(np.uint8)) != 0
        for threads in (2, 1) if "wide" in name else (2,):
            ours, seconds = run_op("skeleton", mask.astype(np.uint8), tmp, threads)
            ok = ours.shape == mask.shape and set(np.unique(ours)) <= {0, 1} and np.array_equal(ours != 0, ref)
            check(ok, f"{name} {mask.shape}, {threads} threads: {int(mask.sum())} voxels -> {int(ref.sum())} in "
                      f"the skeleton, {int(np.count_nonzero((ours != 0) != ref))} differ ({seconds:.3f} s)")

    # Instances that touch: thick tubes cut by a 3x3x3 grid of blocks, each piece a label.
    mask = tubes(rng, (60, 90, 80), walks=10, radius=(1.5, 3.5))
    z, y, x = np.indices(mask.shape)
    labels = np.where(mask, 1000 + 37 * ((z // 20) * 9 + (y // 30) * 3 + x // 27), 0).astype(np.int32)
    values = [v for v in np.unique(labels) if v != 0]
    n = len(values)
    ours, _ = run_op("skeleton_labels", labels, tmp)
    bad = [v for v in values if not np.array_equal(ours == v, skeletonize_3d((labels == v).astype(np.uint8)) != 0)]
    ok = n > 1 and not bad and set(np.unique(ours)) <= set(values) | {0}
    check(ok, f"skeleton_labels: {n} instances, {len(bad)} differ")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(finish())
