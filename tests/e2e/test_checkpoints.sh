#!/usr/bin/env bash
# End to end, 2 ranks, on a Fashion-MNIST slice: the files of a run as h5py and
# h5dump see them (the layout of docs/ARCHITECTURE.md), best.h5 against metrics.jsonl,
# evaluate/predict/inspect on them, --resume auto after a SIGKILL in the
# middle of a checkpoint write (bit-identical to an uninterrupted run), a
# refused world-size change, and the early-stop and divergence exit codes.
source "$(dirname "$0")/common.sh" "$@"
[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip_test "Fashion-MNIST not installed (dataset-fashion-mnist)"
command -v h5dump >/dev/null || skip_test "h5dump missing (hdf5-tools)"

DATA=(--data.train="$FASHION/train-images-idx3-ubyte.gz" --data.test="$FASHION/t10k-images-idx3-ubyte.gz"
      --run.progress=false)
TRAIN=("${DATA[@]}" --data.max_rows=4000)
run="$WORK/run"
rt_mpirun 2 "$RINGTRAIN" train "${TRAIN[@]}" --run.dir="$run" --train.epochs=3 --eval.keep_best=2 \
  --checkpoint.every_steps=10 --checkpoint.keep_last=3 >"$WORK/run.log" 2>&1 \
  && pass "training run exits 0" || { cat "$WORK/run.log"; fail "training run"; }

"$PY" - "$run" <<'PY' && pass "h5py sees the documented layout; best.h5 metadata = its metrics line" || fail "layout"
import glob, json, sys
import h5py
run = sys.argv[1]
lines = {l["step"]: l for l in map(json.loads, open(run + "/metrics.jsonl"))}
sizes = [784, 256, 128, 10]
def txt(v):  # text is stored fixed-length: h5py returns bytes
    assert not isinstance(v, str), "text attributes are fixed-length strings"
    return v.decode() if isinstance(v, bytes) else v
def attrs(obj):
    return {k: txt(v) for k, v in obj.attrs.items()}
def check_model(f, fmt):
    assert txt(f.attrs["format"]) == fmt, f.attrs["format"]
    for k in ("format_version", "created", "ringtrain_version", "crc32_model"):
        assert k in f.attrs, k
    m = f["model"]
    ma = attrs(m)
    assert ma["architecture"] == "784-256-128-10" and ma["activation"] == "relu"
    assert ma["task"] == "classification"
    for i in range(3):
        assert m[f"dense_{i}/kernel"].shape == (sizes[i], sizes[i + 1])
        assert m[f"dense_{i}/bias"].shape == (sizes[i + 1],)
        assert m[f"dense_{i}/kernel"].dtype == "float32" and m[f"dense_{i}/kernel"].fletcher32
    assert "[optim]" in f["config"][()].decode()
best = h5py.File(run + "/best.h5")
check_model(best, "ringtrain-model")
meta = attrs(best["metrics"])
for k in ("step", "epoch", "examples_seen", "monitor", "mode", "val_loss", "val_accuracy", "val_mcc",
          "val_macro_f1", "val_error", "train_loss"):
    assert k in meta, k
line = lines[int(meta["step"])]
for k, v in line.items():
    if k in ("elapsed_s", "samples_per_s", "lr"):
        continue
    assert meta[k] == v, (k, meta[k], v)
ckpts = sorted(glob.glob(run + "/checkpoints/ckpt-*.h5"))
assert len(ckpts) == 3, ckpts
c = h5py.File(ckpts[-1])
check_model(c, "ringtrain-checkpoint")
o = attrs(c["optimizer"])
assert o["name"] == "sgd" and o["slots"] == "momentum" and o["step"] > 0 and "crc32_state" in c.attrs
assert c["optimizer/dense_0/kernel/momentum"].shape == (784, 256)
t = attrs(c["trainer"])
assert t["world_size"] == 2 and t["batch_per_rank"] == 64 and "config_hash" in t
assert t["step"] == o["step"]
assert c["trainer/rank_state"].shape == (2, 4)
assert c["trainer/rank_state"].fletcher32
tr = attrs(c["tracker"])
assert "best_value" in tr and tr["monitor"] == "val_loss"
man = json.load(open(run + "/manifest.json"))
assert man["aliases"]["best"] == "best.h5"
assert {f["path"] for f in man["files"]} >= {"best.h5", "final.h5"}
PY

h5dump -H "$run/best.h5" >"$WORK/dump.txt" 2>&1 && grep -q 'DATASET "kernel"' "$WORK/dump.txt" \
  && grep -q "( 784, 256 )" "$WORK/dump.txt" && pass "h5dump reads best.h5" || fail "h5dump best.h5"
ckpt=$(ls "$run"/checkpoints/ckpt-*.h5 | head -1)
h5dump -d /optimizer/dense_2/bias/momentum "$ckpt" >/dev/null 2>&1 && pass "h5dump reads a checkpoint" \
  || fail "h5dump checkpoint"

# evaluate on the test set = what training reported for the final model
"$RINGTRAIN" evaluate --model "$run/final.h5" --data "$FASHION/t10k-images-idx3-ubyte.gz" --max-rows 4000 --json >"$WORK/eval.json" \
  && "$PY" - "$WORK/eval.json" "$run/test_metrics.json" <<'PY' && pass "evaluate = the run's test metrics" || fail "evaluate"
import json, sys
got = json.load(open(sys.argv[1]))["metrics"]
want = json.load(open(sys.argv[2]))
for k, v in want.items():
    assert abs(got[k[len("test_"):]] - v) < 1e-9, (k, got, want)
PY
"$RINGTRAIN" convert "$FASHION/t10k-images-idx3-ubyte.gz" "$WORK/t10k.h5" >/dev/null
"$RINGTRAIN" predict --model "$run/best.h5" --input "$WORK/t10k.h5" --output "$WORK/p.h5" >/dev/null \
  && "$PY" -c "
import h5py, numpy as np, sys
f = h5py.File('$WORK/p.h5')
p = f['probabilities'][()]
assert p.shape == (10000, 10) and f['predicted'].shape == (10000,)
assert np.allclose(p.sum(1), 1, atol=1e-5) and (p.argmax(1) == f['predicted'][()]).all()
" && pass "predict writes probabilities and labels" || fail "predict"
"$RINGTRAIN" inspect "$ckpt" >"$WORK/inspect.txt" && grep -q "784-256-128-10" "$WORK/inspect.txt" \
  && grep -q "momentum" "$WORK/inspect.txt" && grep -q "world_size" "$WORK/inspect.txt" \
  && pass "inspect a checkpoint" || fail "inspect"

# Another world size: refused, the run's files untouched.
sum_before=$(cat "$run"/best.h5 "$run"/checkpoints/* | md5sum)
rt_mpirun 1 "$RINGTRAIN" train "${TRAIN[@]}" --run.dir="$run" --train.epochs=3 --eval.keep_best=2 \
  --checkpoint.every_steps=10 --checkpoint.keep_last=3 --resume auto >"$WORK/reshape.log" 2>&1 && rc=0 || rc=$?
[ "$rc" = 2 ] && grep -q "allow_reshape" "$WORK/reshape.log" && pass "other world size refused (exit 2)" \
  || { cat "$WORK/reshape.log"; fail "reshape refusal rc=$rc"; }
[ "$(cat "$run"/best.h5 "$run"/checkpoints/* | md5sum)" = "$sum_before" ] && pass "refusal left the files alone" \
  || fail "files changed by a refused resume"

# SIGKILL rank 0 while it writes a checkpoint (a 1.8M-parameter model
# checkpointed every step keeps the writer busy), then --resume auto.
BIG=("${DATA[@]}" --data.max_rows=1000 --model.hidden=1024,1024 --train.epochs=2 --checkpoint.every_steps=1
     --checkpoint.keep_last=2)
rt_mpirun 2 "$RINGTRAIN" train "${BIG[@]}" --run.dir="$WORK/ref" >"$WORK/ref.log" 2>&1 || fail "reference run"
hit=0
for attempt in 1 2 3 4 5 6 7 8; do
  dir="$WORK/kill$attempt"
  rt_mpirun 2 "$RINGTRAIN" train "${BIG[@]}" --run.dir="$dir" >"$WORK/kill.log" 2>&1 &
  launcher=$!
  for _ in $(seq 200); do  # until a checkpoint write is under way
    ls "$dir"/checkpoints/*.tmp >/dev/null 2>&1 && [ "$(ls "$dir"/checkpoints/*.h5 2>/dev/null | wc -l)" -ge 1 ] && break
    sleep 0.02
  done
  pkill -9 -f -- "--run.dir=$dir" || true
  wait "$launcher" 2>/dev/null || true
  if ls "$dir"/checkpoints/*.tmp >/dev/null 2>&1; then hit=1; break; fi
done
[ "$hit" = 1 ] && pass "killed during a checkpoint write (attempt $attempt)" || fail "never caught a write in flight"
timeout 300 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 2 "$RINGTRAIN" train "${BIG[@]}" --run.dir="$dir" --resume auto \
  >"$WORK/resume.log" 2>&1 && grep -q "resumed from" "$WORK/resume.log" && pass "--resume auto after the kill" \
  || { cat "$WORK/resume.log"; fail "resume after kill"; }
"$PY" - "$WORK/ref/final.h5" "$dir/final.h5" <<'PY' && pass "resumed run bit-identical to the uninterrupted one" || fail "bit-exact after kill"
import sys, h5py, numpy as np
a, b = (h5py.File(p) for p in sys.argv[1:])
for i in range(3):
    for t in ("kernel", "bias"):
        assert np.array_equal(a[f"model/dense_{i}/{t}"][()], b[f"model/dense_{i}/{t}"][()]), (i, t)
PY

# Early stopping and divergence have exit codes of their own.
rt_mpirun 2 "$RINGTRAIN" train "${TRAIN[@]}" --run.dir="$WORK/es" --train.epochs=5 --early_stop.patience=1 \
  --early_stop.min_delta=1000 >"$WORK/es.log" 2>&1 && rc=0 || rc=$?
[ "$rc" = 4 ] && grep -q "early stopping" "$WORK/es.log" && pass "early stopping exits 4" || fail "early stop rc=$rc"
rt_mpirun 2 "$RINGTRAIN" train "${TRAIN[@]}" --run.dir="$WORK/nan" --train.epochs=2 --optim.lr=1e30 \
  >"$WORK/nan.log" 2>&1 && rc=0 || rc=$?
[ "$rc" = 5 ] && grep -q "diverged" "$WORK/nan.log" && [ ! -e "$WORK/nan/final.h5" ] \
  && pass "divergence exits 5, writes no final model" || { cat "$WORK/nan.log"; fail "divergence rc=$rc"; }
finish
