#!/usr/bin/env bash
# Runs amos-prep on one fixture of ../shared and compares with the golden nnU-Net v1 output.
#   run_fixture.sh BIN PYTHON SHARED FIXTURE PLANNER [RANKS]
# Exit 77 (ctest SKIP) when the reference material or Debian's numpy is absent.
set -euo pipefail
bin=$1 py=$2 shared=$3 fixture=$4 planner=$5 ranks=${6:-1}
fx="$shared/fixtures/$fixture"
gold="$fx/nnunet-v1/$planner"
if [ ! -d "$fx/amos" ] || [ ! -d "$gold" ]; then
  echo "SKIP: reference fixture $fx (or $planner golden) not found: ../shared is only beside CI's clone"; exit 77
fi
if ! "$py" -c 'import numpy' 2>/dev/null; then echo "SKIP: $py has no numpy (apt install python3-numpy)"; exit 77; fi
out=$(mktemp -d "${TMPDIR:-/tmp}/amosprep-fid.XXXXXX")
trap 'rm -rf "$out"' EXIT
if [ "$ranks" -gt 1 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  export OMPI_MCA_btl_vader_single_copy_mechanism=none
  mpirun -n "$ranks" --bind-to none -x OMP_NUM_THREADS=1 "$bin" run --amos-dir "$fx/amos" --out "$out" -pl3d "$planner" --write-cropped --quiet
else
  "$bin" run --amos-dir "$fx/amos" --out "$out" -pl3d "$planner" --write-cropped --quiet
fi
"$py" "$shared/tools/compare_nnunet.py" "$out" "$gold"
