#!/usr/bin/env bash
# `ringtrain plot` and `ringtrain report` end to end on real runs (2 ranks,
# Fashion-MNIST slice): two runs that differ only in their batch size, and
# one stopped and resumed. The PNGs are checked as PNG files (every chunk's
# CRC, the requested size, the pixel data inflated to its full length), the
# gnuplot data holds each run's best step, the report's best metrics equal
# best.h5's (read with h5py) and its differing config keys are exactly the one
# changed. Bad input: one error line, exit 2, no picture written or replaced.
source "$(dirname "$0")/common.sh" "$@"
[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip_test "Fashion-MNIST not installed (dataset-fashion-mnist)"
command -v gnuplot >/dev/null || skip_test "gnuplot missing (apt-get install gnuplot-nox)"

TRAIN=(--data.train="$FASHION/train-images-idx3-ubyte.gz" --data.test="$FASHION/t10k-images-idx3-ubyte.gz"
       --run.progress=false --data.max_rows=3000 --train.epochs=3 --checkpoint.every_steps=10)
for b in 16 32; do
  rt_mpirun 2 "$RINGTRAIN" train "${TRAIN[@]}" --train.batch_per_rank=$b --run.dir="$WORK/b$b" >"$WORK/b$b.log" 2>&1 \
    && pass "training run with batch $b per rank" || { tail -5 "$WORK/b$b.log" >&2; fail "training run b$b"; }
done
res="$WORK/resumed"
rt_mpirun 2 "$RINGTRAIN" train "${TRAIN[@]}" --run.dir="$res" --train.stop_after_steps=60 >"$res.log" 2>&1 \
  && rt_mpirun 2 "$RINGTRAIN" train "${TRAIN[@]}" --run.dir="$res" --resume=auto >>"$res.log" 2>&1 \
  && pass "run stopped at step 60 and resumed" || { tail -5 "$res.log" >&2; fail "stopped and resumed run"; }

# check_png FILE WIDTH HEIGHT: a complete, valid PNG of that size.
check_png() {
  "$PY" - "$@" <<'PY'
import struct, sys, zlib
path, want_w, want_h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(path, "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
pos, chunks, idat = 8, [], b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
    assert zlib.crc32(kind + body) & 0xffffffff == crc, f"bad CRC in {kind}"
    chunks.append(kind)
    if kind == b"IHDR":
        w, h, depth, colour = struct.unpack(">IIBB", body[:10])
    if kind == b"IDAT":
        idat += body
    pos += 12 + n
assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", chunks
assert (w, h) == (want_w, want_h), f"size {w}x{h}, wanted {want_w}x{want_h}"
channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
assert len(zlib.decompress(idat)) == h * (1 + w * channels * depth // 8), "pixel data incomplete"
PY
}

# --- report -------------------------------------------------------------------
"$RINGTRAIN" report "$WORK/b16" "$WORK/b32" --json >"$WORK/report.json" 2>"$WORK/report.err" \
  && pass "report --json exits 0" || { cat "$WORK/report.err" >&2; fail "report --json"; }
"$PY" - "$WORK/report.json" "$WORK/b16" "$WORK/b32" <<'PY' && pass "report: both runs, best metrics = best.h5, batch and global batch, the one differing key" || fail "report figures"
import json, sys
import h5py
report, dirs = json.load(open(sys.argv[1])), sys.argv[2:]
runs = report["runs"]
assert [r["label"] for r in runs] == ["b16", "b32"], [r["label"] for r in runs]
for r, d, b in zip(runs, dirs, (16, 32)):
    with h5py.File(d + "/best.h5") as f:
        best = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                for k, v in f["metrics"].attrs.items()}
    assert r["best"] == best, (r["best"], best)
    assert r["world_size"] == 2 and r["batch_per_rank"] == b and r["global_batch"] == 2 * b, r
    last = [json.loads(l) for l in open(d + "/metrics.jsonl")][-1]
    assert r["examples_seen"] == last["examples_seen"] and r["final"]["val_loss"] == last["val_loss"], r
    assert r["stop_reason"] == "completed" and r["launches"] == 1 and r["samples_per_s"] > 0 and r["wall_s"] > 0, r
    assert r["test"]["test_accuracy"] > 0.5, r["test"]
assert list(report["config_differences"]) == ["train.batch_per_rank"], report["config_differences"]
assert report["config_differences"]["train.batch_per_rank"] == {"b16": "16", "b32": "32"}
PY
"$RINGTRAIN" report "$WORK/b16" "$WORK/b32" >"$WORK/report.txt" 2>&1 \
  && grep -q "^run  *b16  *b32" "$WORK/report.txt" && grep -q "^  train.batch_per_rank  *16  *32" "$WORK/report.txt" \
  && grep -q "^best val_loss " "$WORK/report.txt" && grep -q "^stopped  *completed  *completed" "$WORK/report.txt" \
  && pass "report table: a column per run, best metrics, why they stopped, the differing key" \
  || { cat "$WORK/report.txt" >&2; fail "report table"; }
"$RINGTRAIN" report "$res" --json >"$WORK/resumed.json" \
  && "$PY" -c 'import json, sys; r = json.load(open(sys.argv[1]))["runs"][0]
assert r["launches"] == 2 and r["unfinished_launches"] == 0 and r["stop_reason"] == "completed", r' "$WORK/resumed.json" \
  && pass "report: the resumed run had 2 launches and completed" || fail "report of the resumed run"

# --- plot ---------------------------------------------------------------------
"$RINGTRAIN" plot "$WORK/b16" "$WORK/b32" --output "$WORK/curves.png" --size 900x700 --script "$WORK/curves.gp" \
  >"$WORK/plot.log" 2>&1 && grep -qx "wrote $WORK/curves.png" "$WORK/plot.log" \
  && pass "plot of two runs exits 0" || { cat "$WORK/plot.log" >&2; fail "plot of two runs"; }
check_png "$WORK/curves.png" 900 700 && pass "curves.png is a complete 900x700 PNG" || fail "curves.png"
grep -q "warning" "$WORK/plot.log" && fail "gnuplot warned: $(cat "$WORK/plot.log")"
"$PY" - "$WORK/curves.gp" "$WORK/b16" "$WORK/b32" <<'PY' && pass "the gnuplot data holds each run's best step and value from best.h5" || fail "best step in the plot data"
import re, sys
import h5py
script = open(sys.argv[1]).read()
for i, d in enumerate(sys.argv[2:]):
    with h5py.File(d + "/best.h5") as f:
        m = f["metrics"].attrs
        step, examples, value = int(m["step"]), int(m["examples_seen"]), float(m["val_loss"])
    block = re.search(r"\$best%d << EOD\n#[^\n]*\n([^\n]*)\nEOD" % i, script).group(1).split()
    assert int(float(block[0])) == examples and int(block[2]) == step, (block, examples, step)
    assert abs(float(block[1]) - value) < 1e-6 * abs(value), (block, value)
    assert f"best: step {step}," in script, step
PY
"$RINGTRAIN" plot "$WORK/b16" "$WORK/b32" --monitor val_accuracy --output "$WORK/acc.png" >/dev/null 2>&1 \
  && check_png "$WORK/acc.png" 1200 800 && pass "plot --monitor val_accuracy (two panels), default size 1200x800" \
  || fail "plot --monitor val_accuracy"
"$RINGTRAIN" plot "$res" --output "$WORK/resumed.png" --script "$WORK/resumed.gp" >/dev/null 2>&1 \
  && check_png "$WORK/resumed.png" 1200 800 && grep -q "'stopped'" "$WORK/resumed.gp" \
  && [ "$(grep -c '^set arrow .* nohead lw 2 lc' "$WORK/resumed.gp")" = "$(grep -c '"checkpoint"' "$res/events.jsonl")" ] \
  && pass "plot of the resumed run: the stop annotated, a tick per checkpoint written" || fail "plot of the resumed run"

# --- plot --bench -----------------------------------------------------------------
"$PY" - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
rows = [{"bytes": 4096 * 4 ** k, "ring_busbw_gbs": 1.0 + k, "mpi_busbw_gbs": 0.9 + k} for k in range(6)]
json.dump({"benchmark": "allreduce", "ranks": 2, "results": rows}, open(w + "/ar.json", "w"))
c = lambda r, s, b, v: {"ranks": r, "system": s, "scaling_baseline": b, "samples_per_s": v}
json.dump({"benchmark": "train", "configs": {"rt1": c(1, "ringtrain (ring)", "rt1", 60000.0),
           "rt2_ring": c(2, "ringtrain (ring)", "rt1", 110000.0), "pt1": c(1, "PyTorch DDP (gloo)", "pt1", 50000.0),
           "pt2": c(2, "PyTorch DDP (gloo)", "pt1", 34000.0)}}, open(w + "/train.json", "w"))
PY
bench_bin=$(dirname "$RINGTRAIN")/bench/bench_allreduce
if [ -x "$bench_bin" ]; then  # the real thing where the benchmarks are built (not in the ASan build)
  rt_mpirun 2 "$bench_bin" --max-bytes 256K --iters 20 --json "$WORK/ar.json" >"$WORK/ar.log" 2>&1 \
    || { tail -5 "$WORK/ar.log" >&2; fail "bench_allreduce"; }
fi
"$RINGTRAIN" plot --bench "$WORK/ar.json" --bench "$WORK/train.json" --output "$WORK/bench.png" --size 1000x500 \
  >/dev/null 2>&1 && check_png "$WORK/bench.png" 1000 500 \
  && pass "plot --bench: bus bandwidth and scaling efficiency ($([ -x "$bench_bin" ] && echo real || echo synthetic) all-reduce figures)" \
  || fail "plot --bench"

# --- bad input ------------------------------------------------------------------
mkdir -p "$WORK/empty" && cp "$WORK/b16/config.ini" "$WORK/empty/" && : >"$WORK/empty/metrics.jsonl"
echo "old picture" >"$WORK/keep.png"
# bad NAME EXPECTED_MESSAGE ARGS...: exit 2, one error line with the message, keep.png untouched, no .tmp left.
bad() {
  local name=$1 want=$2 rc=0
  shift 2
  "$@" >"$WORK/bad.out" 2>"$WORK/bad.err" || rc=$?
  if [ $rc = 2 ] && [ "$(grep -c '^ringtrain: error: ' "$WORK/bad.err")" = 1 ] && grep -qF -- "$want" "$WORK/bad.err" \
     && [ "$(cat "$WORK/keep.png")" = "old picture" ] && [ ! -e "$WORK/keep.png.tmp" ]; then
    pass "$name: $(head -c 150 "$WORK/bad.err")"
  else
    fail "$name: rc $rc, stderr: $(cat "$WORK/bad.err")"
  fi
}
bad "missing run directory" "not found" "$RINGTRAIN" plot "$WORK/nope" --output "$WORK/keep.png"
bad "not a run directory" "no config.ini" "$RINGTRAIN" report "$WORK"
bad "empty metrics" "holds no evaluation yet" "$RINGTRAIN" plot "$WORK/empty" --output "$WORK/keep.png"
bad "unknown monitor" "--monitor 'val_nope' is not in" "$RINGTRAIN" plot "$WORK/b16" --monitor val_nope --output "$WORK/keep.png"
bad "bad size" "--size: expected WIDTHxHEIGHT" "$RINGTRAIN" plot "$WORK/b16" --size 12 --output "$WORK/keep.png"
bad "output folder missing" "folder '$WORK/none' does not exist" "$RINGTRAIN" plot "$WORK/b16" --output "$WORK/none/x.png"
bad "no --output" "missing --output" "$RINGTRAIN" plot "$WORK/b16"
bad "runs and --bench together" "not both" "$RINGTRAIN" plot "$WORK/b16" --bench "$WORK/ar.json" --output "$WORK/keep.png"
bad "not a benchmark file" "not a JSON object" "$RINGTRAIN" plot --bench "$WORK/b16/metrics.jsonl" --output "$WORK/keep.png"
bad "gnuplot missing" "gnuplot not found on PATH (Debian: apt-get install gnuplot-nox)" \
  env PATH=/nonexistent "$RINGTRAIN" plot "$WORK/b16" --output "$WORK/keep.png"
bad "report of a missing directory" "not found" "$RINGTRAIN" report "$WORK/b16" "$WORK/nope"
finish
