#!/usr/bin/env bash
# Ranks that fail or disagree must never hang the job:
# - a failure on ONE rank after start-up (rank 0 cannot write
#   test_metrics.json while rank 1 waits in the final barrier) ends the whole
#   job quickly with that rank's message and the runtime exit code;
# - a rank that dies (SIGKILL, SIGSEGV) ends the job within 30 s (mpirun);
# - a rank that stops answering (SIGSTOP) is named by the others' watchdog
#   after comm.timeout_seconds (5 s here), and the job ends with exit code 3;
# - ranks given different options, or different copies of a data file (as with
#   node-local staging), are refused with exit code 2 before training.
source "$(dirname "$0")/common.sh" "$@"
[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip_test "Fashion-MNIST not installed (dataset-fashion-mnist)"

# A directory where rank 0 will write test_metrics.json at the end, made once
# the run has passed its start-up checks (config.ini is written after them; a
# directory there at start-up is refused before training, exit 2).
start=$SECONDS
set +e
timeout 60 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 2 "$RINGTRAIN" train \
  --data.train="$FASHION/train-images-idx3-ubyte.gz" --data.test="$FASHION/t10k-images-idx3-ubyte.gz" \
  --data.max_rows=2000 --train.epochs=60 --run.dir="$WORK/run" --run.progress=false >"$WORK/out" 2>"$WORK/err" &
job=$!
for _ in $(seq 1 3000); do [ -f "$WORK/run/config.ini" ] && break; sleep 0.01; done
mkdir "$WORK/run/test_metrics.json"
wait $job
rc=$?
set -e
elapsed=$((SECONDS - start))
[ $rc != 124 ] && pass "job ended by itself after ${elapsed}s" || fail "job hung (killed after 60 s)"
[ $rc = 3 ] && pass "exit code 3 (runtime failure)" || { fail "exit code $rc, expected 3"; cat "$WORK/err" >&2; }
grep -q '^ringtrain: error: rank 0: .*test_metrics.json' "$WORK/err" && pass "message names rank 0 and the file" \
  || { fail "message"; cat "$WORK/err" >&2; }
[ "$(ls "$WORK/run/test_metrics.json")" = "" ] && pass "nothing half-written left behind" || fail "leftovers"
ls "$WORK/run" | grep -q '\.tmp$' && fail "temporary file left in the run directory" || pass "no temporary file left"

# A rank that dies or stops. Training long enough to be hit mid-run.
LONG=(--data.train="$FASHION/train-images-idx3-ubyte.gz" --data.max_rows=6000 --train.epochs=1000
      --run.progress=false --comm.timeout_seconds=5)
hit_rank() {  # name, signal, rank, needle in the output, expected exit code ("" = any non-zero)
  local name=$1 sig=$2 rank=$3 needle=$4 want=${5:-} dir="$WORK/hit_$2" pid="" i
  timeout 120 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 3 "$RINGTRAIN" train "${LONG[@]}" --run.dir="$dir" \
    >"$dir.log" 2>&1 &
  local job=$!
  for i in $(seq 1 3000); do
    compgen -G "$dir/checkpoints/ckpt-*.h5" >/dev/null && pid=$(rank_pid "$dir" "$rank") && [ -n "$pid" ] && break
    sleep 0.02
  done
  [ -n "$pid" ] || { fail "$name: training did not start"; kill $job; return; }
  local t0=$SECONDS rc=0
  kill -"$sig" "$pid" || true
  wait $job || rc=$?
  local took=$((SECONDS - t0))
  kill -KILL "$pid" 2>/dev/null || true  # a stopped rank left behind by a failure
  if [ $rc = 124 ]; then fail "$name: job hung (killed after 120 s)"
  elif [ $rc = 0 ]; then fail "$name: job exited 0"
  elif [ -n "$want" ] && [ "$rc" != "$want" ]; then fail "$name: exit code $rc, expected $want"; tail -20 "$dir.log" >&2
  elif [ $took -gt 30 ]; then fail "$name: job took $took s to end"
  elif ! grep -qE -- "$needle" "$dir.log"; then fail "$name: no message with '$needle'"; tail -20 "$dir.log" >&2
  else pass "$name: job ended in ${took}s, exit $rc: $(grep -m1 -E -- "$needle" "$dir.log" | cut -c1-150)"; fi
}
hit_rank "SIGKILL to rank 1 of 3" KILL 1 "exited on signal 9"
hit_rank "SIGSEGV to rank 2 of 3" SEGV 2 "exited on signal 11|AddressSanitizer: SEGV"
hit_rank "SIGSTOP to rank 1 of 3 (watchdog)" STOP 1 "^ringtrain: error: rank [02]: no progress for 5 s in .*: rank 1 did not answer" 3
grep -q 'ringtrain: error: .*ranks alive: 0, 2;' "$WORK/hit_STOP.log" && pass "watchdog names the ranks still alive" \
  || fail "watchdog: waiting ranks not listed"

# Disagreeing ranks, launched MPMD-style (one app context per rank).
"$PY" -c "import h5py, numpy" 2>/dev/null || { finish; exit; }
mkdir -p "$WORK/nodeA" "$WORK/nodeB"
"$PY" - "$WORK" <<'PY'
import sys, h5py, numpy as np
for node, rows in (("nodeA", 40), ("nodeB", 80)):
    with h5py.File(f"{sys.argv[1]}/{node}/data.h5", "w") as f:
        f["X"] = np.ones((rows, 3), np.float32)
        f["y"] = (np.arange(rows) % 2).astype(np.int32)
PY
mpmd() {  # name, needle, args of rank 0 ||| args of rank 1 (each: wdir then options)
  local name=$1 needle=$2 w0=$3 a0=$4 w1=$5 a1=$6
  set +e
  # shellcheck disable=SC2086
  timeout 60 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 1 -wdir "$w0" "$RINGTRAIN" train $a0 : \
    -n 1 -wdir "$w1" "$RINGTRAIN" train $a1 >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  set -e
  if [ $rc = 124 ]; then fail "$name: hung"
  elif [ $rc != 2 ]; then fail "$name: exit code $rc, expected 2"; cat "$WORK/err" >&2
  elif ! grep -q "^ringtrain: error: .*$needle" "$WORK/err"; then fail "$name: message"; cat "$WORK/err" >&2
  else pass "$name: $(grep '^ringtrain: error:' "$WORK/err" | head -1 | cut -c1-120)"; fi
}
common="--data.val_fraction=0 --train.epochs=1 --run.progress=false"
mpmd "different options" "options differ from rank 0" \
  "$WORK/nodeA" "--data.train=data.h5 --run.dir=$WORK/r1 $common" \
  "$WORK/nodeA" "--data.train=data.h5 --run.dir=$WORK/r1 $common --train.batch_per_rank=32"
mpmd "different copies of the data file" "data differs from rank 0" \
  "$WORK/nodeA" "--data.train=data.h5 --run.dir=$WORK/r2 $common" \
  "$WORK/nodeB" "--data.train=data.h5 --run.dir=$WORK/r2 $common"
finish
