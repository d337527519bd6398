#!/usr/bin/env python3
"""The models CLI end to end: list-models, and import-weights of a state dict saved by
Python PyTorch into a neuroseg checkpoint that Python can read back.

usage: cli_models.py path/to/neuroseg
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch

from _check import check, finish, neuroseg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args, ok=True):
    return neuroseg(args, must_succeed=ok)


def one_line_error(p, *needles):
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    return p.returncode == 1 and len(lines) == 1 and all(n in lines[0] for n in needles)


tmp = tempfile.mkdtemp(prefix="neuroseg_models_")
try:
    out = run("list-models").stdout
    names = [l.split()[0] for l in out.splitlines() if l.strip()]
    check(names == ["unet", "unet2d", "plsnet", "umamba_bot", "umamba_enc", "segmamba", "sam_vit_b", "torchscript"], f"list-models names {names}")
    verbose = run("list-models", "--verbose").stdout
    pls = [l for l in verbose.splitlines() if "parameters" in l][2]
    count = int(pls.split(":")[-1].split()[0])
    check(abs(count - 250.7e3) / 250.7e3 < 0.01, f"plsnet parameter count {count} within 1% of 250.7k")

    subprocess.run([sys.executable, os.path.join(ROOT, "tests/fixtures/make_torch_fixtures.py"), tmp], check=True,
                   capture_output=True)
    args = json.dumps({"channels": [4, 8, 16], "strides": [[1, 1, 1], [2, 2, 2], [1, 2, 2]], "out_channels": 3})
    meta = os.path.join(tmp, "meta.json")
    json.dump({"preprocessing": {"target_spacing": [1, 1, 1], "orientation": "RAS"}, "labels": {"background": 0, "a": 1, "b": 2},
               "patch_size": [8, 16, 12]}, open(meta, "w"))
    ckpt = os.path.join(tmp, "imported.pt")
    p = run("import-weights", "--model", "unet", "--args", args, "--weights", os.path.join(tmp, "unet_state_dict_prefixed.pt"),
            "--map", "^module\\.=", "--meta", meta, "-o", ckpt)
    check(os.path.exists(ckpt) and "wrote" in p.stdout, "import-weights with a key map writes a checkpoint")
    c = torch.load(ckpt, weights_only=False)
    m = json.loads(c["meta"])
    sd = torch.load(os.path.join(tmp, "unet_state_dict.pt"))
    check(c["format"] == "neuroseg-checkpoint" and c["version"] == 1, "checkpoint header readable by torch.load")
    check(m["model"] == "unet" and m["labels"]["b"] == 2 and m["patch_size"] == [8, 16, 12], "checkpoint meta")
    check(set(c["state_dict"]) == set(sd) and all(torch.equal(c["state_dict"][k], sd[k]) for k in sd),
          "checkpoint weights equal the Python ones")

    p = run("import-weights", "--model", "unet", "--args", args, "--weights", os.path.join(tmp, "unet_state_dict_prefixed.pt"),
            "-o", os.path.join(tmp, "bad.pt"), ok=False)
    check(one_line_error(p, "unet_state_dict_prefixed.pt", "missing: decoder_blocks", "unexpected: module.")
          and not os.path.exists(os.path.join(tmp, "bad.pt")), "unmapped keys are listed, nothing written")
    p = run("import-weights", "--model", "unet", "--args", json.dumps({"channels": [4, 8, 32], "out_channels": 3,
            "strides": [[1, 1, 1], [2, 2, 2], [1, 2, 2]]}), "--weights", os.path.join(tmp, "unet_state_dict.pt"),
            "-o", os.path.join(tmp, "bad.pt"), ok=False)
    check(one_line_error(p, "mis-shaped: decoder_up.1.conv.weight (16, 8, 1, 2, 2) vs model (32, 8, 1, 2, 2)"), "mis-shaped keys show both shapes")
    p = run("import-weights", "--model", "unett", "--weights", os.path.join(tmp, "unet_state_dict.pt"), "-o", os.path.join(tmp, "bad.pt"), ok=False)
    check(one_line_error(p, "did you mean 'unet'?"), "unknown model suggests the closest")
    p = run("import-weights", "--model", "unet", "--args", '{"out_chanels": 3}', "--weights", os.path.join(tmp, "unet_state_dict.pt"),
            "-o", os.path.join(tmp, "bad.pt"), ok=False)
    check(one_line_error(p, "unknown argument 'out_chanels'; did you mean 'out_channels'?"), "unknown argument suggests the closest")
    open(os.path.join(tmp, "junk.pt"), "w").write("junk")
    p = run("import-weights", "--model", "unet", "--weights", os.path.join(tmp, "junk.pt"), "-o", os.path.join(tmp, "bad.pt"), ok=False)
    check(one_line_error(p, "junk.pt: not a readable torch.save file"), "a corrupt weights file is named")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

sys.exit(finish())
