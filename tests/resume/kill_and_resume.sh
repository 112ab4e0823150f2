#!/usr/bin/env bash
# Interrupts a run mid-way, reruns the same command, and asserts the outputs are byte-identical to an
# uninterrupted run with no case lost.
#   kill_and_resume.sh BIN PYTHON MODE
# MODE: sigkill_rank   SIGKILL one rank of `mpirun -n 2` (the job dies; rerun resumes)
#       sigterm_job    SIGTERM to mpirun (Open MPI terminates the ranks)
#       sigusr1_job    SIGUSR1 to mpirun (forwarded; ranks stop cleanly, exit 75)
#       sigterm_single SIGTERM to a single-process run (must exit 75: interrupted, resumable)
set -euo pipefail
bin=$1 py=$2 mode=$3
"$py" -c 'import numpy, h5py' 2>/dev/null || { echo "SKIP: $py lacks numpy/h5py"; exit 77; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/amosprep-resume.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
"$bin" synth --out "$tmp/amos" --train 6 --test 0 --size tiny --seed 11 >/dev/null 2>&1
task="nnUNet_preprocessed/Task216_AMOS2022_task1"
args=(run --amos-dir "$tmp/amos" --out "$tmp/work" -pl3d ExperimentPlanner3D_v21 --quiet)

launcher=(mpirun -n 2 --bind-to none -x OMP_NUM_THREADS=1 -x AMOSPREP_FAULT_DELAY_MS)
[ "$mode" = sigterm_single ] && launcher=()

count_files() { local n; n=$(ls "$1" 2>/dev/null | wc -l) || true; echo "${n:-0}"; }
export AMOSPREP_FAULT_DELAY_MS=0
echo "== reference run (uninterrupted)"
"${launcher[@]}" "$bin" "${args[@]}"
mv "$tmp/work" "$tmp/reference"

echo "== interrupted run ($mode)"
export AMOSPREP_FAULT_DELAY_MS=1500   # each finished case waits, so the signal lands mid-run
"${launcher[@]}" "$bin" "${args[@]}" >"$tmp/interrupted.log" 2>&1 &
job=$!
pids+=("$job")
manifest="$tmp/work/$task/amos-prep/manifest"
for _ in $(seq 1 600); do
  [ "$(count_files "$manifest")" -ge 1 ] && break
  sleep 0.1
done
[ "$(count_files "$manifest")" -ge 1 ] || { cat "$tmp/interrupted.log"; echo "FAIL: no case finished"; exit 1; }
case "$mode" in
  sigkill_rank)
    victim=$(pgrep -f -n "$bin run --amos-dir $tmp/amos")   # newest amos-prep rank
    kill -9 "$victim" ;;
  sigterm_job|sigterm_single) kill -TERM "$job" ;;
  sigusr1_job) kill -USR1 "$job" ;;
esac
set +e
wait "$job"
rc=$?
set -e
export AMOSPREP_FAULT_DELAY_MS=0
echo "interrupted run exited with $rc"
cat "$tmp/interrupted.log" | tail -5
[ "$rc" -ne 0 ] || { echo "FAIL: the interrupted run claimed success"; exit 1; }
if [ "$mode" = sigterm_single ] || [ "$mode" = sigusr1_job ]; then
  [ "$rc" -eq 75 ] || { echo "FAIL: expected exit code 75 (interrupted, resumable), got $rc"; exit 1; }
  grep -q "interrupted" "$tmp/interrupted.log" || { echo "FAIL: no 'interrupted' message"; exit 1; }
fi
done_before=$(count_files "$manifest")
total=$(count_files "$tmp/reference/$task/amos-prep/manifest")
echo "$done_before of $total case-stages were complete before the rerun"
[ "$done_before" -lt "$total" ] || { echo "FAIL: the interruption came too late to test resuming"; exit 1; }
# Nothing half-written may carry a final name: every npz present must load.
"$py" - "$tmp/work/$task" <<'PY'
import glob, sys, numpy as np
for f in glob.glob(sys.argv[1] + "/*_stage*/*.npz"):
    np.load(f)["data"]
PY

echo "== rerun (resume)"
"${launcher[@]}" "$bin" "${args[@]}" >"$tmp/resume.log" 2>&1 || { cat "$tmp/resume.log"; echo "FAIL: rerun failed"; exit 1; }
"$py" - "$tmp/work/$task/amos-prep/log.json" "$done_before" <<'PY'
import json, sys
log = json.load(open(sys.argv[1]))
redone = sum(1 for r in log["per_rank"] for c in r["cases"] if "stage" in c)
print(f"rerun redid {redone} case-stages")
assert redone <= log["cases"] * log["stages"] - int(sys.argv[2]), "complete cases were redone"
PY
mv "$tmp/work" "$tmp/resumed"
mkdir -p "$tmp/work" && mv "$tmp/resumed" "$tmp/work_resumed"
# compare_outputs needs identical absolute paths inside the pkls: both runs used $tmp/work.
"$py" "$here/mpi/compare_outputs.py" "$tmp/reference/$task" "$tmp/work_resumed/$task"
echo "PASS: $mode"
