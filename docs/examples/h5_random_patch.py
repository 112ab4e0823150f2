#!/usr/bin/env python3
"""Load a random training patch from amos-prep's HDF5 store, the way a data loader would.

usage: h5_random_patch.py TASK_DIR/amos-prep.h5 [--stage K] [--seed S]

Picks a case at random, then (like nnU-Net's oversampling) a foreground voxel from its class_locations, and reads
the patch of the stage's patch_size around it: only the chunks that overlap the patch are read from disk.
Prints the case, the patch box, the patch shape and the labels in the patch.
"""
import argparse
import sys

import h5py
import numpy as np


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def random_patch(h5, stage, rng):
    g = h5[f"stage{stage}"]
    patch = [int(p) for p in g.attrs["patch_size"]]
    cases = sorted(g.keys())
    case = cases[rng.integers(len(cases))]
    c = g[case]
    assert text(c.attrs["status"]) == "complete", f"{case} is not complete"
    shape = c["seg"].shape
    classes = [k for k in c["class_locations"] if c["class_locations"][k].shape[0] > 0]
    if classes:
        locs = c["class_locations"][classes[rng.integers(len(classes))]]
        center = locs[rng.integers(locs.shape[0])]
    else:
        center = [rng.integers(s) for s in shape]
    lo = [int(min(max(0, ctr - p // 2), max(0, s - p))) for ctr, p, s in zip(center, patch, shape)]
    hi = [min(s, l + p) for l, p, s in zip(lo, patch, shape)]
    box = tuple(slice(l, h) for l, h in zip(lo, hi))
    data = c["data"][(slice(None),) + box]          # (C, z, y, x) float32, normalized
    seg = c["seg"][box]                              # (z, y, x) int8: -1, 0, 1..15
    return case, box, data, seg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--stage", type=int, default=None, help="stage (default: the last, i.e. full resolution)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    with h5py.File(a.store, "r") as h5:
        assert text(h5.attrs["status"]) == "complete", "the store is not complete"
        stages = sorted(int(k[5:]) for k in h5.keys() if k.startswith("stage"))
        stage = stages[-1] if a.stage is None else a.stage
        case, box, data, seg = random_patch(h5, stage, rng)
    print(f"stage {stage} case {case} box {[(s.start, s.stop) for s in box]} data {data.shape} {data.dtype} "
          f"labels {sorted(int(v) for v in np.unique(seg))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
