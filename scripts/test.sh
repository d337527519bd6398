#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing and builds (scripts/setup.sh),
# then runs every ctest: unit, slow (CLI on real files, bad input, fuzzers) and gpu
# (reported as skipped where there is no CUDA device).
#   scripts/test.sh              everything
#   scripts/test.sh -L unit      any extra arguments go to ctest
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root/${NEUROSEG_BUILD_DIR:-build}"
ctest --output-on-failure -j"$(nproc)" "$@"
