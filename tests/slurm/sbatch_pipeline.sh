#!/usr/bin/env bash
# slurm/amos-prep.sbatch on a real (local, throw-away) Slurm: the job's outputs must equal a direct run's, a USR1
# stop must end the job cleanly with exit 75 and a resubmission must complete it, and a requeued job must resume.
#   sbatch_pipeline.sh AMOS_PREP_BIN PYTHON SOURCE_DIR [PLANNER]
# Exit 77 (skip) when Slurm/munge are not installed, not root, or the local cluster does not start.
set -eEuo pipefail
trap 'echo "FAIL: unexpected error at line $LINENO"' ERR
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
py=$2 src=$3 planner=${4:-ExperimentPlanner3D_v21}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=local_cluster.sh
. "$here/local_cluster.sh"

missing=$(slurm_local_missing)
if [ -n "$missing" ]; then
  echo "SKIP: local Slurm test needs: $missing (scripts/setup.sh installs slurm-wlm and munge)"
  exit 77
fi
[ -x "$bin" ] || { echo "FAIL: $bin is not executable"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/amosprep-slurm.XXXXXX")
cleanup() {
  local rc=$?
  slurm_local_down "$tmp/slurm"
  if [ $rc -ne 0 ] && [ -z "${AMOSPREP_KEEP_TMP:-}" ]; then
    echo "---- slurmctld.log (tail)"; tail -n 15 "$tmp/slurm/log/slurmctld.log" 2>/dev/null || true
    echo "---- slurmd.log (tail)"; tail -n 15 "$tmp/slurm/log/slurmd.log" 2>/dev/null || true
  fi
  if [ -n "${AMOSPREP_KEEP_TMP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t_start=$SECONDS
step() { echo "== [$((SECONDS - t_start)) s] $*"; }
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/job-*.out; do [ -f "$f" ] && { echo "---- $f"; cat "$f"; }; done
  exit 1
}

step "starting munged + slurmctld + slurmd in $tmp/slurm"
if ! slurm_local_up "$tmp/slurm" 8; then
  echo "SKIP: the local Slurm cluster did not start (see above)"
  exit 77
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
unset AMOS_PREP_BIN AMOS_PREP_AMOS_DIR AMOS_PREP_WORK AMOS_PREP_PLANNER AMOS_PREP_ARGS AMOS_PREP_LAUNCHER \
      AMOS_PREP_REQUEUE AMOS_PREP_MAX_REQUEUES OMP_NUM_THREADS
amos=$tmp/amos work=$tmp/work
task_rel=nnUNet_preprocessed/Task216_AMOS2022_task1
sbatch_script=$src/slurm/amos-prep.sbatch

step "phantom dataset + direct run (the reference; same work path, since pkl files hold absolute paths)"
"$bin" synth --out "$amos" --train 3 --test 1 --size tiny --seed 11 >/dev/null
"$bin" run --amos-dir "$amos" --out "$work" -pl3d "$planner" --quiet || fail "direct amos-prep run failed"
mv "$work" "$tmp/direct"

compare_with_direct() {
  "$py" "$here/compare_runs.py" "$tmp/direct/$task_rel" "$work/$task_rel" || fail "$1: outputs differ from the direct run"
  mv "$work" "$tmp/$1"
}

# Submits with sbatch --wait in the background; sets job_id and wait_pid.
submit_background() {
  local out=$1
  shift
  rm -f "$tmp/sbatch.stdout"
  sbatch --wait "$@" >"$tmp/sbatch.stdout" 2>"$tmp/sbatch.stderr" &
  wait_pid=$!
  job_id=
  for _ in $(seq 100); do
    job_id=$(sed -n 's/^Submitted batch job \([0-9]*\).*/\1/p' "$tmp/sbatch.stdout" 2>/dev/null)
    [ -n "$job_id" ] && return 0
    kill -0 "$wait_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$tmp/sbatch.stderr"
  fail "sbatch did not submit ($out)"
}

# Exit status of the background `sbatch --wait` (wait_pid); fails after $1 seconds.
wait_sbatch() {
  local limit=$1
  for _ in $(seq $((limit * 10))); do
    kill -0 "$wait_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$wait_pid" 2>/dev/null; then
    scontrol show job "$job_id" 2>/dev/null | grep -E "JobState|Restarts|BeginTime" || true
    fail "job $job_id did not finish within $limit s"
  fi
  rc=0
  wait "$wait_pid" || rc=$?
}

# Waits until the preprocessing phase of the running job has begun (its stage folder exists), then sends USR1 to
# the batch shell only, as Slurm does for --signal=B:USR1@... before the time limit.
stop_when_preprocessing() {
  local job=$1
  for _ in $(seq 600); do
    compgen -G "$work/$task_rel/*_stage0" >/dev/null && break
    kill -0 "$wait_pid" 2>/dev/null || fail "job $job ended before its preprocessing phase began"
    sleep 0.1
  done
  compgen -G "$work/$task_rel/*_stage0" >/dev/null || fail "job $job: no stage folder after 60 s"
  scancel --signal=USR1 --batch "$job" || fail "scancel --signal=USR1 --batch $job failed"
}

# ---- 1. one MPI job, 2 ranks x 2 threads; the binary found as <script dir>/../build/amos-prep ----------------
step "scenario 1: sbatch --wait, 2 tasks x 2 cpus, binary located from the script's own path"
mkdir -p "$tmp/repo/slurm" "$tmp/repo/build"
cp "$sbatch_script" "$tmp/repo/slurm/amos-prep.sbatch"
ln -s "$bin" "$tmp/repo/build/amos-prep"
rc=0
sbatch --wait --ntasks 2 --cpus-per-task 2 --output "$tmp/job-1.out" \
  "$tmp/repo/slurm/amos-prep.sbatch" "$amos" "$work" "$planner" >/dev/null || rc=$?
[ $rc -eq 0 ] || fail "scenario 1: sbatch --wait exit status $rc"
grep -q "running: mpirun -n 2 --bind-to none -x OMP_NUM_THREADS $tmp/repo/build/amos-prep run" "$tmp/job-1.out" ||
  fail "scenario 1: the job did not run mpirun with the binary beside the script"
grep -q "2 rank(s) x 2 thread(s)" "$tmp/job-1.out" || fail "scenario 1: expected 2 ranks x 2 OpenMP threads"
grep -q "amos-prep finished (exit status 0)" "$tmp/job-1.out" || fail "scenario 1: no success line"
compare_with_direct sbatch

# ---- 2. clean stop on USR1 (no requeue): exit 75, then a resubmission completes ------------------------------
step "scenario 2: USR1 to the batch shell of a --no-requeue job, then resubmit"
export AMOS_PREP_BIN=$bin
# Test hook: each finished case waits 1.5 s, so the USR1 lands mid-run however fast preprocessing is.
export AMOSPREP_FAULT_DELAY_MS=1500
submit_background job-2 --no-requeue --ntasks 2 --cpus-per-task 1 --output "$tmp/job-2.out" \
  "$sbatch_script" "$amos" "$work" "$planner"
stop_when_preprocessing "$job_id"
wait_sbatch 60
[ $rc -eq 75 ] || fail "scenario 2: interrupted job exit status $rc, expected 75"
grep -q "received SIGUSR1" "$tmp/job-2.out" || fail "scenario 2: the batch shell did not see USR1"
grep -q "amos-prep exit status 75: interrupted, resumable" "$tmp/job-2.out" || fail "scenario 2: no exit-75 line"
grep -q "not requeueing: the job was submitted with --no-requeue" "$tmp/job-2.out" ||
  fail "scenario 2: a --no-requeue job must not requeue itself"
[ ! -f "$work/$task_rel/amos-prep.h5" ] || fail "scenario 2: the HDF5 store must not be final after a stop"
done_before=$( (compgen -G "$work/$task_rel/*_stage0/*.npz" || true) | wc -l)
echo "   stopped with $done_before of 3 cases written"
rc=0
AMOSPREP_FAULT_DELAY_MS=0 sbatch --wait --ntasks 2 --cpus-per-task 1 --output "$tmp/job-2b.out" "$sbatch_script" "$amos" "$work" "$planner" \
  >/dev/null || rc=$?
[ $rc -eq 0 ] || fail "scenario 2: resubmitted job exit status $rc"
compare_with_direct resubmitted

# ---- 3. the same stop in a requeueable job: the script requeues it and the rerun resumes ---------------------
step "scenario 3: USR1 to a --requeue job launched with srun: requeued by the script, resumed by Slurm"
export AMOS_PREP_LAUNCHER=srun
submit_background job-3 --requeue --ntasks 2 --cpus-per-task 1 --output "$tmp/job-3.out" \
  "$sbatch_script" "$amos" "$work" "$planner"
stop_when_preprocessing "$job_id"
wait_sbatch 90
[ $rc -eq 0 ] || fail "scenario 3: requeued job's final exit status $rc"
grep -q "amos-prep exit status 75: interrupted, resumable" "$tmp/job-3.out" || fail "scenario 3: no exit-75 line"
grep -q "running: srun --mpi=pmix" "$tmp/job-3.out" || fail "scenario 3: srun was not used"
grep -q "requeued job $job_id" "$tmp/job-3.out" || fail "scenario 3: the script did not requeue"
grep -q "job $job_id (restart 1)" "$tmp/job-3.out" || fail "scenario 3: no second start"
grep -q "amos-prep finished (exit status 0)" "$tmp/job-3.out" || fail "scenario 3: the rerun did not finish"
compare_with_direct requeued

step "OK: sbatch run, stop + resubmit and stop + requeue all equal the direct run"
