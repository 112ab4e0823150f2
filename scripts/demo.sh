#!/usr/bin/env bash
# The built-in demo: generates a phantom AMOS22 dataset and runs the full pipeline under `mpirun -n 2`.
#   scripts/demo.sh [WORK_DIR]     (default: ./amos-prep-demo)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$here/build/amos-prep"
[ -x "$bin" ] || { echo "demo.sh: $bin missing: run scripts/setup.sh first" >&2; exit 1; }
work="$(realpath -m "${1:-amos-prep-demo}")"
planner="${PLANNER:-ExperimentPlanner3D_v21}"
mkdir -p "$work"

# Open MPI refuses root and more ranks than cores unless told; harmless for normal users.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

echo "demo: generating a phantom AMOS22 dataset in $work/amos"
"$bin" synth --out "$work/amos" --train 6 --test 2 --size tiny --seed 1
echo "demo: running convert + plan_and_preprocess ($planner) with mpirun -n 2"
mpirun -n 2 --bind-to none -x OMP_NUM_THREADS=1 "$bin" run --amos-dir "$work/amos" --out "$work/out" -pl3d "$planner"
task="$work/out/nnUNet_preprocessed/Task216_AMOS2022_task1"
echo
echo "demo: done. Outputs:"
echo "  raw (converted)     $work/out/nnUNet_raw_data_base/nnUNet_raw_data/Task216_AMOS2022_task1"
echo "  nnU-Net v1 layout   $task"
ls -1 "$task" | sed 's/^/                        /'
echo "  HDF5 store          $task/amos-prep.h5"
echo "  JSON mirrors, log   $task/amos-prep/"
