#!/usr/bin/env python3
"""Fine-tuning table for docs/adaptation.md: for U-Net and PLS-Net trained on the source
phantoms of scripts/adaptation_experiment.py, fine-tune on 6 labelled target cases with full
fine-tuning, decoder-only, and the six adapter kinds at ranks 4/16/64 (`neuroseg finetune`),
and report trainable parameters and Dice on 6 held-out target cases.

usage: scripts/finetune_experiment.py [--out DIR] [--epochs 10] [--ranks 4 16 64]
"""
import argparse
import json
import os
import re
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adaptation_experiment import dice_of, make_sites, sh  # noqa: E402


def finetune_setting(sh, source, kind, rank, config, run, decoder):
    """`neuroseg finetune` of one table row (kind "full", "layers" = the decoder globs, or an
    adapter kind at a rank with alpha = 2 r); returns the row's label and trainable parameters."""
    cmd = ["finetune", "--model", source, "--adapter", kind, "--config", config, "-o", run]
    if kind == "layers":
        cmd += ["--target"] + decoder
    if rank:
        cmd += ["--rank", str(rank), "--alpha", str(2 * rank)]
    m = re.search(r"(\d+) trainable parameters", sh(cmd).stderr)
    label = {"full": "full fine-tuning", "layers": "decoder only"}.get(kind, f"{kind} r{rank}")
    return label, int(m.group(1)) if m else -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/neuroseg_finetune_table")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--ranks", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--models", nargs="+", default=["unet", "plsnet"],
                    help="unet, plsnet, unet_wide (channels 32-256: a base large enough that CP-LoRA is < 5 %%)")
    ap.add_argument("--kinds", nargs="+", default=["lora-c", "convlora", "cp-lora", "dora-c", "convdora", "cp-dora"])
    a = ap.parse_args()
    dirs, src, tgt, test = make_sites(a.out)
    # Decoder globs: the U-Net's decoder blocks; PLS-Net's dec*, skip* and head.
    models = {"unet": ({"channels": [8, 16, 32], "out_channels": 2}, ["decoder*"]),
              "plsnet": ({"out_channels": 2}, ["dec*", "skip*", "head"]),
              "unet_wide": ({"channels": [32, 64, 128, 256], "out_channels": 2}, ["decoder*"])}
    models = {k: v for k, v in models.items() if k in a.models}
    rows = []
    for model, (args, decoder) in models.items():
        def cfg(pairs, epochs):
            return {"data": {"train": pairs}, "model": {"name": model.replace("_wide", ""), "args": args}, "labels": {"background": 0, "sphere": 1},
                    "preprocessing": {"orientation": "RAS"}, "patch_size": [16, 16, 16], "batch_size": 2, "epochs": epochs,
                    "iterations_per_epoch": 20, "validation_every": epochs, "optimizer": {"name": "adamw", "lr": 0.003},
                    "workers": 1, "seed": 1}
        json.dump(cfg(src, 15), open(os.path.join(a.out, f"{model}_source.json"), "w"))
        json.dump(cfg(tgt, a.epochs), open(os.path.join(a.out, f"{model}_target.json"), "w"))
        sh(["train", "--config", os.path.join(a.out, f"{model}_source.json"), "-o", os.path.join(a.out, f"{model}_source_run")])
        source = os.path.join(a.out, f"{model}_source_run", "checkpoint_last.pt")
        rows.append((model, "none (source model)", 0, dice_of(source, test, os.path.join(a.out, f"seg_{model}_none"))))
        settings = [("full", None), ("layers", None)] + [(k, r) for k in a.kinds for r in a.ranks]
        for kind, rank in settings:
            run = os.path.join(a.out, f"{model}_{kind}_{rank}")
            label, trainable = finetune_setting(sh, source, kind, rank, os.path.join(a.out, f"{model}_target.json"), run, decoder)
            rows.append((model, label, trainable,
                         dice_of(os.path.join(run, "checkpoint_last.pt"), test, os.path.join(a.out, f"seg_{model}_{kind}_{rank}"))))
            print(f"{model:7} {label:22} {rows[-1][2]:>10} {rows[-1][3]:.4f}", flush=True)
    print(f"\n| model | setting | trainable parameters | Dice |\n|---|---|---|---|")
    for model, label, n, d in rows:
        print(f"| {model} | {label} | {n:,} | {d:.4f} |")


if __name__ == "__main__":
    main()
