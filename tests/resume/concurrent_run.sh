#!/usr/bin/env bash
# A second run into an output folder that a first run is still writing must stop at once (exit 2, naming the
# lock) and leave the first run's work alone: the first run then finishes, and a rerun finds every case complete.
#   concurrent_run.sh BIN
set -euo pipefail
bin=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/amosprep-concurrent.XXXXXX")
first=
cleanup() { [ -n "$first" ] && kill -9 "$first" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"$bin" synth --out "$tmp/amos" --train 4 --test 0 --size tiny --seed 5 >/dev/null 2>&1
args=(run --amos-dir "$tmp/amos" --out "$tmp/work" -pl3d ExperimentPlanner3D_v21)
manifest="$tmp/work/nnUNet_preprocessed/Task216_AMOS2022_task1/amos-prep/manifest"

AMOSPREP_FAULT_DELAY_MS=700 "$bin" "${args[@]}" --quiet >"$tmp/first.log" 2>&1 &
first=$!
for _ in $(seq 1 300); do
  [ -n "$(ls "$manifest" 2>/dev/null)" ] && break
  sleep 0.05
done
[ -n "$(ls "$manifest" 2>/dev/null)" ] || { cat "$tmp/first.log"; echo "FAIL: the first run wrote no case"; exit 1; }

set +e
"$bin" "${args[@]}" --quiet >"$tmp/second.log" 2>&1
rc=$?
wait "$first"
rc_first=$?
first=
set -e
cat "$tmp/second.log"
[ "$rc" -eq 2 ] || { echo "FAIL: the second run exited $rc, expected 2"; exit 1; }
grep -q "run.lock is locked" "$tmp/second.log" || { echo "FAIL: the error does not name the lock"; exit 1; }
[ "$rc_first" -eq 0 ] || { cat "$tmp/first.log"; echo "FAIL: the first run failed ($rc_first)"; exit 1; }
"$bin" "${args[@]}" >"$tmp/rerun.log" 2>&1
grep -q "preprocessed 0 case-stages (4 already complete)" "$tmp/rerun.log" ||
  { cat "$tmp/rerun.log"; echo "FAIL: the first run's cases are not all complete"; exit 1; }
echo "OK: the concurrent run stopped with exit 2; the first run completed all 4 cases"
