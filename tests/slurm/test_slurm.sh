#!/usr/bin/env bash
# The Slurm job scripts of slurm/ on a real single-node Slurm cluster started
# for this test (tests/slurm/slurm_cluster.sh: own munged, slurmctld, slurmd,
# all under a mktemp folder, torn down on exit, failure or interrupt):
#   a. slurm/train_srun.sbatch, 2 tasks, srun --mpi=pmix: exit 0, test accuracy, final.h5
#   b. slurm/train_mpirun.sbatch, 2 tasks, mpirun in the allocation: the same
#   c. run_mpi.sh inside an sbatch allocation launches with srun --mpi=pmix
#   d. a longer srun job pre-empted as Slurm does it (USR1 to the batch shell,
#      which forwards it): exit 75 with a checkpoint; resubmitted, it resumes
#      (--resume auto) and its final.h5 is bit-identical to an uninterrupted run
#   e. the requeue path: RINGTRAIN_REQUEUE=1 (--train.requeue=true), TERM to the
#      job's steps; rank 0 requeues the job, which restarts after the requeue
#      delay (cred_expire, 5 s in this cluster), resumes and ends 0 with the
#      same final parameters as the uninterrupted run.
# Usage: test_slurm.sh PATH_TO_RINGTRAIN   (ctest -L slurm)
# Exit 77 (skipped) when the Slurm packages are not installed. SC_KEEP=1 keeps
# the cluster's folder (logs, conf) and the runs for a look afterwards.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# RINGTRAIN, MPIEXEC(_ARGS), PY, FASHION, WORK, pass/fail/skip_test/finish
source "$ROOT/tests/e2e/common.sh" "$@"
T0=$SECONDS

note() { echo "  [$((SECONDS - T0)) s] $*"; }

source "$HERE/slurm_cluster.sh"
slurm_cluster_available || skip_test "Slurm is not installed (Debian: slurmctld slurmd slurm-client munge; ./run_mpi.sh test installs them)"
[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip_test "Fashion-MNIST not installed (dataset-fashion-mnist)"
[ -x "$RINGTRAIN" ] || { echo "FAIL: no executable $RINGTRAIN" >&2; exit 1; }

WATCHDOG=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM USR2
  set +e
  if [ -n "$WATCHDOG" ]; then pkill -P "$WATCHDOG" 2>/dev/null; kill "$WATCHDOG" 2>/dev/null; fi
  [ -n "${SB:-}" ] && kill "$SB" 2>/dev/null     # an sbatch --wait still waiting
  [ -n "${CHILD:-}" ] && kill "$CHILD" 2>/dev/null  # the reference run
  slurm_cluster_stop || true
  if [ "${SC_KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM
# CTest kills a test that runs past its TIMEOUT (600 s) without a chance to
# clean up: stop ourselves first (USR2 from a timer; the EXIT trap cleans up).
# (Its stdio is /dev/null: CTest waits until every holder of the output pipe is gone.)
trap 'echo "FAIL: test_slurm.sh ran past its limit" >&2; exit 124' USR2
(sleep "${SLURM_TEST_LIMIT:-540}"; kill -USR2 $$) </dev/null >/dev/null 2>&1 &
WATCHDOG=$!

t=$SECONDS
slurm_cluster_start || { echo "FAIL: could not start the Slurm cluster" >&2; exit 1; }
pass "single-node Slurm cluster up ($(sinfo -h -o '%N %c CPUs %T'), $((SECONDS - t)) s)"

DATA=(--data.train="$FASHION/train-images-idx3-ubyte.gz" --data.test="$FASHION/t10k-images-idx3-ubyte.gz")
# a, b, c: a few seconds of training
SHORT=("${DATA[@]}" --data.max_rows=4000 --train.epochs=3)
# d, e: a longer run, evaluated 20 times; the signal is sent once the first
# metrics line is there. 50 passes of 85 steps (4250 steps, 5-40 s on 2 cores
# depending on load); a sanitizer build (ASan+UBSan, about 5x slower to train:
# its GEMM is uninstrumented, see include/ringtrain/nn/gemm.hpp) gets 10
# passes (850 steps, 5-10 s).
long_epochs=50
ldd "$RINGTRAIN" 2>/dev/null | grep -qE 'lib(asan|ubsan|tsan)' && long_epochs=10
LONG=("${DATA[@]}" --data.max_rows=12000 --train.epochs="$long_epochs" --train.evals=20 --checkpoint.keep_last=2)

# submit NAME SCRIPT [sbatch options...]: sbatch --wait in the background with the
# job scripts' environment variables; sets JOB (id) and SB (sbatch's pid).
# --time=10: the scripts ask for USR1 300 s before the limit (--signal=B:USR1@300),
# so the limit must be well above 5 minutes or the warning comes at once.
# Options for ringtrain come in RT_ARGS (an array).
submit() {
  local name=$1 script=$2; shift 2
  mkdir -p "$WORK/$name"
  RINGTRAIN="$RINGTRAIN" RINGTRAIN_CONFIG="$ROOT/configs/fashion_mnist.ini" \
    RINGTRAIN_RUN_DIR="$WORK/$name/run" RINGTRAIN_ARGS="${RT_ARGS[*]}" RINGTRAIN_REQUEUE="${REQUEUE:-0}" \
    sbatch --wait --parsable --job-name="$name" --chdir="$WORK/$name" --output="$WORK/$name/job-%j.out" \
    --nodes=1 --ntasks=2 --time=10 "$@" "$ROOT/slurm/$script" >"$WORK/$name/sbatch.out" 2>&1 &
  SB=$!
  JOB=""
  local i
  for i in $(seq 100); do
    JOB=$(grep -m1 -oE '^[0-9]+' "$WORK/$name/sbatch.out" 2>/dev/null || true)
    [ -n "$JOB" ] && return 0
    kill -0 "$SB" 2>/dev/null || break
    sleep 0.1
  done
  echo "sbatch did not submit:"; cat "$WORK/$name/sbatch.out"
  return 1
}
# wait_rc: waits for sbatch --wait (at most $1 s); sets RC (its exit code = the job's).
wait_rc() {
  local limit=$1 i
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$SB" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SB" 2>/dev/null; then
    kill "$SB" 2>/dev/null || true
    scancel "$JOB" 2>/dev/null || true
  fi
  wait "$SB" && RC=0 || RC=$?
  SB=""
}
show_job() { local f; for f in "$WORK/$1"/job-*.out "$WORK/$1/sbatch.out"; do echo "--- $f"; tail -n 25 "$f"; done; }
# test accuracy floor and final model of a run directory
check_result() {
  "$PY" - "$1" <<'PY'
import json, sys, h5py
run = sys.argv[1]
acc = json.load(open(run + "/test_metrics.json"))["test_accuracy"]
assert acc > 0.65, acc
with h5py.File(run + "/final.h5") as f:
    assert f["model/dense_0/kernel"].shape == (784, 256)
print(f"test_accuracy {acc:.4f}")
PY
}
# every dataset under /model of two files, exactly
same_params() {
  "$PY" - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:])
names = []
a["model"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
bn = []
b["model"].visititems(lambda n, o: bn.append(n) if isinstance(o, h5py.Dataset) else None)
assert names and sorted(names) == sorted(bn), (names, bn)
for n in names:
    x, y = a["model"][n][()], b["model"][n][()]
    assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), n
print(f"{len(names)} datasets identical")
PY
}
# waits (at most $2 s) until run dir $1 has a metrics line, i.e. training is under way
wait_training() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    [ -s "$1/metrics.jsonl" ] && return 0
    kill -0 "$SB" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# --- a. srun job script, 2 tasks -------------------------------------------
t=$SECONDS
RT_ARGS=("${SHORT[@]}")
submit srun train_srun.sbatch && wait_rc 120 || RC=submit
note "srun job $JOB: exit $RC in $((SECONDS - t)) s"
if [ "$RC" = 0 ] && out=$(check_result "$WORK/srun/run"); then
  pass "a. train_srun.sbatch (srun --mpi=pmix, 2 tasks) exits 0; $out, final.h5 written"
else
  show_job srun; fail "a. train_srun.sbatch: exit $RC"
fi
grep -q "2 rank(s)" "$WORK"/srun/job-*.out && pass "a. the job trained on 2 ranks" || fail "a. not 2 ranks"

# --- b. mpirun job script, 2 tasks -----------------------------------------
t=$SECONDS
submit mpirun train_mpirun.sbatch && wait_rc 120 || RC=submit
note "mpirun job $JOB: exit $RC in $((SECONDS - t)) s"
if [ "$RC" = 0 ] && out=$(check_result "$WORK/mpirun/run") && grep -q "2 rank(s)" "$WORK"/mpirun/job-*.out; then
  pass "b. train_mpirun.sbatch (mpirun in the allocation, 2 ranks) exits 0; $out, final.h5 written"
else
  show_job mpirun; fail "b. train_mpirun.sbatch: exit $RC"
fi

# --- c. run_mpi.sh inside an allocation launches with srun ------------------
# A scratch copy of the repository's launcher with the executable under test in
# its build/release and a no-op cmake first on PATH (nothing is built here).
t=$SECONDS
fake=$WORK/fake-root
mkdir -p "$fake/build/release" "$fake/bin" "$WORK/run_mpi"
cp "$ROOT/run_mpi.sh" "$fake/"
ln -s "$ROOT/configs" "$fake/configs"
ln -s "$RINGTRAIN" "$fake/build/release/ringtrain"
touch "$fake/build/release/CMakeCache.txt"
printf '#!/bin/sh\nexit 0\n' >"$fake/bin/cmake"
chmod +x "$fake/bin/cmake"
PATH=$fake/bin:$PATH RINGTRAIN_NO_INSTALL=1 timeout 120 sbatch --wait --job-name=run_mpi -n 2 --time=10 \
  --output="$WORK/run_mpi/job.out" --wrap "$fake/run_mpi.sh ${DATA[*]} --data.max_rows=2000 --train.epochs=1 --run.dir=$WORK/run_mpi/run" \
  >/dev/null 2>&1 && RC=0 || RC=$?
note "run_mpi.sh job: exit $RC in $((SECONDS - t)) s"
if [ "$RC" = 0 ] && grep -q "srun --mpi=pmix --kill-on-bad-exit=1 build/release/ringtrain" "$WORK/run_mpi/job.out" \
  && grep -q "2 rank(s)" "$WORK/run_mpi/job.out" && [ -e "$WORK/run_mpi/run/final.h5" ]; then
  pass "c. run_mpi.sh inside an sbatch allocation launches with srun --mpi=pmix on its 2 tasks"
else
  cat "$WORK/run_mpi/job.out" 2>/dev/null; fail "c. run_mpi.sh under Slurm: exit $RC"
fi

# --- d. pre-empted by USR1 to the batch shell, resubmitted, resumed ----------
RT_ARGS=("${LONG[@]}")
t=$SECONDS
submit preempt train_srun.sbatch && wait_training "$WORK/preempt/run" 90 || true
note "preempt job $JOB: training under way after $((SECONDS - t)) s"
scancel --batch --signal=USR1 "$JOB" 2>/dev/null || true
wait_rc 120
note "preempt job $JOB: exit $RC $((SECONDS - t)) s after submission"
ckpts=$(ls "$WORK"/preempt/run/checkpoints/ckpt-*.h5 2>/dev/null | wc -l)
if [ "$RC" = 75 ] && [ "$ckpts" -ge 1 ] && [ ! -e "$WORK/preempt/run/final.h5" ] \
  && grep -q "batch shell got SIGUSR1" "$WORK"/preempt/job-*.out; then
  pass "d. USR1 to the batch shell (as --signal=B:USR1@N sends it): forwarded, job exits 75, checkpoint written"
else
  show_job preempt; fail "d. pre-emption: exit $RC, $ckpts checkpoint(s)"
fi

# the same configuration, uninterrupted, launched directly
t=$SECONDS
# (in the background: `wait` lets the traps run at once)
timeout 300 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 2 "$RINGTRAIN" train --config "$ROOT/configs/fashion_mnist.ini" "${LONG[@]}" \
  --run.progress=false --run.dir="$WORK/reference" >"$WORK/reference.log" 2>&1 &
CHILD=$!
wait "$CHILD" && rc=0 || rc=$?
CHILD=""
note "reference run (mpiexec, 2 ranks): exit $rc in $((SECONDS - t)) s"
[ "$rc" = 0 ] || { tail -n 20 "$WORK/reference.log"; fail "reference run exit $rc"; }

t=$SECONDS
submit preempt train_srun.sbatch && wait_rc 240 || RC=submit
note "preempt job resubmitted as $JOB: exit $RC in $((SECONDS - t)) s"
if [ "$RC" = 0 ] && grep -q "resumed from" "$WORK"/preempt/job-"$JOB".out && check_result "$WORK/preempt/run" >/dev/null; then
  pass "d. resubmitted job resumes (--resume auto) and exits 0"
else
  show_job preempt; fail "d. resubmitted job: exit $RC"
fi
out=$(same_params "$WORK/reference/final.h5" "$WORK/preempt/run/final.h5" 2>&1) \
  && pass "d. pre-empted + resumed final.h5 bit-identical to the uninterrupted run ($out)" \
  || { echo "$out"; fail "d. final parameters differ from the uninterrupted run"; }

# --- e. requeue: TERM to the steps, rank 0 requeues the job, it resumes -----
t=$SECONDS
REQUEUE=1 submit requeue train_srun.sbatch && wait_training "$WORK/requeue/run" 90 || true
note "requeue job $JOB: training under way after $((SECONDS - t)) s"
scancel --signal=TERM "$JOB" 2>/dev/null || true
wait_rc 240
note "requeue job $JOB: sbatch --wait returned $RC $((SECONDS - t)) s after submission"
log=$WORK/requeue/job-$JOB.out
gap=$("$PY" - "$log" <<'PY' 2>/dev/null || true
import re, sys, datetime
t = [datetime.datetime.strptime(m, "%Y-%m-%d %H:%M:%S") for m in
     re.findall(r"^\[(\S+ \S+)\] (?:ringtrain exited with code 75|job \d+ \(restart 1\))", open(sys.argv[1]).read(), re.M)]
print(int((t[1] - t[0]).total_seconds()))
PY
)
note "requeue job $JOB: restarted ${gap:-?} s after the pre-empted run ended"
if [ "$RC" = 0 ] && grep -q "ringtrain exited with code 75" "$log" \
  && grep -q "restart 1" "$log" && grep -q "resumed from" "$log"; then
  pass "e. TERM -> checkpoint, exit 75, job requeued itself, restarted (restart 1), resumed, exit 0"
else
  show_job requeue; scontrol show job "$JOB" 2>/dev/null | head -20 || true; fail "e. requeue path: exit $RC"
fi
out=$(same_params "$WORK/reference/final.h5" "$WORK/requeue/run/final.h5" 2>&1) \
  && pass "e. requeued + resumed final.h5 bit-identical to the uninterrupted run" \
  || { echo "$out"; fail "e. final parameters differ from the uninterrupted run"; }

echo "$PASSES passed, $FAILURES failed ($((SECONDS - T0)) s)"
[ "$FAILURES" = 0 ]
