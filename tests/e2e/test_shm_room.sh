#!/usr/bin/env bash
# /dev/shm without room for the shared-memory all-reduce (a small container
# tmpfs): comm.algorithm=auto (the default) falls back to the ring on every
# rank and trains; comm.algorithm=shm ends with exit 3 and one line saying
# how much room it needs. Runs in a private mount namespace with a small
# tmpfs on /dev/shm (root and unshare needed; skipped otherwise).
# Usage: test_shm_room.sh PATH_TO_RINGTRAIN
source "$(dirname "$0")/common.sh" "$@"

[ "$(id -u)" = 0 ] || skip_test "needs root (a tmpfs on /dev/shm in a mount namespace)"
unshare -m true 2>/dev/null || skip_test "unshare -m is not permitted here"
[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip_test "Fashion-MNIST not installed"

# 784-2048-10: 1.6M parameters, 6.5 MB of gradients per rank; 2 ranks and
# the 16 MiB kept free need 29 MiB, the tmpfs has 24.
run_small_shm() {  # log, then ringtrain train options
  local log=$1; shift
  unshare -m bash -c 'mount -t tmpfs -o size=24m tmpfs /dev/shm && exec "$@"' _ \
    timeout -k 10 120 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 2 "$RINGTRAIN" train \
    --data.train="$FASHION/train-images-idx3-ubyte.gz" --data.max_rows=2000 --train.max_steps=10 \
    --model.hidden=2048 --run.progress=false --comm.timeout_seconds=60 "$@" >"$log" 2>&1
}

rc=0
run_small_shm "$WORK/auto.log" --run.dir="$WORK/auto" || rc=$?
[ "$rc" = 0 ] && pass "auto trains with a small /dev/shm" || { cat "$WORK/auto.log"; fail "auto: exit $rc"; }
grep -q "2 rank(s), all-reduce 'auto (ring: no room for shared memory in /dev/shm)'" "$WORK/auto.log" &&
  pass "auto fell back to the ring and says why" || fail "auto did not report the fallback: $(grep -m1 "all-reduce '" "$WORK/auto.log")"
[ -s "$WORK/auto/final.h5" ] && pass "final.h5 written" || fail "final.h5 missing"

rc=0
run_small_shm "$WORK/shm.log" --run.dir="$WORK/shm" --comm.algorithm=shm || rc=$?
[ "$rc" = 3 ] && pass "comm.algorithm=shm: exit 3" || { cat "$WORK/shm.log"; fail "shm: exit $rc, expected 3"; }
[ "$(grep -c '^ringtrain: error:' "$WORK/shm.log")" = 1 ] &&
  grep -q "^ringtrain: error: the shared-memory all-reduce .* needs [0-9]* MiB in /dev/shm" "$WORK/shm.log" &&
  pass "one error line naming /dev/shm and the room needed" || fail "shm error line: $(grep -m2 'error' "$WORK/shm.log")"
finish
