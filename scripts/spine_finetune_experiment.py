#!/usr/bin/env python3
"""Fine-tuning table on the spine T1 -> T2 shift, for docs/adaptation.md: a new site whose
scanner protocol is T2 (inverted CSF and disc contrast), with a few labelled cases.

- A 4-level 3D U-Net (16/32/64/128 channels, ~1.4 M parameters: wide enough that a rank-16
  CP update of every conv is about 1 % of the model) trained on the T1 images of cases 1-8 of
  `neuroseg synth spine` (the data of scripts/spine_shift_experiment.py);
- fine-tuned with `neuroseg finetune` on the labelled T2 images of 6 other patients (cases
  9-14): every weight, the decoder only, and the adapter kinds at the given ranks (targets:
  every conv, alpha = 2 r, the same schedule for all);
- Dice per class (vertebra, disc, canal) on the T2 images of the held-out cases 15-20, on the
  original grid.

usage: scripts/spine_finetune_experiment.py [--out DIR] [--epochs 10] [--source-epochs 30]
           [--ranks 4 16] [--kinds cp-lora cp-dora lora-c] [--model unet|plsnet]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from finetune_experiment import finetune_setting  # noqa: E402
from spine_shift_experiment import ADAPT, CLASSES, SOURCE, dice_of, pairs, prepare, sh  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/neuroseg_spine_finetune")
    ap.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (20 iterations each)")
    ap.add_argument("--source-epochs", type=int, default=30)
    ap.add_argument("--ranks", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--kinds", nargs="+", default=["cp-lora", "cp-dora", "lora-c"])
    ap.add_argument("--model", choices=["unet", "plsnet"], default="unet")
    ap.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128], help="U-Net channels per level")
    a = ap.parse_args()
    # Decoder globs: the U-Net's decoder blocks; PLS-Net's dec*, skip* and head.
    args, decoder = {"unet": ({"channels": a.channels, "out_channels": 4}, ["decoder*"]),
                     "plsnet": ({"out_channels": 4}, ["dec*", "skip*", "head"])}[a.model]
    t_start = time.time()
    os.makedirs(a.out, exist_ok=True)
    folders = prepare(a.out)
    # The labelled T2 cases of the new site: 9-14 (other patients than the source's 1-8).
    folders["t2_site"] = folders["t2_adapt"]

    def cfg(train, epochs):
        return {"data": {"train": train, "validation": train[:2]},
                "model": {"name": a.model, "args": args},
                "labels": CLASSES, "preprocessing": {"target_spacing": [3.3, 1.8, 1.8]},
                "patch_size": [64, 64, 16], "batch_size": 2, "epochs": epochs, "iterations_per_epoch": 20,
                "validation_every": epochs, "optimizer": {"name": "adamw", "lr": 0.003}, "workers": 1, "seed": 1}
    json.dump(cfg(pairs(folders, "t1_source", "t1", SOURCE), a.source_epochs), open(os.path.join(a.out, "source_cfg.json"), "w"))
    json.dump(cfg(pairs(folders, "t2_site", "t2", ADAPT), a.epochs), open(os.path.join(a.out, "site_cfg.json"), "w"))
    source = os.path.join(a.out, "source_run", "checkpoint_last.pt")
    if not os.path.exists(source):
        sh(["train", "--config", os.path.join(a.out, "source_cfg.json"), "-o", os.path.join(a.out, "source_run")])
    rows = [("source model on T1 (no shift)", 0, dice_of(source, folders, "t1_test", "t1", os.path.join(a.out, "seg_t1"))),
            ("source model on T2 (no fine-tuning)", 0, dice_of(source, folders, "t2_test", "t2", os.path.join(a.out, "seg_none")))]
    settings = [("full", None), ("layers", None)] + [(k, r) for k in a.kinds for r in a.ranks]
    for kind, rank in settings:
        run = os.path.join(a.out, f"{kind}_{rank}")
        label, trainable = finetune_setting(sh, source, kind, rank, os.path.join(a.out, "site_cfg.json"), run, decoder)
        d = dice_of(os.path.join(run, "checkpoint_last.pt"), folders, "t2_test", "t2", os.path.join(a.out, f"seg_{kind}_{rank}"))
        rows.append((label, trainable, d))
        print(f"{label:22} {rows[-1][1]:>10} {d['mean']:.4f}", flush=True)
    total = rows[2][1]  # full fine-tuning trains every parameter
    print("\n| setting | trainable parameters | % of the model | vertebra | disc | canal | mean |\n|---|---|---|---|---|---|---|")
    for label, n, d in rows:
        share = f"{100.0 * n / total:.2f} %" if n else "-"
        print(f"| {label} | {n:,} | {share} | {d['vertebra']:.3f} | {d['disc']:.3f} | {d['canal']:.3f} | {d['mean']:.3f} |")
    print(f"total {time.time() - t_start:.0f} s")
    json.dump(rows, open(os.path.join(a.out, "results.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
