#!/usr/bin/env python3
"""Asserts that two amos-prep runs wrote the same preprocessed task folder.

usage: compare_runs.py REFERENCE_TASK_DIR OTHER_TASK_DIR

Every file must be byte-identical, except amos-prep/log.json, amos-prep/run.lock and amos-prep/manifest/ (run
records: times, hosts, pids)
and amos-prep.h5, which is compared dataset by dataset (names, dtypes, shapes, values) with h5py when available
(otherwise only its presence is checked). Needs only the Python standard library (+ h5py for the HDF5 part).
"""
import os
import sys

SKIP_FILES = {os.path.join("amos-prep", "log.json"), os.path.join("amos-prep", "run.lock"), "amos-prep.h5"}
SKIP_DIRS = {os.path.join("amos-prep", "manifest")}


def files_of(root):
    out = {}
    for d, _, fs in os.walk(root):
        rel_dir = os.path.relpath(d, root)
        if any(rel_dir == s or rel_dir.startswith(s + os.sep) for s in SKIP_DIRS):
            continue
        for f in fs:
            rel = os.path.normpath(os.path.join(rel_dir, f))
            if rel not in SKIP_FILES:
                out[rel] = os.path.join(d, f)
    return out


def h5_datasets(path):
    import h5py
    content = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            content[name] = (str(obj.dtype), obj.shape, obj[()].tobytes() if obj.shape != (0,) else b"")

    with h5py.File(path, "r") as h:
        h.visititems(visit)
    return content


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    ref, other = sys.argv[1:]
    a, b = files_of(ref), files_of(other)
    problems = []
    if sorted(a) != sorted(b):
        problems.append("file sets differ: only in reference %s, only in other %s"
                        % (sorted(set(a) - set(b)), sorted(set(b) - set(a))))
    if not any(k.endswith(".npz") for k in a):
        problems.append("no .npz in " + ref)
    same = 0
    for rel in sorted(set(a) & set(b)):
        with open(a[rel], "rb") as fa, open(b[rel], "rb") as fb:
            if fa.read() != fb.read():
                problems.append(rel + " differs")
            else:
                same += 1
    h5a, h5b = os.path.join(ref, "amos-prep.h5"), os.path.join(other, "amos-prep.h5")
    h5_note = "amos-prep.h5 absent in both"
    if os.path.exists(h5a) or os.path.exists(h5b):
        if not (os.path.exists(h5a) and os.path.exists(h5b)):
            problems.append("amos-prep.h5 exists in only one run")
        else:
            try:
                import h5py  # noqa: F401
            except ImportError:
                h5_note = "amos-prep.h5 present in both (h5py missing: contents not compared)"
            else:
                da, db = h5_datasets(h5a), h5_datasets(h5b)
                if sorted(da) != sorted(db):
                    problems.append("HDF5 dataset sets differ: %s" % sorted(set(da) ^ set(db)))
                for name in sorted(set(da) & set(db)):
                    if da[name] != db[name]:
                        problems.append("HDF5 dataset %s differs (dtype/shape %s vs %s)"
                                        % (name, da[name][:2], db[name][:2]))
                h5_note = "%d HDF5 datasets equal" % len(da)
    if problems:
        for p in problems[:50]:
            print("DIFF:", p)
        return 1
    print("OK: %d files byte-identical, %s (%s vs %s)" % (same, h5_note, ref, other))
    return 0


if __name__ == "__main__":
    sys.exit(main())
