#!/usr/bin/env bash
# slurm/amos-prep.sbatch without Slurm (plain bash, mpirun -n 1, a stand-in binary): usage errors, argument
# passing, USR1 forwarded through mpirun for a clean stop (exit 75), failures passed through.
#   sbatch_signals.sh SOURCE_DIR
set -eEuo pipefail
trap 'echo "FAIL: unexpected error at line $LINENO"' ERR
src=$1
script=$src/slurm/amos-prep.sbatch
command -v mpirun >/dev/null || { echo "SKIP: mpirun not found"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/amosprep-sbatch-signals.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.log; do echo "---- $f"; cat "$f"; done; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset AMOS_PREP_BIN AMOS_PREP_AMOS_DIR AMOS_PREP_WORK AMOS_PREP_PLANNER AMOS_PREP_ARGS AMOS_PREP_LAUNCHER \
      SLURM_JOB_ID SLURM_NTASKS SLURM_CPUS_PER_TASK

# A stand-in for amos-prep: records its arguments and OMP_NUM_THREADS, then behaves as FAKE_MODE says.
cat >"$tmp/fake-amos-prep" <<'EOT'
#!/bin/bash
printf '%s\n' "$@" >"$FAKE_DIR/args"
echo "$OMP_NUM_THREADS" >"$FAKE_DIR/threads"
case "$FAKE_MODE" in
  ok) exit 0 ;;
  fail) exit 3 ;;
  wait_usr1)
    trap 'echo stopping; exit 75' USR1
    touch "$FAKE_DIR/started"
    for _ in $(seq 300); do sleep 0.1; done
    exit 9 ;;
esac
EOT
chmod +x "$tmp/fake-amos-prep"
export FAKE_DIR=$tmp

echo "== no arguments: usage, exit 2"
rc=0
bash "$script" >"$tmp/usage.log" 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "no arguments: exit $rc, expected 2"
grep -q "usage: sbatch" "$tmp/usage.log" || fail "no usage text"

echo "== missing binary: exit 2"
rc=0
AMOS_PREP_BIN=$tmp/nonexistent bash "$script" A W >"$tmp/nobin.log" 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "missing binary: exit $rc, expected 2"
grep -q "binary not found" "$tmp/nobin.log" || fail "no 'binary not found' message"

echo "== arguments and threads reach amos-prep"
rc=0
AMOS_PREP_BIN=$tmp/fake-amos-prep FAKE_MODE=ok SLURM_CPUS_PER_TASK=3 AMOS_PREP_ARGS="--h5 deflate --quiet" \
  bash "$script" /data/amos "/work root" ExperimentPlanner3D_residual_v21_bfnnUNet_31 --seed 7 >"$tmp/ok.log" 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "ok run: exit $rc"
expected=$(printf '%s\n' run --amos-dir /data/amos --out "/work root" -pl3d ExperimentPlanner3D_residual_v21_bfnnUNet_31 \
  --seed 7 --h5 deflate --quiet)
[ "$(cat "$tmp/args")" = "$expected" ] || fail "arguments: got $(tr '\n' ' ' <"$tmp/args")"
[ "$(cat "$tmp/threads")" = 3 ] || fail "OMP_NUM_THREADS $(cat "$tmp/threads"), expected SLURM_CPUS_PER_TASK=3"
grep -q "amos-prep finished (exit status 0)" "$tmp/ok.log" || fail "no success line"

echo "== environment instead of positional arguments"
rc=0
AMOS_PREP_BIN=$tmp/fake-amos-prep FAKE_MODE=ok AMOS_PREP_AMOS_DIR=/a AMOS_PREP_WORK=/w \
  bash "$script" >"$tmp/env.log" 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "env run: exit $rc"
[ "$(tr '\n' ' ' <"$tmp/args")" = "run --amos-dir /a --out /w -pl3d ExperimentPlanner3D_v21 " ] ||
  fail "env arguments: got $(tr '\n' ' ' <"$tmp/args")"

echo "== a failing amos-prep: its exit status is the job's"
rc=0
AMOS_PREP_BIN=$tmp/fake-amos-prep FAKE_MODE=fail bash "$script" A W >"$tmp/fail.log" 2>&1 || rc=$?
[ $rc -eq 3 ] || fail "failing run: exit $rc, expected 3"
grep -q "failed with exit status 3" "$tmp/fail.log" || fail "no failure line"

echo "== USR1 to the batch shell: forwarded through mpirun, clean stop, exit 75"
AMOS_PREP_BIN=$tmp/fake-amos-prep FAKE_MODE=wait_usr1 bash "$script" A W >"$tmp/usr1.log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -f "$tmp/started" ] && break; sleep 0.05; done
[ -f "$tmp/started" ] || fail "the stand-in binary did not start"
kill -USR1 "$pid"
rc=0
wait "$pid" || rc=$?
[ $rc -eq 75 ] || fail "USR1: exit $rc, expected 75"
grep -q "received SIGUSR1" "$tmp/usr1.log" || fail "the trap did not run"
grep -q "^stopping" "$tmp/usr1.log" || fail "USR1 did not reach the rank"
grep -q "interrupted, resumable" "$tmp/usr1.log" || fail "no exit-75 line"
if grep -q "requeue" "$tmp/usr1.log"; then fail "outside Slurm nothing may be requeued"; fi
echo "OK"
