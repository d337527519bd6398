#!/usr/bin/env python3
"""Model throughput, neuroseg (C++/LibTorch) side by side with the Python peers on the
same machine, threads and input, in one run:
  * U-Net: neuroseg `unet` (nnU-Net plain-conv defaults, 32..320 channels, 5 stages)
    vs MONAI DynUNet with the same configuration (MONAI's convs carry no bias: 3,040
    fewer parameters, otherwise the same layers);
  * PLS-Net: neuroseg `plsnet` vs the same network in PyTorch eager (written here from
    shared/specs/spine_sfda_plsnet_lora.md §C; MONAI has no PLS-Net).
Prints voxels/s and the ratio neuroseg / peer.

usage: bench/models_bench.py [--sizes 96 128] [--threads 2] [--repeats 2] [--device cpu]
"""
import argparse
import json
import os
import subprocess
import time

import torch
import torch.nn.functional as F
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bench", "neuroseg_bench_models")


def monai_unet():
    from monai.networks.nets import DynUNet
    return DynUNet(3, 1, 2, kernel_size=[3] * 5, strides=[1, 2, 2, 2, 2], upsample_kernel_size=[2, 2, 2, 2],
                   filters=[32, 64, 128, 256, 320], norm_name=("instance", {"affine": True}),
                   act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}))


class DSConv(nn.Module):
    def __init__(self, cin, cout, dilation=1, stride=1):
        super().__init__()
        self.dw = nn.Conv3d(cin, cin, 3, stride, dilation, dilation, groups=cin, bias=False)
        self.pw = nn.Conv3d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm3d(cout, momentum=0.01)

    def forward(self, x):
        return F.relu(self.bn(self.pw(self.dw(x))))


class DRDB(nn.Module):
    def __init__(self, c, g=12):
        super().__init__()
        self.layers = nn.ModuleList([DSConv(c + k * g, g, k + 1) for k in range(4)])
        self.fuse = nn.Conv3d(c + 4 * g, c, 1)

    def forward(self, x):
        h = x
        for layer in self.layers:
            h = torch.cat([h, layer(h)], 1)
        return self.fuse(h) + x


class PLSNet(nn.Module):
    def __init__(self, c=2):
        super().__init__()
        self.d1, self.d2, self.d3 = DSConv(1, 16, 1, 2), DSConv(17, 64, 1, 2), DSConv(65, 128, 1, 2)
        self.b1 = nn.Sequential(DRDB(17))
        self.b2 = nn.Sequential(DRDB(65), DRDB(65))
        self.b3 = nn.Sequential(*[DRDB(129) for _ in range(4)])
        self.dec3, self.skip2, self.dec2 = DSConv(129, 2 * c), DSConv(65, 2 * c), DSConv(4 * c, 2 * c)
        self.skip1, self.dec1 = DSConv(17, 2 * c), DSConv(4 * c, 2 * c)
        self.head = nn.Conv3d(2 * c, c, 1)

    def forward(self, x):
        r = lambda t, s: F.interpolate(t, scale_factor=s, mode="trilinear", align_corners=False)
        l1 = self.b1(torch.cat([self.d1(x), r(x, 0.5)], 1))
        l2 = self.b2(torch.cat([self.d2(l1), r(x, 0.25)], 1))
        l3 = self.b3(torch.cat([self.d3(l2), r(x, 0.125)], 1))
        h = r(self.dec3(l3), 2.0)
        h = r(self.dec2(torch.cat([h, self.skip2(l2)], 1)), 2.0)
        h = r(self.dec1(torch.cat([h, self.skip1(l1)], 1)), 2.0)
        return self.head(h)


def time_python(model, size, mode, repeats, device):
    model = model.to(device)
    x = torch.randn(1, 1, size, size, size, device=device)
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)

    def step():
        if mode == "fwd":
            with torch.inference_mode():
                model(x)
        else:
            model.zero_grad()
            model(x).float().mean().backward()
        sync()

    model.eval() if mode == "fwd" else model.train()
    step()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - t0) / repeats


def time_neuroseg(model, size, mode, repeats, threads, device):
    out = subprocess.run([BIN, "--model", model, "--size", str(size), "--mode", mode, "--repeats", str(repeats),
                          "--threads", str(threads), "--device", device], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", nargs="+", default=["fwd", "train"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    peers = {"unet": ("MONAI DynUNet " + __import__("monai").__version__, monai_unet), "plsnet": ("PyTorch eager", PLSNet)}
    print(f"torch {torch.__version__}, {a.threads} threads, device {a.device}")
    print(f"{'model':8} {'size':>5} {'mode':6} {'neuroseg MVx/s':>15} {'peer MVx/s':>11} {'ratio':>6}  peer")
    rows = []
    for name, (peer_name, make_peer) in peers.items():
        for size in a.sizes:
            for mode in a.modes:
                ours = time_neuroseg(name, size, mode, a.repeats, a.threads, a.device)
                peer_s = time_python(make_peer(), size, mode, a.repeats, a.device)
                vox = size ** 3
                row = {"model": name, "size": size, "mode": mode, "neuroseg_s": ours["seconds"], "peer_s": peer_s,
                       "neuroseg_mvox_s": vox / ours["seconds"] / 1e6, "peer_mvox_s": vox / peer_s / 1e6,
                       "ratio": peer_s / ours["seconds"], "peer": peer_name}
                rows.append(row)
                print(f"{name:8} {size:>5} {mode:6} {row['neuroseg_mvox_s']:>15.3f} {row['peer_mvox_s']:>11.3f} "
                      f"{row['ratio']:>6.2f}  {peer_name}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
