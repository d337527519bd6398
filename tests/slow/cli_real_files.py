#!/usr/bin/env python3
"""End-to-end check of `neuroseg info` and `neuroseg convert` on real files that no one
here wrote (Debian's nibabel, dipy, pydicom and mricron-data packages), against
independent readers: nibabel for NIfTI, pydicom for DICOM.

usage: cli_real_files.py path/to/neuroseg
"""
import glob
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import nibabel as nib
import pydicom

from _check import check, finish, neuroseg

NIBABEL = "/usr/lib/python3/dist-packages/nibabel/tests/data/"
DIPY = "/usr/lib/python3/dist-packages/dipy/data/files/"
MRICRON = "/usr/share/mricron/templates/"
PYDICOM = "/usr/lib/python3/dist-packages/pydicom/data/test_files/"


def run(*args):
    return neuroseg(args, must_succeed=True)


def info(path):
    return json.loads(run("info", "--json", path).stdout)


def polar(m):
    """Nearest rotation of the column-normalised 3x3 (what neuroseg keeps of a sheared affine)."""
    n = np.linalg.norm(m, axis=0)
    u, _, vt = np.linalg.svd(m / n)
    return (u @ vt) * n


def nifti_files():
    files = sorted(glob.glob(NIBABEL + "*.nii*") + glob.glob(DIPY + "*.nii*") + glob.glob(MRICRON + "*.nii.gz"))
    return [f for f in files if not f.endswith(".dconn.nii")]  # CIFTI, not a volume


def spatial_expected(img):
    shape = img.shape + (1,) * (3 - len(img.shape))
    return list(shape[:3]), int(np.prod(img.shape[3:])) if len(img.shape) > 3 else 1


# 1. info agrees with nibabel on every real NIfTI file: shape, spacing, affine.
n_checked = 0
for f in nifti_files():
    img = nib.load(f)
    j = info(f)
    name = os.path.basename(f)
    size, channels = spatial_expected(img)
    check(j["size_xyz"] == size, f"{name}: size {j['size_xyz']} vs nibabel {size}")
    check(j["channels"] == channels, f"{name}: channels {j['channels']} vs nibabel {channels}")
    aff = img.affine.astype(np.float64)
    ours = np.array(j["affine_ras"])
    shear = np.abs(aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0) - polar(aff[:3, :3]) / np.linalg.norm(aff[:3, :3], axis=0)).max()
    if shear > 1e-6:  # documented: a sheared affine becomes its nearest rotation, with a warning
        check(np.allclose(ours[:3, :3], polar(aff[:3, :3]), atol=1e-6), f"{name}: sheared affine not replaced by its polar factor")
        check(np.allclose(ours[:3, 3], aff[:3, 3], atol=1e-5), f"{name}: sheared affine origin changed")
    else:
        check(np.allclose(ours, aff, atol=1e-5, rtol=1e-6), f"{name}: affine\n{ours}\nvs nibabel\n{aff}")
    zooms = np.array(img.header.get_zooms()[:3])
    check(np.allclose(j["spacing"][: len(zooms)], zooms, rtol=1e-5), f"{name}: spacing {j['spacing']} vs {zooms}")
    n_checked += 1
print(f"info == nibabel on {n_checked} real NIfTI files")

# 2. ch2: the numbers the issue names.
j = info(MRICRON + "ch2.nii.gz")
check(j["size_xyz"] == [181, 217, 181] and j["spacing"] == [1.0, 1.0, 1.0], "ch2: not 181x217x181 at 1 mm")
check(j["dtype"] == "uint8" and j["orientation"] == "RAS", "ch2: dtype/orientation")

# 3. Round trips through every format, checked by nibabel on the way back.
tmp = tempfile.mkdtemp(prefix="neuroseg_slow_")
try:
    cases = [MRICRON + "ch2bet.nii.gz", MRICRON + "inia19-NeuroMaps.nii.gz", MRICRON + "inia19-t1-brain.nii.gz",
             NIBABEL + "anatomical.nii", NIBABEL + "example4d.nii.gz", NIBABEL + "example_nifti2.nii.gz",
             NIBABEL + "reoriented_anat_moved.nii", DIPY + "small_101D.nii.gz", DIPY + "test_piesno.nii.gz",
             DIPY + "aniso_vox.nii.gz", MRICRON + "JHU-WhiteMatter-labels-2mm.nii.gz"]
    formats = [".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr", ".tif", ".zarr"]
    n_trips = 0
    for f in cases:
        src = nib.load(f)
        ref = np.asanyarray(src.dataobj)
        name = os.path.basename(f)
        for ext in formats:
            if ext == ".tif" and (ref.ndim > 3 or ref.dtype.itemsize == 8 or ref.dtype.kind == "i" and ref.dtype.itemsize == 4):
                continue  # TIFF holds 3D u8/i16/u16/f32 only (tested as an error in cli_bad_input)
            mid = os.path.join(tmp, "mid" + ext)
            back = os.path.join(tmp, "back.nii.gz")
            run("convert", f, mid)
            run("convert", mid, back)
            out = nib.load(back)
            got = np.asanyarray(out.dataobj)
            check(got.dtype.newbyteorder("=") == ref.dtype.newbyteorder("="), f"{name} via {ext}: dtype {got.dtype} vs {ref.dtype}")
            check(got.shape == ref.shape, f"{name} via {ext}: shape {got.shape} vs {ref.shape}")
            if got.shape == ref.shape:
                check(np.array_equal(got, ref), f"{name} via {ext}: voxels differ")
            if ext != ".tif":  # TIFF stores no origin/direction/z spacing (docs/io.md)
                a, b = out.affine, src.affine
                if np.abs(polar(b[:3, :3]) - b[:3, :3]).max() > 1e-6:
                    b = b.copy(); b[:3, :3] = polar(b[:3, :3])
                check(np.allclose(a, b, atol=1e-5), f"{name} via {ext}: affine\n{a}\nvs\n{b}")
            shutil.rmtree(mid, ignore_errors=True) if ext == ".zarr" else os.remove(mid)
            if ext in (".mhd", ".nhdr"):
                for extra in glob.glob(os.path.join(tmp, "mid.*")):
                    os.remove(extra)
            n_trips += 1
    print(f"{n_trips} format round trips bit-identical with exact geometry (nibabel on the way back)")

    # 4. Scaled NIfTI (scl_slope/inter): values as nibabel scales them, and stored back as int16.
    data = (np.arange(4 * 5 * 6).reshape(4, 5, 6) - 40).astype(np.int16)
    img = nib.Nifti1Image(data, np.diag([2.0, 3.0, 4.0, 1.0]))
    img.header.set_slope_inter(0.5, 10.0)
    scaled = os.path.join(tmp, "scaled.nii")
    nib.save(img, scaled)
    j = info(scaled)
    expect = np.asanyarray(nib.load(scaled).dataobj)
    check(abs(j["range"][0] - expect.min()) < 1e-6 and abs(j["range"][1] - expect.max()) < 1e-6, "scaled: range")
    run("convert", scaled, os.path.join(tmp, "scaled2.nii.gz"))
    again = nib.load(os.path.join(tmp, "scaled2.nii.gz"))
    check(again.get_data_dtype() == np.int16 and (float(again.dataobj.slope), float(again.dataobj.inter)) == (0.5, 10.0),
          "scaled: not stored back as scaled int16")
    check(np.array_equal(np.asanyarray(again.dataobj), expect), "scaled: values differ after round trip")

    # 5. DICOM: single files in several transfer syntaxes and a two-slice series, against pydicom.
    for name in ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "CT_small.dcm"]:
        ds = pydicom.dcmread(PYDICOM + name)
        j = info(PYDICOM + name)
        check(j["size_xyz"][:2] == [int(ds.Columns), int(ds.Rows)], f"{name}: size {j['size_xyz']}")
        check(np.allclose(j["spacing"][:2], [float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])]), f"{name}: spacing")
        check(np.allclose(j["origin_lps"], [float(x) for x in ds.ImagePositionPatient], atol=1e-4), f"{name}: origin")
        out = os.path.join(tmp, "dcm.nii.gz")
        run("convert", PYDICOM + name, out)
        px = ds.pixel_array.astype(np.float64)
        if "RescaleSlope" in ds:
            px = px * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        ours = np.asanyarray(nib.load(out).dataobj).astype(np.float64)
        check(np.array_equal(ours.reshape(ours.shape[0], ours.shape[1]).T, px), f"{name}: pixels differ from pydicom")
    series = os.path.join(tmp, "series")
    os.makedirs(series)
    for n in ("0.dcm", "1.dcm"):
        shutil.copy(NIBABEL + n, series)
    j = info(series)
    d0 = pydicom.dcmread(NIBABEL + "0.dcm")
    check(j["size_xyz"] == [int(d0.Columns), int(d0.Rows), 2], f"DICOM series: size {j['size_xyz']}")
    check(abs(j["spacing"][2] - 3.0) < 1e-4, f"DICOM series: slice spacing {j['spacing'][2]}")
    check(np.allclose(j["origin_lps"], [float(x) for x in d0.ImagePositionPatient], atol=1e-3), "DICOM series: origin")
    print("DICOM files and series agree with pydicom")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

sys.exit(finish())
