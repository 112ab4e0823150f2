#!/usr/bin/env python3
"""Asserts that amos-prep outputs are identical across runs, and that the HDF5 store holds the npz/pkl content.

usage: compare_outputs.py TASK_DIR_A TASK_DIR_B [...]   (preprocessed task folders)
Every file of the nnU-Net layout must be byte-identical between the folders (logs excepted); every HDF5 dataset
must be equal; in each folder, every HDF5 case group must equal the case's npz arrays, pkl bytes and
class_locations.
"""
import os
import pickle
import sys

import numpy as np

SKIP = {"log.json", "amos-prep.h5", "run.lock"}  # run records (times, pid), the store compared below


def files_of(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            if f in SKIP or f.endswith(".partial") or "/manifest" in d:
                continue
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = p
    return out


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def check_h5_matches_exports(task):
    import h5py
    path = os.path.join(task, "amos-prep.h5")
    assert os.path.exists(path), f"{path} missing"
    n = 0
    with h5py.File(path, "r") as h:
        assert text(h.attrs["status"]) == "complete"
        ident = text(h.attrs["data_identifier"])
        for stage in [k for k in h.keys() if k.startswith("stage")]:
            folder = os.path.join(task, f"{ident}_{stage}")
            cases = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npz"))
            assert sorted(h[stage].keys()) == cases, f"{stage}: HDF5 cases {sorted(h[stage].keys())} != npz {cases}"
            for case in cases:
                g = h[stage][case]
                assert text(g.attrs["status"]) == "complete", f"{stage}/{case} not complete"
                arr = np.load(os.path.join(folder, case + ".npz"))["data"]
                assert np.array_equal(g["data"][...], arr[:-1]), f"{stage}/{case}: data differs from npz"
                assert np.array_equal(g["seg"][...].astype(np.float32), arr[-1]), f"{stage}/{case}: seg differs"
                raw = open(os.path.join(folder, case + ".pkl"), "rb").read()
                assert bytes(g["properties.pkl"][...]) == raw, f"{stage}/{case}: properties.pkl differs"
                props = pickle.loads(raw)
                for c, locs in props["class_locations"].items():
                    ours = g["class_locations"][str(c)][...]
                    want = np.asarray(locs, dtype=np.int64).reshape(-1, 3)
                    assert np.array_equal(ours, want), f"{stage}/{case}: class_locations[{c}] differs"
                n += 1
    return n


def main():
    dirs = sys.argv[1:]
    if not dirs:
        print(__doc__)
        return 2
    base = files_of(dirs[0])
    assert any(k.endswith(".npz") for k in base), f"no npz outputs in {dirs[0]}"
    for other in dirs[1:]:
        them = files_of(other)
        assert sorted(base) == sorted(them), f"file sets differ: {sorted(set(base) ^ set(them))}"
        for rel in base:
            with open(base[rel], "rb") as a, open(them[rel], "rb") as b:
                assert a.read() == b.read(), f"{rel} differs between {dirs[0]} and {other}"
    import h5py
    ref = None
    for d in dirs:
        n = check_h5_matches_exports(d)
        with h5py.File(os.path.join(d, "amos-prep.h5"), "r") as h:
            content = {}
            h.visititems(lambda name, obj: content.__setitem__(name, obj[...].tobytes()) if isinstance(obj, h5py.Dataset) else None)
        if ref is None:
            ref = content
        else:
            assert sorted(ref) == sorted(content), "HDF5 dataset sets differ"
            for k in ref:
                assert ref[k] == content[k], f"HDF5 dataset {k} differs between runs"
    print(f"OK: {len(dirs)} runs, {len(base)} files byte-identical, {n} HDF5 case groups equal to their npz/pkl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
