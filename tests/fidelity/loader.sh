#!/usr/bin/env bash
# Our outputs, loaded the way nnU-Net v1's trainer loads them, for every planner (our own phantom data).
set -euo pipefail
bin=$1 py=$2 planner=$3 plans=$4
"$py" -c 'import numpy' 2>/dev/null || { echo "SKIP: $py lacks numpy"; exit 77; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/amosprep-loader.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$bin" synth --out "$tmp/amos" --train 4 --test 1 --size tiny --seed 4 >/dev/null 2>&1
"$bin" run --amos-dir "$tmp/amos" --out "$tmp/w" -pl3d "$planner" --quiet
"$py" "$here/nnunet_loader_check.py" "$tmp/w/nnUNet_preprocessed/Task216_AMOS2022_task1" "$plans"
