#!/usr/bin/env bash
# Runs the pipeline on our own phantom dataset with several rank and thread counts (same work path each time, so
# absolute paths inside the pkl files agree) and asserts byte-identical outputs and HDF5 == npz.
#   rank_invariance.sh BIN PYTHON PLANNER H5_LAYOUT "RANKSxTHREADS ..."
# A configuration ending in "s" (e.g. 2x1s) slows the last rank after every case-stage, one ending in "c" after
# every crop, so that the others take its cases (work sharing in phase 2 or phase 1); the run must then log cases
# taken from that rank in that phase.
set -euo pipefail
bin=$1 py=$2 planner=$3 layout=$4 configs=$5
"$py" -c 'import numpy, h5py' 2>/dev/null || { echo "SKIP: $py lacks numpy/h5py"; exit 77; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/amosprep-mpi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
"$bin" synth --out "$tmp/amos" --train 5 --test 1 --size tiny --seed 7
results=()
for cfg in $configs; do
  slow=${cfg##*[0-9]} plain=${cfg%[sc]}
  ranks=${plain%x*} threads=${plain#*x}
  rm -rf "$tmp/work"
  echo "== $ranks rank(s) x $threads thread(s)${slow:+, the last rank slowed}"
  lag=()
  # phase 1 without work sharing there, so that the slowed rank still has cases of its own to take in phase 2
  [[ $slow == s ]] && lag=(-x AMOSPREP_TEST_SLOW_RANK="$((ranks - 1)):700" -x AMOSPREP_WORK_SHARING=preprocess)
  [[ $slow == c ]] && lag=(-x AMOSPREP_TEST_SLOW_CROP_RANK="$((ranks - 1)):700")
  mpirun -n "$ranks" --bind-to none -x OMP_NUM_THREADS="$threads" "${lag[@]}" \
    "$bin" run --amos-dir "$tmp/amos" --out "$tmp/work" -pl3d "$planner" --h5 "$layout" --quiet
  if [[ -n $slow ]]; then
    "$py" - "$tmp/work/nnUNet_preprocessed/Task216_AMOS2022_task1/amos-prep/log.json" "$slow" <<'PY'
import json, sys
log = json.load(open(sys.argv[1]))
phase_2 = sys.argv[2] == "s"
stolen = [(c["case"], c.get("stage", "crop"), r["rank"]) for r in log["per_rank"] for c in r["cases"]
          if c.get("stolen") and ("stage" in c) == phase_2]
assert stolen, "no case was taken from the slowed rank"
assert all(rank != len(log["per_rank"]) - 1 for _, _, rank in stolen), stolen
print("work sharing: taken from the slowed rank:", stolen)
PY
  fi
  mv "$tmp/work" "$tmp/r$cfg"
  results+=("$tmp/r$cfg/nnUNet_preprocessed/Task216_AMOS2022_task1")
done
# compare_outputs expects the pkl paths to name the same work dir: they do (all runs used $tmp/work).
"$py" "$here/compare_outputs.py" "${results[@]}"
