#!/usr/bin/env bash
# End-to-end benchmark of amos-prep on the realistic phantom set, in one session:
#   1. builds amos-prep and bench_io_floor (Release, in build-bench/ unless AMOSPREP_BENCH_BUILD is set);
#   2. generates (once, cached in bench/work/) the 4-case realistic AMOS22 phantom set;
#   3. runs `amos-prep run` for ExperimentPlanner3D_v21 and ExperimentPlanner3D_residual_v21_bfnnUNet_31 with
#      1 rank x 1 thread, 2 ranks x 1 thread and 1 rank x 2 threads, N times each (repetitions interleaved, so
#      load changes of the shared machine hit every configuration alike), collecting log.json and
#      /usr/bin/time -v of every run;
#   4. times `amos-prep convert` alone (the serial rank-0 copy at the start of `run`);
#   5. measures the I/O floor (bench_io_floor io) on the outputs of each planner;
#   6. measures the serial parts for the 500-case AMOS-like distribution of bench/scaling_model.py
#      (bench_io_floor serial, 1 and 2 ranks);
#   7. writes bench/results/report-<date>.md/.json (bench/report.py), including bench/scaling_model.py's results.
# Raw data stays in bench/work/raw/<stamp>/ (not committed).
#
# usage: bench/run_bench.sh [--runs N] [--quick] [--settle S] [--npz-compression none|fast|nnunet] [--h5 chunked|deflate]
#   --runs N   repetitions per configuration (default 3)
#   --settle S seconds of idle before each run (default 10): on our VMs memory freed by the previous run is cheap to
#              touch again for a few seconds and then costs ~2 s/GB on first touch; the pause puts every run in the
#              same (cold) state instead of favouring whichever run follows a big one
#   --quick    smoke test: medium phantom set, 1 run, 1x1 and 2x1 only, one serial repetition
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${AMOSPREP_BENCH_BUILD:-$ROOT/build-bench}
PY=/usr/bin/python3
RUNS=3
QUICK=0
SETTLE=10
NPZ=fast
H5=chunked
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --settle) SETTLE=$2; shift 2 ;;
    --npz-compression) NPZ=$2; shift 2 ;;
    --h5) H5=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "run_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

SIZE=realistic
CONFIGS=("1x1" "2x1" "1x2")   # ranks x threads
SERIAL_RUNS=3
if [[ $QUICK == 1 ]]; then
  SIZE=medium
  RUNS=1
  CONFIGS=("1x1" "2x1")
  SERIAL_RUNS=1
fi
PLANNERS=(ExperimentPlanner3D_v21 ExperimentPlanner3D_residual_v21_bfnnUNet_31)

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

WORK=$ROOT/bench/work
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$WORK/raw/$STAMP
mkdir -p "$RAW"
log() { echo "[run_bench $(date -u +%H:%M:%S)] $*" >&2; }

log "building in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target amos-prep bench_io_floor >/dev/null
BIN=$BUILD/amos-prep
FLOOR=$BUILD/bench/bench_io_floor

DATA=$WORK/amos-$SIZE
if [[ ! -f $DATA/.complete ]]; then
  log "generating the $SIZE phantom set in $DATA"
  rm -rf "$DATA"
  "$BIN" synth --out "$DATA" --train 4 --test 0 --size "$SIZE" --seed 0
  touch "$DATA/.complete"
fi

# Session metadata: machine, load, versions.
{
  echo "{"
  echo "\"stamp\": \"$STAMP\", \"size\": \"$SIZE\", \"runs\": $RUNS, \"quick\": $QUICK,"
  echo "\"npz_compression\": \"$NPZ\", \"h5\": \"$H5\", \"settle_seconds\": $SETTLE,"
  echo "\"configs\": \"${CONFIGS[*]}\", \"planners\": \"${PLANNERS[*]}\","
  echo "\"nproc\": $(nproc), \"cpu_model\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//;s/"//g')\","
  echo "\"mem_total_kib\": $(awk '/MemTotal/{print $2}' /proc/meminfo),"
  echo "\"loadavg_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\","
  echo "\"git\": \"$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo -dirty)\","
  echo "\"kernel\": \"$(uname -r)\""
  echo "}"
} >"$RAW/session.json"

one_run() {  # planner config rep
  local planner=$1 cfg=$2 rep=$3
  local ranks=${cfg%x*} threads=${cfg#*x}
  local tag=$planner-$cfg-run$rep
  local out=$WORK/out/$tag
  rm -rf "$out"
  sleep "$SETTLE"
  log "$tag (load $(cut -d' ' -f1 /proc/loadavg))"
  echo "$(cut -d' ' -f1-3 /proc/loadavg)" >"$RAW/$tag.load"
  /usr/bin/time -v -o "$RAW/$tag.time" \
    mpirun -n "$ranks" --bind-to none -x OMP_NUM_THREADS="$threads" \
    "$BIN" run --amos-dir "$DATA" --out "$out" -pl3d "$planner" --npz-compression "$NPZ" --h5 "$H5" \
    --mem-per-rank 8G --quiet
  local task=$out/nnUNet_preprocessed/Task216_AMOS2022_task1
  cp "$task/amos-prep/log.json" "$RAW/$tag.log.json"
  # Output sizes by file (for the I/O model of scaling_model.py).
  (cd "$task" && find . -type f -printf '%s %p\n') >"$RAW/$tag.files"
  if [[ $cfg == 1x1 ]]; then
    rm -rf "$WORK/keep/$planner"
    mkdir -p "$WORK/keep"
    mv "$out" "$WORK/keep/$planner"   # the last 1x1 run of each planner feeds the I/O floor
  else
    rm -rf "$out"
  fi
}

for ((rep = 1; rep <= RUNS; rep++)); do
  for planner in "${PLANNERS[@]}"; do
    for cfg in "${CONFIGS[@]}"; do
      one_run "$planner" "$cfg" "$rep"
    done
  done
done

log "timing convert alone"
for ((rep = 1; rep <= RUNS; rep++)); do
  rm -rf "$WORK/out/convert"
  /usr/bin/time -v -o "$RAW/convert-run$rep.time" "$BIN" convert --amos-dir "$DATA" --raw-base "$WORK/out/convert" >/dev/null 2>&1
done
du -sb "$DATA" | cut -f1 >"$RAW/convert.bytes"
rm -rf "$WORK/out/convert"

for planner in "${PLANNERS[@]}"; do
  log "I/O floor for $planner"
  # bench_io_floor chooses the page size the way amos-prep does (amosprep/pages.hpp).
  "$FLOOR" io --inputs "$DATA" --outputs "$WORK/keep/$planner/nnUNet_preprocessed/Task216_AMOS2022_task1" \
    --npz-compression "$NPZ" --scratch "$WORK/scratch" --runs "$RUNS" --json "$RAW/floor-$planner.json"
done

log "serial parts for the 500-case model dataset"
"$PY" "$ROOT/bench/scaling_model.py" --write-cases "$RAW/cases500.csv"
for planner in "${PLANNERS[@]}"; do
  mpirun -n 1 --bind-to none "$FLOOR" serial --cases "$RAW/cases500.csv" --planner "$planner" \
    --scratch "$WORK/scratch" --runs "$SERIAL_RUNS" --json "$RAW/serial-$planner-1rank.json"
  mpirun -n 2 --bind-to none "$FLOOR" serial --cases "$RAW/cases500.csv" --planner "$planner" \
    --scratch "$WORK/scratch" --runs "$SERIAL_RUNS" --sample-scale 0.1 --json "$RAW/serial-$planner-2rank.json"
done
echo "\"$(cut -d' ' -f1-3 /proc/loadavg)\"" >"$RAW/loadavg_end.json"

log "report"
"$PY" "$ROOT/bench/report.py" "$RAW"   # also runs bench/scaling_model.py on the session
log "done: raw data in $RAW"
