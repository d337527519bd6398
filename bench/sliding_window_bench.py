#!/usr/bin/env python3
"""End-to-end sliding-window segmentation, neuroseg vs MONAI, side by side on the same
machine, threads, network weights, ROI, overlap, Gaussian blending and input volume:

  neuroseg:  `neuroseg segment -i VOL --model CKPT --probabilities --no-qc` (read, segment,
             softmax, argmax, write labels + probabilities), timed as a whole process;
  MONAI:     nibabel load -> monai.inferers.sliding_window_inference(mode="gaussian")
             -> softmax -> argmax -> nibabel save (labels + probabilities), in this process.

The network is neuroseg's `unet` twin in PyTorch (tests/fixtures/make_torch_fixtures.py),
its weights imported into a neuroseg checkpoint with `neuroseg import-weights`; the
checkpoint does no resampling or normalisation, so both see the same tensor. Prints both
times, the ratio and the largest probability difference.

usage: bench/sliding_window_bench.py [--volume /usr/share/mricron/templates/ch2.nii.gz]
       [--roi 64] [--overlap 0.25] [--batch 2] [--threads 2] [--channels 8 16 32 64]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import nibabel as nib
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
from make_torch_fixtures import NeurosegUNet  # noqa: E402

NEUROSEG = os.path.join(ROOT, "build", "neuroseg")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--volume", default="/usr/share/mricron/templates/ch2.nii.gz")
    ap.add_argument("--roi", type=int, default=64)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32, 64])
    a = ap.parse_args()
    from monai.inferers import sliding_window_inference
    import monai

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    strides = [(1, 1, 1)] + [(2, 2, 2)] * (len(a.channels) - 1)
    net = NeurosegUNet(a.channels, strides, cin=1, cout=2).eval()
    tmp = tempfile.mkdtemp(prefix="neuroseg_swbench_")
    weights, meta, ckpt = (os.path.join(tmp, n) for n in ("w.pt", "meta.json", "model.pt"))
    torch.save({k: v for k, v in net.state_dict().items()}, weights)
    json.dump({"preprocessing": {"normalization": {"scheme": "none"}}, "labels": {"background": 0, "fg": 1},
               "patch_size": [a.roi] * 3}, open(meta, "w"))
    args = json.dumps({"channels": a.channels, "strides": [list(s) for s in strides], "out_channels": 2})
    subprocess.run([NEUROSEG, "import-weights", "--model", "unet", "--args", args, "--weights", weights, "--meta", meta,
                    "-o", ckpt], check=True, capture_output=True)

    # neuroseg, as a user runs it.
    out = os.path.join(tmp, "ns")
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    t0 = time.perf_counter()
    subprocess.run([NEUROSEG, "segment", "-i", a.volume, "-o", out, "--model", ckpt, "--device", "cpu", "--overlap",
                    str(a.overlap), "--batch", str(a.batch), "--probabilities", "--no-qc"], check=True, capture_output=True, env=env)
    t_ns = time.perf_counter() - t0

    # MONAI, same steps in Python.
    t0 = time.perf_counter()
    img = nib.load(a.volume)
    x = torch.from_numpy(np.asanyarray(img.dataobj).astype(np.float32)).permute(2, 1, 0)[None, None]  # (1, 1, Z, Y, X)
    with torch.inference_mode():
        logits = sliding_window_inference(x, [a.roi] * 3, a.batch, net, overlap=a.overlap, mode="gaussian")
    prob = torch.softmax(logits, 1)[0]
    labels = prob.argmax(0).to(torch.uint8)
    nib.save(nib.Nifti1Image(labels.permute(2, 1, 0).numpy(), img.affine), os.path.join(tmp, "monai_seg.nii.gz"))
    nib.save(nib.Nifti1Image(prob.permute(3, 2, 1, 0).numpy(), img.affine), os.path.join(tmp, "monai_prob.nii.gz"))
    t_monai = time.perf_counter() - t0

    name = os.path.basename(a.volume).split(".")[0]
    ours = np.asanyarray(nib.load(os.path.join(out, name + "_prob.nii.gz")).dataobj)
    theirs = prob.permute(3, 2, 1, 0).numpy()
    diff = float(np.abs(ours - theirs).max())
    agree = float((np.asanyarray(nib.load(os.path.join(out, name + "_seg.nii.gz")).dataobj) == labels.permute(2, 1, 0).numpy()).mean())
    shape = img.shape
    print(f"volume {a.volume} {shape}, unet {a.channels}, roi {a.roi}^3, overlap {a.overlap}, batch {a.batch}, "
          f"{a.threads} threads, torch {torch.__version__}, MONAI {monai.__version__}")
    print(f"neuroseg segment (read+segment+write): {t_ns:.2f} s")
    print(f"MONAI sliding_window_inference (read+segment+write): {t_monai:.2f} s")
    print(f"ratio MONAI / neuroseg: {t_monai / t_ns:.2f}   max |prob difference|: {diff:.2e}   label agreement: {agree:.6f}")


if __name__ == "__main__":
    main()
