#!/usr/bin/python3
"""Parallel-efficiency model of `amos-prep run` for 500 AMOS-like CT cases at 16, 64 and 256 ranks.

Inputs are MEASURED numbers from bench/run_bench.sh (the summary JSON written by bench/report.py):
  - CPU seconds per voxel of every pipeline phase, fitted on the 1 rank x 1 thread runs of each planner:
    phase 1 (input_checksum, read, crop, fingerprint) per INPUT voxel; phase 2 (normalize, sample, export_npz,
    hdf5, export_pkl_manifest) per OUTPUT voxel of each case-stage (ratios of sums); resample as
    a * input voxels + b * output voxels per case-stage, least squares on the per-case times (scaled to CPU by
    the run's resample CPU/wall ratio), or the better one-term fit if a coefficient would be negative;
  - bytes read and written per voxel (inputs, npz, HDF5 store incl. chunk padding, pkl/json/manifests);
  - the serial parts for exactly this 500-case dataset (bench_io_floor serial): serialising the foreground
    samples that are allgathered, merge_fingerprint, make_plan + pickles, the collective HDF5 metadata work
    (dataset creation for all case-stages, finish step), at 1 and 2 ranks; the rank-0 copy of `convert`.

The dataset (generated here, seeded, documented in cases()):
  - 500 CT cases, 512 x 512 in plane, in-plane spacing uniform in [0.60, 0.95] mm;
  - slice count log-normal with median 140 and sigma 0.7, clipped to [60, 1000] (AMOS mixes 5 mm scans with
    ~60-100 slices and thin-slice scans with several hundred up to ~1000);
  - scanned length uniform in [250, 500] mm, slice spacing = length / slices clipped to [0.5, 5] mm (thin slices
    go with many slices, as in AMOS);
  - no cropping (CT air is -1000, not 0: crop_to_nonzero keeps the full volume);
  - foreground (15 organs) volume uniform in [2.5, 4.5] litres, at most 30 % of the scan; nnU-Net's foreground
    sample is every 10th foreground voxel.
The target spacings and stages come from the real planner (make_plan, run by bench_io_floor serial on this
dataset), the output shapes from resampled_shape.

The schedule is the pipeline's: largest-first (LPT) on input voxel counts (largest_first_schedule in
src/distributed.cpp; ties to the lowest rank), then work sharing in both phases (simulated event by event): a rank
runs its own queue (phase 1 in case order, phase 2 in ascending estimated peak), then takes the cases other ranks
have not started, walking their queues from the end, nearest ranks first; whoever crops a case keeps it for phase 2,
and a case taken in phase 2 is read and cropped again by the rank taking it. Each rank keeps its cropped cases in
memory while they fit in a third of --mem-per-rank (in the order it crops them); the others are read and cropped
again in phase 2, exactly as Pipeline does. `sharing=False` gives the static schedule of earlier versions.

Time at P ranks (one thread each):
  T_P = convert + phase1 + gather + plan + h5_create + phase2 + h5_finish
  convert      the copy of all inputs, shared by all ranks: max(input_bytes / (P x measured copy rate),
               2 x input_bytes / FS bandwidth) (only `run`, not `plan_and_preprocess`; shown separately)
  phase k      max( max over ranks of the rank's CPU seconds,  bytes of phase k / aggregate FS bandwidth )
  gather       allgather of the per-case summaries with their foreground samples: every rank receives all
               G bytes; G / net_bandwidth + P * log2(P) * latency, plus the deserialisation and
               merge_fingerprint that every rank does (measured)
  plan         make_plan + pickles (measured)
  h5_*         measured at 1 rank, plus (collective metadata operations: 3 per case-stage at creation, 18 in the
               finish step) x h5_op_latency (assumed 30 us) x log2(P). Not measured beyond 2 ranks; the growth
               measured from 1 to 2 ranks on the shared 2-core machine is shown as a pessimistic variant.
Efficiency = T1 / (P * T_P), T1 = the same model at P = 1 without re-reads (unlimited memory), i.e. the best
one-rank time. The losses are split into: load imbalance of phase 1 and 2, I/O bandwidth cap, serial parts,
re-reads (memory budget).

usage:
  scaling_model.py --write-cases FILE.csv              write the 500-case dataset (for bench_io_floor serial)
  scaling_model.py [--summary JSON] [--fs-bandwidth GBPS ...] [--mem-per-rank GIB] [--net-bandwidth GBPS]
                   [--h5-op-latency-us US] [--ranks P ...]
                                                        print the model (default: newest bench/results/*.json)
"""
import argparse
import glob
import json
import math
import os
import sys

import numpy as np

N_CASES = 500
SEED = 216
RANKS = [1, 16, 64, 256]


def cases(n=N_CASES, seed=SEED):
    """The AMOS-like dataset: list of dicts id, spacing (z, y, x) mm, size (z, y, x), fg_samples."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        slices = int(np.clip(round(140 * math.exp(0.7 * rng.standard_normal())), 60, 1000))
        length = rng.uniform(250.0, 500.0)
        sz = float(np.clip(length / slices, 0.5, 5.0))
        sxy = rng.uniform(0.60, 0.95)
        fg_mm3 = rng.uniform(2.5e6, 4.5e6)
        voxels = slices * 512 * 512
        fg = min(fg_mm3 / (sz * sxy * sxy), 0.3 * voxels)
        out.append({"id": "amos_%04d" % (i + 1), "spacing": (round(sz, 6), round(sxy, 6), round(sxy, 6)),
                    "size": (slices, 512, 512), "fg_samples": int(math.ceil(fg / 10.0))})
    return out


def write_cases(path):
    with open(path, "w") as f:
        f.write("id,spacing_z,spacing_y,spacing_x,size_z,size_y,size_x,foreground_samples\n")
        for c in cases():
            f.write("%s,%r,%r,%r,%d,%d,%d,%d\n" % ((c["id"],) + tuple(c["spacing"]) + tuple(c["size"]) +
                                                   (c["fg_samples"],)))



# ---- costs fitted on the bench ------------------------------------------------------------------------------
PHASE1 = ["input_checksum", "read", "crop", "fingerprint"]
PHASE2 = ["resample", "normalize", "sample", "export_npz", "hdf5", "export_pkl_manifest"]


def _prod(xs):
    out = 1
    for x in xs:
        out *= int(x)
    return out


def fit_costs(S, planner):
    """CPU seconds per voxel of every phase for `planner`, fitted on the 1x1 runs of summary S.

    Phase 1 phases: seconds per input voxel (sum over runs of the phase CPU / sum of input voxels).
    resample: a * input voxels + b * output voxels per case-stage, least squares on the per-case times scaled to
    CPU by the run's resample CPU/wall ratio; if a coefficient comes out negative, the better of the two
    one-term fits. Other phase 2 phases: seconds per output voxel (ratio of sums).
    """
    P = S["planners"][planner]
    in_vox = {c["case"]: c["voxels"] for c in S["inputs"]}
    out_vox = {(o["case"], o["stage"]): _prod(o["shape"][1:]) for o in P["outputs"]}
    runs = P["fit_runs"]
    total_in = sum(in_vox.values())
    total_out = sum(out_vox.values())
    cost = {}
    for ph in PHASE1:
        cost[ph] = {"per_in": sum(r["phase_totals"].get(ph, {}).get("cpu_seconds", 0.0) for r in runs) / (len(runs) * total_in),
                    "per_out": 0.0}
    for ph in PHASE2:
        cost[ph] = {"per_in": 0.0,
                    "per_out": sum(r["phase_totals"].get(ph, {}).get("cpu_seconds", 0.0) for r in runs) / (len(runs) * total_out)}
    # resample: two-term fit on per case-stage times.
    X, y = [], []
    for r in runs:
        t = r["phase_totals"]["resample"]
        ratio = t["cpu_seconds"] / t["wall_seconds"] if t["wall_seconds"] > 0 else 1.0
        for c in r["cases"]:
            if "stage" not in c or "resample" not in c["seconds"]:
                continue
            X.append([in_vox[c["case"]], out_vox[(c["case"], c["stage"])]])
            y.append(c["seconds"]["resample"] * ratio)
    X, y = np.array(X, dtype=float), np.array(y)
    fit_note = "ratio"
    if len(y) >= 3:
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        if (coef >= 0).all():
            a, b = coef
            fit_note = "a*in + b*out"
        else:
            a_only = float(X[:, 0] @ y / (X[:, 0] @ X[:, 0]))
            b_only = float(X[:, 1] @ y / (X[:, 1] @ X[:, 1]))
            ra = np.linalg.norm(y - a_only * X[:, 0])
            rb = np.linalg.norm(y - b_only * X[:, 1])
            (a, b), fit_note = ((a_only, 0.0), "a*in") if ra < rb else ((0.0, b_only), "b*out")
        pred = X @ np.array([a, b])
        rel_rms = float(np.sqrt(np.mean((pred - y) ** 2)) / np.mean(y))
        cost["resample"] = {"per_in": float(a), "per_out": float(b), "fit": fit_note, "rel_rms": rel_rms,
                            "points": int(len(y))}
    # Bytes per voxel for the I/O model.
    one = P["configs"]["1x1"]
    io = one.get("io_bytes") or {}
    inputs_bytes = sum(c["image_bytes"] + c["label_bytes"] for c in S["inputs"])
    case_stages = len(out_vox)
    bytes_model = {
        "read_per_in": inputs_bytes / total_in,                      # compressed inputs, read once
        "gt_per_in": sum(c["label_bytes"] for c in S["inputs"]) / total_in,
        "npz_per_out": io.get("npz", 0) / total_out,                 # written once (the CRC is taken while writing)
        "h5_per_out": io.get("h5", 0) / total_out,
        "small_per_out": (io.get("pkl", 0) + io.get("state", 0)) / total_out,
        "case_stages": case_stages,
    }
    return cost, bytes_model


# ---- the model ----------------------------------------------------------------------------------------------
def lpt(costs, ranks):
    """largest_first_schedule of src/distributed.cpp: stable sort by cost descending, least loaded rank first,
    ties to the lowest rank."""
    import heapq
    order = sorted(range(len(costs)), key=lambda i: -costs[i])  # Python's sort is stable
    heap = [(0.0, r) for r in range(ranks)]
    heapq.heapify(heap)
    owner = [0] * len(costs)
    for i in order:
        load, r = heapq.heappop(heap)
        owner[i] = r
        heapq.heappush(heap, (load + costs[i], r))
    return owner


def share_work(queues, cost):
    """One phase with work sharing (Pipeline::phase_crop_and_fingerprint / phase_preprocess): each rank runs its own
    queue front to back, skipping cases another rank took, then tries the others' cases in the order of
    others_queue_ends (for depth 0, 1, ...: for d = 1 .. P-1: the queue of rank (r + d) mod P, from its end) and
    takes the first one nobody has started. cost(i, taken) is the rank's time for case i (taken: from another
    rank's queue). Returns (finish time of every rank, the rank that did each case)."""
    import heapq
    P = len(queues)
    steal_lists = []
    for r in range(P):
        lst = []
        longest = max(len(q) for q in queues)
        for depth in range(longest):
            for d in range(1, P):
                q = queues[(r + d) % P]
                if depth < len(q):
                    lst.append(q[len(q) - 1 - depth])
        steal_lists.append(lst)
    claimed, did = set(), {}
    own_pos, steal_pos = [0] * P, [0] * P
    finish = [0.0] * P
    heap = [(0.0, r) for r in range(P)]
    heapq.heapify(heap)
    while heap:
        now, r = heapq.heappop(heap)
        q = queues[r]
        while own_pos[r] < len(q) and q[own_pos[r]] in claimed:
            own_pos[r] += 1
        if own_pos[r] < len(q):
            i, taken = q[own_pos[r]], False
        else:
            lst = steal_lists[r]
            while steal_pos[r] < len(lst) and lst[steal_pos[r]] in claimed:
                steal_pos[r] += 1
            if steal_pos[r] == len(lst):
                finish[r] = now
                continue
            i, taken = lst[steal_pos[r]], True
        claimed.add(i)
        did[i] = (r, taken)
        heapq.heappush(heap, (now + cost(i, taken), r))
    return finish, did


def estimate_case_peak(in_shape, out_shapes, channels=1):
    """Pipeline::estimate_case_peak (src/pipeline.cpp), for the --mem-per-rank check."""
    in_vox = _prod(in_shape)
    out_vox = max(_prod(s) for s in out_shapes)
    padded = (in_shape[0] + 24) * (in_shape[1] + 24) * (in_shape[2] + 24)
    return 4.0 * (channels + 1) * in_vox + 8.0 * max(padded, out_vox) + 4.0 * (channels + 1) * out_vox * 3.0 + 64 * 2 ** 20


class Model:
    def __init__(self, S, planner, fs_bw=5e9, net_bw=5e9, latency=5e-6, mem_per_rank=8 * 2 ** 30,
                 schedule="input_voxels", h5_op_latency=30e-6, h5_growth="latency", overlap_merge=False,
                 sharing=True):
        self.S, self.planner = S, planner
        P = S["planners"][planner]
        self.cost, self.bytes = fit_costs(S, planner)
        ser = P["serial"]
        self.ser1 = ser["1"]["median"]
        self.ser2 = ser.get("2", {}).get("median")
        self.gather_bytes = ser["1"]["gather_bytes"]
        plan = ser["1"]["plan"]
        by_id = {c["id"]: c for c in cases()}
        self.cases = []
        for k, st in enumerate(plan["stages"]):
            for cid, shp in zip(st["case_ids"], st["resampled_shapes"]):
                if k == 0:
                    self.cases.append({"id": cid, "size": by_id[cid]["size"], "out": []})
                self.cases[[c["id"] for c in self.cases].index(cid)]["out"].append(shp)
        self.stage_spacings = [st["current_spacing"] for st in plan["stages"]]
        self.fs_bw, self.net_bw, self.latency, self.mem = fs_bw, net_bw, latency, mem_per_rank
        self.schedule = schedule
        self.sharing = sharing  # work sharing between ranks in both phases (the pipeline's default)
        self.h5_op_latency, self.h5_growth = h5_op_latency, h5_growth
        self.overlap_merge = overlap_merge  # what-if: merge hidden behind phase 2 (only the transfer stays serial)
        conv = S.get("convert") or {}
        self.copy_rate = conv["bytes"] / conv["wall"] if conv.get("bytes") and conv.get("wall") else 1e9
        c = self.cost
        for cs in self.cases:
            vin = _prod(cs["size"])
            vout = [_prod(s) for s in cs["out"]]
            cs["in_vox"], cs["out_vox"] = vin, sum(vout)
            cs["p1"] = sum(c[ph]["per_in"] * vin for ph in PHASE1)
            cs["p2"] = sum(c[ph]["per_in"] * vin * len(vout) + c[ph]["per_out"] * sum(vout) for ph in PHASE2)
            cs["reread"] = (c["read"]["per_in"] + c["crop"]["per_in"]) * vin
            cs["keep_bytes"] = 2 * 4 * vin  # cropped CT channel + seg, float32
            cs["peak_estimate"] = estimate_case_peak(cs["size"], cs["out"])
            b = self.bytes
            cs["io1"] = (b["read_per_in"] + b["gt_per_in"]) * vin
            cs["io2"] = (b["npz_per_out"] + b["h5_per_out"] + b["small_per_out"]) * sum(vout)
            cs["input_bytes"] = b["read_per_in"] * vin

    def serial_parts(self, P):
        m1, m2 = self.ser1, self.ser2
        cpu = lambda m, k: m[k]["cpu_seconds"] if k in m else 0.0
        wall = lambda m, k: m[k]["wall_seconds"] if k in m else 0.0
        gather = 0.0 if self.overlap_merge else cpu(m1, "serialize_summaries") + cpu(m1, "merge_fingerprint")
        if P > 1:
            gather += self.gather_bytes / self.net_bw + P * math.ceil(math.log2(P)) * self.latency
        plan = cpu(m1, "make_plan") + cpu(m1, "pickles")
        out = {"gather+merge": gather, "plan": plan}
        # HDF5 metadata is collective: every rank creates every group/dataset/attribute. Cost at P ranks = the
        # measured one-rank time + (number of collective operations) x h5_op_latency x log2(P). With
        # h5_growth="measured" the 1 -> 2 rank growth measured on this machine is applied per doubling instead
        # (pessimistic: there the two ranks share two busy cores, so every collective waits for the scheduler).
        stages = len(self.stage_spacings)
        n_ops = {"h5_create": len(self.cases) * stages * 3, "h5_finish": len(self.cases) * stages * 18}
        for name, keys in (("h5_create", ["h5_create_datasets"]), ("h5_finish", ["h5_finish_metadata", "h5_close"])):
            t1 = sum(wall(m1, k) for k in keys)
            levels = math.log2(P) if P > 1 else 0.0
            if self.h5_growth == "measured" and m2:
                t2 = sum(wall(m2, k) for k in keys)
                growth = max(0.0, t2 / t1 - 1.0) if t1 > 0 else 0.0
                out[name] = t1 * (1.0 + growth * levels)
            else:
                out[name] = t1 + n_ops[name] * self.h5_op_latency * levels
        return out

    def run(self, P, unlimited_memory=False):
        cs = self.cases
        if self.schedule == "input_voxels":
            owner = lpt([c["in_vox"] for c in cs], P)
        else:  # "modelled_cost": LPT on the modelled CPU seconds of both phases
            owner = lpt([c["p1"] + c["p2"] for c in cs], P)
        over_budget = sum(1 for c in cs if c["peak_estimate"] > self.mem)
        kept = [0.0] * P
        is_kept = [False] * len(cs)
        reread = 0.0
        if self.sharing and P > 1:
            queues1 = [[i for i in range(len(cs)) if owner[i] == r] for r in range(P)]
            finish1, did1 = share_work(queues1, lambda i, taken: cs[i]["p1"])
            for i in sorted(did1, key=lambda i: did1[i][0]):  # each rank keeps crops in the order it made them
                r = did1[i][0]
                owner[i] = r
                if unlimited_memory or kept[r] + cs[i]["keep_bytes"] <= self.mem / 3:
                    kept[r] += cs[i]["keep_bytes"]
                    is_kept[i] = True
            queues2 = [sorted((i for i in range(len(cs)) if owner[i] == r), key=lambda i: cs[i]["peak_estimate"])
                       for r in range(P)]
            extra = lambda i, taken: cs[i]["reread"] if taken or not is_kept[i] else 0.0
            finish2, did2 = share_work(queues2, lambda i, taken: cs[i]["p2"] + extra(i, taken))
            reread = sum(extra(i, taken) for i, (_, taken) in did2.items())
            M1, M2 = max(finish1), max(finish2)
        else:
            load1, load2 = [0.0] * P, [0.0] * P
            for i, c in enumerate(cs):  # case order, as the pipeline walks its cases
                r = owner[i]
                load1[r] += c["p1"]
                load2[r] += c["p2"]
                if unlimited_memory or kept[r] + c["keep_bytes"] <= self.mem / 3:
                    kept[r] += c["keep_bytes"]
                else:
                    load2[r] += c["reread"]
                    reread += c["reread"]
            M1, M2 = max(load1), max(load2)
        io1 = sum(c["io1"] for c in cs)
        io2 = sum(c["io2"] for c in cs)
        T1p, T2p = max(M1, io1 / self.fs_bw), max(M2, io2 / self.fs_bw)
        serial = self.serial_parts(P)
        input_bytes = sum(c["input_bytes"] for c in cs)
        convert = max(input_bytes / (P * self.copy_rate), 2 * input_bytes / self.fs_bw)
        S_P = sum(serial.values())
        T = S_P + T1p + T2p
        W1 = sum(c["p1"] for c in cs)
        W2 = sum(c["p2"] for c in cs)
        return {"P": P, "T": T, "T_run": T + convert, "convert": convert, "serial": serial, "serial_total": S_P,
                "M1": M1, "M2": M2, "W1": W1, "W2": W2, "io1": io1, "io2": io2, "T1p": T1p, "T2p": T2p,
                "reread": reread, "over_budget": over_budget,
                "mean1": W1 / P, "mean2": (W2 + reread) / P}

    def efficiency(self, P):
        base = self.run(1, unlimited_memory=True)
        r = self.run(P)
        T1, T1_run = base["T"], base["T_run"]
        PT = P * r["T"]
        loss = {
            "imbalance phase 1": (P * r["M1"] - r["W1"]) / PT,
            "imbalance phase 2": (P * r["M2"] - r["W2"] - r["reread"]) / PT,
            "re-reads (memory budget, taken cases)": r["reread"] / PT,
            "I/O bandwidth cap": P * ((r["T1p"] - r["M1"]) + (r["T2p"] - r["M2"])) / PT,
            "serial parts": (P * r["serial_total"] - base["serial_total"]) / PT,
        }
        r.update({"T1": T1, "eff": T1 / PT, "eff_run": T1_run / (P * r["T_run"]), "loss": loss})
        return r


def describe_dataset():
    cs = cases()
    n = np.array([c["size"][0] for c in cs])
    sz = np.array([c["spacing"][0] for c in cs])
    q = [0, 5, 25, 50, 75, 95, 100]
    return ("%d cases, 512×512 × slices with percentiles (0/5/25/50/75/95/100) %s (mean %.0f), slice spacing %s mm, "
            "%.1f G input voxels, %.0f M foreground-sample floats in total"
            % (len(cs), "/".join("%d" % v for v in np.percentile(n, q)), n.mean(),
               "/".join("%.2f" % v for v in np.percentile(sz, q)), (n * 512 * 512).sum() / 1e9,
               sum(c["fg_samples"] for c in cs) / 1e6))


def report_section(S, fs_bandwidths=(2e9, 5e9, 10e9), ranks=(16, 64, 256), net_bw=5e9, mem_per_rank=8 * 2 ** 30,
                   h5_op_latency=30e-6, default_bw=5e9):
    L = []
    add = L.append
    kw = dict(net_bw=net_bw, mem_per_rank=mem_per_rank, h5_op_latency=h5_op_latency)
    add("## Scaling model: 500 AMOS-like CT cases (bench/scaling_model.py)")
    add("")
    add("Dataset: " + describe_dataset() + ". Costs are the CPU seconds per voxel fitted on the 1 rank × 1 thread runs "
        "above; serial parts measured for this dataset; largest-first schedule on input voxels and work sharing as in the pipeline; "
        "`--mem-per-rank %.0fG`; allgather over a %.0f GB/s network; collective HDF5 metadata +%.0f µs per "
        "operation per doubling of the ranks (assumed); one thread per rank. Efficiency = T1 / (P × T_P) with T1 "
        "the one-rank time without re-reads." % (mem_per_rank / 2 ** 30, net_bw / 1e9, h5_op_latency * 1e6))
    add("")
    for p in S["planners"]:
        P_ = S["planners"][p]
        if "serial" not in P_ or "fit_runs" not in P_ or "outputs" not in P_:
            continue
        short = p.replace("ExperimentPlanner3D_residual_v21_", "").replace("ExperimentPlanner3D_", "")
        m = Model(S, p, fs_bw=default_bw, **kw)
        c = m.cost
        add("### %s" % short)
        add("")
        add("Plan for the 500 cases (real planner): stage spacings %s mm. Fitted CPU s per M voxels: %s; resample = "
            "%.3f per M input + %.3f per M output voxels (%s fit, %d case-stages, relative RMS %.0f %%)." % (
                "; ".join("×".join("%.2f" % x for x in s) for s in m.stage_spacings),
                ", ".join("%s %.3f/in" % (ph, c[ph]["per_in"] * 1e6) for ph in PHASE1) + ", " +
                ", ".join("%s %.3f/out" % (ph, c[ph]["per_out"] * 1e6) for ph in PHASE2 if ph != "resample"),
                c["resample"]["per_in"] * 1e6, c["resample"]["per_out"] * 1e6, c["resample"].get("fit", "ratio"),
                c["resample"].get("points", 0), 100 * c["resample"].get("rel_rms", float("nan"))))
        add("")
        W = sum(cs["p1"] + cs["p2"] for cs in m.cases)
        big = max(m.cases, key=lambda cs: cs["p1"] + cs["p2"])
        add("Modelled work: %.0f CPU s in total, %.1f CPU s per case on average (largest case %s: %d slices, %.0f CPU s); "
            "%.0f GB read, %.0f GB written or re-read; largest estimated case peak %.1f GiB (%d cases above the budget)."
            % (W, W / len(m.cases), big["id"], big["size"][0], big["p1"] + big["p2"],
               sum(cs["io1"] for cs in m.cases) / 1e9, sum(cs["io2"] for cs in m.cases) / 1e9,
               max(cs["peak_estimate"] for cs in m.cases) / 2 ** 30,
               sum(1 for cs in m.cases if cs["peak_estimate"] > mem_per_rank)))
        add("")
        add("| FS bandwidth | ranks | T_P s | efficiency | incl. convert copy | without work sharing (static LPT) | HDF5 growth as measured 1→2 ranks (pessimistic) |")
        add("|---|---|---|---|---|---|---|")
        for bw in fs_bandwidths:
            for P in ranks:
                r = Model(S, p, fs_bw=bw, **kw).efficiency(P)
                r2 = Model(S, p, fs_bw=bw, sharing=False, **kw).efficiency(P)
                r3 = Model(S, p, fs_bw=bw, h5_growth="measured", **kw).efficiency(P)
                add("| %.0f GB/s | %d | %.0f | **%.0f %%** | %.0f %% | %.0f %% | %.0f %% |" % (
                    bw / 1e9, P, r["T"], 100 * r["eff"], 100 * r["eff_run"], 100 * r2["eff"], 100 * r3["eff"]))
        add("")
        add("Where the rest goes at %.0f GB/s (share of P × T_P; efficiency + losses = 100 %%):" % (default_bw / 1e9))
        add("")
        add("| ranks | T_P s | efficiency | imbalance phase 1 | imbalance phase 2 | re-reads | I/O cap | serial parts | serial s: gather+merge / plan / HDF5 create / HDF5 finish | convert copy s (all ranks) |")
        add("|---|---|---|---|---|---|---|---|---|---|")
        for P in [1] + list(ranks):
            r = m.efficiency(P)
            if P == 1:
                r["eff"] = 1.0 - r["loss"]["re-reads (memory budget, taken cases)"]  # T1 itself; re-reads: the only loss
            l = r["loss"]
            s = r["serial"]
            add("| %d | %.0f | %.0f %% | %.1f %% | %.1f %% | %.1f %% | %.1f %% | %.1f %% | %.1f / %.2f / %.1f / %.1f | %.0f |" % (
                P, r["T"], 100 * r["eff"], 100 * l["imbalance phase 1"], 100 * l["imbalance phase 2"],
                100 * l["re-reads (memory budget, taken cases)"], 100 * l["I/O bandwidth cap"], 100 * l["serial parts"],
                s["gather+merge"], s["plan"], s["h5_create"], s["h5_finish"], r["convert"]))
        add("")
        add("What-ifs at 64 ranks, %.0f GB/s (changes the pipeline does not have today):" % (default_bw / 1e9))
        add("")
        add("| variant | T_P s | efficiency |")
        add("|---|---|---|")
        variants = [("as the pipeline is (LPT on input voxels, work sharing)", {}),
                    ("without work sharing (static LPT on input voxels)", {"sharing": False}),
                    ("LPT on modelled cost instead of input voxels", {"schedule": "modelled_cost"}),
                    ("merge_fingerprint + (de)serialisation hidden behind phase 2 resampling", {"overlap_merge": True}),
                    ("both", {"schedule": "modelled_cost", "overlap_merge": True}),
                    ("both, --mem-per-rank 16G", {"schedule": "modelled_cost", "overlap_merge": True,
                                                  "mem_per_rank": 16 * 2 ** 30})]
        for name, extra in variants:
            k = dict(kw)
            k.update(extra)
            r = Model(S, p, fs_bw=default_bw, **k).efficiency(64)
            add("| %s | %.0f | %.0f %% |" % (name, r["T"], 100 * r["eff"]))
        add("")
    return "\n".join(L)


def newest_summary():
    files = sorted(f for f in glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "report-*.json"))
                   if not f.endswith("-quick.json"))  # --quick smoke tests are not measurements
    if not files:
        raise SystemExit("no bench/results/report-*.json: run bench/run_bench.sh first, or give --summary")
    return files[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-cases", metavar="CSV")
    ap.add_argument("--summary", help="report JSON of bench/report.py (default: newest bench/results/report-*.json)")
    ap.add_argument("--fs-bandwidth", type=float, nargs="+", default=[2, 5, 10], help="aggregate GB/s (default 2 5 10)")
    ap.add_argument("--net-bandwidth", type=float, default=5, help="GB/s per rank for the allgather (default 5)")
    ap.add_argument("--mem-per-rank", type=float, default=8, help="GiB (default 8)")
    ap.add_argument("--ranks", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--h5-op-latency-us", type=float, default=30,
                    help="added cost of one collective HDF5 metadata operation per doubling of ranks (default 30)")
    args = ap.parse_args()
    if args.write_cases:
        write_cases(args.write_cases)
        return 0
    S = json.load(open(args.summary or newest_summary()))
    print(report_section(S, fs_bandwidths=[b * 1e9 for b in args.fs_bandwidth], ranks=args.ranks,
                         net_bw=args.net_bandwidth * 1e9, mem_per_rank=args.mem_per_rank * 2 ** 30,
                         h5_op_latency=args.h5_op_latency_us * 1e-6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
