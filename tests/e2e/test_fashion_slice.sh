#!/usr/bin/env bash
# End to end on a slice of Fashion-MNIST, 2 ranks: the run directory's files,
# the metrics it logs, the accuracy it reaches, and `convert` (training on the
# converted HDF5 file gives the same metrics as training on the IDX files).
source "$(dirname "$0")/common.sh" "$@"
[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip_test "Fashion-MNIST not installed (dataset-fashion-mnist)"

common=(--data.max_rows=6000 --train.epochs=3 --run.progress=false)
rt_mpirun 2 "$RINGTRAIN" train --data.train="$FASHION/train-images-idx3-ubyte.gz" \
  --data.test="$FASHION/t10k-images-idx3-ubyte.gz" --run.dir="$WORK/idx" "${common[@]}" >"$WORK/idx.log" 2>&1 \
  && pass "2-rank training run exits 0" || { cat "$WORK/idx.log"; fail "2-rank training run failed"; }
grep -q "2 rank(s)" "$WORK/idx.log" && pass "runs on 2 ranks" || fail "not 2 ranks"
grep -q "lr: sgd base 0.1 x 128/256 = 0.05" "$WORK/idx.log" && pass "effective lr logged" || fail "lr line missing"
[ "$(wc -l <"$WORK/idx/metrics.jsonl")" = 3 ] && pass "one metrics line per epoch" || fail "metrics.jsonl lines"
grep -q "^batch_per_rank = 64$" "$WORK/idx/config.ini" && pass "config.ini holds the effective config" \
  || fail "config.ini"

"$PY" - "$WORK/idx" <<'PY' && pass "metrics content and test accuracy" || fail "metrics content"
import json, sys
run = sys.argv[1]
lines = [json.loads(l) for l in open(run + "/metrics.jsonl")]
need = {"step", "epoch", "examples_seen", "lr", "train_loss", "val_loss", "val_accuracy", "val_mcc",
        "val_macro_f1", "elapsed_s", "samples_per_s"}
for l in lines:
    assert need <= set(l), need - set(l)
# 6000 rows, 600 held out, 2700 per rank, batch 64: 43 steps/epoch, 5400 examples/epoch
assert [l["step"] for l in lines] == [43, 86, 129], lines
assert [l["examples_seen"] for l in lines] == [5400, 10800, 16200]
assert lines[-1]["train_loss"] < lines[0]["train_loss"]
test = json.load(open(run + "/test_metrics.json"))
assert test["test_accuracy"] > 0.70, test
print("test accuracy", test["test_accuracy"])
PY

# convert, then the same run on HDF5 (unshuffled, 1 epoch) must log the same metrics
"$RINGTRAIN" convert "$FASHION/train-images-idx3-ubyte.gz" "$WORK/fm.h5" >/dev/null && pass "convert" || fail "convert"
h5ls "$WORK/fm.h5" 2>/dev/null | grep -q "X .*{60000, 784}" && pass "converted shapes" || fail "converted shapes"
for kind in idx h5; do
  src="$FASHION/train-images-idx3-ubyte.gz"
  [ "$kind" = h5 ] && src="$WORK/fm.h5"
  rt_mpirun 2 "$RINGTRAIN" train --data.train="$src" --run.dir="$WORK/run_$kind" --train.shuffle=false \
    --data.max_rows=3000 --train.epochs=1 --run.progress=false >/dev/null 2>&1 || fail "train on $src"
done
"$PY" - "$WORK/run_idx/metrics.jsonl" "$WORK/run_h5/metrics.jsonl" <<'PY' && pass "IDX and converted HDF5 train identically" || fail "IDX vs HDF5"
import json, sys
a, b = (json.loads(open(p).readline()) for p in sys.argv[1:])
for k in ("elapsed_s", "samples_per_s"):
    a.pop(k); b.pop(k)
assert a == b, (a, b)
PY
finish
