#!/usr/bin/env bash
# Runs the pipeline on our own phantom dataset with several rank and thread counts (same work path each time, so
# absolute paths inside the pkl files agree) and asserts byte-identical outputs and HDF5 == npz.
#   rank_invariance.sh BIN PYTHON PLANNER H5_LAYOUT "RANKSxTHREADS ..."
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
  ranks=${cfg%x*} threads=${cfg#*x}
  rm -rf "$tmp/work"
  echo "== $ranks rank(s) x $threads thread(s)"
  mpirun -n "$ranks" --bind-to none -x OMP_NUM_THREADS="$threads" \
    "$bin" run --amos-dir "$tmp/amos" --out "$tmp/work" -pl3d "$planner" --h5 "$layout" --quiet
  mv "$tmp/work" "$tmp/r$cfg"
  results+=("$tmp/r$cfg/nnUNet_preprocessed/Task216_AMOS2022_task1")
done
# compare_outputs expects the pkl paths to name the same work dir: they do (all runs used $tmp/work).
"$py" "$here/compare_outputs.py" "${results[@]}"
