#!/usr/bin/env python3
"""Seed corpus of fuzz_model (see README.md): real files and crafted variants.

usage: make_model_corpus.py OUT_DIR RINGTRAIN
runs three tiny trainings with the RINGTRAIN binary (SGD with momentum;
AdamW, tanh, dropout, two hidden layers; regression), keeps each run's
best.h5 and newest checkpoint, and adds variants written with ringtrain_h5
(content CRCs recomputed): the same files in the old HDF5 format (no metadata
checksums: refused), the new format without Fletcher32 (a changed value
byte reaches ringtrain's checks), and crafted ones (NaN
weights, a negative step, a rank_state larger than the world, huge declared
sizes, wrong types and shapes). Needs h5py and numpy.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ringtrain_h5 as rh  # noqa: E402


def tiny_runs(ringtrain, tmp):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 3)).astype(np.float32)
    with h5py.File(tmp / "cls.h5", "w") as f:
        f["X"] = X
        f["y"] = (np.arange(24) % 3).astype(np.int32)
    with h5py.File(tmp / "reg.h5", "w") as f:
        f["X"] = X
        f["y"] = rng.normal(size=(24, 2)).astype(np.float32)
    runs = {
        "sgd": ["--data.train=cls.h5", "--model.hidden=4", "--optim.momentum=0.9"],
        "adamw": ["--data.train=cls.h5", "--model.hidden=3,2", "--optim.name=adamw", "--model.activation=tanh",
                  "--model.dropout=0.25"],
        "reg": ["--data.train=reg.h5", "--task=regression", "--model.hidden=2"],
    }
    files = {}
    for name, args in runs.items():
        subprocess.run([ringtrain, "train", *args, "--data.val_fraction=0.25", "--train.epochs=2",
                        "--run.progress=false", f"--run.dir={name}"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ckpts = sorted((tmp / name / "checkpoints").glob("ckpt-*.h5"), key=lambda p: int(p.stem[5:]))
        files[f"{name}_model.h5"] = tmp / name / "best.h5"
        files[f"{name}_ckpt.h5"] = ckpts[-1]
    return files


def variants(ckpt):
    """name -> (content, save options) crafted from a loaded checkpoint."""
    out = {}

    def v(name, change, **save):
        m = rh.load(ckpt)
        change(m)
        out[name] = (m, save)

    first = lambda m: next(iter(m["tensors"]))  # noqa: E731
    v("nan_weight", lambda m: m["tensors"][first(m)].flat.__setitem__(0, np.nan))
    v("inf_slot", lambda m: next(iter(m["slots"].values()))[first(m)].flat.__setitem__(0, np.inf))
    v("negative_step", lambda m: m["trainer"].update(step=-5))
    v("negative_examples", lambda m: m["trainer"].update(examples_seen=-1))
    v("world_zero", lambda m: m["trainer"].update(world_size=0))
    v("rank_state_rows", lambda m: m.update(rank_state=np.zeros((5, 4), np.int64)))
    v("dropout_big", lambda m: m["model_attrs"].update(dropout=1.5))
    v("arch_huge", lambda m: m["model_attrs"].update(architecture="3-4000000-100-3"))
    v("arch_deep", lambda m: m["model_attrs"].update(architecture="-".join(["3"] * 300)))
    v("slots_many", lambda m: m["optimizer"].update(slots=",".join(["m"] * 20)))
    v("slots_dup", lambda m: m["optimizer"].update(slots="m,m"))
    v("float64_weights", lambda m: m["tensors"].update({first(m): m["tensors"][first(m)].astype(np.float64) * 1e300}))
    # the old format (refused: no metadata checksums), and the new one with
    # no Fletcher32, so that a changed byte of the values reaches the checks
    v("old_format", lambda m: None, libver="earliest", fletcher32=False)
    v("no_fletcher32", lambda m: None, fletcher32=False)
    v("no_fletcher32_nocrc", lambda m: m["trainer"].update(step=1), fletcher32=False, crc=False)
    return {k: (m, {"fletcher32": False, **s}) for k, (m, s) in out.items()}


def craft_raw(path):
    """Files h5py writes by hand: huge declared sizes (chunked, never written), strings."""
    m = rh.load(path)
    name = next(iter(m["tensors"]))
    out = {}

    def raw(fname, edit):
        rh.save(fname, m, fletcher32=False)
        with h5py.File(fname, "a") as f:
            edit(f)

    def huge_rank_state(f):
        del f["trainer/rank_state"]
        f["trainer"].create_dataset("rank_state", shape=(2**62, 4), dtype="<i8", chunks=(1, 4))

    def string_tensor(f):
        shape = f["model/" + name].shape
        del f["model/" + name]
        f["model"].create_dataset(name, data=np.full(shape, b"x", dtype="S4"))

    def config_array(f):
        del f["config"]
        f["config"] = np.array([b"a", b"b"], dtype="S2")

    def long_text(f):
        f.attrs["created"] = np.array(b"x" * 60000, dtype="S60001")

    for tag, edit in [("huge_rank_state", huge_rank_state), ("string_tensor", string_tensor),
                      ("config_array", config_array), ("long_text", long_text)]:
        out[tag] = edit
    return m, out, raw


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    ringtrain = os.path.abspath(sys.argv[2])
    n = 0
    with tempfile.TemporaryDirectory() as t:
        tmp = pathlib.Path(t)
        files = tiny_runs(ringtrain, tmp)
        for name, path in files.items():
            shutil.copy(path, out / name)
            n += 1
            if name.endswith("_ckpt.h5"):
                stem = name[: -len(".h5")]
                for tag, (m, save) in variants(path).items():
                    rh.save(out / f"{stem}_{tag}.h5", m, **save)
                    n += 1
                _, edits, raw = craft_raw(path)
                for tag, edit in edits.items():
                    raw(out / f"{stem}_{tag}.h5", edit)
                    n += 1
    print(f"seeds: {n} model and checkpoint files")


if __name__ == "__main__":
    main()
