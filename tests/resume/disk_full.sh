#!/usr/bin/env bash
# A full disk must give a clean error (exit 4, the file and "No space left on device"), leave no temporary or
# half-written file under a final name, and a rerun with space must complete.
#   disk_full.sh BIN PYTHON MODE      MODE: tmpfs (a real 1 MiB tmpfs; skipped when mount is not allowed) | inject
set -euo pipefail
bin=$1 py=$2 mode=$3
"$py" -c 'import numpy' 2>/dev/null || { echo "SKIP: $py lacks numpy"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/amosprep-enospc.XXXXXX")
mounted=""
cleanup() { [ -n "$mounted" ] && umount "$mounted" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"$bin" synth --out "$tmp/amos" --train 4 --test 0 --size tiny --seed 5 >/dev/null 2>&1
"$bin" convert --amos-dir "$tmp/amos" --raw-base "$tmp/raw" >/dev/null 2>&1
pre="$tmp/pre"
mkdir -p "$pre"
if [ "$mode" = tmpfs ]; then
  mount -t tmpfs -o size=1M tmpfs "$pre" 2>/dev/null || { echo "SKIP: cannot mount a tmpfs here (not root?)"; exit 77; }
  mounted="$pre"
  unset AMOSPREP_FAULT_ENOSPC_AFTER_BYTES
else
  export AMOSPREP_FAULT_ENOSPC_AFTER_BYTES=300000
fi
set +e
"$bin" plan_and_preprocess -t 216 --raw-base "$tmp/raw" --preprocessed "$pre" --quiet >"$tmp/log" 2>&1
rc=$?
set -e
cat "$tmp/log"
[ "$rc" -eq 4 ] || { echo "FAIL: expected exit code 4 (I/O), got $rc"; exit 1; }
grep -q "No space left on device" "$tmp/log" || { echo "FAIL: the error does not say 'No space left on device'"; exit 1; }
grep -Eq "error: .*$pre/[^:]+: " "$tmp/log" || { echo "FAIL: the error does not name the file"; exit 1; }
left=$(find "$pre" -name '*.tmp.*' | wc -l)
[ "$left" -eq 0 ] || { find "$pre" -name '*.tmp.*'; echo "FAIL: temporary files left behind"; exit 1; }
"$py" - "$pre" <<'PY'
import glob, pickle, sys, numpy as np
for f in glob.glob(sys.argv[1] + "/**/*.npz", recursive=True):
    np.load(f)["data"]
for f in glob.glob(sys.argv[1] + "/**/*.pkl", recursive=True):
    pickle.load(open(f, "rb"))
print("every final-named npz/pkl loads")
PY
# With space again, the same command completes.
if [ -n "$mounted" ]; then umount "$mounted"; mounted=""; fi
unset AMOSPREP_FAULT_ENOSPC_AFTER_BYTES
"$bin" plan_and_preprocess -t 216 --raw-base "$tmp/raw" --preprocessed "$pre" --quiet
n=$(ls "$pre"/Task216_AMOS2022_task1/nnUNetData_plans_v2.1_stage0/*.npz | wc -l)
[ "$n" -eq 4 ] || { echo "FAIL: rerun produced $n of 4 cases"; exit 1; }
echo "PASS: $mode"
