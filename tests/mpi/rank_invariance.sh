#!/usr/bin/env bash
# Runs the pipeline on our own phantom dataset with several rank and thread counts (same work path each time, so
# absolute paths inside the pkl files agree) and asserts byte-identical outputs and HDF5 == npz.
#   rank_invariance.sh BIN PYTHON PLANNER H5_LAYOUT "RANKSxTHREADS ..."
# A configuration ending in "s" (e.g. 2x1s) slows the last rank after every case-stage, one ending in "c" after
# every crop, so that the others take its cases (work sharing in phase 2 or phase 1); the run must then log cases
# taken from that rank in that phase. One ending in "l" slows rank 0 without work sharing and binds every rank to
# its cores, so that the others run out of cases first and lend their cores to rank 0 (core sharing); the run
# must then log a case of rank 0 that ran on more threads than a rank has.
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
  slow=${cfg##*[0-9]} plain=${cfg%[scl]}
  ranks=${plain%x*} threads=${plain#*x}
  rm -rf "$tmp/work"
  case $slow in
    s|c) note=", the last rank slowed" ;;
    l) note=", rank 0 slowed, ranks bound to cores" ;;
    *) note="" ;;
  esac
  echo "== $ranks rank(s) x $threads thread(s)$note"
  lag=()
  # phase 1 without work sharing there, so that the slowed rank still has cases of its own to take in phase 2
  [[ $slow == s ]] && lag=(-x AMOSPREP_TEST_SLOW_RANK="$((ranks - 1)):700" -x AMOSPREP_WORK_SHARING=preprocess)
  [[ $slow == c ]] && lag=(-x AMOSPREP_TEST_SLOW_CROP_RANK="$((ranks - 1)):700")
  binding=(--bind-to none)
  [[ $slow == l ]] && lag=(-x AMOSPREP_TEST_SLOW_RANK="0:1500" -x AMOSPREP_WORK_SHARING=0) binding=(--bind-to core)
  mpirun -n "$ranks" "${binding[@]}" -x OMP_NUM_THREADS="$threads" "${lag[@]}" \
    "$bin" run --amos-dir "$tmp/amos" --out "$tmp/work" -pl3d "$planner" --h5 "$layout" --quiet
  if [[ $slow == l ]]; then
    "$py" - "$tmp/work/nnUNet_preprocessed/Task216_AMOS2022_task1/amos-prep/log.json" "$threads" <<'PY'
import json, sys
log = json.load(open(sys.argv[1]))
own = int(sys.argv[2])
rank0 = [(c["case"], c["threads"]) for r in log["per_rank"] if r["rank"] == 0 for c in r["cases"] if "stage" in c]
assert any(t > own for _, t in rank0), f"rank 0 never ran on lent cores: {rank0}"
assert all(c["threads"] == own for r in log["per_rank"] if r["rank"] != 0 for c in r["cases"] if "stage" in c)
print("core sharing: rank 0's cases and their threads:", rank0)
PY
  elif [[ -n $slow ]]; then
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
