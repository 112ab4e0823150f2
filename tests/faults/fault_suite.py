#!/usr/bin/python3
"""Fault-injection suite for amos-prep's dataset integrity checks ("never lose work").

  fault_suite.py list                   the fault names (one per line)
  fault_suite.py generate WORK          a valid tiny AMOS22 dataset WORK/base and one copy per fault, WORK/v/<name>,
                                        each with exactly one fault injected
  fault_suite.py check BIN WORK NAME    `BIN verify --amos-dir WORK/v/NAME`: exit code, and a report line naming the
                                        case, the file and the reason; for faults marked `run=...` also
                                        `BIN run --amos-dir ... --out ...`: exit code, an error line naming case, file
                                        and reason, and nothing half-written left behind

Exit status: 0 pass, 1 fail, 77 skip (numpy/nibabel missing, or a fault that cannot be staged here, e.g. chmod 000
as root). Each fault is declared with @fault("name", ...); tests/faults/tests.cmake reads those lines to register
one ctest per fault.
"""
import gzip
import json
import os
import re
import shutil
import struct
import subprocess
import sys

SKIP = 77

try:
    import numpy as np
    import nibabel as nib
except ImportError as e:  # pragma: no cover
    print(f"SKIP: this Python lacks numpy/nibabel ({e}); use /usr/bin/python3 on Debian", file=sys.stderr)
    sys.exit(SKIP)

TRAIN = ["amos_0001", "amos_0002", "amos_0003"]
TEST = ["amos_0004"]
SHAPE = (32, 28, 12)  # nibabel order (x, y, z)
SPACING = (0.8, 0.8, 2.5)
AMOS_LABELS = ["background", "spleen", "right kidney", "left kidney", "gall bladder", "esophagus", "liver", "stomach",
               "arota", "postcava", "pancreas", "right adrenal gland", "left adrenal gland", "duodenum", "bladder",
               "prostate/uterus"]

# NIfTI-1 header offsets
OFF_DIM, OFF_PIXDIM, OFF_SCL_SLOPE, OFF_SCL_INTER, OFF_SROW_X = 40, 76, 112, 116, 280

# ---- the valid base dataset ------------------------------------------------------------------------------------------


def affine(spacing=SPACING, signs=(-1, -1, 1), offset=(20.0, 15.0, -30.0)):
    a = np.diag([signs[0] * spacing[0], signs[1] * spacing[1], signs[2] * spacing[2], 1.0])
    a[:3, 3] = offset
    return a


def save(path, data, aff=None):
    img = nib.Nifti1Image(data, affine() if aff is None else aff)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    nib.save(img, path)


def phantom(seed, shape=SHAPE):
    rng = np.random.RandomState(seed)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    cx, cy = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    body = ((x - cx) / (shape[0] * 0.45)) ** 2 + ((y - cy) / (shape[1] * 0.45)) ** 2 < 1
    ct = np.where(body, 40.0, -1000.0) + rng.normal(0, 8, shape)
    seg = np.zeros(shape, np.uint8)
    organs = [(1, (cx - 6, cy, 3.5), 3.5, 60), (6, (cx + 5, cy - 2, 5.5), 4.5, 110), (3, (cx, cy + 6, 7), 2.5, 30)]
    for label, (ox, oy, oz), r, hu in organs:
        m = ((x - ox) ** 2 + (y - oy) ** 2 + ((z - oz) * 2) ** 2) < r * r
        seg[m & body] = label
        ct[m & body] = hu + rng.normal(0, 5, int((m & body).sum()))
    return np.round(ct).astype(np.int16), seg


def dataset_json(train=TRAIN, test=TEST, labels=None, num_training=None):
    return {
        "name": "AMOS", "description": "amos-prep fault suite base dataset", "tensorImageSize": "3D",
        "reference": "", "licence": "", "release": "",
        "modality": {"0": "CT"},
        "labels": {str(i): n for i, n in enumerate(AMOS_LABELS)} if labels is None else labels,
        "numTraining": len(train) if num_training is None else num_training, "numValidation": 0, "numTest": len(test),
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in train],
        "validation": [],
        "test": [f"./imagesTs/{c}.nii.gz" for c in test],
    }


def write_json(d, obj):
    with open(os.path.join(d, "task1_dataset.json"), "w") as f:
        json.dump(obj, f, indent=4)


def make_base(d):
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        os.makedirs(os.path.join(d, sub))
    for i, c in enumerate(TRAIN + TEST):
        ct, seg = phantom(100 + i)
        if c in TRAIN:
            save(os.path.join(d, "imagesTr", c + ".nii.gz"), ct)
            save(os.path.join(d, "labelsTr", c + ".nii.gz"), seg)
        else:
            save(os.path.join(d, "imagesTs", c + ".nii.gz"), ct)
    write_json(d, dataset_json())


# ---- byte-level helpers -----------------------------------------------------------------------------------------------


def read_bytes(p):
    with open(p, "rb") as f:
        return bytearray(f.read())


def write_bytes(p, b):
    with open(p, "wb") as f:
        f.write(bytes(b))


def patch_header(p, edits):
    """edits: list of (offset, struct format, value) applied to the uncompressed NIfTI, then re-gzipped."""
    raw = bytearray(gzip.decompress(read_bytes(p)))
    for off, fmt, val in edits:
        struct.pack_into("<" + fmt, raw, off, val)
    write_bytes(p, gzip.compress(bytes(raw), 6))


def load(p):
    img = nib.load(p)
    return np.asarray(img.dataobj), img.affine


# ---- the faults -----------------------------------------------------------------------------------------------------
# expect: exit code of `verify` (3 errors, 0 warnings only). severity/case/file/reason: the report line that must be
# there (file relative to the dataset folder; reason a regex). run: None, "plain" (`run` must fail by itself) or
# "verify" (`run --verify-dataset-integrity` must refuse before any work). run_reason: regex for the run's error line
# (default: reason).

FAULTS = {}


def fault(name, *, reason, expect=3, severity="error", case=None, file=None, run=None, run_reason=None):
    def register(fn):
        FAULTS[name] = dict(fn=fn, reason=reason, expect=expect, severity=severity, case=case, file=file, run=run,
                            run_reason=run_reason or reason)
        return fn
    return register


def P(d, rel):
    return os.path.join(d, rel)


@fault("clean", reason=r"^$", expect=0, severity=None)
def _clean(d):
    pass


@fault("truncated_gz", case="amos_0002", file="imagesTr/amos_0002.nii.gz", reason=r"truncated gzip data", run="plain",
       run_reason=r"truncat|gzip|ITK cannot read")
def _truncated_gz(d):
    b = read_bytes(P(d, "imagesTr/amos_0002.nii.gz"))
    write_bytes(P(d, "imagesTr/amos_0002.nii.gz"), b[: len(b) // 2])


@fault("bad_crc", case="amos_0001", file="labelsTr/amos_0001.nii.gz", reason=r"CRC32 mismatch", run="verify")
def _bad_crc(d):
    b = read_bytes(P(d, "labelsTr/amos_0001.nii.gz"))
    b[-7] ^= 0x10  # inside the CRC32 trailer: the data decodes fine, only the checksum tells
    write_bytes(P(d, "labelsTr/amos_0001.nii.gz"), b)


@fault("corrupt_deflate", case="amos_0003", file="imagesTr/amos_0003.nii.gz", reason=r"corrupt gzip data")
def _corrupt_deflate(d):
    b = read_bytes(P(d, "imagesTr/amos_0003.nii.gz"))
    for i in range(len(b) // 2, len(b) // 2 + 8):  # a few flipped bytes in the middle of the deflate stream
        b[i] ^= 0xA5
    write_bytes(P(d, "imagesTr/amos_0003.nii.gz"), b)


@fault("truncated_payload", case="amos_0002", file="labelsTr/amos_0002.nii.gz", reason=r"truncated", run="plain",
       run_reason=r"truncat|ITK cannot read|ends early|short")
def _truncated_payload(d):
    p = P(d, "labelsTr/amos_0002.nii.gz")
    raw = gzip.decompress(read_bytes(p))
    write_bytes(p, gzip.compress(raw[: len(raw) - 500], 6))  # valid gzip, the voxel data is cut


@fault("garbage_gz", case="amos_0001", file="imagesTr/amos_0001.nii.gz", reason=r"not gzip data", run="plain",
       run_reason=r"NIfTI|ITK cannot read|not gzip|sizeof_hdr|corrupt")
def _garbage_gz(d):
    write_bytes(P(d, "imagesTr/amos_0001.nii.gz"), np.random.RandomState(5).bytes(3000))


@fault("zero_byte", case="amos_0003", file="labelsTr/amos_0003.nii.gz", reason=r"empty file \(0 bytes\)", run="plain",
       run_reason=r"empty|0 bytes|too short|ITK cannot read|NIfTI")
def _zero_byte(d):
    write_bytes(P(d, "labelsTr/amos_0003.nii.gz"), b"")


@fault("nan_voxel", case="amos_0002", file="imagesTr/amos_0002.nii.gz", reason=r"1 NaN voxel", run="verify")
def _nan_voxel(d):
    p = P(d, "imagesTr/amos_0002.nii.gz")
    data, aff = load(p)
    data = data.astype(np.float32)
    data[10, 11, 5] = np.nan
    save(p, data, aff)


@fault("inf_voxel", case="amos_0001", file="imagesTr/amos_0001.nii.gz", reason=r"2 infinite voxel")
def _inf_voxel(d):
    p = P(d, "imagesTr/amos_0001.nii.gz")
    data, aff = load(p)
    data = data.astype(np.float32)
    data[3, 4, 5] = np.inf
    data[4, 4, 5] = -np.inf
    save(p, data, aff)


@fault("label_shape_mismatch", case="amos_0003", file="labelsTr/amos_0003.nii.gz",
       reason=r"shape \(z,y,x\) 12x28x30 differs from 12x28x32", run="verify")
def _label_shape(d):
    p = P(d, "labelsTr/amos_0003.nii.gz")
    data, aff = load(p)
    save(p, np.ascontiguousarray(data[:30]), aff)


@fault("spacing_mismatch", case="amos_0001", file="labelsTr/amos_0001.nii.gz", reason=r"spacing \(z,y,x\) \(3, ")
def _spacing(d):
    p = P(d, "labelsTr/amos_0001.nii.gz")
    data, _ = load(p)
    save(p, data, affine(spacing=(0.8, 0.8, 3.0)))


@fault("origin_mismatch", case="amos_0002", file="labelsTr/amos_0002.nii.gz", reason=r"origin .* not aligned")
def _origin(d):
    p = P(d, "labelsTr/amos_0002.nii.gz")
    data, _ = load(p)
    save(p, data, affine(offset=(20.0, 15.0, -25.0)))


@fault("direction_mismatch", case="amos_0003", file="labelsTr/amos_0003.nii.gz", reason=r"direction differs")
def _direction(d):
    p = P(d, "labelsTr/amos_0003.nii.gz")
    data, _ = load(p)
    save(p, data, affine(signs=(1, -1, 1)))


@fault("unexpected_label", case="amos_0002", file="labelsTr/amos_0002.nii.gz",
       reason=r"unexpected label values 42 \(4 voxels\)", run="verify")
def _unexpected_label(d):
    p = P(d, "labelsTr/amos_0002.nii.gz")
    data, aff = load(p)
    data = data.copy()
    data[0, 0, 0:4] = 42
    save(p, data, aff)


@fault("float_label", case="amos_0001", file="labelsTr/amos_0001.nii.gz", reason=r"non-integer label values: 2\.5")
def _float_label(d):
    p = P(d, "labelsTr/amos_0001.nii.gz")
    data, aff = load(p)
    data = data.astype(np.float32)
    data[1, 1, 1] = 2.5
    save(p, data, aff)


@fault("empty_label", expect=0, severity="warning", case="amos_0003", file="labelsTr/amos_0003.nii.gz",
       reason=r"empty label map")
def _empty_label(d):
    p = P(d, "labelsTr/amos_0003.nii.gz")
    data, aff = load(p)
    save(p, np.zeros_like(data), aff)


@fault("one_slice", case="amos_0002", file="imagesTr/amos_0002.nii.gz", reason=r"single-slice volume \(32x28x1\)")
def _one_slice(d):
    for sub in ("imagesTr", "labelsTr"):
        p = P(d, f"{sub}/amos_0002.nii.gz")
        data, aff = load(p)
        save(p, np.ascontiguousarray(data[:, :, 5:6]), aff)


@fault("constant_image", expect=0, severity="warning", case="amos_0001", file="imagesTr/amos_0001.nii.gz",
       reason=r"constant image: every finite voxel is -1000")
def _constant(d):
    p = P(d, "imagesTr/amos_0001.nii.gz")
    data, aff = load(p)
    save(p, np.full_like(data, -1000), aff)


@fault("zero_pixdim", case="amos_0003", file="imagesTr/amos_0003.nii.gz", reason=r"pixdim\[1\] = 0")
def _zero_pixdim(d):
    patch_header(P(d, "imagesTr/amos_0003.nii.gz"), [(OFF_PIXDIM + 4, "f", 0.0)])


@fault("scl_slope_2", expect=0, severity="warning", case="amos_0002", file="imagesTr/amos_0002.nii.gz",
       reason=r"scl_slope = 2 ")
def _scl_slope(d):
    patch_header(P(d, "imagesTr/amos_0002.nii.gz"), [(OFF_SCL_SLOPE, "f", 2.0), (OFF_SCL_INTER, "f", 0.0)])


@fault("qform_sform_disagree", expect=0, severity="warning", case="amos_0001", file="imagesTr/amos_0001.nii.gz",
       reason=r"qform \(code 1\) and sform \(code 1\) disagree")
def _qform_sform(d):
    for sub in ("imagesTr", "labelsTr"):  # both files alike: the grids stay aligned whichever form a reader takes
        patch_header(P(d, f"{sub}/amos_0001.nii.gz"), [(OFF_SROW_X + 12, "f", 27.0)])


@fault("four_d_image", case="amos_0001", file="imagesTr/amos_0001.nii.gz", reason=r"4-D image \(32x28x12x2\)",
       run="plain", run_reason=r"4-D|3-D")
def _four_d(d):
    p = P(d, "imagesTr/amos_0001.nii.gz")
    data, aff = load(p)
    save(p, np.stack([data, data], axis=-1), aff)


@fault("missing_image", case="amos_0003", file="imagesTr/amos_0003.nii.gz", reason=r"image file is missing",
       run="plain", run_reason=r"missing|No such file|does not exist|not found")
def _missing_image(d):
    os.remove(P(d, "imagesTr/amos_0003.nii.gz"))


@fault("missing_label", case="amos_0001", file="labelsTr/amos_0001.nii.gz", reason=r"label file is missing",
       run="plain", run_reason=r"missing|No such file|does not exist|not found")
def _missing_label(d):
    os.remove(P(d, "labelsTr/amos_0001.nii.gz"))


@fault("missing_test_image", case="amos_0004", file="imagesTs/amos_0004.nii.gz", reason=r"image file is missing")
def _missing_test(d):
    os.remove(P(d, "imagesTs/amos_0004.nii.gz"))


@fault("duplicate_id", case="amos_0002", file="task1_dataset.json", reason=r"duplicate case id in \"training\"")
def _duplicate(d):
    write_json(d, dataset_json(train=TRAIN + ["amos_0002"], num_training=3))


@fault("unreadable_file", case="amos_0002", file="labelsTr/amos_0002.nii.gz", reason=r"cannot read: Permission denied")
def _unreadable(d):
    os.chmod(P(d, "labelsTr/amos_0002.nii.gz"), 0)


@fault("directory_in_place", case="amos_0001", file="labelsTr/amos_0001.nii.gz", reason=r"is a directory",
       run="plain", run_reason=r"directory|cannot read|Is a directory|not a regular file|cannot open")
def _directory(d):
    os.remove(P(d, "labelsTr/amos_0001.nii.gz"))
    os.mkdir(P(d, "labelsTr/amos_0001.nii.gz"))


@fault("invalid_json", file="task1_dataset.json", reason=r"invalid JSON", run="plain",
       run_reason=r"JSON|json|parse")
def _invalid_json(d):
    with open(P(d, "task1_dataset.json")) as f:
        text = f.read()
    with open(P(d, "task1_dataset.json"), "w") as f:
        f.write(text[: len(text) // 2])


@fault("json_no_training", file="task1_dataset.json", reason=r"no \"training\" key", run="plain",
       run_reason=r"training")
def _no_training(d):
    obj = dataset_json()
    del obj["training"]
    write_json(d, obj)


@fault("json_no_labels", file="task1_dataset.json", reason=r"no \"labels\" key")
def _no_labels(d):
    obj = dataset_json()
    del obj["labels"]
    write_json(d, obj)


@fault("nonconsecutive_labels", file="task1_dataset.json", reason=r"must be consecutive .*missing: 7")
def _nonconsecutive(d):
    labels = {str(i): n for i, n in enumerate(AMOS_LABELS) if i != 7}
    write_json(d, dataset_json(labels=labels))


@fault("stray_file", expect=0, severity="warning", file="imagesTr/amos_0099.nii.gz",
       reason=r"not listed in task1_dataset.json")
def _stray(d):
    shutil.copy(P(d, "imagesTr/amos_0001.nii.gz"), P(d, "imagesTr/amos_0099.nii.gz"))


# ---- commands -------------------------------------------------------------------------------------------------------


def cmd_generate(work):
    if os.path.exists(work):
        for root, dirs, _ in os.walk(work):  # undo chmod 000 of a previous run
            for n in dirs:
                os.chmod(os.path.join(root, n), 0o755)
        for root, _, files in os.walk(work):
            for n in files:
                os.chmod(os.path.join(root, n), 0o644)
        shutil.rmtree(work)
    base = os.path.join(work, "base")
    make_base(base)
    for name, spec in FAULTS.items():
        d = os.path.join(work, "v", name)
        shutil.copytree(base, d)
        spec["fn"](d)
    print(f"generated {len(FAULTS)} variants under {work}/v")
    return 0


def error_lines(text):
    return [ln for ln in text.splitlines() if ln.startswith("amos-prep: error")]


def find_line(text, severity, case, file_re, reason_re):
    """A line 'amos-prep: <severity>[ (rank N)]: [case <id>: ]<...file...>: <...reason...>'."""
    for ln in text.splitlines():
        m = re.match(r"amos-prep: " + severity + r"(?: \(rank \d+\))?: (.*)$", ln)
        if not m:
            continue
        rest = m.group(1)
        if case is not None:
            if not rest.startswith(f"case {case}: "):
                continue
            rest = rest[len(f"case {case}: "):]
        if file_re is not None and not re.search(file_re, rest):
            continue
        if re.search(reason_re, rest, re.IGNORECASE):
            return ln
    return None


def check_outputs(out, nothing_preprocessed):
    """Nothing half-written: no temporary files; every npz/pkl/h5 present loads completely."""
    problems = []
    import pickle
    for root, _, files in os.walk(out):
        for n in files:
            p = os.path.join(root, n)
            if ".tmp." in n or n.endswith(".tmp") or n.endswith(".part"):
                problems.append(f"temporary file left behind: {p}")
            elif n.endswith(".npz"):
                if nothing_preprocessed and "nnUNet_preprocessed" in p:
                    problems.append(f"preprocessed output written although the dataset failed verification: {p}")
                try:
                    with np.load(p) as z:
                        for k in z.files:
                            z[k].sum()
                except Exception as e:
                    problems.append(f"npz does not load: {p}: {e}")
            elif n.endswith(".pkl"):
                try:
                    with open(p, "rb") as f:
                        pickle.load(f)
                except Exception as e:
                    problems.append(f"pkl does not load: {p}: {e}")
            elif n.endswith(".h5"):
                try:
                    import h5py
                except ImportError:
                    continue
                try:
                    with h5py.File(p, "r") as h:
                        h.visititems(lambda _n, o: o[()] if isinstance(o, h5py.Dataset) else None)
                except Exception as e:
                    problems.append(f"HDF5 file does not open: {p}: {e}")
    return problems


def cmd_check(binary, work, name):
    if name not in FAULTS:
        print(f"FAIL: unknown fault {name!r}", file=sys.stderr)
        return 1
    spec = FAULTS[name]
    d = os.path.abspath(os.path.join(work, "v", name))
    if not os.path.isdir(d):
        print(f"SKIP: {d} was not generated (the faults.generate test did not run or was skipped)", file=sys.stderr)
        return SKIP
    if name == "unreadable_file":
        try:
            with open(os.path.join(d, spec["file"]), "rb"):
                pass
            print("SKIP: chmod 000 does not stop this user from reading (root?); the directory_in_place fault "
                  "covers unreadable files here", file=sys.stderr)
            return SKIP
        except PermissionError:
            pass
    failures = []

    # ---- verify
    cmd = [binary, "verify", "--amos-dir", d]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    report = p.stdout
    print(f"$ {' '.join(cmd)}\n{report}(exit {p.returncode})")
    if p.returncode != spec["expect"]:
        failures.append(f"verify exit code {p.returncode}, expected {spec['expect']}")
    if not re.search(r"^amos-prep: verify: \d+ errors?, \d+ warnings?", report, re.M):
        failures.append("verify printed no summary line")
    if spec["severity"] is None:  # the clean dataset
        if not re.search(r"^amos-prep: verify: 0 errors, 0 warnings", report, re.M):
            failures.append("the clean dataset is not reported clean")
    else:
        file_re = re.escape(os.path.join(d, spec["file"])) if spec["file"] else None
        if not find_line(report, spec["severity"], spec["case"], file_re, spec["reason"]):
            failures.append(f"no '{spec['severity']}' line naming case {spec['case']}, file {spec['file']} and "
                            f"reason /{spec['reason']}/")
        if spec["expect"] == 0 and error_lines(report):
            failures.append("warning-only fault produced error lines")

    # ---- run
    if spec["run"]:
        out = os.path.join(work, "out", name)
        shutil.rmtree(out, ignore_errors=True)
        cmd = [binary, "run", "--amos-dir", d, "--out", out, "-pl3d", "ExperimentPlanner3D_v21", "-pl2d", "None",
               "--threads", "1"]
        if spec["run"] == "verify":
            cmd.append("--verify-dataset-integrity")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, env=env)
            log, rc = p.stdout, p.returncode
        except subprocess.TimeoutExpired as e:
            log, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), None
        tail = "\n".join(log.splitlines()[-40:])
        print(f"$ {' '.join(cmd)}\n{tail}\n(exit {rc})")
        if rc != 3:
            failures.append(f"run exit code {rc}, expected 3 (bad input, docs/exit-codes.md)")
        if spec["file"]:
            base = os.path.basename(spec["file"])
            stem = base[: -len(".nii.gz")] if base.endswith(".nii.gz") else None
            # the run may name the AMOS file or its raw-task copy (<id>_0000.nii.gz, dataset.json)
            file_re = (re.escape(stem) + r"(_0000)?\.nii\.gz") if stem else r"(task1_)?dataset\.json"
        else:
            file_re = None
        if not find_line(log, "error", spec["case"], file_re, spec["run_reason"]):
            failures.append(f"run printed no error line naming case {spec['case']}, file {spec['file']} and reason "
                            f"/{spec['run_reason']}/")
        if os.path.isdir(out):
            failures += check_outputs(out, nothing_preprocessed=spec["run"] == "verify")

    for f in failures:
        print(f"FAIL [{name}]: {f}", file=sys.stderr)
    if not failures:
        print(f"PASS [{name}]")
    return 1 if failures else 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "list":
        print("\n".join(FAULTS))
        return 0
    if len(argv) == 3 and argv[1] == "generate":
        return cmd_generate(argv[2])
    if len(argv) == 5 and argv[1] == "check":
        return cmd_check(argv[2], argv[3], argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
