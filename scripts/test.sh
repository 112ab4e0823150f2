#!/usr/bin/env bash
# Runs the whole test suite (ctest) on the build made by scripts/setup.sh. Fails loudly on any error.
#   scripts/test.sh                 all tests
#   scripts/test.sh -L unit         one kind: unit | fidelity | mpi | faults | slurm
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -x "$here/build/amos-prep" ] || { echo "test.sh: build/amos-prep missing: run scripts/setup.sh first" >&2; exit 1; }
jobs="${CTEST_PARALLEL_LEVEL:-2}"
cd "$here/build"
ctest --output-on-failure --no-tests=error -j "$jobs" "$@"
