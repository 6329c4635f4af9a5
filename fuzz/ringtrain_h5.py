"""Read, change and rewrite ringtrain model and checkpoint files (h5py).

For crafting test and fuzz inputs: load() gives a file's content as plain
Python values, save() writes them back with the content CRCs (crc32_model,
crc32_state) recomputed exactly as src/io/model_file.cpp does, so that a
crafted file passes ringtrain's own checksum and reaches the checks behind it.

    m = load("best.h5"); m["trainer"]["step"] = -5; save("bad.h5", m)

libver="earliest" writes the old HDF5 format without metadata checksums,
whose bytes a fuzzer can change without breaking a checksum first.
"""
import struct
import zlib

import h5py
import numpy as np


def _attrs(obj):
    out = {}
    for k in sorted(obj.attrs.keys()):
        v = obj.attrs[k]
        if isinstance(v, bytes):
            out[k] = v.decode()
        elif isinstance(v, str):
            out[k] = v
        elif isinstance(v, (np.integer, int)):
            out[k] = int(v)
        elif isinstance(v, (np.floating, float)):
            out[k] = float(v)
    return out


def _arch_layers(arch):
    sizes = [int(s) for s in arch.split("-")]
    return len(sizes) - 1


def layout(arch):
    """Tensor names in the flat buffer's order (the output layer first)."""
    n = _arch_layers(arch)
    return [f"dense_{l}/{p}" for l in range(n - 1, -1, -1) for p in ("kernel", "bias")]


def load(path):
    f = h5py.File(path, "r")
    m = {"root": _attrs(f), "model_attrs": _attrs(f["model"]), "tensors": {},
         "metrics": _attrs(f["metrics"]) if "metrics" in f else {},
         "config": f["config"][()].decode() if "config" in f else ""}
    for name in layout(m["model_attrs"]["architecture"]):
        m["tensors"][name] = f["model/" + name][()]
    if "optimizer" in f:
        o = _attrs(f["optimizer"])
        m["optimizer"] = o
        m["slots"] = {s: {n: f[f"optimizer/{n}/{s}"][()] for n in m["tensors"]}
                      for s in o["slots"].split(",") if s}
        m["trainer"] = _attrs(f["trainer"])
        m["rank_state"] = f["trainer/rank_state"][()] if "rank_state" in f["trainer"] else None
        m["tracker"] = _attrs(f["tracker"])
    f.close()
    return m


class _Crc:
    def __init__(self):
        self.c = 0

    def bytes(self, b):
        self.c = zlib.crc32(b, self.c)

    def i64(self, v):
        self.bytes(struct.pack("<q", v))

    def text(self, s):
        b = s.encode()
        self.i64(len(b))
        self.bytes(b)

    def floats(self, a):
        a = np.ascontiguousarray(a, dtype="<f4").ravel()
        self.i64(a.size)
        self.bytes(a.tobytes())

    def attrs(self, a, skip=None):
        for k in sorted(a, key=lambda s: s.encode()):
            if skip and k.startswith(skip):
                continue
            v = a[k]
            self.text(k)
            if isinstance(v, int):
                self.i64(0)
                self.i64(v)
            elif isinstance(v, float):
                self.i64(1)
                self.bytes(struct.pack("<d", v))
            else:
                self.i64(2)
                self.text(v)
        self.i64(-1)


def model_crc(m):
    with np.errstate(over="ignore"):  # float64 tensors beyond float32: crafted on purpose
        return _model_crc(m)


def _model_crc(m):
    c = _Crc()
    c.attrs(m["root"], "crc32_")
    a = m["model_attrs"]
    c.text(a["architecture"])
    c.text(a["activation"])
    c.text(a["task"])
    c.bytes(struct.pack("<f", a.get("dropout", 0.0)))
    # (tensors a crafted architecture names but the file lacks: left out)
    flat = [np.asarray(m["tensors"][n], dtype="<f4").ravel() for n in layout(a["architecture"]) if n in m["tensors"]]
    c.floats(np.concatenate(flat) if flat else np.zeros(0, "<f4"))
    c.attrs(m["metrics"])
    c.text(m["config"])
    return c.c


def state_crc(m):
    c = _Crc()
    o = dict(m["optimizer"])
    c.text(o.pop("name"))
    o.pop("slots", None)
    c.attrs(o)
    names = layout(m["model_attrs"]["architecture"])
    for s, tensors in m["slots"].items():
        c.text(s)
        c.floats(np.concatenate([np.asarray(tensors[n], dtype="<f4").ravel() for n in names if n in tensors]))
    c.attrs(m["trainer"])
    rs = m["rank_state"]
    rows, cols = (rs.shape if rs is not None else (0, 0))
    c.i64(rows)
    c.i64(cols)
    if rs is not None:
        c.bytes(np.ascontiguousarray(rs, dtype="<i8").tobytes())
    c.attrs(m["tracker"])
    return c.c


def _text(s):
    b = s.encode()
    return np.array(b, dtype=f"S{len(b) + 1}")


def _write_attrs(obj, a):
    for k, v in a.items():
        if isinstance(v, int):
            obj.attrs.create(k, v, dtype="<i8")
        elif isinstance(v, float):
            obj.attrs.create(k, v, dtype="<f8")
        else:
            obj.attrs[k] = _text(v)


def save(path, m, libver="latest", crc=True, fletcher32=True):
    """Writes m; with crc, the content CRCs are recomputed for it."""
    m = dict(m)
    m["root"] = dict(m["root"])
    if crc:
        m["root"]["crc32_model"] = model_crc(m)
        if "optimizer" in m:
            m["root"]["crc32_state"] = state_crc(m)

    def tensor(group, name, value):
        value = np.asarray(value)
        kw = {"fletcher32": True, "chunks": True} if fletcher32 and value.size else {}
        group.create_dataset(name, data=value, **kw)

    with h5py.File(path, "w", libver=libver) as f:
        _write_attrs(f, m["root"])
        g = f.create_group("model")
        for name, v in m["tensors"].items():
            tensor(g, name, v)
        _write_attrs(g, m["model_attrs"])
        _write_attrs(f.create_group("metrics"), m["metrics"])
        f["config"] = _text(m["config"])
        if "optimizer" in m:
            g = f.create_group("optimizer")
            _write_attrs(g, m["optimizer"])
            for s, tensors in m["slots"].items():
                for name, v in tensors.items():
                    tensor(g, f"{name}/{s}", v)
            t = f.create_group("trainer")
            _write_attrs(t, m["trainer"])
            if m["rank_state"] is not None:
                t["rank_state"] = np.asarray(m["rank_state"], dtype="<i8")
            _write_attrs(f.create_group("tracker"), m["tracker"])
