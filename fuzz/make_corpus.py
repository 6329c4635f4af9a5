#!/usr/bin/env python3
"""Seed corpora and the INI dictionary for the fuzz targets (see README.md).

usage: make_corpus.py OUT_DIR
writes OUT_DIR/idx/ (small valid IDX files, plain and gzip, and images+labels
pairs for the data reader), OUT_DIR/ini/ (configs/*.ini and variants) and
OUT_DIR/ini.dict (sections, keys and tricky values, from src/app/options.cpp).
"""
import gzip
import pathlib
import re
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def idx(dims, values):
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(values)


def gz(data):
    return gzip.compress(data, compresslevel=6, mtime=0)


def idx_seeds(out):
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for rows, h, w, classes in [(3, 2, 2, 3), (5, 1, 4, 2), (1, 1, 1, 1), (8, 3, 3, 10)]:
        images = idx([rows, h, w], [(r * 3 + c) % 256 for r in range(rows) for c in range(h * w)])
        labels = idx([rows], [r % classes for r in range(rows)])
        name = f"r{rows}_{h}x{w}"
        files[f"images_{name}"] = images
        files[f"labels_{name}"] = labels
        files[f"images_{name}.gz"] = gz(images)
        files[f"labels_{name}.gz"] = gz(labels)
        files[f"pair_{name}"] = images + b"LABELS" + labels  # for the data reader
    files["images_1d"] = idx([4], [1, 2, 3, 4])
    files["images_4d"] = idx([2, 1, 2, 2], list(range(8)))
    files["pair_big_label"] = idx([2, 2], [0, 255, 7, 9]) + b"LABELS" + idx([2], [0, 200])
    for name, data in files.items():
        (out / name).write_bytes(data)
    return len(files)


def option_keys():
    text = (ROOT / "src/app/options.cpp").read_text()
    table = text[text.index("kOptions[]"):text.index("};", text.index("kOptions[]"))]
    return re.findall(r'^\s*\{"([a-z_.]+)", "([^"]*)"', table, re.M)


def ini_text(keys, override=None):
    """An INI file with every key at its default (the effective-INI layout)."""
    override = override or {}
    lines, section = ["# every key"], ""
    for key, default in keys:
        sec, _, name = key.rpartition(".")
        if sec != section:
            lines.append(f"\n[{sec}]")
            section = sec
        lines.append(f"{name} = {override.get(key, default)}")
    return "\n".join(lines) + "\n"


def ini_seeds(out, keys):
    out.mkdir(parents=True, exist_ok=True)
    seeds = {p.name: p.read_text() for p in sorted((ROOT / "configs").glob("*.ini"))}
    seeds["defaults.ini"] = ini_text(keys)
    seeds["adamw.ini"] = ini_text(keys, {"optim.name": "adamw", "optim.lr": "0.001", "optim.decay": "step",
                                         "train.examples": "14.3x", "eval.min_delta": "0.5%",
                                         "early_stop.baseline": "0.9", "model.hidden": ""})
    seeds["small.ini"] = ("task = classification\n[optim]\nlr = 0.3\nname = adamw\n[train]\n"
                          "batch_per_rank = 16\n[model]\nhidden = 32,16,8\n# a comment\n")
    seeds["regression.ini"] = "task = regression\n[eval]\nmonitor = val_mse\nmode = min\nkeep_best = 3\n"
    # First line: command-line words (see fuzz_ini.cpp); the rest: the INI file.
    seeds["cmdline.ini"] = ("train.epochs=5 optim.lr=0.2 run.progress=false\n"
                            "[train]\nbatch_per_rank = 8\n[comm]\nalgorithm = mpi\n")
    seeds["cmdline_next_word.ini"] = "--optim.lr 0.3 --train.seed 7\n[data]\nval_fraction = 0\n"
    seeds["bad_section.ini"] = "[optim\nlr = 0.1\n"
    seeds["unknown_key.ini"] = "[optim]\nlearning_rate = 0.1\n"
    for name, text in seeds.items():
        (out / name).write_text(text)
    return len(seeds)


def ini_dict(path, keys):
    words = set()
    for key, default in keys:
        sec, _, name = key.rpartition(".")
        words.add(f"{key}=")
        words.add(f"{name} = ")
        if sec:
            words.add(f"[{sec}]")
        if default:
            words.add(default)
    words |= {"\n", "=", " = ", "#", ";", "[", "]", "--", "--config", "--help", ",", "true", "false", "auto",
              "none", "nan", "inf", "-inf", "1e308", "1e-320", "-1", "0", "0x10", "9223372036854775807",
              "9223372036854775808", "-9223372036854775808", "4294967297", "2147483648", "16777217", "%",
              "x", "0.5%", "\t", "\r", "\x00", "\xff"}
    with open(path, "w") as f:
        for w in sorted(words):
            esc = "".join(c if 0x20 <= ord(c) < 0x7f and c not in '"\\' else f"\\x{ord(c):02x}" for c in w)
            f.write(f'"{esc}"\n')
    return len(words)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
    keys = option_keys()
    if len(keys) < 30:
        sys.exit(f"make_corpus.py: found only {len(keys)} option keys in src/app/options.cpp")
    n_idx = idx_seeds(out / "idx")
    n_ini = ini_seeds(out / "ini", keys)
    n_dict = ini_dict(out / "ini.dict", keys)
    print(f"seeds: {n_idx} IDX, {n_ini} INI; dictionary: {n_dict} entries ({len(keys)} option keys)")


if __name__ == "__main__":
    main()
