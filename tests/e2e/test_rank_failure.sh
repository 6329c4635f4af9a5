#!/usr/bin/env bash
# A failure on ONE rank after start-up (rank 0 cannot write test_metrics.json
# while rank 1 waits in the final barrier) must end the whole job quickly with
# that rank's message and the runtime exit code, never a hang.
source "$(dirname "$0")/common.sh" "$@"
[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip_test "Fashion-MNIST not installed (dataset-fashion-mnist)"

mkdir -p "$WORK/run/test_metrics.json"  # a directory where rank 0 will write a file
start=$SECONDS
set +e
timeout 60 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 2 "$RINGTRAIN" train \
  --data.train="$FASHION/train-images-idx3-ubyte.gz" --data.test="$FASHION/t10k-images-idx3-ubyte.gz" \
  --data.max_rows=2000 --train.epochs=1 --run.dir="$WORK/run" --run.progress=false >"$WORK/out" 2>"$WORK/err"
rc=$?
set -e
elapsed=$((SECONDS - start))
[ $rc != 124 ] && pass "job ended by itself after ${elapsed}s" || fail "job hung (killed after 60 s)"
[ $rc = 3 ] && pass "exit code 3 (runtime failure)" || { fail "exit code $rc, expected 3"; cat "$WORK/err" >&2; }
grep -q '^ringtrain: error: rank 0: .*test_metrics.json' "$WORK/err" && pass "message names rank 0 and the file" \
  || { fail "message"; cat "$WORK/err" >&2; }
[ "$(ls "$WORK/run/test_metrics.json")" = "" ] && pass "nothing half-written left behind" || fail "leftovers"
ls "$WORK/run" | grep -q '\.tmp$' && fail "temporary file left in the run directory" || pass "no temporary file left"
finish
