#!/usr/bin/env python3
"""safetensors parity: pith's C reader and writer against the real `safetensors` library.

  1. files written by safetensors.torch (every dtype pith knows, bf16/f16 specials, a 0-d scalar,
     an empty tensor, metadata) read by pith (tests/st_dump) give the same names, dtypes, shapes,
     bytes, f32 values, metadata and file order;
  2. a file written by pith's writer (st_dump --convert) reads back through safetensors.safe_open
     bit for bit, with pith's f32->bf16/f16 conversions equal to torch's, and its header orders
     tensors as the library does;
  3. a sharded folder written by huggingface_hub.save_torch_state_dict (or by hand when it is
     missing) read as a set;
  4. handmade good and broken files: pith accepts exactly what the library accepts.

Usage: safetensors_parity.py PATH_TO_st_dump. Exits 1 on the first mismatch (printed), 77 with a
printed reason when a module or st_dump is missing.
"""
import json
import math
import os
import struct
import tempfile

import harness
from harness import fail

_, torch, safetensors, st = harness.require("numpy", "torch", "safetensors", "safetensors.torch")

ST_DTYPE = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
            torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
            torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
FLOATS = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def raw_bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def f32_bits(values):
    """The f32 bit patterns of a list of floats; every NaN counts as one pattern."""
    return [0x7FC00000 if math.isnan(v) else struct.unpack("<I", struct.pack("<f", v))[0]
            for v in values]


def run_dump(dump, *args):
    return harness.run([dump, *args], ok=False, timeout=None, text=True)


def dump_json(dump, path):
    r = run_dump(dump, path)
    if r.returncode != 0:
        fail(f"st_dump {path} failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def header_of(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))


def sample_tensors():
    g = torch.Generator().manual_seed(0)
    f32_specials = [1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-11, 1.0 + 3 * 2**-11, 65504.0,
                    65519.99, 65520.0, 2**-14, 2**-24, 2**-25, 3 * 2**-25, 1e-10, 3.4e38,
                    float("inf"), float("-inf"), float("nan"), -0.0, 0.0, 1 / 3]
    wide = torch.randn(4000, generator=g) * torch.pow(2.0, torch.randint(-30, 20, (4000,),
                                                                          generator=g).float())
    return {
        "model.embed_tokens.weight": torch.randn(5, 4, generator=g),
        "specials": torch.tensor(f32_specials, dtype=torch.float32),
        "wide": wide,
        "f64": torch.tensor([math.pi, -1e300, 5e-324], dtype=torch.float64),
        "f16": torch.tensor([1.0, -2.5, 65504, 6e-8, float("inf"), float("nan"), -0.0],
                            dtype=torch.float16),
        "bf16": torch.cat([torch.randn(6, generator=g),
                           torch.tensor([float("inf"), float("nan"), 3e38, 1e-40])]).to(torch.bfloat16),
        "bf16.2d": torch.randn(3, 2, generator=g).to(torch.bfloat16),
        "i64": torch.tensor([-2**63, 2**63 - 1, 0], dtype=torch.int64),
        "i32": torch.tensor([[-2**31, 7], [2**31 - 1, 0]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 3], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(42.5),
        "empty": torch.zeros(0, 3),
        "cube": torch.arange(24, dtype=torch.int32).reshape(2, 3, 4),
        "emb.\u00e9\u2603": torch.tensor([1.0, 2.0]),
    }


META = {"format": "pt", "note": 'quote " backslash \\ unicode \u00e9'}


def compare_dump(where, got, tensors, order=None):
    names = [t["name"] for t in got["tensors"]]
    if sorted(names) != sorted(tensors):
        fail(f"{where}: tensor names differ: pith {sorted(names)} vs {sorted(tensors)}")
    if order is not None and names != order:
        fail(f"{where}: file order differs: pith {names} vs data offsets {order}")
    for d in got["tensors"]:
        t = tensors[d["name"]]
        if d["dtype"] != ST_DTYPE[t.dtype] or d["shape"] != list(t.shape):
            fail(f"{where}: '{d['name']}': pith {d['dtype']} {d['shape']} vs "
                 f"{ST_DTYPE[t.dtype]} {list(t.shape)}")
        if bytes.fromhex(d["hex"]) != raw_bytes(t):
            fail(f"{where}: '{d['name']}': bytes differ")
        if t.dtype in FLOATS:
            want = f32_bits(t.float().reshape(-1).tolist())
            have = f32_bits(d["f32"])
            for i, (a, b) in enumerate(zip(have, want)):
                if a != b:
                    fail(f"{where}: '{d['name']}'[{i}] as f32: pith {d['f32'][i]!r} vs torch "
                         f"{t.float().reshape(-1)[i].item()!r}")


def check_read(dump, tmp):
    tensors = sample_tensors()
    path = os.path.join(tmp, "py.safetensors")
    st.save_file(tensors, path, metadata=META)
    got = dump_json(dump, path)
    _, header = header_of(path)
    order = sorted((k for k in header if k != "__metadata__"),
                   key=lambda k: tuple(header[k]["data_offsets"]))
    compare_dump("read", got, tensors, order)
    if got["metadata"] != META:
        fail(f"read: metadata: pith {got['metadata']} vs {META}")
    print(f"read: {len(tensors)} tensors written by safetensors {safetensors.__version__} match")
    return tensors, path


def same_bits(a, b):
    """Equal bit patterns, any NaN equal to any NaN."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype in FLOATS:
        na, nb = torch.isnan(a), torch.isnan(b)
        if not torch.equal(na, nb):
            return False
        a, b = a.masked_fill(na, 0), b.masked_fill(nb, 0)
    return raw_bytes(a) == raw_bytes(b)


def check_write(dump, tmp, tensors, src):
    out = os.path.join(tmp, "pith.safetensors")
    r = run_dump(dump, "--convert", src, out)
    if r.returncode != 0:
        fail(f"st_dump --convert failed: {r.stderr.strip()}")
    want = dict(tensors)
    for name, t in tensors.items():
        if t.dtype == torch.float32:
            want[name + ".bf16"] = t.to(torch.bfloat16)
            want[name + ".f16"] = t.to(torch.float16)
    with safetensors.safe_open(out, framework="pt") as f:
        if sorted(f.keys()) != sorted(want):
            fail(f"write: keys: {sorted(f.keys())} vs {sorted(want)}")
        for name in sorted(want):
            got = f.get_tensor(name)
            if not same_bits(got, want[name]):
                bad = (got.float() != want[name].float()).nonzero()[:1].tolist()
                fail(f"write: '{name}' differs from torch (first index {bad}): "
                     f"pith {got.reshape(-1)[:6].tolist()} vs {want[name].reshape(-1)[:6].tolist()}")
        meta = f.metadata()
    if meta != dict(META, writer="pith"):
        fail(f"write: metadata {meta}")
    n, header = header_of(out)
    ref_n, ref_header = header_of_bytes(st.save(want, metadata=dict(META, writer="pith")))
    ours = [k for k in header if k != "__metadata__"]
    theirs = [k for k in ref_header if k != "__metadata__"]
    if ours != theirs:
        fail(f"write: header order {ours} vs the library's {theirs}")
    if n % 8:
        fail(f"write: header length {n} is not a multiple of 8")
    print(f"write: {len(want)} tensors written by pith read back by safe_open; f32->bf16/f16 "
          f"equal torch's; header order equals the library's")


def header_of_bytes(b):
    n = struct.unpack("<Q", b[:8])[0]
    return n, json.loads(b[8:8 + n])


def check_sharded(dump, tmp, tensors):
    folder = os.path.join(tmp, "sharded")
    os.mkdir(folder)
    sd = {k: v.clone() for k, v in tensors.items()}
    try:
        from huggingface_hub import save_torch_state_dict
        save_torch_state_dict(sd, folder, max_shard_size=4000)
        how = "huggingface_hub.save_torch_state_dict"
    except ImportError:
        names = sorted(sd)
        parts = [names[: len(names) // 2], names[len(names) // 2:]]
        wm = {}
        for i, part in enumerate(parts):
            shard = f"model-{i + 1:05d}-of-00002.safetensors"
            st.save_file({k: sd[k] for k in part}, os.path.join(folder, shard))
            wm.update({k: shard for k in part})
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f)
        how = "save_file + a handmade index"
    shards = [p for p in os.listdir(folder) if p.endswith(".safetensors")]
    if len(shards) < 2:
        fail(f"sharded: {how} made {len(shards)} shard(s); the test wants several")
    got = dump_json(dump, folder)
    compare_dump("sharded", got, sd)
    if got["nfiles"] != len(shards):
        fail(f"sharded: pith opened {got['nfiles']} files, the folder has {len(shards)}")
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        total = json.load(f)["metadata"].get("total_size")
    if total is not None and got["metadata"].get("total_size") != str(total):
        fail(f"sharded: total_size {got['metadata']} vs {total}")
    print(f"sharded: {len(shards)} shards by {how} read as one set")


def raw_file(header, nbuf, prefix=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(h) if prefix is None else prefix
    return struct.pack("<Q", n) + h + bytes(i % 256 for i in range(nbuf))


def T(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


def handmade():
    return [
        ("valid", raw_file({"a": T("F32", [2], 0, 8), "__metadata__": {"k": "v"}}, 8)),
        ("empty header", raw_file({}, 0)),
        ("spaces around", raw_file(b"  {}   ", 0)),
        ("unpadded header", raw_file(b'{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}', 3)),
        ("empty tensor last", raw_file({"a": T("U8", [2], 0, 2), "z": T("F32", [0, 5], 2, 2)}, 2)),
        ("scalar", raw_file({"s": T("I64", [], 0, 8)}, 8)),
        ("null metadata", raw_file({"__metadata__": None, "a": T("U8", [1], 0, 1)}, 1)),
        ("extra field", raw_file({"a": dict(T("U8", [1], 0, 1), extra=1)}, 1)),
        ("too short", b"\x02\x00\x00\x00"),
        ("header past the end", raw_file({"a": T("U8", [1], 0, 1)}, 1, prefix=500)),
        ("huge header length", raw_file({}, 0, prefix=2**63)),
        ("size lie", raw_file({"w": T("F32", [4, 4], 0, 64)}, 32)),
        ("shape/bytes mismatch", raw_file({"w": T("F32", [2], 0, 4)}, 4)),
        ("overlap", raw_file({"a": T("U8", [8], 0, 8), "b": T("U8", [8], 4, 12)}, 12)),
        ("gap", raw_file({"a": T("U8", [4], 0, 4), "b": T("U8", [4], 8, 12)}, 12)),
        ("uncovered tail", raw_file({"a": T("U8", [4], 0, 4)}, 6)),
        ("unknown dtype", raw_file({"w": T("Q4", [4], 0, 4)}, 4)),
        ("bad JSON", raw_file(b'{"w": {"dtype": "F32", "shape": [1], ', 4)),
        ("trailing garbage", raw_file(b'{} x', 0)),
        ("not an object", raw_file(b"[1, 2]", 0)),
        ("negative dim", raw_file({"w": T("U8", [-4], 0, 4)}, 4)),
        ("string dim", raw_file({"w": T("U8", ["4"], 0, 4)}, 4)),
        ("begin > end", raw_file({"w": T("U8", [0], 4, 0)}, 4)),
        ("one offset", raw_file({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0]}}, 4)),
        ("no dtype", raw_file({"w": {"shape": [4], "data_offsets": [0, 4]}}, 4)),
        ("metadata not strings", raw_file({"__metadata__": {"a": 1}}, 0)),
        ("tensor not an object", raw_file({"w": 3}, 0)),
        ("shape overflow", raw_file({"w": T("F32", [2**40, 2**40, 2**40], 0, 0)}, 0)),
    ]


def check_handmade(dump, tmp):
    for name, data in handmade():
        path = os.path.join(tmp, "case.safetensors")
        with open(path, "wb") as f:
            f.write(data)
        try:
            with safetensors.safe_open(path, framework="pt") as f:
                for k in f.keys():
                    f.get_tensor(k)
            py_ok, py_err = True, ""
        except Exception as e:  # the library's verdict, whatever its exception type
            py_ok, py_err = False, str(e)
        r = run_dump(dump, path)
        c_ok = r.returncode == 0
        if c_ok != py_ok:
            fail(f"handmade '{name}': safetensors {'accepts' if py_ok else 'rejects'} "
                 f"({py_err}) but pith {'accepts' if c_ok else 'rejects'} ({r.stderr.strip()})")
        if not c_ok and not r.stderr.startswith(path + ": "):
            fail(f"handmade '{name}': pith's error does not start with the path: {r.stderr!r}")
        print(f"  {name:22s} both {'accept' if c_ok else 'reject'}"
              + ("" if c_ok else f": {r.stderr.strip()[len(path) + 2:]}"))
    print(f"handmade: pith and safetensors agree on {len(handmade())} files")


def main():
    dump = harness.tool_arg("st_dump")
    with tempfile.TemporaryDirectory(prefix="pith_st_parity_") as tmp:
        tensors, src = check_read(dump, tmp)
        check_write(dump, tmp, tensors, src)
        check_sharded(dump, tmp, tensors)
        check_handmade(dump, tmp)
    print("safetensors parity: all checks passed")


if __name__ == "__main__":
    main()
