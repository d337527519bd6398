#!/usr/bin/env python3
"""The SAM adapter through the CLI: an official-style SAM file (the committed tiny random SAM,
saved as torch.save(state_dict()) like sam_vit_b_01ec64.pth) is refused by import-weights
with the way to convert it, converted by scripts/convert_sam_checkpoint.py and imported;
`finetune --adapter sam4em` reports the LoRA and trainable-parameter counts; `segment --axis
z|x` writes a label volume on the input's exact grid; --axis with a 3D model fails with one
line.

usage: cli_sam.py path/to/neuroseg [path/to/neuroseg_bench_ops]
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import shutil

import nibabel as nib
import numpy as np

from _check import check, finish, neuroseg

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
os.environ["OMP_NUM_THREADS"] = "2"
TINY = {"image_size": 128, "pretrain_image_size": 128, "embed_dim": 32, "depth": 4, "num_heads": 2,
        "global_attn_indexes": [1, 3], "window_size": 3, "prompt_embed_dim": 32, "mask_in_chans": 8, "decoder_heads": 2,
        "decoder_mlp_dim": 64, "iou_head_hidden_dim": 32}


tmp = tempfile.mkdtemp(prefix="neuroseg_sam_")
try:
    raw = os.path.join(ROOT, "tests", "fixtures", "sam_tiny_raw.pth")
    meta = os.path.join(tmp, "meta.json")
    json.dump({"labels": {"background": 0, "mito": 1}, "preprocessing": {"normalization": {"scheme": "zscore_case"}},
               "patch_size": [3, 64, 64]}, open(meta, "w"))
    r = neuroseg(["import-weights", "--model", "sam_vit_b", "--args", json.dumps(TINY), "--weights", raw, "--meta", meta,
             "-o", os.path.join(tmp, "base.pt")])
    check(r.returncode != 0 and "convert_sam_checkpoint.py" in r.stderr and r.stderr.strip().count("\n") == 0,
          "an unconverted (OrderedDict) SAM file is refused in one line naming the converter: " + r.stderr.strip()[:160])
    conv = os.path.join(tmp, "sam_tiny.pt")
    c = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert_sam_checkpoint.py"), raw, conv],
                       capture_output=True, text=True)
    check(c.returncode == 0 and "202 tensors" in c.stdout, "convert_sam_checkpoint.py: " + (c.stdout + c.stderr).strip()[:120])
    r = neuroseg(["import-weights", "--model", "sam_vit_b", "--args", json.dumps(dict(TINY, memory_slots=2)), "--weights", conv,
             "--meta", meta, "-o", os.path.join(tmp, "base.pt")])
    check(r.returncode == 0, "import-weights of the converted file into a model with memory" + r.stderr[-200:])

    # A small stack: bright blobs (label 1) in noise, anisotropic, oblique geometry.
    rng = np.random.default_rng(0)
    seg = np.zeros((64, 56, 6), np.uint8)
    yy, xx = np.mgrid[:64, :56]
    for z in range(6):
        seg[:, :, z] = ((yy - 30 - z) ** 2 / 90 + (xx - 25) ** 2 / 40) < 1
    img = (seg * 2.0 + rng.normal(0, 0.3, seg.shape)).astype(np.float32)
    aff = np.array([[0.9, 0.1, 0, 5], [-0.1, 0.9, 0, -3], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    pair = [os.path.join(tmp, "a.nii.gz"), os.path.join(tmp, "a_seg.nii.gz")]
    nib.save(nib.Nifti1Image(img, aff), pair[0])
    nib.save(nib.Nifti1Image(seg, aff), pair[1])
    cfg = {"data": {"train": [pair]}, "labels": {"background": 0, "mito": 1},
           "preprocessing": {"normalization": {"scheme": "zscore_case"}}, "patch_size": [3, 64, 56], "batch_size": 1,
           "epochs": 1, "iterations_per_epoch": 2, "validation_every": 1, "optimizer": {"name": "adamw", "lr": 1e-3},
           "workers": 1, "seed": 1}
    json.dump(cfg, open(os.path.join(tmp, "cfg.json"), "w"))
    r = neuroseg(["finetune", "--model", os.path.join(tmp, "base.pt"), "--adapter", "sam4em", "--rank", "3", "--config",
             os.path.join(tmp, "cfg.json"), "-o", os.path.join(tmp, "run"), "--threads", "2", "--device", "cpu"])
    lora = re.search(r"LoRA rank 3 on q and v of 4 encoder blocks: (\d+) parameters", r.stderr)
    check(r.returncode == 0 and lora is not None and int(lora.group(1)) == 4 * 2 * 3 * 2 * 32 and "trainable parameters" in r.stderr,
          "finetune --adapter sam4em: LoRA count = blocks x 2 x r x 2 x width (" + (lora.group(1) if lora else r.stderr[-200:]) + ")")
    ckpt = os.path.join(tmp, "run", "checkpoint_last.pt")
    for axis in ("z", "x"):
        out = os.path.join(tmp, "seg_" + axis)
        r = neuroseg(["segment", "-i", pair[0], "-o", out, "--model", ckpt, "--axis", axis, "--device", "cpu", "--no-qc"])
        ok = r.returncode == 0
        if ok:
            p = nib.load(os.path.join(out, "a_seg.nii.gz"))
            ok = p.shape == seg.shape and np.allclose(p.affine, aff, atol=1e-5) and set(np.unique(np.asarray(p.dataobj))) <= {0, 1}
        check(ok, f"segment --axis {axis}: labels on the input's grid" + ("" if r.returncode == 0 else r.stderr[-200:]))
    # --axis needs a 2D slice model.
    cfg3 = dict(cfg, model={"name": "unet", "args": {"channels": [4, 8], "out_channels": 2}}, patch_size=[4, 16, 16])
    json.dump(cfg3, open(os.path.join(tmp, "cfg3.json"), "w"))
    r = neuroseg(["train", "--config", os.path.join(tmp, "cfg3.json"), "-o", os.path.join(tmp, "unet"), "--threads", "2"])
    r = neuroseg(["segment", "-i", pair[0], "-o", os.path.join(tmp, "seg3"), "--model", os.path.join(tmp, "unet", "checkpoint_last.pt"),
             "--axis", "z", "--device", "cpu", "--no-qc"])
    check(r.returncode != 0 and "not a 2D slice model" in r.stderr, "--axis with a 3D model: " + r.stderr.strip()[:120])
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(finish())
