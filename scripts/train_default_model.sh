#!/usr/bin/env bash
# Retrains neuroseg's embedded default model: 3D brain extraction (skull stripping) on the
# real T1 MRI of Debian's mricron-data (Colin27: ch2 at 1 mm and ch2better at 0.5 mm), with
# ch2bet > 0 as the brain mask, resampled onto ch2better's grid by neuroseg itself.
#   scripts/train_default_model.sh [work dir, default build/default_model]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ns="$root/build/neuroseg"
work="${1:-$root/build/default_model}"
t=/usr/share/mricron/templates
mkdir -p "$work/data"
"$ns" convert "$t/ch2bet.nii.gz" "$work/data/ch2_mask.nii.gz" --binarize-above 0
"$ns" convert "$work/data/ch2_mask.nii.gz" "$work/data/ch2better_mask.nii.gz" --reference "$t/ch2better.nii.gz" --interp nearest
cp "$root/data_samples/brain_extraction.json" "$work/config.json"
"$ns" train --config "$work/config.json" -o "$work/run" "$@"
cp "$work/run/checkpoint_best.pt" "$root/data_samples/brain_extraction.pt"
cp "$work/run/curves.png" "$root/docs/brain_extraction_curves.png"
echo "default model -> data_samples/brain_extraction.pt"
