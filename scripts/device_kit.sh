#!/usr/bin/env bash
# The GPU checks of a session that is lent a device machine (one NVIDIA H200, no network,
# torch 2.11 in its python3, no ITK/OpenCV), prepared on the build machine so that the few
# minutes of device time run tests instead of building:
#
#   scripts/device_kit.sh pack    here, after scripts/setup.sh: builds, then writes
#                                 .device/kit.tar.xz (git-ignored): our binaries (kernels
#                                 for sm_80/sm_90), the shared libraries they need that are
#                                 not torch's or the C runtime's, and the peers' wheels
#   scripts/device_kit.sh check   here: runs the kit as the device would, on the CPU
#                                 (gpu tests skip), to catch a missing library before
#                                 spending device time
#   scripts/device_kit.sh run     there, as one call with carry [".device"]: the gpu-labelled
#                                 tests, then the CUDA benchmarks side by side with their
#                                 peers; everything lands in $OUT (default .device/out)
#
# The binaries have this checkout's paths compiled in (test fixtures, scratch folder), so
# `run` links the checkout there to the same path when it differs.
set -euo pipefail
stage="" libs=""
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kit="$root/.device"
mode="${1:-}"

# The peers the CUDA benchmarks compare against, as wheels for the device's Python 3.12.
# (nibabel 5.3 rather than Debian's 5.0: the device's numpy is 2.x.)
peer_wheels=(connected-components-3d==4.1.1 monai==1.6.1 surface-distance==0.1 nibabel==5.3.2)

# The mricron-data volumes that tests/gpu and the CUDA benchmarks read.
templates=(aal.nii.gz ch2bet.nii.gz)

# C and C++ runtime libraries: the device's are newer and backward compatible.
is_runtime() {
  case "$1" in
    */libc.so.*|*/libm.so.*|*/libdl.so.*|*/librt.so.*|*/libpthread.so.*|*/ld-linux*|*/libstdc++.so.*|*/libgcc_s.so.*) return 0 ;;
  esac
  return 1
}
torch_lib_of() { "$1" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'; }

pack() {
  cd "$root"
  [ -x build/neuroseg ] || { echo "device_kit: run scripts/setup.sh first (no build/neuroseg)" >&2; exit 1; }
  mkdir -p "$kit"
  cmake --build build --target neuroseg_cli neuroseg_tests_gpu neuroseg_bench_ops > "$kit/build.log" 2>&1 ||
    { tail -30 "$kit/build.log" >&2; echo "device_kit: the build failed (.device/build.log)" >&2; exit 1; }
  rm -rf "$kit/stage" && mkdir -p "$kit/stage/bin" "$kit/stage/lib" "$kit/stage/wheels"
  cp build/neuroseg build/tests/neuroseg_tests_gpu build/bench/neuroseg_bench_ops "$kit/stage/bin/"
  local torch_lib
  torch_lib="$(torch_lib_of .venv/bin/python)"
  # Every resolved dependency but torch's own libraries (the device's torch has the same
  # version) and the C/C++ runtime.
  for b in "$kit"/stage/bin/*; do
    ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
  done | sort -u | while read -r lib; do
    case "$lib" in "$torch_lib"/*) continue ;; esac
    is_runtime "$lib" || cp -L "$lib" "$kit/stage/lib/"
  done
  echo "$root" > "$kit/stage/bin/source_dir"
  # Real volumes the gpu tests and benchmarks read from Debian's mricron-data.
  mkdir -p "$kit/stage/templates"
  cp "${templates[@]/#//usr/share/mricron/templates/}" "$kit/stage/templates/"
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$kit/stage/wheels" "${peer_wheels[@]}"
  # xz: 26 MB against gzip's 35 (the working tree travels in the same 64 MiB).
  tar cf - -C "$kit/stage" bin lib wheels templates | xz -9 -T0 > "$kit/kit.tar.xz"
  grep -qx '/.device/' "$root/.gitignore" 2>/dev/null || echo '/.device/' >> "$root/.gitignore"
  rm -rf "$kit/stage"
  echo "device_kit: $(du -h "$kit/kit.tar.xz" | cut -f1) in .device/kit.tar.xz; the working tree travels too (64 MiB in all)"
}

# Unpacks the kit and puts a launcher for each binary where the benchmarks and ctest look
# (build/...): it sets the library path for that binary only, so that the kit's Debian
# libraries never reach the device's own python3 (its pyexpat needs its newer libexpat).
# $1: the torch library folder to use; $2: the folder that gets the launchers (build/ there).
unpack() {
  [ -f "$kit/kit.tar.xz" ] || { echo "device_kit: no .device/kit.tar.xz (run 'pack' first)" >&2; exit 1; }
  stage="${TMPDIR:-/tmp}/neuroseg_kit"  # not under .device, which travels
  rm -rf "$stage" && mkdir -p "$stage" && tar xJf "$kit/kit.tar.xz" -C "$stage"
  libs="$stage/lib:$1"
  mkdir -p "$2/tests" "$2/bench"
  for target in neuroseg tests/neuroseg_tests_gpu bench/neuroseg_bench_ops; do
    rm -f "$2/$target"
    printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
      "$libs" "$stage/bin/$(basename "$target")" > "$2/$target"
    chmod +x "$2/$target"
  done
}

run() {
  cd "$root"
  local out="${OUT:-$kit/out}"
  mkdir -p "$out"
  unpack "$(torch_lib_of python3)" "$root/build"
  # The compiled-in source path (fixtures, scratch folder) must lead to this checkout.
  local built_at
  built_at="$(cat "$stage/bin/source_dir")"
  if [ "$built_at" != "$root" ]; then
    if [ ! -e "$built_at" ]; then
      mkdir -p "$(dirname "$built_at")" && ln -s "$root" "$built_at"
    elif [ "$(cd "$built_at" && pwd -P)" != "$(cd "$root" && pwd -P)" ]; then
      echo "device_kit: $built_at exists and is not this checkout: the tests' fixtures may be the wrong ones"
    fi
  fi
  mkdir -p /usr/share/mricron/templates
  for f in "$stage"/templates/*; do
    [ -e "/usr/share/mricron/templates/$(basename "$f")" ] || cp "$f" /usr/share/mricron/templates/
  done
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/neuroseg_site \
    "$stage"/wheels/*.whl || echo "device_kit: the peers' wheels did not install (benchmarks will say which is missing)"
  export PYTHONPATH="/tmp/neuroseg_site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  { nvidia-smi; python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'; date -u; } \
    > "$out/machine.txt" 2>&1 || true
  local status=0
  # The gpu-labelled tests: every CUDA op against its CPU twin.
  # (NCCL on loopback for the distributed test; a hang must not take the benchmarks' time.)
  NCCL_SOCKET_IFNAME=lo timeout 240 build/tests/neuroseg_tests_gpu 2>&1 | tee "$out/gpu_tests.txt" || status=1
  # Here a skip is a failure: the binary found no GPU.
  if grep -q "SKIP: no CUDA" "$out/gpu_tests.txt"; then echo "device_kit: the gpu tests found no CUDA device"; status=1; fi
  # The CUDA benchmarks, each side by side with its peer in the same script.
  for bench in "cc_bench.py --device cuda --sizes 128 256 --threads 2 --connectivity 26 --no-scipy" \
               "edt_bench.py --device cuda --sizes 64 128 256 --repeats 5" \
               "surface_bench.py --device cuda --sizes 64 128 256 --repeats 5"; do
    name="${bench%%.py*}"
    timeout 150 python3 bench/$bench > "$out/$name.txt" 2>&1 || { echo "device_kit: $name failed" >> "$out/$name.txt"; status=1; }
    tail -20 "$out/$name.txt"
  done
  exit $status
}

# The kit on this machine's CPU, as `run` would use it: every library a binary needs
# resolves to the kit, torch or the C runtime (nothing else is on the device), every binary
# starts, and the gpu tests report their skip.
check() {
  cd "$root"
  local torch_lib
  torch_lib="$(torch_lib_of .venv/bin/python)"
  unpack "$torch_lib" "${TMPDIR:-/tmp}/neuroseg_kit_launchers"  # this checkout's build/ stays as it is
  local missing=0
  for b in "$stage"/bin/neuroseg*; do
    while read -r lib; do
      case "$lib" in "$stage/lib"/*|"$torch_lib"/*) continue ;; esac
      is_runtime "$lib" || { echo "device_kit: $(basename "$b") needs $lib, which the kit lacks" >&2; missing=1; }
    done < <(LD_LIBRARY_PATH="$libs" ldd "$b" | awk '$2 == "=>" {print ($3 ~ /^\// ? $3 : $1 " (not found)")}')
  done
  [ "$missing" = 0 ] || exit 1
  "${TMPDIR:-/tmp}/neuroseg_kit_launchers/neuroseg" --version
  "${TMPDIR:-/tmp}/neuroseg_kit_launchers/tests/neuroseg_tests_gpu" | tail -1
}

case "$mode" in
  pack) pack ;;
  run) run ;;
  check) check ;;
  *) echo "usage: scripts/device_kit.sh pack | check | run" >&2; exit 2 ;;
esac
