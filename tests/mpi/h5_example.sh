#!/usr/bin/env bash
# The documented h5py example reads a patch from a store written by 2 ranks, and the patch equals the npz slice.
set -euo pipefail
bin=$1 py=$2 example=$3
"$py" -c 'import numpy, h5py' 2>/dev/null || { echo "SKIP: $py lacks numpy/h5py"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/amosprep-h5ex.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
"$bin" synth --out "$tmp/amos" --train 3 --test 0 --size tiny --seed 2 >/dev/null 2>&1
mpirun -n 2 --bind-to none -x OMP_NUM_THREADS=1 "$bin" run --amos-dir "$tmp/amos" --out "$tmp/w" --quiet
task="$tmp/w/nnUNet_preprocessed/Task216_AMOS2022_task1"
out=$("$py" "$example" "$task/amos-prep.h5" --seed 3)
echo "$out"
"$py" - "$task" "$out" <<'PY'
import ast, re, sys, numpy as np, h5py
task, line = sys.argv[1], sys.argv[2]
m = re.match(r"stage (\d+) case (\S+) box (\[.*\]) data \((\d+), (\d+), (\d+), (\d+)\)", line)
assert m, line
stage, case, box = int(m.group(1)), m.group(2), ast.literal_eval(m.group(3))
with h5py.File(task + "/amos-prep.h5", "r") as h:
    ident = h.attrs["data_identifier"]
    ident = ident.decode() if isinstance(ident, bytes) else ident
    pz, py_, px = (int(v) for v in h[f"stage{stage}"].attrs["patch_size"])
    chunks = h[f"stage{stage}/{case}/data"].chunks
    # every volume: chunks of at least half a patch, and fewer padded voxels per axis than chunks along it
    for k, g in h.items():
        if not k.startswith("stage"):
            continue
        half = [(int(p) + 1) // 2 for p in g.attrs["patch_size"]]
        for c, grp in g.items():
            for name in ("data", "seg"):
                d = grp[name]
                for n, e, hp in zip(d.shape[-3:], d.chunks[-3:], half):
                    nchunks = -(-n // e)
                    assert e >= min(n, hp) and nchunks * e - n < nchunks, (k, c, name, d.shape, d.chunks, half)
arr = np.load(f"{task}/{ident}_stage{stage}/{case}.npz")["data"]
sl = tuple(slice(a, b) for a, b in box)
want = arr[(slice(None, -1),) + sl]
assert (int(m.group(4)),) + tuple(int(m.group(i)) for i in (5, 6, 7)) == want.shape
assert chunks[0] == 1, chunks
print("patch shape and chunking as documented")
PY
