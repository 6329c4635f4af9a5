#!/usr/bin/env bash
# Gradient accumulation (train.accumulate) end to end, 2 ranks, Fashion-MNIST
# slice: the start record, log line and report show the true global batch;
# a run stopped mid-pass (train.stop_after_steps) and a pre-empted one (SIGUSR1
# to one rank, whatever micro-batch it was in) resume bit-identical to an
# uninterrupted run; another train.accumulate on resume is a reshape (refused
# without train.allow_reshape, files untouched); bad values exit 2 naming the key.
source "$(dirname "$0")/common.sh" "$@"
[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip_test "Fashion-MNIST not installed (dataset-fashion-mnist)"
"$PY" -c "import h5py" 2>/dev/null || skip_test "python3-h5py not installed"

# 2700 training rows, 1350 per rank; steps of 3 x 32 rows: 15 per pass.
ARGS=(--data.train="$FASHION/train-images-idx3-ubyte.gz" --data.max_rows=3000 --model.hidden=256,128
      --train.epochs=6 --optim.name=adamw --optim.lr=0.001 --model.dropout=0.1 --train.batch_per_rank=32
      --checkpoint.keep_last=2 --run.progress=false)
K3=(--train.accumulate=3)


ref="$WORK/ref"
rt_mpirun 2 "$RINGTRAIN" train "${ARGS[@]}" "${K3[@]}" --run.dir="$ref" >"$WORK/ref.log" 2>&1 \
  && pass "uninterrupted run with train.accumulate=3" || { fail "reference run"; tail "$WORK/ref.log" >&2; }
grep -q '^batch: 32 per rank x 3 micro-batches (train.accumulate) x 2 ranks = global batch 192; 15 steps per pass' \
  "$WORK/ref.log" && pass "the log gives the global batch 32 x 3 x 2 = 192" \
  || { fail "batch line"; grep '^batch' "$WORK/ref.log" >&2; }
"$PY" - "$ref" <<'PY' && pass "start record, checkpoint and examples count the true global batch" || fail "records"
import glob, json, sys
import h5py
run = sys.argv[1]
events = [json.loads(l) for l in open(run + "/events.jsonl")]
start = events[0]
assert start["event"] == "start" and start["accumulate"] == 3 and start["global_batch"] == 192, start
assert start["total_steps"] == 90 and start["total_examples"] == 6 * 2700, start
assert abs(start["effective_lr"] - 0.001 * 192 / 256) < 1e-12, start
lines = [json.loads(l) for l in open(run + "/metrics.jsonl")]
assert [l["step"] for l in lines] == [15 * k for k in range(1, 7)], lines
assert [l["examples_seen"] for l in lines] == [2700 * k for k in range(1, 7)], lines
c = h5py.File(sorted(glob.glob(run + "/checkpoints/ckpt-*.h5"))[-1])
t = dict(c["trainer"].attrs)
assert t["accumulate"] == 3 and t["batch_per_rank"] == 32 and t["global_batch"] == 192, t
PY
"$RINGTRAIN" report "$ref" >"$WORK/report.txt" 2>&1 && grep -q 'global batch *192 (32 x 3 accumulated x 2)' "$WORK/report.txt" \
  && pass "report: global batch 192 (32 x 3 accumulated x 2)" || { fail "report"; cat "$WORK/report.txt" >&2; }

# Stopped after step 22 (mid-pass), then --resume auto.
stop="$WORK/stop"
rt_mpirun 2 "$RINGTRAIN" train "${ARGS[@]}" "${K3[@]}" --run.dir="$stop" --train.stop_after_steps=22 >"$WORK/stop.log" 2>&1 \
  && [ -f "$stop/checkpoints/ckpt-22.h5" ] && pass "stopped after step 22 with a checkpoint" \
  || { fail "stop_after_steps"; tail -3 "$WORK/stop.log" >&2; }

# Another train.accumulate on resume: a reshape, refused by default.
sum_before=$(cat "$stop"/checkpoints/* "$stop"/metrics.jsonl | md5sum)
rc=0
rt_mpirun 2 "$RINGTRAIN" train "${ARGS[@]}" --run.dir="$stop" --train.accumulate=2 --resume auto \
  >"$WORK/reshape.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q '^ringtrain: error: \(rank 0: \)\?resume: .* x 3 micro-batches; this run has 2 x 32 x 2: .*train.accumulate.*allow_reshape' \
  "$WORK/reshape.log" && pass "another train.accumulate on resume refused (exit 2, names the key)" \
  || { fail "reshape refusal rc=$rc"; cat "$WORK/reshape.log" >&2; }
[ "$(cat "$stop"/checkpoints/* "$stop"/metrics.jsonl | md5sum)" = "$sum_before" ] \
  && pass "the refusal left the files alone" || fail "files changed by a refused resume"

rt_mpirun 2 "$RINGTRAIN" train "${ARGS[@]}" "${K3[@]}" --run.dir="$stop" --resume auto >"$WORK/resume.log" 2>&1 \
  && grep -q "^resumed from .*/ckpt-22\.h5 at step 22 " "$WORK/resume.log" && same_params "$stop/final.h5" "$ref/final.h5" \
  && pass "resumed from step 22: bit-identical to the uninterrupted run" \
  || { fail "resume after stop_after_steps"; tail -3 "$WORK/resume.log" >&2; }

# Pre-emption: SIGUSR1 to rank 1 while it trains (most of a step is
# micro-batches before the all-reduce); all stop at a step boundary.
pre="$WORK/pre"
mkdir -p "$pre.rc"
timeout 300 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 2 bash -c \
  '"$@"; echo $? >"'"$pre.rc"'/rc.${OMPI_COMM_WORLD_RANK:-0}"' _ \
  "$RINGTRAIN" train "${ARGS[@]}" "${K3[@]}" --run.dir="$pre" >"$pre.log" 2>&1 &
job=$!
for _ in $(seq 1 6000); do
  compgen -G "$pre/checkpoints/ckpt-*.h5" >/dev/null && break
  sleep 0.02
done
kill -USR1 "$(rank_pid "$pre" 1)" || true
wait $job || true
codes=$(cat "$pre.rc"/rc.* 2>/dev/null | sort | tr '\n' ' ')
step=$(sed -n 's/^pre-empted: .*all stopped after step \([0-9]*\) of 90;.*/\1/p' "$pre.log")
[ "$codes" = "75 75 " ] && [ -n "$step" ] && [ -f "$pre/checkpoints/ckpt-$step.h5" ] \
  && pass "SIGUSR1 to rank 1: every rank exits 75 after step $step, checkpoint written" \
  || { fail "pre-emption (codes '$codes', step '$step')"; tail -5 "$pre.log" >&2; }
"$PY" - "$pre" "$step" <<'PY' && pass "the checkpoint counts whole steps only (examples = step x 192)" || fail "pre-empted checkpoint"
import sys, h5py
t = dict(h5py.File(f"{sys.argv[1]}/checkpoints/ckpt-{sys.argv[2]}.h5")["trainer"].attrs)
step = int(sys.argv[2])
assert t["step"] == step and t["examples_seen"] == (step // 15) * 2700 + (step % 15) * 192, t
PY
rt_mpirun 2 "$RINGTRAIN" train "${ARGS[@]}" "${K3[@]}" --run.dir="$pre" --resume auto >"$WORK/pre.resume.log" 2>&1 \
  && same_params "$pre/final.h5" "$ref/final.h5" \
  && pass "pre-empted at step $step and resumed: bit-identical to the uninterrupted run" \
  || { fail "resume after pre-emption"; tail -3 "$WORK/pre.resume.log" >&2; }

# With train.allow_reshape another train.accumulate continues from the same examples.
rt_mpirun 2 "$RINGTRAIN" train "${ARGS[@]}" "${K3[@]}" --run.dir="$WORK/re" --train.stop_after_steps=10 >/dev/null 2>&1 || true
rt_mpirun 2 "$RINGTRAIN" train "${ARGS[@]}" --run.dir="$WORK/re" --train.accumulate=2 --train.allow_reshape=true \
  --resume auto >"$WORK/re.log" 2>&1 \
  && grep -q '^resume: reshaped from 2 ranks x batch 32 x 3 micro-batches to 2 x 32 x 2; continuing at step 15 ' "$WORK/re.log" \
  && pass "train.allow_reshape: 3 -> 2 micro-batches continues at the step of the same examples" \
  || { fail "reshaped resume"; grep -m2 'resum\|error' "$WORK/re.log" >&2; }

# Bad values: one line naming the key, exit 2.
rc=0
rt_mpirun 2 "$RINGTRAIN" train "${ARGS[@]}" --run.dir="$WORK/bad0" --train.accumulate=0 >"$WORK/bad0.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q '^ringtrain: error: train.accumulate: must be >= 1, got 0$' "$WORK/bad0.log" \
  && pass "train.accumulate=0: exit 2 naming the key" || { fail "accumulate=0 rc=$rc"; cat "$WORK/bad0.log" >&2; }
rc=0
rt_mpirun 2 "$RINGTRAIN" train "${ARGS[@]}" --run.dir="$WORK/bad1" --train.accumulate=43 >"$WORK/bad1.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && [ "$(grep -c '^ringtrain: error:' "$WORK/bad1.log")" = 1 ] \
  && grep -q '^ringtrain: error: train.accumulate: 43 micro-batches x train.batch_per_rank 32 = 1376 rows per step, more than the 1350 training rows of each rank$' \
  "$WORK/bad1.log" && pass "43 x 32 rows per step > 1350 rows per rank: exit 2, one line naming the key" \
  || { fail "accumulate too large rc=$rc"; cat "$WORK/bad1.log" >&2; }
finish
