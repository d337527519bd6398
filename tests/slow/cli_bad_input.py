#!/usr/bin/env python3
"""Bad input through the CLI: each case must end with one line on stderr that names the
file and the problem, a non-zero exit, and no output left behind (not even a temporary).

usage: cli_bad_input.py path/to/neuroseg
"""
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import nibabel as nib

from _check import NEUROSEG, check, finish

CH2 = "/usr/share/mricron/templates/ch2.nii.gz"
tmp = tempfile.mkdtemp(prefix="neuroseg_bad_")


def path(name):
    return os.path.join(tmp, name)


def expect_error(args, names, problem, output=None):
    """neuroseg args must fail with one stderr line naming `names` and containing `problem`."""
    p = subprocess.run([NEUROSEG, *args], capture_output=True, text=True)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    label = " ".join(os.path.basename(a) for a in args)
    ok = p.returncode not in (0,) and len(lines) == 1 and lines[0].startswith("neuroseg: error:")
    ok = ok and names in lines[0] and problem.lower() in lines[0].split(names, 1)[-1].lower()
    if output is not None:
        leftovers = [f for f in os.listdir(os.path.dirname(output)) if f.startswith(os.path.basename(output)) or f.startswith(".neuroseg-tmp")]
        ok = ok and not leftovers
    check(ok, f"[{label}] rc={p.returncode}: {p.stderr.strip()}")


try:
    raw = gzip.open(CH2).read()

    expect_error(["info", path("missing.nii.gz")], "missing.nii.gz", "no such file")

    open(path("truncated.nii"), "wb").write(raw[: len(raw) // 2])
    expect_error(["info", path("truncated.nii")], "truncated.nii", "truncated")

    gz = open(CH2, "rb").read()
    open(path("truncated.nii.gz"), "wb").write(gz[: len(gz) // 2])
    expect_error(["info", path("truncated.nii.gz")], "truncated.nii.gz", "truncated")

    bad = bytearray(gz)
    for i in range(len(bad) // 2, len(bad) // 2 + 64):
        bad[i] ^= 0x5A
    open(path("corrupt.nii.gz"), "wb").write(bytes(bad))
    expect_error(["info", path("corrupt.nii.gz")], "corrupt.nii.gz", "corrupt")

    hdr = bytearray(raw[:352])
    np.frombuffer(hdr, dtype="<i2", count=8, offset=40)  # dim[] lives at byte 40
    hdr[40:56] = np.array([3, 30000, 30000, 30000, 1, 1, 1, 1], "<i2").tobytes()
    open(path("absurd.nii"), "wb").write(bytes(hdr) + raw[352:1000])
    expect_error(["info", path("absurd.nii")], "absurd.nii", "absurd")

    hdr[40:56] = np.array([3, 0, 10, 10, 1, 1, 1, 1], "<i2").tobytes()
    open(path("zero_dim.nii"), "wb").write(bytes(hdr))
    expect_error(["info", path("zero_dim.nii")], "zero_dim.nii", "dim[1] = 0")

    open(path("noise.nii"), "wb").write(os.urandom(4096))
    expect_error(["info", path("noise.nii")], "noise.nii", "not a NIfTI")

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.complex64), np.eye(4)), path("complex.nii"))
    expect_error(["info", path("complex.nii")], "complex.nii", "unsupported NIfTI datatype complex64")

    # zarr: corrupt metadata, a corrupt chunk, a group instead of an array
    subprocess.run([NEUROSEG, "convert", CH2, path("ok.zarr"), "--zarr-chunk", "128"], check=True, capture_output=True)
    shutil.copytree(path("ok.zarr"), path("badmeta.zarr"))
    open(path("badmeta.zarr/.zarray"), "w").write('{"zarr_format": 2, "shape": [10, 10')
    expect_error(["info", path("badmeta.zarr")], "badmeta.zarr/.zarray", "corrupt .zarray")
    shutil.copytree(path("ok.zarr"), path("badchunk.zarr"))
    open(path("badchunk.zarr/0.0.0"), "wb").write(os.urandom(300))
    expect_error(["info", path("badchunk.zarr")], "badchunk.zarr/0.0.0", "blosc")
    os.makedirs(path("group.zarr/volumes"))
    open(path("group.zarr/.zgroup"), "w").write('{"zarr_format": 2}')
    expect_error(["info", path("group.zarr")], "group.zarr", "zarr group")

    # ITK formats: truncated MetaImage payload, a folder with no DICOM
    subprocess.run([NEUROSEG, "convert", CH2, path("ok.mha"), "--no-compress"], check=True, capture_output=True)
    mha = open(path("ok.mha"), "rb").read()
    open(path("short.mha"), "wb").write(mha[: len(mha) - 5000])
    expect_error(["info", path("short.mha")], "short.mha", "truncated")
    subprocess.run([NEUROSEG, "convert", CH2, path("okz.mha")], check=True, capture_output=True)
    mha = open(path("okz.mha"), "rb").read()
    open(path("shortz.mha"), "wb").write(mha[: len(mha) - 5000])
    expect_error(["info", path("shortz.mha")], "shortz.mha", "truncated")
    subprocess.run([NEUROSEG, "convert", CH2, path("ok.nrrd")], check=True, capture_output=True)
    nrrd = open(path("ok.nrrd"), "rb").read()
    open(path("short.nrrd"), "wb").write(nrrd[: len(nrrd) - 5000])
    expect_error(["info", path("short.nrrd")], "short.nrrd", "expected")
    os.makedirs(path("empty_dicom"))
    open(path("empty_dicom/readme.txt"), "w").write("not dicom")
    expect_error(["info", path("empty_dicom")], "empty_dicom", "no DICOM series")

    # Writes that cannot succeed leave nothing behind.
    expect_error(["convert", CH2, path("out/ch2.dcm")], "ch2.dcm", "not supported")
    expect_error(["convert", CH2, path("ch2.xyz")], "ch2.xyz", "unknown output format")
    expect_error(["convert", CH2, path("ch2_int8.nii.gz"), "--dtype", "int8"], "ch2_int8.nii.gz", "do not fit int8",
                 output=path("ch2_int8.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4)), np.eye(4)), path("f64.nii"))
    expect_error(["convert", path("f64.nii"), path("f64.tif")], "f64.tif", "TIFF cannot store float64",
                 output=path("f64.tif"))

    # NaN/Inf voxels: a warning with the count, not an error.
    d = np.ones((5, 5, 5), np.float32)
    d[0, 0, :3] = np.nan
    d[1, 1, 1] = np.inf
    nib.save(nib.Nifti1Image(d, np.eye(4)), path("nan.nii.gz"))
    p = subprocess.run([NEUROSEG, "info", "--json", path("nan.nii.gz")], capture_output=True, text=True)
    ok = p.returncode == 0 and "4 of 125 voxels are NaN or Inf" in p.stderr and json.loads(p.stdout)["non_finite_voxels"] == 4
    check(ok, f"[nan.nii.gz] warning: {p.stderr.strip()}")

    # Usage errors exit 2.
    p = subprocess.run([NEUROSEG, "convert", CH2], capture_output=True, text=True)
    check(p.returncode == 2, f"a usage error exits with 2 (got {p.returncode})")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

sys.exit(finish())
