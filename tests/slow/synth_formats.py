#!/usr/bin/env python3
"""`neuroseg synth fisbe|spine` read back by readers that share no code with ours:
- FISBe zarr: Python's zarr 2.x (in this interpreter, else Debian's /usr/bin/python3 in a
  subprocess), and a numpy-only reader of .zarray + zlib chunks (for --zarr-compressor zlib);
  layout (3,Z,Y,X) <u2 / (N,Z,Y,X) |u1, instance k = value k+1, overlaps, the partly split
  file in the official layout, same bytes for a seed whatever the thread count;
- SPIDER .mha: a MetaImage reader written here (text header + zlib payload): spacing with the
  3.3 mm slices along x, a proper rotation, the SPIDER label set ordered bottom-up along the
  physical superior axis computed from the header alone, T1 and T2 masks identical, contrast;
- bad input: one line, non-zero exit, no output left behind;
- the time of one FISBe-sized (400 x 690 x 690) volume (printed; set
  NEUROSEG_SYNTH_SKIP_BIG=1 to skip it on small machines: it needs ~6 GB of memory).

usage: synth_formats.py path/to/neuroseg [path/to/neuroseg_bench_ops]
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

from _check import check, finish, neuroseg


# ---------------------------------------------------------------- readers of our own
def read_zarr_numpy(path):
    """zarr v2 array with compressor zlib/gzip/none, C order, no filters: numpy + zlib only."""
    meta = json.load(open(os.path.join(path, ".zarray")))
    assert meta["zarr_format"] == 2 and meta["order"] == "C" and not meta.get("filters")
    comp = meta["compressor"]
    assert comp is None or comp["id"] in ("zlib", "gzip"), comp
    dtype = np.dtype(meta["dtype"])
    shape, chunks = meta["shape"], meta["chunks"]
    sep = meta.get("dimension_separator", ".")
    out = np.full(shape, meta["fill_value"] or 0, dtype)
    grid = [(s + c - 1) // c for s, c in zip(shape, chunks)]
    for idx in np.ndindex(*grid):
        f = os.path.join(path, sep.join(str(i) for i in idx))
        if not os.path.exists(f):
            continue
        data = open(f, "rb").read()
        if comp is not None:
            data = zlib.decompress(data, 47 if comp["id"] == "gzip" else 15)
        block = np.frombuffer(data, dtype).reshape(chunks)
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, shape))
        out[sl] = block[tuple(slice(0, s.stop - s.start) for s in sl)]
    return out


ZARR_DUMP = r"""
import sys, zarr, numpy as np
root = zarr.open(sys.argv[1], mode="r")
raw, gt = root["volumes/raw"], root["volumes/gt_instances"]
np.save(sys.argv[2], raw[:]); np.save(sys.argv[3], gt[:])
print(zarr.__version__, dict(gt.attrs).get("dim_neurons"))
"""


def read_fisbe_with_zarr(sample, tmp):
    """(raw, gt, dim_neurons, reader) through Python's zarr, here or in Debian's python3."""
    try:
        import zarr  # noqa: F401
        root = zarr.open(sample, mode="r")
        return root["volumes/raw"][:], root["volumes/gt_instances"][:], root["volumes/gt_instances"].attrs.get("dim_neurons"), "zarr " + zarr.__version__
    except ImportError:
        pass
    if os.path.exists("/usr/bin/python3"):
        a, b = os.path.join(tmp, "raw.npy"), os.path.join(tmp, "gt.npy")
        p = subprocess.run(["/usr/bin/python3", "-c", ZARR_DUMP, sample, a, b], capture_output=True, text=True)
        if p.returncode == 0:
            version, dim = p.stdout.split(" ", 1)
            return np.load(a), np.load(b), json.loads(dim.strip().replace("None", "null")), "zarr " + version + " (/usr/bin/python3)"
        print("note: /usr/bin/python3 cannot read it with zarr:", p.stderr.strip().splitlines()[-1:])
    return None


def read_mha(path):
    """MetaImage (.mha, LOCAL data, optionally zlib-compressed): (array in z,y,x order, header)."""
    data = open(path, "rb").read()
    end = data.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
    header = dict(line.split(" = ", 1) for line in data[:end].decode().strip().split("\n"))
    dims = [int(v) for v in header["DimSize"].split()]
    dtype = {"MET_UCHAR": "u1", "MET_USHORT": "<u2", "MET_SHORT": "<i2"}[header["ElementType"]]
    payload = data[end:]
    if header.get("CompressedData", "False") == "True":
        payload = zlib.decompress(payload)
    return np.frombuffer(payload, dtype).reshape(dims[::-1]), header


def tree_digest(folder):
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            h.update(os.path.relpath(p, folder).encode())
            h.update(open(p, "rb").read())
    return h.hexdigest()


tmp = tempfile.mkdtemp(prefix="neuroseg_synth_")
try:
    # ------------------------------------------------------------ FISBe, blosc (default)
    out = os.path.join(tmp, "fisbe")
    p = neuroseg(["synth", "fisbe", "-o", out, "--n", "3", "--seed", "4", "--partly", "--shape", "40", "96", "80"])
    check(p.returncode == 0, f"synth fisbe --partly runs ({p.stderr.strip()[-200:]})")
    names = [f"synth_s4_00{i}" for i in range(3)]
    check(sorted(os.listdir(out)) == sorted([n + ".zarr" for n in names] + ["sample_list_per_split.txt"]),
          "three samples and the split file, nothing else")
    split = open(os.path.join(out, "sample_list_per_split.txt")).read()
    expected = ("(1) samples for FlyLight completely:\n\ntrain:\n\nval:\n\ntest:\n\n(2) samples for FlyLight partly:\n\n"
                f"train:\n{names[0]}\n{names[1]}\n\nval:\n{names[2]}\n\ntest:\n\n")
    check(split == expected, "split file in the official layout, samples in the partly section")
    total_overlap = 0
    for name in names:
        sample = os.path.join(out, name + ".zarr")
        got = read_fisbe_with_zarr(sample, tmp)
        if got is None:
            print("note: no Python zarr with blosc here; the zlib reader below still checks the format")
            break
        raw, gt, dim, reader = got
        check(raw.shape == (3, 40, 96, 80) and raw.dtype == np.uint16, f"{name} raw (3,Z,Y,X) uint16 via {reader}")
        check(raw.max() <= 4095 and raw.min() >= 0 and raw.max() > 500, f"{name} raw 12-bit range [{raw.min()}, {raw.max()}]")
        check(gt.ndim == 4 and gt.dtype == np.uint8 and gt.shape[1:] == (40, 96, 80), f"{name} gt (N,Z,Y,X) uint8, N = {gt.shape[0]}")
        check(all(set(np.unique(gt[k])) == {0, k + 1} for k in range(gt.shape[0])), f"{name} channel k holds {{0, k+1}}")
        check(isinstance(dim, list) and all(1 <= d <= gt.shape[0] for d in dim), f"{name} dim_neurons attribute {dim}")
        total_overlap += int(((gt > 0).sum(0) >= 2).sum())
        fg = (gt > 0).any(0)
        s = raw.astype(np.float64).sum(0)
        check(s[fg].mean() > 1.5 * s[~fg].mean(), f"{name} neurons brighter than background ({s[fg].mean():.0f} vs {s[~fg].mean():.0f})")
    check(total_overlap > 0, f"overlapping instances exist ({total_overlap} voxels in >= 2 channels)")

    # ------------------------------------------------------------ zlib + numpy reader, determinism
    outz = os.path.join(tmp, "fisbe_zlib")
    p = neuroseg(["synth", "fisbe", "-o", outz, "--n", "3", "--seed", "4", "--partly", "--shape", "40", "96", "80",
             "--zarr-compressor", "zlib", "--threads", "1"])
    check(p.returncode == 0, "synth fisbe --zarr-compressor zlib --threads 1 runs")
    for name in names:
        raw_z = read_zarr_numpy(os.path.join(outz, name + ".zarr", "volumes", "raw"))
        gt_z = read_zarr_numpy(os.path.join(outz, name + ".zarr", "volumes", "gt_instances"))
        check(raw_z.shape == (3, 40, 96, 80) and raw_z.dtype == np.dtype("<u2"), f"{name} zlib raw via numpy")
        check(all(set(np.unique(gt_z[k])) <= {0, k + 1} for k in range(gt_z.shape[0])), f"{name} zlib gt via numpy")
        got = read_fisbe_with_zarr(os.path.join(out, name + ".zarr"), tmp)
        if got is not None:
            check(np.array_equal(got[0], raw_z) and np.array_equal(got[1], gt_z),
                  f"{name}: blosc (default threads) and zlib (1 thread) hold the same voxels")
    again = os.path.join(tmp, "fisbe_again")
    neuroseg(["synth", "fisbe", "-o", again, "--n", "3", "--seed", "4", "--partly", "--shape", "40", "96", "80"])
    check(tree_digest(again) == tree_digest(out), "same seed, same bytes (every file)")
    other = os.path.join(tmp, "fisbe_other")
    neuroseg(["synth", "fisbe", "-o", other, "--n", "1", "--seed", "5", "--shape", "40", "96", "80"])
    a = read_zarr_numpy  # noqa: F841 (readability)
    check(tree_digest(os.path.join(other, "synth_s5_000.zarr")) != tree_digest(os.path.join(out, names[0] + ".zarr")),
          "another seed, other bytes")
    full = os.path.join(tmp, "fisbe_full")
    neuroseg(["synth", "fisbe", "-o", full, "--n", "1", "--seed", "4", "--shape", "40", "96", "80", "--zarr-compressor", "zlib"])
    raw_full = read_zarr_numpy(os.path.join(full, names[0] + ".zarr", "volumes", "raw"))
    gt_full = read_zarr_numpy(os.path.join(full, names[0] + ".zarr", "volumes", "gt_instances"))
    raw_part = read_zarr_numpy(os.path.join(outz, names[0] + ".zarr", "volumes", "raw"))
    gt_part = read_zarr_numpy(os.path.join(outz, names[0] + ".zarr", "volumes", "gt_instances"))
    check(np.array_equal(raw_full, raw_part) and gt_part.shape[0] < gt_full.shape[0],
          f"partly: same raw, {gt_part.shape[0]} of {gt_full.shape[0]} neurons labelled")
    masks_full = [gt_full[k] > 0 for k in range(gt_full.shape[0])]
    check(all(any(np.array_equal(gt_part[k] > 0, m) for m in masks_full) for k in range(gt_part.shape[0])),
          "partly: every labelled neuron is one of the complete sample's")
    split_full = open(os.path.join(full, "sample_list_per_split.txt")).read()
    check(split_full.startswith(f"(1) samples for FlyLight completely:\n\ntrain:\n{names[0]}\n"), "complete run: completely section")

    # ------------------------------------------------------------ SPIDER spine .mha
    spine = os.path.join(tmp, "spine")
    p = neuroseg(["synth", "spine", "-o", spine, "--n", "2", "--seed", "1"])
    check(p.returncode == 0, f"synth spine runs ({p.stderr.strip()[-200:]})")
    check(sorted(os.listdir(os.path.join(spine, "images"))) == ["1_t1.mha", "1_t2.mha", "2_t1.mha", "2_t2.mha"], "SPIDER file names")
    for cid in ["1", "2"]:
        t1, h1 = read_mha(os.path.join(spine, "images", f"{cid}_t1.mha"))
        t2, h2 = read_mha(os.path.join(spine, "images", f"{cid}_t2.mha"))
        m1, hm = read_mha(os.path.join(spine, "masks", f"{cid}_t1.mha"))
        m2, _ = read_mha(os.path.join(spine, "masks", f"{cid}_t2.mha"))
        check(h1["ElementType"] == "MET_USHORT" and hm["ElementType"] == "MET_UCHAR", f"case {cid}: uint16 image, uint8 mask")
        sp = [float(v) for v in h1["ElementSpacing"].split()]
        check(np.allclose(sp, [3.3, 0.6, 0.6]) and h1["DimSize"] == "17 448 448", f"case {cid}: spacing {sp}, thick slices along x")
        R = np.array([float(v) for v in h1["TransformMatrix"].split()]).reshape(3, 3).T  # columns = index axes (MetaImage is row-major by axis)
        check(np.allclose(R.T @ R, np.eye(3), atol=1e-6) and np.isclose(np.linalg.det(R), 1.0) and np.isclose(abs(R[0, 0]), 1.0),
              f"case {cid}: direction a proper rotation, x = left-right")
        check(np.array_equal(m1, m2), f"case {cid}: T1 and T2 share the mask")
        labels = [int(v) for v in np.unique(m1) if v]
        ok = all(1 <= l <= 25 or l == 100 or 101 <= l <= 125 or 201 <= l <= 225 for l in labels)
        check(ok and 100 in labels, f"case {cid}: SPIDER label set {labels}")
        origin = np.array([float(v) for v in h1["Offset"].split()])
        def superior(l):
            k, j, i = np.nonzero(m1 == l)
            idx = np.stack([i, j, k]).mean(1) * np.array(sp)
            return (origin + R @ idx)[2]  # LPS z
        vert = [l for l in labels if l < 100]
        check(vert == list(range(1, len(vert) + 1)) and 5 <= len(vert) <= 7, f"case {cid}: {len(vert)} complete vertebrae 1..n")
        zs = [superior(l) for l in vert]
        check(all(b > a for a, b in zip(zs, zs[1:])), f"case {cid}: vertebrae numbered bottom-up (LPS z {np.round(zs, 1).tolist()})")
        discs = [l for l in labels if l > 200]
        check(all(superior(200 + k) < superior(k) for k in vert) and 201 in discs, f"case {cid}: disc 200+k below vertebra k")
        partial = [l for l in labels if 100 < l < 200]
        check(all(superior(l) > zs[-1] for l in partial), f"case {cid}: cut vertebrae {partial} above the complete ones")
        v, c = (m1 >= 1) & (m1 < 100), m1 == 100
        check(t1[v].mean() > 1.5 * t1[c].mean() and t2[c].mean() > 1.5 * t2[v].mean(),
              f"case {cid}: T1 marrow > CSF ({t1[v].mean():.0f} > {t1[c].mean():.0f}), T2 CSF > marrow ({t2[c].mean():.0f} > {t2[v].mean():.0f})")
    p = neuroseg(["info", os.path.join(spine, "images", "1_t1.mha")])
    check("RPI" in p.stdout or "RP" in p.stdout, "neuroseg info reads it (orientation " + p.stdout.split("orientation")[-1].split("\n")[0].strip() + ")")

    # ------------------------------------------------------------ bad input
    def expect_error(args, problem, output):
        q = neuroseg(args)
        lines = [l for l in q.stderr.splitlines() if l.strip()]
        ok = q.returncode != 0 and len(lines) == 1 and problem in lines[0] and not os.path.exists(output)
        check(ok, f"[{' '.join(args[1:3])} ...] fails with one line: {q.stderr.strip()}")
    expect_error(["synth", "fisbe", "-o", os.path.join(tmp, "bad1"), "--n", "0"], "--n", os.path.join(tmp, "bad1"))
    expect_error(["synth", "fisbe", "-o", os.path.join(tmp, "bad2"), "--shape", "4", "64", "64"], "--shape", os.path.join(tmp, "bad2"))
    expect_error(["synth", "spine", "-o", os.path.join(tmp, "bad3"), "--size", "17", "448", "100"], "field of view", os.path.join(tmp, "bad3"))
    open(os.path.join(tmp, "a_file"), "w").write("x")
    expect_error(["synth", "spine", "-o", os.path.join(tmp, "a_file", "sub")], "a_file", os.path.join(tmp, "a_file", "sub"))
    check(not [f for f in os.listdir(tmp) if f.startswith(".neuroseg-tmp")], "no temporary folder left")

    # ------------------------------------------------------------ one FISBe-sized volume
    if os.environ.get("NEUROSEG_SYNTH_SKIP_BIG") != "1":
        big = os.path.join(tmp, "big")
        t0 = time.time()
        p = neuroseg(["synth", "fisbe", "-o", big, "--n", "1", "--seed", "0", "--shape", "400", "690", "690"])
        wall = time.time() - t0
        check(p.returncode == 0, f"FISBe-sized volume (400 x 690 x 690): {wall:.1f} s wall in all; {p.stdout.strip()}")
        meta = json.load(open(os.path.join(big, "synth_s0_000.zarr", "volumes", "raw", ".zarray")))
        check(meta["shape"] == [3, 400, 690, 690], "its raw shape")
        shutil.rmtree(big)
finally:
    shutil.rmtree(tmp, ignore_errors=True)

sys.exit(finish())
