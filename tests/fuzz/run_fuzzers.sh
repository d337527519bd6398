#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (no torch: seconds) and runs each for a bounded
# time on a seed corpus made from real files. Any crash, sanitizer report or trap fails.
#   tests/fuzz/run_fuzzers.sh [seconds per target, default 30] [neuroseg binary for zarr seeds]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds="${1:-30}"
neuroseg="${2:-$root/build/neuroseg}"
build="$root/build-fuzz"
cmake -S "$root" -B "$build" -G Ninja -DNEUROSEG_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build "$build" >/dev/null

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/nifti" "$work/zarr"
# NIfTI seeds: the headers of real files (NIfTI-1, NIfTI-2, big-endian, 4D).
i=0
for f in /usr/lib/python3/dist-packages/nibabel/tests/data/{anatomical.nii,example_nifti2.nii.gz,example4d.nii.gz,standard.nii.gz} \
         /usr/share/mricron/templates/ch2.nii.gz; do
  [ -f "$f" ] || continue
  python3 -c "import gzip,sys; o=gzip.open if sys.argv[1].endswith('.gz') else open; sys.stdout.buffer.write(o(sys.argv[1],'rb').read(600))" "$f" > "$work/nifti/seed$i"
  i=$((i + 1))
done
# zarr seeds: [u16 json length][.zarray][chunk 0] for each compressor, written by neuroseg.
if [ -x "$neuroseg" ]; then
  for c in none zlib gzip blosc zstd; do
    "$neuroseg" convert /usr/lib/python3/dist-packages/nibabel/tests/data/standard.nii.gz "$work/s_$c.zarr" \
      --zarr-compressor "$c" --zarr-chunk 4 >/dev/null
    python3 - "$work/s_$c.zarr" "$work/zarr/seed_$c" <<'PY'
import struct, sys, os
d, out = sys.argv[1], sys.argv[2]
meta = open(os.path.join(d, ".zarray"), "rb").read()
chunk = open(os.path.join(d, "0.0.0"), "rb").read() if os.path.exists(os.path.join(d, "0.0.0")) else b""
open(out, "wb").write(struct.pack("<H", len(meta)) + meta + chunk)
PY
  done
fi
# Inputs that once failed (tests/fuzz/regressions/<corpus>/) are always part of the seeds.
for d in nifti zarr; do
  [ -d "$root/tests/fuzz/regressions/$d" ] && cp "$root/tests/fuzz/regressions/$d/"* "$work/$d/" 2>/dev/null || true
done
status=0
for target in fuzz_nifti_header:nifti fuzz_zarr:zarr; do
  name="${target%%:*}"; corpus="$work/${target##*:}"
  echo "== $name for ${seconds}s ($(ls "$corpus" | wc -l) seeds)"
  if ! (cd "$work" && "$build/$name" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 2>"$work/$name.log"); then
    tail -40 "$work/$name.log"; status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/$name.log" || true
  fi
done
exit $status
