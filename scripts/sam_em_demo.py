#!/usr/bin/env python3
"""The SAM-adapter demonstration on generated EM stacks (docs/models.md, "SAM"), from random
initialisation (no pretrained weights are used or needed), through the CLI only:

  1. `neuroseg synth em`: two 24x128x128 stacks (mitochondria labelled); stack 0 gives the
     annotated slices, stack 1 is the test stack;
  2. K consecutive annotated slices of stack 0 (K = 1, 3, 5, 10) become training volumes;
  3. `neuroseg train` on them: a small SAM (`sam_vit_b` with a reduced encoder, two-stage
     prompt-free decoding, both stages supervised) with memory across slices (2 slots,
     trained on runs of consecutive slices) and without; a 2D U-Net (`unet2d`) on the
     same slices;
  4. `neuroseg segment --axis z` over the whole test stack (the memory carried along the
     slices), `neuroseg evaluate` for the Dice of the mitochondria.

SAMDA's claim (1 annotated image with the SAM-based adaptor beats a 10-shot nnU-Net) is
checked as far as it can be without SAM's pretraining: SAM with K = 1 against the U-Net
with K = 10. Prints a Markdown table and writes OUT/results.json.

usage: sam_em_demo.py NEUROSEG_BINARY OUT_DIR [--epochs 30] [--iterations 10] [--threads 2]
       [--shots 1 5 10] [--seed 0]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import nibabel as nib
import numpy as np

SAM_ARGS = {"image_size": 128, "pretrain_image_size": 128, "patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 4,
            "global_attn_indexes": [1, 3], "window_size": 8, "prompt_embed_dim": 64, "mask_in_chans": 16,
            "decoder_heads": 4, "decoder_mlp_dim": 256, "iou_head_hidden_dim": 64, "deep_supervision": True}
UNET_ARGS = {"channels": [16, 32, 64, 128], "out_channels": 2}


def run(binary, args, log):
    t0 = time.time()
    r = subprocess.run([binary] + args, capture_output=True, text=True)
    with open(log, "a") as f:
        f.write("$ neuroseg " + " ".join(args) + "\n" + r.stdout + r.stderr + "\n")
    if r.returncode != 0:
        raise SystemExit(f"neuroseg {args[0]} failed (see {log}):\n{r.stderr[-2000:]}")
    return time.time() - t0, r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("neuroseg")
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None, help="run names to run (default: all)")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "log.txt")
    data = os.path.join(out, "data")
    run(a.neuroseg, ["synth", "em", "-o", data, "--n", "2", "--size", "24", "128", "128", "--seed", str(11 + a.seed)], log)
    img = nib.load(os.path.join(data, "em_000_img.nii.gz"))
    seg = nib.load(os.path.join(data, "em_000_seg.nii.gz"))
    vol, lab = np.asanyarray(img.dataobj), np.asanyarray(seg.dataobj)  # (x, y, z)
    test_img, test_seg = os.path.join(data, "em_001_img.nii.gz"), os.path.join(data, "em_001_seg.nii.gz")

    runs = []
    for k in a.shots:
        z0 = 12 - k // 2  # K consecutive slices around the middle of stack 0
        name = f"few{k}"
        pair = [os.path.join(out, f"{name}_img.nii.gz"), os.path.join(out, f"{name}_seg.nii.gz")]
        # The training loader wants 3D volumes: one annotated slice is stored twice (still one image).
        reps = 2 if k == 1 else 1
        nib.save(nib.Nifti1Image(np.repeat(vol[:, :, z0:z0 + k], reps, axis=2), img.affine), pair[0])
        nib.save(nib.Nifti1Image(np.repeat(lab[:, :, z0:z0 + k], reps, axis=2), seg.affine), pair[1])
        runs.append((f"sam_k{k}", k, "sam_vit_b", dict(SAM_ARGS, memory_slots=0), [1, 128, 128], pair))
        if k >= 3:
            runs.append((f"sam_mem_k{k}", k, "sam_vit_b", dict(SAM_ARGS, memory_slots=2), [3, 128, 128], pair))
        runs.append((f"unet2d_k{k}", k, "unet2d", UNET_ARGS, [1, 128, 128], pair))
        if k >= 5:  # SAM4EM's recipe (LoRA r 8 on q/v, encoder frozen, decoder trained) on a random encoder
            runs.append((f"sam4em_k{k}", k, "sam4em", dict(SAM_ARGS, memory_slots=0), [1, 128, 128], pair))

    results = []
    for name, k, model, args, patch, pair in runs:
        if a.only and name not in a.only:
            continue
        cfg = {"data": {"train": [pair]}, "model": {"name": "sam_vit_b" if model == "sam4em" else model, "args": args},
               "labels": {"background": 0, "mito": 1}, "preprocessing": {"normalization": {"scheme": "zscore_case"}},
               "patch_size": patch, "batch_size": 2, "epochs": a.epochs, "iterations_per_epoch": a.iterations,
               "validation_every": a.epochs, "optimizer": {"name": "adamw", "lr": 1e-3 if model == "unet2d" else 5e-4,
                                                           "weight_decay": 1e-4},
               "schedule": {"name": "cosine"}, "workers": 1, "seed": a.seed}
        cfg_path = os.path.join(out, f"{name}.json")
        json.dump(cfg, open(cfg_path, "w"), indent=1)
        run_dir = os.path.join(out, name)
        if model == "sam4em":
            # A randomly initialised base checkpoint (one training step), then finetune --adapter sam4em.
            init = dict(cfg, epochs=1, iterations_per_epoch=1)
            json.dump(init, open(cfg_path + ".init.json", "w"))
            run(a.neuroseg, ["train", "--config", cfg_path + ".init.json", "-o", run_dir + "_init", "--threads",
                             str(a.threads), "--device", "cpu"], log)
            ft = dict(cfg)
            ft.pop("model")
            json.dump(ft, open(cfg_path, "w"), indent=1)
            t_train, _ = run(a.neuroseg, ["finetune", "--model", os.path.join(run_dir + "_init", "checkpoint_last.pt"),
                                          "--adapter", "sam4em", "--rank", "8", "--alpha", "8", "--config", cfg_path, "-o",
                                          run_dir, "--threads", str(a.threads), "--device", "cpu"], log)
        else:
            t_train, _ = run(a.neuroseg, ["train", "--config", cfg_path, "-o", run_dir, "--threads", str(a.threads),
                                          "--device", "cpu"], log)
        ckpt = os.path.join(run_dir, "checkpoint_last.pt")
        pred_dir = os.path.join(out, f"pred_{name}")
        t_seg, _ = run(a.neuroseg, ["segment", "-i", test_img, "-o", pred_dir, "--model", ckpt, "--axis", "z",
                                    "--device", "cpu", "--no-qc"], log)
        summary = os.path.join(out, f"eval_{name}.json")
        run(a.neuroseg, ["evaluate", "-p", os.path.join(pred_dir, "em_001_img_seg.nii.gz"), "-r", test_seg, "-o", summary,
                         "--metrics", "dice", "--labels", "1"], log)
        dice = json.load(open(summary))["foreground_mean"]["Dice"]
        result = {"run": name, "model": model, "annotated_slices": k, "memory_slots": args.get("memory_slots", 0),
                  "dice": dice, "train_s": round(t_train, 1), "segment_s": round(t_seg, 2)}
        if args.get("memory_slots", 0) > 0:
            # The same model with its memory off: one-slice sliding windows, so every slice reads
            # an empty memory.
            off_dir = os.path.join(out, f"pred_{name}_memory_off")
            run(a.neuroseg, ["segment", "-i", test_img, "-o", off_dir, "--model", ckpt, "--roi", "1", "128", "128",
                             "--overlap", "0", "--device", "cpu", "--no-qc"], log)
            off_summary = os.path.join(out, f"eval_{name}_memory_off.json")
            run(a.neuroseg, ["evaluate", "-p", os.path.join(off_dir, "em_001_img_seg.nii.gz"), "-r", test_seg, "-o",
                             off_summary, "--metrics", "dice", "--labels", "1"], log)
            result["dice_memory_off"] = json.load(open(off_summary))["foreground_mean"]["Dice"]
        results.append(result)
        print(json.dumps(results[-1]), flush=True)
    json.dump(results, open(os.path.join(out, "results.json"), "w"), indent=1)
    print("\n| run | model | annotated slices | memory slots | test Dice | same model, memory off | train s | segment s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        off = f"{r['dice_memory_off']:.3f}" if "dice_memory_off" in r else ""
        print(f"| {r['run']} | {r['model']} | {r['annotated_slices']} | {r['memory_slots']} | {r['dice']:.3f} | {off} | "
              f"{r['train_s']} | {r['segment_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
