#!/usr/bin/python3
"""Summarises one bench/run_bench.sh session (a bench/work/raw/<stamp>/ folder).

Prints a Markdown report and writes it to bench/results/report-<date>.md, plus bench/results/report-<date>.json
(the numbers, and the per-case data bench/scaling_model.py fits its costs on). Every time is a median over the
repetitions; CPU seconds (user + sys of all processes, from /usr/bin/time -v, or per phase from log.json) are shown
next to wall seconds because the machine is shared: wall time depends on what else runs, CPU time much less.

usage: report.py RAW_DIR [--results DIR] [--no-model]
"""
import argparse
import datetime
import glob
import gzip
import json
import os
import re
import statistics
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

PLANNERS = ["ExperimentPlanner3D_v21", "ExperimentPlanner3D_residual_v21_bfnnUNet_31"]
SHORT = {"ExperimentPlanner3D_v21": "v21", "ExperimentPlanner3D_residual_v21_bfnnUNet_31": "bfnnUNet_31"}
PHASES = ["input_checksum", "read", "crop", "fingerprint", "resample", "normalize", "sample", "export_npz", "hdf5",
          "export_pkl_manifest", "hdf5_finish"]

# nnU-Net v1 plan_and_preprocess on the same machine kind (shared/bench/nnunet-v1-timings.md): total
# wall / CPU seconds for 4 cases, and the input voxels of that set.
NNUNET = {
    "realistic": {"voxels": 133e6, "procs": 2,
                  "v21": {"wall": 282.7, "cpu": 326.9}, "bfnnUNet_31": {"wall": 457.7, "cpu": 770.1}},
    "medium": {"voxels": None, "procs": 2,
               "v21": {"wall": 20.8, "cpu": 31.1}, "bfnnUNet_31": {"wall": 59.4, "cpu": 108.7}},
}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def parse_time(path):
    """/usr/bin/time -v output -> wall, user, sys seconds, max RSS bytes."""
    txt = open(path).read()

    def field(name):
        m = re.search(re.escape(name) + r":\s*(.+)", txt)
        return m.group(1).strip() if m else None

    wall_s = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    parts = [float(p) for p in wall_s.split(":")]
    wall = 0.0
    for p in parts:
        wall = wall * 60 + p
    status = field("Exit status")
    return {"wall": wall, "user": float(field("User time (seconds)")), "sys": float(field("System time (seconds)")),
            "cpu": float(field("User time (seconds)")) + float(field("System time (seconds)")),
            "maxrss": int(field("Maximum resident set size (kbytes)")) * 1024,
            "minor_faults": int(field("Minor (reclaiming a frame) page faults") or 0),
            "exit": int(status) if status is not None else None}


def nifti_shape(path):
    with gzip.open(path, "rb") as f:
        h = f.read(348)
    for e in "<>":
        if struct.unpack(e + "i", h[:4])[0] == 348:
            dim = struct.unpack(e + "8h", h[40:56])
            pix = struct.unpack(e + "8f", h[76:108])
            return [dim[3], dim[2], dim[1]], [pix[3], pix[2], pix[1]]
    raise ValueError("not NIfTI-1: " + path)


def fmt(x, nd=1):
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    return ("%%.%df" % nd) % x


def gib(b):
    return b / 2.0 ** 30


def load_session(raw):
    sess = json.load(open(os.path.join(raw, "session.json")))
    end = os.path.join(raw, "loadavg_end.json")
    sess["loadavg_end"] = json.load(open(end)) if os.path.exists(end) else "n/a"
    return sess


def collect_runs(raw):
    """{planner: {config: [run dicts]}} with log.json, time -v and the load average at start."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(raw, "*-run*.log.json"))):
        tag = os.path.basename(path)[:-len(".log.json")]
        m = re.match(r"(.+)-(\d+x\d+)-run(\d+)$", tag)
        if not m:
            continue
        planner, cfg, rep = m.group(1), m.group(2), int(m.group(3))
        r = {"rep": rep, "log": json.load(open(path)), "time": parse_time(os.path.join(raw, tag + ".time"))}
        lp = os.path.join(raw, tag + ".load")
        r["load"] = float(open(lp).read().split()[0]) if os.path.exists(lp) else None
        fp = os.path.join(raw, tag + ".files")
        r["files"] = [(int(l.split(" ", 1)[0]), l.split(" ", 1)[1].strip()) for l in open(fp)] if os.path.exists(fp) else []
        runs.setdefault(planner, {}).setdefault(cfg, []).append(r)
    return runs


def io_bytes(files):
    """Bytes written by one run, by kind (from the `find -printf '%s %p'` listing of the task folder)."""
    kinds = {"npz": 0, "pkl": 0, "h5": 0, "gt": 0, "state": 0, "other": 0}
    for size, p in files:
        if p.endswith(".h5"):
            kinds["h5"] += size
        elif "/gt_segmentations/" in p:
            kinds["gt"] += size
        elif p.startswith("./amos-prep/"):
            kinds["state"] += size
        elif "_stage" in p and p.endswith(".npz"):
            kinds["npz"] += size
        elif "_stage" in p and p.endswith(".pkl"):
            kinds["pkl"] += size
        else:
            kinds["other"] += size
    return kinds


def input_cases(data_dir):
    out = []
    for p in sorted(glob.glob(os.path.join(data_dir, "imagesTr", "*.nii.gz"))):
        cid = os.path.basename(p)[:-7]
        shape, spacing = nifti_shape(p)
        lab = os.path.join(data_dir, "labelsTr", cid + ".nii.gz")
        out.append({"case": cid, "shape": shape, "spacing": spacing, "voxels": shape[0] * shape[1] * shape[2],
                    "image_bytes": os.path.getsize(p), "label_bytes": os.path.getsize(lab) if os.path.exists(lab) else 0})
    return out


def output_cases(floor):
    """[(stage, case, shape)] of the produced npz, from the I/O floor's file list."""
    out = []
    for f in floor["files"]["outputs"]:
        d, name = f["file"].split("/")
        stage = int(d.rsplit("_stage", 1)[1])
        out.append({"stage": stage, "case": name[:-4], "shape": f["shape"], "npz_bytes": f["npz_bytes"]})
    return out


def build(raw):
    sess = load_session(raw)
    runs = collect_runs(raw)
    data_dir = os.path.join(HERE, "work", "amos-" + sess["size"])
    inputs = input_cases(data_dir)
    floors, serial = {}, {}
    for p in PLANNERS:
        fp = os.path.join(raw, "floor-%s.json" % p)
        if os.path.exists(fp):
            floors[p] = json.load(open(fp))
        for n in (1, 2):
            sp = os.path.join(raw, "serial-%s-%drank.json" % (p, n))
            if os.path.exists(sp):
                s = json.load(open(sp))
                s.pop("runs", None)
                serial.setdefault(p, {})[str(n)] = s
    conv = [parse_time(p) for p in sorted(glob.glob(os.path.join(raw, "convert-run*.time")))]
    cb = os.path.join(raw, "convert.bytes")
    convert = {"wall": med([c["wall"] for c in conv]), "cpu": med([c["cpu"] for c in conv]),
               "bytes": int(open(cb).read()) if os.path.exists(cb) else None, "runs": len(conv)}
    return sess, runs, inputs, floors, serial, convert


def summarise(sess, runs, inputs, floors, serial, convert):
    """All numbers of the report as one JSON-able dict."""
    S = {"session": sess, "inputs": inputs, "convert": convert, "planners": {}}
    in_vox = sum(c["voxels"] for c in inputs)
    ncases = len(inputs)
    base = NNUNET.get(sess["size"])
    for p in PLANNERS:
        if p not in runs:
            continue
        P = {"configs": {}}
        for cfg, rs in sorted(runs[p].items()):
            c = {"n": len(rs),
                 "wall_log": med([r["log"]["wall_seconds"] for r in rs]),
                 "wall": med([r["time"]["wall"] for r in rs]),
                 "cpu": med([r["time"]["cpu"] for r in rs]),
                 "user": med([r["time"]["user"] for r in rs]),
                 "sys": med([r["time"]["sys"] for r in rs]),
                 "cpu_min": min(r["time"]["cpu"] for r in rs), "cpu_max": max(r["time"]["cpu"] for r in rs),
                 "wall_min": min(r["time"]["wall"] for r in rs), "wall_max": max(r["time"]["wall"] for r in rs),
                 "maxrss": max(r["time"]["maxrss"] for r in rs),
                 "minor_faults": med([r["time"]["minor_faults"] for r in rs]),
                 "load": [r["load"] for r in rs],
                 "exit": [r["time"]["exit"] for r in rs]}
            c["cpu_per_case"] = c["cpu"] / ncases
            phases = {}
            for ph in PHASES:
                w = [r["log"]["phase_totals_over_ranks"].get(ph, {}).get("wall_seconds") for r in rs]
                u = [r["log"]["phase_totals_over_ranks"].get(ph, {}).get("cpu_seconds") for r in rs]
                phases[ph] = {"wall": med(w), "cpu": med(u)}
            c["phases"] = phases
            c["phase_cpu_sum"] = sum(v["cpu"] for v in phases.values() if v["cpu"] == v["cpu"])
            # Peak RSS per rank (median over runs, by rank).
            nr = rs[0]["log"]["ranks"]
            c["peak_rss_per_rank"] = [med([r["log"]["per_rank"][k]["peak_rss_bytes"] for r in rs]) for k in range(nr)]
            # Balance: phase CPU seconds per rank, max / mean (1.0 = perfect).
            if nr > 1:
                loads = []
                for r in rs:
                    per = [sum(v["cpu_seconds"] for v in pr["phases"].values()) for pr in r["log"]["per_rank"]]
                    loads.append(max(per) / (sum(per) / len(per)))
                c["rank_cpu_max_over_mean"] = med(loads)
            # Estimated vs measured peak, per case-stage (median over runs).
            est = {}
            for r in rs:
                for pr in r["log"]["per_rank"]:
                    for cs in pr["cases"]:
                        if "stage" not in cs:
                            continue
                        key = "%s/stage%d" % (cs["case"], cs["stage"])
                        e = est.setdefault(key, {"rank": pr["rank"], "estimated": cs["estimated_peak_bytes"], "rss": []})
                        e["rss"].append(cs["peak_rss_bytes_so_far"])
            c["estimate_vs_rss"] = {k: {"estimated": v["estimated"], "rss_so_far": med(v["rss"]), "rank": v["rank"]}
                                    for k, v in sorted(est.items())}
            c["io_bytes"] = io_bytes(rs[-1]["files"]) if rs[-1]["files"] else None
            P["configs"][cfg] = c
        short = SHORT[p]
        if base and "1x1" in P["configs"]:
            one = P["configs"]["1x1"]
            P["vs_nnunet"] = {"nnunet_cpu_per_case": base[short]["cpu"] / 4, "ours_cpu_per_case": one["cpu_per_case"],
                              "cpu_ratio": base[short]["cpu"] / 4 / one["cpu_per_case"]}
            if base["voxels"]:
                P["vs_nnunet"]["nnunet_cpu_per_mvox"] = base[short]["cpu"] / (base["voxels"] / 1e6)
                P["vs_nnunet"]["ours_cpu_per_mvox"] = one["cpu"] / (in_vox / 1e6)
                P["vs_nnunet"]["cpu_per_mvox_ratio"] = P["vs_nnunet"]["nnunet_cpu_per_mvox"] / P["vs_nnunet"]["ours_cpu_per_mvox"]
            if "2x1" in P["configs"]:
                P["vs_nnunet"]["nnunet_wall_2procs"] = base[short]["wall"]
                P["vs_nnunet"]["ours_wall_2ranks"] = P["configs"]["2x1"]["wall"]
                P["vs_nnunet"]["wall_ratio_2"] = base[short]["wall"] / P["configs"]["2x1"]["wall"]
        if p in floors:
            f = floors[p]
            fm = f["median"]
            P["floor"] = {k: {"wall": v["wall_seconds"], "cpu": v["cpu_seconds"]} for k, v in fm.items()}
            fl_cpu = fm["read_gunzip"]["cpu_seconds"] + fm["write_npz"]["cpu_seconds"]
            fl_wall = fm["read_gunzip"]["wall_seconds"] + fm["write_npz"]["wall_seconds"]
            fl_h5_cpu = fl_cpu + fm["write_h5_raw"]["cpu_seconds"]
            fl_h5_wall = fl_wall + fm["write_h5_raw"]["wall_seconds"]
            P["floor"]["total"] = {"wall": fl_wall, "cpu": fl_cpu}
            P["floor"]["total_with_h5"] = {"wall": fl_h5_wall, "cpu": fl_h5_cpu}
            for k in ("input_compressed_bytes", "input_raw_bytes", "output_voxels", "output_npz_bytes", "output_h5_raw_bytes"):
                P["floor"][k] = f[k]
            P["outputs"] = output_cases(f)
            largest = max(P["outputs"], key=lambda o: _prod(o["shape"]))
            P["largest_output"] = {"case": largest["case"], "stage": largest["stage"], "shape": largest["shape"],
                                   "float32_bytes": 4 * _prod(largest["shape"])}
            if "1x1" in P["configs"]:
                one = P["configs"]["1x1"]
                P["floor_ratio"] = {"cpu": one["cpu"] / fl_cpu, "wall": one["wall"] / fl_wall,
                                    "cpu_with_h5": one["cpu"] / fl_h5_cpu, "wall_with_h5": one["wall"] / fl_h5_wall}
            for cfg, c in P["configs"].items():
                c["peak_rss_over_largest_output"] = max(c["peak_rss_per_rank"]) / P["largest_output"]["float32_bytes"]
        if "1x1" in P["configs"] and "2x1" in P["configs"]:
            a, b = P["configs"]["1x1"], P["configs"]["2x1"]
            P["scaling"] = {"speedup_wall_2ranks": a["wall"] / b["wall"], "cpu_2ranks_over_1": b["cpu"] / a["cpu"]}
            if "1x2" in P["configs"]:
                P["scaling"]["speedup_wall_2threads"] = a["wall"] / P["configs"]["1x2"]["wall"]
                P["scaling"]["cpu_2threads_over_1"] = P["configs"]["1x2"]["cpu"] / a["cpu"]
        # Per-case data for the scaling model (1x1 runs only).
        if "1x1" in runs.get(p, {}):
            fit = []
            for r in runs[p]["1x1"]:
                pr = r["log"]["per_rank"][0]
                fit.append({"phase_totals": r["log"]["phase_totals_over_ranks"], "cases": pr["cases"]})
            P["fit_runs"] = fit
        if p in serial:
            P["serial"] = serial[p]
        S["planners"][p] = P
    return S


def _prod(xs):
    out = 1
    for x in xs:
        out *= x
    return out


def render(S, model_text):
    sess = S["session"]
    L = []
    add = L.append
    date = datetime.datetime.strptime(sess["stamp"], "%Y%m%dT%H%M%SZ")
    add("# amos-prep benchmark, %s UTC" % date.strftime("%Y-%m-%d %H:%M"))
    add("")
    add("Machine: %d vCPU (%s), %.0f GiB RAM, kernel %s; commit %s. Load average %s at the start, %s at the end; "
        "the VM may share its host, so wall times vary run to run and CPU seconds (user + sys of all processes) are "
        "the robust number. All values are medians of %d run(s) per configuration, repetitions interleaved, %s s of "
        "idle before each run (fresh memory costs ~2 s/GB of sys time on first touch here, except just after another "
        "process freed it). npz compression `%s`, HDF5 store `%s`, `--mem-per-rank 8G`."
        % (sess["nproc"], sess["cpu_model"], sess["mem_total_kib"] / 2 ** 20, sess["kernel"], sess["git"],
           sess["loadavg_start"], sess["loadavg_end"], sess["runs"], sess.get("settle_seconds", 0),
           sess["npz_compression"], sess["h5"]))
    add("")
    add("## Targets (issue 6)")
    add("")
    add("| target | planner | measured | met |")
    add("|---|---|---|---|")
    speed_target = {"v21": 40.0, "bfnnUNet_31": 100.0}
    for p, P in S["planners"].items():
        v = P.get("vs_nnunet") or {}
        t = speed_target.get(SHORT[p])
        if t and v.get("wall_ratio_2"):
            add("| ≥ %.0f× nnU-Net, wall on the same 2 cores (2 ranks vs 2 processes) | %s | %.1f× (%s s vs %s s) | %s |"
                % (t, SHORT[p], v["wall_ratio_2"], fmt(v["ours_wall_2ranks"]), fmt(v["nnunet_wall_2procs"]),
                   "yes" if v["wall_ratio_2"] >= t else "no"))
        if t and v.get("cpu_ratio"):
            add("| ≥ %.0f× nnU-Net, CPU seconds per case (1 rank × 1 thread) | %s | %.1f× (per input voxel %s×) | %s |"
                % (t, SHORT[p], v["cpu_ratio"], fmt(v.get("cpu_per_mvox_ratio")), "yes" if v["cpu_ratio"] >= t else "no"))
    for p, P in S["planners"].items():
        fr = P.get("floor_ratio")
        if fr:
            add("| within 2× of the I/O floor (CPU; floor = read+gunzip inputs + write npz + write HDF5 bytes) | %s | %.2f× (wall %.2f×; without the HDF5 bytes %.2f×) | %s |"
                % (SHORT[p], fr["cpu_with_h5"], fr["wall_with_h5"], fr["cpu"], "yes" if fr["cpu_with_h5"] <= 2 else "no"))
    for p, P in S["planners"].items():
        worst = max((c.get("peak_rss_over_largest_output", 0), cfg) for cfg, c in P["configs"].items())
        if worst[0]:
            add("| peak RSS per rank ≤ 3× the largest float32 output | %s | %.2f (worst configuration %s) | %s |"
                % (SHORT[p], worst[0], worst[1], "yes" if worst[0] <= 3 else "no"))
    add("")
    ins = S["inputs"]
    add("Dataset: `amos-prep synth --size %s --train %d --test 0 --seed 0` (AMOS22 layout, int16 CT + uint8 labels): "
        % (sess["size"], len(ins)) + ", ".join("%s %d×%d×%d @ %.2f×%.2f×%.2f mm" % (
            c["case"], c["shape"][2], c["shape"][1], c["shape"][0], c["spacing"][2], c["spacing"][1], c["spacing"][0])
            for c in ins) + " (x×y×z) — %.1f M input voxels, %.0f MB of .nii.gz." % (
        sum(c["voxels"] for c in ins) / 1e6, sum(c["image_bytes"] + c["label_bytes"] for c in ins) / 1e6))
    add("")
    add("## End to end (`amos-prep run`, includes convert, crop, fingerprint, plan, preprocess, HDF5 store)")
    add("")
    add("| planner | ranks×threads | wall s (min–max) | CPU s user+sys (min–max) | of which sys | CPU s per case | max RSS of a process GiB | minor page faults | load at start |")
    add("|---|---|---|---|---|---|---|---|---|")
    for p, P in S["planners"].items():
        for cfg, c in P["configs"].items():
            add("| %s | %s | %s (%s–%s) | %s (%s–%s) | %s | %s | %.2f | %.2f M | %s |" % (
                SHORT[p], cfg.replace("x", "×"), fmt(c["wall"]), fmt(c["wall_min"]), fmt(c["wall_max"]), fmt(c["cpu"]),
                fmt(c["cpu_min"]), fmt(c["cpu_max"]), fmt(c["sys"]), fmt(c["cpu_per_case"]), gib(c["maxrss"]),
                c["minor_faults"] / 1e6,
                ", ".join(fmt(x) for x in c["load"])))
    add("")
    add("## Versus nnU-Net v1 (same machine kind, shared/bench/nnunet-v1-timings.md beside the clone)")
    add("")
    add("nnU-Net's set is another 4-case realistic phantom set (133 M voxels); the per-case and per-voxel ratios "
        "use our 1 rank × 1 thread CPU seconds against nnU-Net's total CPU seconds (2 processes).")
    add("")
    add("| planner | nnU-Net CPU s/case | ours CPU s/case | ratio | nnU-Net CPU s/Mvoxel | ours CPU s/Mvoxel | ratio | wall with 2 procs: nnU-Net / ours (ratio) |")
    add("|---|---|---|---|---|---|---|---|")
    for p, P in S["planners"].items():
        v = P.get("vs_nnunet")
        if not v:
            continue
        add("| %s | %s | %s | **%s×** | %s | %s | %s | %s / %s (%s×) |" % (
            SHORT[p], fmt(v["nnunet_cpu_per_case"]), fmt(v["ours_cpu_per_case"]), fmt(v["cpu_ratio"]),
            fmt(v.get("nnunet_cpu_per_mvox"), 2), fmt(v.get("ours_cpu_per_mvox"), 2),
            fmt(v.get("cpu_per_mvox_ratio")) + "×" if v.get("cpu_per_mvox_ratio") else "n/a",
            fmt(v.get("nnunet_wall_2procs")), fmt(v.get("ours_wall_2ranks")), fmt(v.get("wall_ratio_2"))))
    add("")
    add("## Where the time goes (1 rank × 1 thread, sum over cases, medians)")
    add("")
    hdr = "| phase |" + "".join(" %s wall s | %s CPU s |" % (SHORT[p], SHORT[p]) for p in S["planners"]) 
    add(hdr)
    add("|---|" + "---|---|" * len(S["planners"]))
    for ph in PHASES + ["(sum of phases)", "(whole process, time -v)"]:
        row = "| %s |" % ph
        for p, P in S["planners"].items():
            c = P["configs"].get("1x1")
            if not c:
                row += " | |"
                continue
            if ph == "(sum of phases)":
                w = sum(v["wall"] for v in c["phases"].values() if v["wall"] == v["wall"])
                row += " %s | %s |" % (fmt(w), fmt(c["phase_cpu_sum"]))
            elif ph == "(whole process, time -v)":
                row += " %s | %s |" % (fmt(c["wall"]), fmt(c["cpu"]))
            else:
                row += " %s | %s |" % (fmt(c["phases"][ph]["wall"], 2), fmt(c["phases"][ph]["cpu"], 2))
        add(row)
    add("")
    add("The rest of the process time (whole process minus the phases) is convert's copy of the inputs, MPI start-up, "
        "planning, pickles, the ground-truth copies and the collective HDF5 dataset creation.")
    add("")
    add("## I/O floor (bench_io_floor io, same session, one thread)")
    add("")
    add("Floor = read + gunzip every input .nii.gz (libdeflate) + write every produced .npz again with the same "
        "compression (write_npz, fsync'ed). `+h5` adds a plain write(2) of the HDF5 store's bytes (float32 data + "
        "int8 seg). Inputs come from the page cache in both the pipeline and the floor.")
    add("")
    add("| planner | gunzip inputs wall/CPU s | read_nifti wall/CPU s | write npz wall/CPU s | write h5 bytes wall/CPU s | floor wall/CPU s | pipeline 1×1 / floor (CPU, wall) | pipeline / floor+h5 (CPU, wall) |")
    add("|---|---|---|---|---|---|---|---|")
    for p, P in S["planners"].items():
        f = P.get("floor")
        if not f:
            continue
        r = P.get("floor_ratio", {})
        wc = lambda k: "%s / %s" % (fmt(f[k]["wall"]), fmt(f[k]["cpu"]))
        add("| %s | %s | %s | %s | %s | %s | **%s×**, %s× | %s×, %s× |" % (
            SHORT[p], wc("read_gunzip"), wc("read_nifti"), wc("write_npz"), wc("write_h5_raw"), wc("total"),
            fmt(r.get("cpu")), fmt(r.get("wall")), fmt(r.get("cpu_with_h5")), fmt(r.get("wall_with_h5"))))
    add("")
    for p, P in S["planners"].items():
        f = P.get("floor")
        c = P["configs"].get("1x1")
        if not f or not c:
            continue
        add("- %s, phase vs its floor (CPU s): read %s vs read_nifti %s / gunzip %s; export_npz %s vs write npz %s; "
            "hdf5 %s vs plain write %s. Outputs: %.1f M voxels (all stages), %.0f MB npz, %.0f MB HDF5 payload." % (
                SHORT[p], fmt(c["phases"]["read"]["cpu"]), fmt(f["read_nifti"]["cpu"]), fmt(f["read_gunzip"]["cpu"]),
                fmt(c["phases"]["export_npz"]["cpu"]), fmt(f["write_npz"]["cpu"]), fmt(c["phases"]["hdf5"]["cpu"]),
                fmt(f["write_h5_raw"]["cpu"]), f["output_voxels"] / 1e6, f["output_npz_bytes"] / 1e6,
                f["output_h5_raw_bytes"] / 1e6))
    add("")
    add("## Memory")
    add("")
    add("| planner | ranks×threads | peak RSS per rank GiB | largest output (float32, all channels) | peak RSS / largest output (target ≤ 3) |")
    add("|---|---|---|---|---|")
    for p, P in S["planners"].items():
        lo = P.get("largest_output")
        for cfg, c in P["configs"].items():
            add("| %s | %s | %s | %s | %s |" % (
                SHORT[p], cfg.replace("x", "×"), ", ".join("%.2f" % gib(x) for x in c["peak_rss_per_rank"]),
                ("%s stage %d %s = %.2f GiB" % (lo["case"], lo["stage"], "×".join(map(str, lo["shape"])), gib(lo["float32_bytes"]))) if lo else "n/a",
                fmt(c.get("peak_rss_over_largest_output"), 2)))
    add("")
    add("Estimated peak per case-stage (`estimated_peak_bytes`, used against --mem-per-rank) vs the rank's peak RSS "
        "after that case-stage (`peak_rss_bytes_so_far`, monotone, so it can include an earlier bigger case), "
        "1 rank × 1 thread:")
    add("")
    add("| planner | case/stage | estimated GiB | peak RSS so far GiB | estimate / RSS |")
    add("|---|---|---|---|---|")
    for p, P in S["planners"].items():
        c = P["configs"].get("1x1")
        if not c:
            continue
        for k, v in c["estimate_vs_rss"].items():
            add("| %s | %s | %.2f | %.2f | %.2f |" % (SHORT[p], k, gib(v["estimated"]), gib(v["rss_so_far"]),
                                                     v["estimated"] / v["rss_so_far"]))
    add("")
    add("## Rank and thread scaling on this 2-vCPU machine")
    add("")
    add("| planner | speedup 2 ranks (wall) | CPU 2 ranks / 1 rank | rank CPU max/mean (2 ranks) | speedup 1 rank × 2 threads (wall) | CPU 2 threads / 1 |")
    add("|---|---|---|---|---|---|")
    for p, P in S["planners"].items():
        s = P.get("scaling")
        if not s:
            continue
        add("| %s | %s | %s | %s | %s | %s |" % (
            SHORT[p], fmt(s["speedup_wall_2ranks"], 2), fmt(s["cpu_2ranks_over_1"], 2),
            fmt(P["configs"]["2x1"].get("rank_cpu_max_over_mean"), 2), fmt(s.get("speedup_wall_2threads"), 2),
            fmt(s.get("cpu_2threads_over_1"), 2)))
    add("")
    add("With the machine's 2 cores already loaded by other jobs, the wall speedups here say little about a dedicated "
        "node; the CPU ratio (extra work of the parallel run, incl. MPI polling) and the rank balance do.")
    add("")
    conv = S["convert"]
    if conv.get("bytes"):
        add("`amos-prep convert` alone (the rank-0 copy of the inputs at the start of `run`): %s s wall, %s s CPU for "
            "%.0f MB (%s MB/s wall)." % (fmt(conv["wall"], 2), fmt(conv["cpu"], 2), conv["bytes"] / 1e6,
                                          fmt(conv["bytes"] / 1e6 / conv["wall"], 0)))
        add("")
    add("## Serial parts for the 500-case model dataset (bench_io_floor serial)")
    add("")
    add("Cells are wall / CPU seconds (rank 0). The 2-rank runs share the machine's 2 busy cores, so their collective "
        "HDF5 times include waiting for the scheduler.")
    add("")
    add("| planner | ranks | gathered bytes MB | serialize + deserialize | merge_fingerprint | make_plan | pickles | HDF5 create | HDF5 finish metadata | HDF5 close |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for p, P in S["planners"].items():
        for n, s in sorted(P.get("serial", {}).items()):
            m = s["median"]
            g = lambda k: "%s / %s" % (fmt(m[k]["wall_seconds"], 2), fmt(m[k]["cpu_seconds"], 2)) if k in m else "n/a"
            add("| %s | %s | %.0f%s | %s | %s | %s | %s | %s | %s | %s |" % (
                SHORT[p], n, s["gather_bytes"] / 1e6, " (samples ×%g)" % s.get("sample_scale", 1) if s.get("sample_scale", 1) != 1 else "",
                g("serialize_summaries"), g("merge_fingerprint"), g("make_plan"), g("pickles"), g("h5_create_datasets"),
                g("h5_finish_metadata"), g("h5_close")))
    add("")
    if model_text:
        add(model_text)
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("raw")
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--no-model", action="store_true")
    a = ap.parse_args()
    S = summarise(*build(a.raw))
    date = S["session"]["stamp"][:8]
    date = "%s-%s-%s" % (date[:4], date[4:6], date[6:8])
    if S["session"].get("quick"):
        date += "-quick"
    os.makedirs(a.results, exist_ok=True)
    json_path = os.path.join(a.results, "report-%s.json" % date)
    with open(json_path, "w") as f:
        json.dump(S, f, separators=(",", ":"))
    with open(os.path.join(a.raw, "summary.json"), "w") as f:
        json.dump(S, f, indent=1)
    model_text = ""
    if not a.no_model:
        import scaling_model
        model_text = scaling_model.report_section(S)
    text = render(S, model_text)
    with open(os.path.join(a.results, "report-%s.md" % date), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
