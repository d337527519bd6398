#!/usr/bin/env bash
# The main job, until the default segmentation model lands: inspect the shipped sample and
# a real full-resolution T1, convert between formats and to canonical orientation.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ns="$root/build/neuroseg"
out="${1:-$root/out/demo}"
mkdir -p "$out"
"$ns" --version
"$ns" info "$root/data_samples/ch2bet_2mm.nii.gz"
"$ns" info /usr/share/mricron/templates/ch2.nii.gz
"$ns" convert /usr/share/mricron/templates/ch2.nii.gz "$out/ch2.zarr"
"$ns" convert /usr/lib/python3/dist-packages/nibabel/tests/data/example4d.nii.gz "$out/example4d_ras.mha" --reorient RAS
"$ns" info "$out/example4d_ras.mha"
echo "demo outputs in $out"
