#!/usr/bin/env bash
# Pre-emption end to end, 2 ranks, Fashion-MNIST slice. A stop signal only
# sets a flag; all ranks stop on the same step, rank 0 writes a checkpoint and
# every rank exits 75; --resume auto then ends bit-identical to an
# uninterrupted run. Cases: SIGUSR1 to one rank, SIGTERM twice to every rank
# (the second while the checkpoint is being written), SIGUSR1 to mpirun (which
# forwards it), and train.requeue outside Slurm (a warning, still 75).
source "$(dirname "$0")/common.sh" "$@"
[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip_test "Fashion-MNIST not installed (dataset-fashion-mnist)"
"$PY" -c "import h5py" 2>/dev/null || skip_test "python3-h5py not installed"

ARGS=(--data.train="$FASHION/train-images-idx3-ubyte.gz" --data.max_rows=3000 --model.hidden=256,128
      --train.epochs=6 --optim.name=adamw --optim.lr=0.001 --model.dropout=0.1 --checkpoint.keep_last=2
      --run.progress=false)

# Runs ringtrain train on 2 ranks in the background, recording each rank's
# exit code in $1.rc/rc.<rank>. Sets JOB (the pid of timeout, whose child is
# the launcher).
start_job() {
  local dir=$1; shift
  mkdir -p "$dir.rc"
  timeout 300 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 2 bash -c \
    '"$@"; echo $? >"'"$dir.rc"'/rc.${OMPI_COMM_WORLD_RANK:-0}"' _ \
    "$RINGTRAIN" train "${ARGS[@]}" --run.dir="$dir" "$@" >"$dir.log" 2>&1 &
  JOB=$!
}
# waits until the run in $1 has written its first checkpoint (training under way)
wait_started() {
  local i
  for i in $(seq 1 6000); do
    compgen -G "$1/checkpoints/ckpt-*.h5" >/dev/null && return 0
    sleep 0.02
  done
  return 1
}
# check_preempted NAME DIR LAUNCHER_RC: every rank 75, one "pre-empted" line,
# a checkpoint; then resume and compare with the reference.
check_preempted() {
  local name=$1 dir=$2 launcher_rc=$3
  local codes
  codes=$(cat "$dir.rc"/rc.* 2>/dev/null | sort | tr '\n' ' ')
  [ "$codes" = "75 75 " ] && pass "$name: every rank exits 75 (launcher: $launcher_rc)" \
    || { fail "$name: exit codes per rank '$codes', expected '75 75'"; tail -20 "$dir.log" >&2; }
  local line step
  line=$(grep -m1 '^pre-empted: .*all stopped after step .*ckpt-.*\.h5 written; continue with --resume auto' "$dir.log" || true)
  step=$(sed -n 's/.*all stopped after step \([0-9]*\) of.*/\1/p' <<<"$line")
  [ -n "$line" ] && pass "$name: $(cut -c1-140 <<<"$line")" || { fail "$name: no pre-emption message"; tail -5 "$dir.log" >&2; }
  [ -n "$step" ] && [ -f "$dir/checkpoints/ckpt-$step.h5" ] && pass "$name: checkpoints/ckpt-$step.h5 is on disk" \
    || fail "$name: no checkpoint of the step it stopped at ($step)"
  "$PY" - "$dir/events.jsonl" "$step" <<'PY' && pass "$name: events.jsonl ends with a 'preempted' end record at step $step" \
    || fail "$name: events.jsonl"
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
end = events[-1]
assert end["event"] == "end" and end["reason"] == "preempted" and end["step"] == int(sys.argv[2]), end
assert [e["event"] for e in events].count("start") == 1
PY
  [ -e "$dir/final.h5" ] && fail "$name: final.h5 written by a stopped run"
  ls "$dir/checkpoints" | grep -q '\.tmp$' && fail "$name: a temporary file is left"
  rt_mpirun 2 "$RINGTRAIN" train "${ARGS[@]}" --run.dir="$dir" --resume=auto >"$dir.resume.log" 2>&1 \
    && grep -q "^resumed from .*/ckpt-$step\.h5 at step $step " "$dir.resume.log" \
    && same_params "$dir/final.h5" "$WORK/ref/final.h5" \
    && pass "$name: --resume auto continues from step $step and ends bit-identical to the uninterrupted run" \
    || { fail "$name: resume"; grep -m1 'resum' "$dir.resume.log" >&2; tail -3 "$dir.resume.log" >&2; }
}

start=$SECONDS
rt_mpirun 2 "$RINGTRAIN" train "${ARGS[@]}" --run.dir="$WORK/ref" >"$WORK/ref.log" 2>&1 \
  && pass "uninterrupted reference run ($((SECONDS - start)) s)" || { fail "reference run"; tail "$WORK/ref.log" >&2; }

# 1. SIGUSR1 to rank 1 only.
start_job "$WORK/usr1"
wait_started "$WORK/usr1" || fail "usr1: training did not start"
kill -USR1 "$(rank_pid "$WORK/usr1" 1)" || true
rc=0; wait $JOB || rc=$?
check_preempted "SIGUSR1 to rank 1" "$WORK/usr1" $rc

# 2. SIGTERM to both ranks, then again right away (while rank 0 checkpoints).
start_job "$WORK/term"
wait_started "$WORK/term" || fail "term: training did not start"
p0=$(rank_pid "$WORK/term" 0) p1=$(rank_pid "$WORK/term" 1)
kill -TERM "$p0" "$p1" || true
during=no
for _ in $(seq 1 2000); do
  compgen -G "$WORK/term/checkpoints/*.tmp" >/dev/null && { during=yes; break; }
  sleep 0.001
done
kill -TERM "$p0" "$p1" 2>/dev/null || true
echo "  (second SIGTERM sent while the checkpoint was being written: $during)"
rc=0; wait $JOB || rc=$?
check_preempted "SIGTERM twice to every rank" "$WORK/term" $rc

# 3. SIGUSR1 to the launcher: mpirun forwards it to its children, so here
# they are the ranks themselves (no wrapper), and mpirun's own code is checked.
timeout 300 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 2 "$RINGTRAIN" train "${ARGS[@]}" --run.dir="$WORK/launcher" \
  >"$WORK/launcher.log" 2>&1 &
JOB=$!
wait_started "$WORK/launcher" || fail "launcher: training did not start"
kill -USR1 "$(pgrep -P $JOB)" || true
rc=0; wait $JOB || rc=$?
mkdir -p "$WORK/launcher.rc" && echo 75 >"$WORK/launcher.rc/rc.0"
[ $rc = 75 ] && echo 75 >"$WORK/launcher.rc/rc.1"  # mpirun returns the ranks' common code
check_preempted "SIGUSR1 to mpirun" "$WORK/launcher" $rc

# 4. train.requeue outside Slurm: said so, still a clean pre-emption.
start_job "$WORK/requeue" --train.requeue=true
wait_started "$WORK/requeue" || fail "requeue: training did not start"
kill -USR1 "$(rank_pid "$WORK/requeue" 0)" || true
wait $JOB || true
codes=$(cat "$WORK/requeue.rc"/rc.* | sort | tr '\n' ' ')
[ "$codes" = "75 75 " ] && grep -q 'train.requeue: not inside a Slurm allocation' "$WORK/requeue.log" \
  && pass "train.requeue outside Slurm: warning, exit 75" || { fail "requeue outside Slurm ($codes)"; tail -5 "$WORK/requeue.log" >&2; }
finish
