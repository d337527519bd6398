#!/usr/bin/env bash
# One-command setup for neuroseg on Debian 12: system packages, a project-local
# venv holding the PyPI torch==2.11.0 wheel (our LibTorch), then configure+build.
# Idempotent: each step checks first and is skipped when already done.
#   scripts/setup.sh            install what is missing, configure, build
#   NEUROSEG_BUILD_DIR=...      build folder (default: build)
#   NEUROSEG_SKIP_APT=1         never call apt-get (e.g. no root)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build_dir="${NEUROSEG_BUILD_DIR:-build}"
torch_version="2.11.0"

apt_packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libinsighttoolkit5-dev libgdcm-tools libopencv-dev doctest-dev nlohmann-json3-dev libcli11-dev
  zlib1g-dev libblosc-dev libzstd-dev
  python3 python3-venv python3-numpy python3-scipy python3-skimage python3-zarr
  mricron-data python3-nibabel python3-dipy python3-pydicom
  clang libclang-rt-14-dev
  libgloo-dev
)

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- 1. Debian packages -------------------------------------------------------
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "${NEUROSEG_SKIP_APT:-0}" = 1 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (NEUROSEG_SKIP_APT=1 set)" >&2; exit 1
  fi
  step "apt-get install ${#missing[@]} packages"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  step "Debian packages: all present"
fi

# --- 2. project-local venv with LibTorch from the torch wheel -------------------
# Debian's python3 with --system-site-packages so the venv also sees Debian's
# nibabel/pydicom/scipy (independent readers for the cross-check tests).
if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$torch_version' else 1)" 2>/dev/null; then
  step "pip install torch==$torch_version (LibTorch for C++)"
  .venv/bin/pip install -q "torch==$torch_version"
else
  step "torch $torch_version: present"
fi
# Peers that the cross-check tests compare against (pure Python or small wheels).
peers=("connected-components-3d==4.1.1:cc3d" "monai==1.6.1:monai" "surface-distance==0.1:surface_distance"
       "segment-anything==1.0:segment_anything")
for spec in "${peers[@]}"; do
  pkg="${spec%%:*}"; mod="${spec##*:}"
  # find_spec, not import: segment_anything's __init__ imports torchvision, which we do not need
  if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$mod') is None)" 2>/dev/null; then
    step "pip install $pkg (cross-check peer)"
    .venv/bin/pip install -q "$pkg"
  fi
done
torch_prefix="$(.venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')"

# --- 3. configure and build ----------------------------------------------------
export CCACHE_DIR="${CCACHE_DIR:-$root/.ccache}"
if [ ! -f "$build_dir/build.ninja" ]; then
  step "configuring $build_dir"
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$torch_prefix" -DPython3_EXECUTABLE="$root/.venv/bin/python" >/dev/null
fi
step "building $build_dir"
cmake --build "$build_dir" -- -j"$(nproc)"
step "done: $build_dir/neuroseg --help"
