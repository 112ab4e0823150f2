#!/usr/bin/python3
"""Checks, with the real Python + numpy, files written by amos-prep's npz / pickle / JSON-mirror writers.

Run by the unit tests (tests/unit/test_{npz,pickle}_writer.cpp, test_json_mirror.cpp). Exit codes: 0 all checks
passed, 1 a check failed (details on stderr), 77 numpy is missing (the test skips).

  check_formats.py pickle-types FILE.pkl       FILE must equal expected_types() exactly (types, order, values)
  check_formats.py fixture-export DIR PKL...   writes DIR/manifest.json + DIR/<i>.typed.json (typed trees of PKLs)
  check_formats.py fixture-compare DIR         DIR/<i>.ours.pkl must equal the fixture; DIR/<i>.mirror.json must
                                               be the JSON mirror of it
  check_formats.py json-types FILE.json        FILE must be the JSON mirror of expected_types()
  check_formats.py npz DIR ZLIB_VERSION        every .npz in DIR (names encode what to expect, see check_npz)
"""
import collections
import io
import json
import math
import os
import pickle
import pickletools
import shutil
import struct
import subprocess
import sys
import zipfile

try:
    import numpy as np
except ImportError:  # pragma: no cover
    print("numpy not available", file=sys.stderr)
    sys.exit(77)

FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print("FAIL: " + msg, file=sys.stderr)


# ---- strict structural equality ----------------------------------------------------------------------------------

def float_bits(x):
    return struct.pack("<d", x)


def same(a, b, path="$"):
    """True when a and b have identical types (OrderedDict vs dict, tuple vs list, np.int64 vs int, ...), order
    and values (floats compared bit for bit, so NaN == NaN and 0.0 != -0.0)."""
    if type(a) is not type(b):
        fail(f"{path}: type {type(a).__name__} != {type(b).__name__}")
        return False
    if isinstance(a, np.ndarray):
        if a.dtype.str != b.dtype.str or a.shape != b.shape or a.tobytes() != b.tobytes():
            fail(f"{path}: ndarray {a.dtype.str}{a.shape} != {b.dtype.str}{b.shape} or bytes differ")
            return False
        return True
    if isinstance(a, np.generic):
        if a.dtype.str != b.dtype.str or a.tobytes() != b.tobytes():
            fail(f"{path}: numpy scalar {a!r} ({a.dtype.str}) != {b!r} ({b.dtype.str})")
            return False
        return True
    if isinstance(a, float):
        if float_bits(a) != float_bits(b):
            fail(f"{path}: {a!r} != {b!r}")
            return False
        return True
    if isinstance(a, dict):
        ka, kb = list(a.keys()), list(b.keys())
        if len(ka) != len(kb):
            fail(f"{path}: {len(ka)} keys != {len(kb)} keys")
            return False
        ok = True
        for x, y in zip(ka, kb):
            if not same(x, y, f"{path}.key({x!r})"):
                return False
            ok = same(a[x], b[y], f"{path}[{x!r}]") and ok
        return ok
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            fail(f"{path}: length {len(a)} != {len(b)}")
            return False
        ok = True
        for i, (x, y) in enumerate(zip(a, b)):
            ok = same(x, y, f"{path}[{i}]") and ok
        return ok
    if a != b:
        fail(f"{path}: {a!r} != {b!r}")
        return False
    return True


def check_pickle_stream(data, where):
    """pickletools must walk the stream (well-formed opcodes and stack) and it must be protocol 4."""
    try:
        pickletools.dis(data, out=io.StringIO())
    except Exception as e:  # noqa: BLE001
        fail(f"{where}: pickletools cannot disassemble: {e}")
    if data[:2] != b"\x80\x04":
        fail(f"{where}: not a protocol-4 pickle")


# ---- the value built by test_pickle_writer.cpp / test_json_mirror.cpp --------------------------------------------

def expected_types():
    OD = collections.OrderedDict
    return OD([
        ("none", None), ("true", True), ("false", False),
        ("i0", 0), ("i255", 255), ("i256", 256), ("i65535", 65535), ("i65536", 65536), ("neg1", -1),
        ("i32min", -2**31), ("i32max", 2**31 - 1), ("i2pow31", 2**31), ("u32max", 2**32 - 1), ("i2pow40", 2**40),
        ("neg_i2pow31m1", -2**31 - 1), ("neg_i2pow39", -2**39), ("i64min", -2**63), ("i64max", 2**63 - 1),
        ("f_tenth", 0.1), ("f_negzero", -0.0), ("f_nan", float("nan")), ("f_inf", float("inf")),
        ("f_denorm", 5e-324), ("f_big", 1e300),
        ("s_unicode", "h\u00e9llo \u2713 \U0001F600"), ("s_long", "x" * 300), ("s_empty", ""),
        ("t0", ()), ("t1", (1,)), ("t2", (1, 2.5)), ("t3", (1, "b", None)), ("t5", (1, 2, 3, 4, 5)),
        ("l0", []), ("l1", [[0, 33]]), ("l_mixed", [1, "a", None, [2], (3,)]), ("l_big", list(range(2500))),
        ("d_int_keys", {3: "c", 1: "a", 2: "b"}), ("od_int", OD([(0, False)])), ("od_empty", OD()), ("d_empty", {}),
        ("d_tuple_key", {(1, 2): "tk"}),
        ("np_i8", np.int64(-7)), ("np_i8_big", np.int64(2**40 + 3)), ("np_f4", np.float32(0.1)),
        ("np_f8", np.float64(2.5)), ("np_b", np.bool_(True)), ("np_b_false", np.bool_(False)),
        ("nd_f8", np.array([5.0, 0.8369140625, 0.837890625])),
        ("nd_i8_2d", np.arange(12, dtype=np.int64).reshape(4, 3) - 5),
        ("nd_f4", np.array([-1.0, 0.0, 0.1, 15.0], dtype=np.float32)),
        ("nd_empty", np.zeros((0, 3), dtype=np.int64)),
        ("nd_u1", np.array([0, 1, 255], dtype=np.uint8)), ("nd_b1", np.array([True, False])),
        ("nd_i2", np.array([-1024, 3071], dtype=np.int16)), ("nd_i4", np.array([-5, 2**31 - 1], dtype=np.int32)),
        ("nd_0d", np.array(2.5)),
        ("nd_large", np.arange(20000, dtype=np.float64) * 0.5),
        ("class_locations", {1: np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64), 2: [], 15: np.zeros((0, 3), np.int64)}),
    ])


# ---- JSON mirror reference ---------------------------------------------------------------------------------------

def json_key(k):
    if isinstance(k, str):
        return k
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, (int, np.integer)):
        return str(int(k))
    if isinstance(k, float):
        if math.isnan(k):
            return "NaN"
        if math.isinf(k):
            return "Infinity" if k > 0 else "-Infinity"
        return float.__repr__(k)
    return repr(k)


def mirror_matches(ours, obj, path="$"):
    """ours (from json.load of our mirror) must be the documented JSON view of the Python object obj."""
    def bad(msg):
        fail(f"{path}: {msg}")
        return False

    if isinstance(obj, dict):
        if not isinstance(ours, dict):
            return bad(f"expected object, got {type(ours).__name__}")
        if list(ours.keys()) != [json_key(k) for k in obj.keys()]:
            return bad(f"keys {list(ours.keys())[:8]} != {[json_key(k) for k in obj.keys()][:8]}")
        ok = True
        for k, v in obj.items():
            ok = mirror_matches(ours[json_key(k)], v, f"{path}[{k!r}]") and ok
        return ok
    if isinstance(obj, (list, tuple)):
        if not isinstance(ours, list) or len(ours) != len(obj):
            return bad("expected a list of the same length")
        ok = True
        for i, (x, y) in enumerate(zip(ours, obj)):
            ok = mirror_matches(x, y, f"{path}[{i}]") and ok
        return ok
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0:
            return mirror_matches(ours, obj[()], path)
        if not isinstance(ours, list) or len(ours) != obj.shape[0]:
            return bad("ndarray: expected nested list")
        if obj.dtype.kind in "iub" and obj.size > 0:  # fast path for the big class_locations arrays
            arr = np.array(ours)
            kind_ok = arr.dtype.kind == "b" if obj.dtype.kind == "b" else arr.dtype.kind == "i"
            if not kind_ok or arr.shape != obj.shape or not np.array_equal(arr, obj):
                return bad(f"ndarray {obj.dtype.str}{obj.shape} differs (got {arr.dtype}{arr.shape})")
            return True
        ok = True
        for i in range(obj.shape[0]):
            ok = mirror_matches(ours[i], obj[i], f"{path}[{i}]") and ok
        return ok
    if isinstance(obj, (np.bool_, bool)):
        return (type(ours) is bool and ours == bool(obj)) or bad(f"{ours!r} != {obj!r}")
    if isinstance(obj, (np.integer, int)):
        return (type(ours) is int and ours == int(obj)) or bad(f"{ours!r} != {obj!r}")
    if isinstance(obj, np.float32):
        if not np.isfinite(obj):
            return ours is None or bad(f"non-finite float32 must be null, got {ours!r}")
        # shortest decimal form of the float32, read back as a double
        return (type(ours) is float and ours == float(str(obj)) and np.float32(ours) == obj) or bad(f"{ours!r} is not the shortest form of float32 {obj!r}")
    if isinstance(obj, (np.floating, float)):
        if not math.isfinite(obj):
            return ours is None or bad(f"non-finite float must be null, got {ours!r}")
        return (type(ours) is float and float_bits(ours) == float_bits(float(obj))) or bad(f"{ours!r} != {obj!r}")
    if obj is None or isinstance(obj, str):
        return (type(ours) is type(obj) and ours == obj) or bad(f"{ours!r} != {obj!r}")
    return bad(f"unexpected Python type {type(obj).__name__}")


# ---- typed trees for the fixture round trip -------------------------------------------------------------------

def typed(o):
    if o is None:
        return {"t": "none"}
    if isinstance(o, np.ndarray):
        if not o.flags.c_contiguous:
            raise ValueError("non C-contiguous array")
        return {"t": "nd", "dtype": o.dtype.str, "shape": list(o.shape), "v": o.tobytes().hex()}
    if isinstance(o, np.generic):
        return {"t": "sc", "dtype": o.dtype.str, "v": o.tobytes().hex()}
    if type(o) is bool:
        return {"t": "bool", "v": o}
    if type(o) is int:
        return {"t": "int", "v": str(o)}
    if type(o) is float:
        return {"t": "float", "v": float_bits(o).hex()}
    if type(o) is str:
        return {"t": "str", "v": o}
    if type(o) is list:
        return {"t": "list", "v": [typed(x) for x in o]}
    if type(o) is tuple:
        return {"t": "tuple", "v": [typed(x) for x in o]}
    if type(o) is dict:
        return {"t": "dict", "v": [[typed(k), typed(v)] for k, v in o.items()]}
    if type(o) is collections.OrderedDict:
        return {"t": "odict", "v": [[typed(k), typed(v)] for k, v in o.items()]}
    raise ValueError(f"unsupported type {type(o).__name__}")


def cmd_fixture_export(out_dir, pkls):
    manifest = []
    for i, p in enumerate(pkls):
        with open(p, "rb") as f:
            obj = pickle.load(f)
        t = os.path.join(out_dir, f"{i}.typed.json")
        with open(t, "w") as f:
            json.dump(typed(obj), f)
        manifest.append({"fixture": p, "typed": t, "ours": os.path.join(out_dir, f"{i}.ours.pkl"),
                         "mirror": os.path.join(out_dir, f"{i}.mirror.json")})
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(len(manifest))


def cmd_fixture_compare(out_dir):
    with open(os.path.join(out_dir, "manifest.json")) as f:
        manifest = json.load(f)
    for m in manifest:
        with open(m["fixture"], "rb") as f:
            ref = pickle.load(f)
        with open(m["ours"], "rb") as f:
            data = f.read()
        check_pickle_stream(data, m["ours"])
        ours = pickle.loads(data)
        same(ours, ref, os.path.basename(m["fixture"]))
        with open(m["mirror"]) as f:
            mirror_matches(json.load(f), ref, os.path.basename(m["fixture"]) + " (json)")
    print(f"{len(manifest)} fixture pickles compared")


def cmd_pickle_types(path):
    with open(path, "rb") as f:
        data = f.read()
    check_pickle_stream(data, path)
    got = pickle.loads(data)
    same(got, expected_types())
    # the big array payload must sit outside a frame, the rest inside frames (what pickle.dumps does)
    ops = [op.name for op, _, _ in pickletools.genops(data)]
    if ops.count("FRAME") < 2:
        fail(f"expected several FRAMEs, got {ops.count('FRAME')}")
    if "LONG1" not in ops or "BINFLOAT" not in ops or "STACK_GLOBAL" not in ops:
        fail("expected LONG1, BINFLOAT and STACK_GLOBAL opcodes")


def cmd_json_types(path):
    with open(path) as f:
        text = f.read()
    if not text.endswith("}\n") or "\n  \"none\": null" not in text:
        fail("mirror is not indented by 2 with a trailing newline")
    mirror_matches(json.loads(text), expected_types())


# ---- npz -----------------------------------------------------------------------------------------------------

def expected_f32(shape):
    n = int(np.prod(shape))
    v = (np.arange(n, dtype=np.float64) * 0.37 - 11.0).astype(np.float32)
    if n >= 4:
        v[0], v[1], v[2], v[3] = -0.0, np.nan, np.inf, -1.0
    return v.reshape(shape)


def expected_multi():
    return {
        "data": expected_f32((2, 3, 4, 5)),
        "spacing": np.array([5.0, 0.8369140625, 0.837890625]),
        "locations": np.arange(12, dtype=np.int64).reshape(4, 3) - 5,
        "mask": np.array([[0, 1, 255]], dtype=np.uint8),
        "flags": np.array([True, False, True]),
        "hu": np.array([-1024, 3071, 0], dtype=np.int16),
        "scalar": np.array(0.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


def check_npz(path, zlib_version):
    """File names: <kind>_<mode>[_zip64|_stream].npz, kind in {f32, empty, multi}, mode in {none, fast, nnunet}."""
    name = os.path.basename(path)[:-4]
    parts = name.split("_")
    kind, mode, variant = parts[0], parts[1], (parts[2] if len(parts) > 2 else "")
    if kind == "f32":
        expected = {"data": expected_f32((2, 3, 4, 5))}
    elif kind == "empty":
        expected = {"data": np.zeros((2, 0, 5), dtype=np.float32)}
    elif kind == "multi":
        expected = expected_multi()
    else:
        fail(f"{name}: unknown kind")
        return
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()  # what `python3 -m zipfile -t` runs
        if bad is not None:
            fail(f"{name}: zipfile.testzip reports {bad}")
        infos = z.infolist()
        if [i.filename for i in infos] != [k + ".npy" for k in expected]:
            fail(f"{name}: members {[i.filename for i in infos]}")
        for i in infos:
            want_method = zipfile.ZIP_STORED if mode == "none" else zipfile.ZIP_DEFLATED
            if i.compress_type != want_method:
                fail(f"{name}/{i.filename}: compress_type {i.compress_type}")
            if i.date_time != (1980, 1, 1, 0, 0, 0) or i.external_attr != 0o600 << 16:
                fail(f"{name}/{i.filename}: date_time {i.date_time} external_attr {i.external_attr:o}")
            # local header: ZIP64 extra field always present, like numpy's force_zip64
            with open(path, "rb") as f:
                f.seek(i.header_offset)
                lh = f.read(30)
                nlen, xlen = struct.unpack("<HH", lh[26:30])
                f.seek(i.header_offset + 30 + nlen)
                local = f.read(xlen)
            if local[:4] != b"\x01\x00\x10\x00":
                fail(f"{name}/{i.filename}: local ZIP64 extra field missing ({local.hex()})")
            # fast always streams its compressed segments to the file (sizes in a data descriptor)
            stream = (variant == "stream" and mode != "none") or mode == "fast"
            if bool(i.flag_bits & 0x08) != stream:
                fail(f"{name}/{i.filename}: data descriptor flag {i.flag_bits:#x}, expected {stream}")
            if variant == "zip64":
                if not i.extra.startswith(b"\x01\x00\x18\x00") or i.create_version != 45:
                    fail(f"{name}/{i.filename}: central ZIP64 extra {i.extra.hex()} version {i.create_version}")
    if variant == "zip64":
        with open(path, "rb") as f:
            tail = f.read()[-22 - 20 - 56:]
        if tail[:4] != b"PK\x06\x06" or tail[56:60] != b"PK\x06\x07":
            fail(f"{name}: no ZIP64 end record + locator")
    with np.load(path) as d:
        if list(d.keys()) != list(expected.keys()):
            fail(f"{name}: keys {list(d.keys())}")
        for k, want in expected.items():
            got = d[k]
            if got.dtype != want.dtype or got.shape != want.shape or got.tobytes() != want.tobytes():
                fail(f"{name}/{k}: {got.dtype}{got.shape} != {want.dtype}{want.shape} or values differ")
            if not got.flags.c_contiguous:
                fail(f"{name}/{k}: not C order")
    if shutil.which("unzip"):
        r = subprocess.run(["unzip", "-tqq", path], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"{name}: unzip -t failed: {r.stdout} {r.stderr}")
    # Plain layout: byte-identical to numpy (np.savez for 'none', np.savez_compressed with the same zlib for 'nnunet').
    import zlib
    if variant == "" and (mode == "none" or (mode == "nnunet" and zlib.ZLIB_RUNTIME_VERSION == zlib_version)):
        buf = io.BytesIO()
        (np.savez if mode == "none" else np.savez_compressed)(buf, **expected)
        with open(path, "rb") as f:
            ours = f.read()
        if ours != buf.getvalue():
            fail(f"{name}: not byte-identical to numpy's {'savez' if mode == 'none' else 'savez_compressed'} "
                 f"({len(ours)} vs {len(buf.getvalue())} bytes)")


def cmd_npz(directory, zlib_version):
    files = sorted(f for f in os.listdir(directory) if f.endswith(".npz"))
    if not files:
        fail("no .npz files")
    for f in files:
        try:
            check_npz(os.path.join(directory, f), zlib_version)
        except Exception as e:  # noqa: BLE001
            fail(f"{f}: {type(e).__name__}: {e}")
    print(f"{len(files)} npz files checked")


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "pickle-types":
        cmd_pickle_types(argv[2])
    elif cmd == "json-types":
        cmd_json_types(argv[2])
    elif cmd == "fixture-export":
        cmd_fixture_export(argv[2], argv[3:])
    elif cmd == "fixture-compare":
        cmd_fixture_compare(argv[2])
    elif cmd == "npz":
        cmd_npz(argv[2], argv[3] if len(argv) > 3 else "")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
