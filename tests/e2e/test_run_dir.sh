#!/usr/bin/env bash
# The run directory is never lost: one job at a time (run.lock), every check
# before the first write, and nothing written over a file ringtrain did not
# create. Each refused case must end every rank with exit 2, print exactly one
# "ringtrain: error:" line that names the problem, and leave every file that
# was there byte-for-byte unchanged (run.lock aside: each job that takes the
# lock writes its name into it). Cases on 1 and 2 ranks where the world size
# matters; the two-jobs and killed-launcher races on 2 ranks.
source "$(dirname "$0")/common.sh" "$@"
"$PY" -c "import h5py, numpy" 2>/dev/null || skip_test "python3-h5py / python3-numpy not installed"

D=$WORK/data
mkdir -p "$D"
"$PY" - "$D" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(1)
def save(name, rows, feats):
    X = rng.normal(size=(rows, feats)).astype(np.float32)
    y = (np.arange(rows) % 3).astype(np.int32)
    X[:, 0] += y  # learnable
    with h5py.File(f"{d}/{name}", "w") as f:
        f["X"] = X
        f["y"] = y
save("data.h5", 600, 16)
save("small.h5", 300, 16)
save("long.h5", 4000, 64)
PY

BASE=(--data.train="$D/data.h5" --data.val_fraction=0.2 --train.batch_per_rank=16 --model.hidden=32
      --run.progress=false)
E3=--train.epochs=3  # (an option given twice is an error: cases that set it leave this out)

# Fingerprint of every file under a directory (run.lock left out).
tree_sums() { [ -d "$1" ] || { echo "(no $1)"; return; }; (cd "$1" && find . -path ./run.lock -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum); }

# rt NP TAG ARGS...: runs ringtrain on NP ranks; per-rank exit codes in
# $WORK/rc_TAG/rank.N, output in $WORK/out_TAG and $WORK/err_TAG.
rt() {
  local np=$1 tag=$2; shift 2
  rm -rf "$WORK/rc_$tag" && mkdir -p "$WORK/rc_$tag"
  timeout 120 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n "$np" bash -c \
    '"$@"; echo $? >"'"$WORK/rc_$tag"'/rank.${OMPI_COMM_WORLD_RANK:-0}"' _ \
    "$RINGTRAIN" "$@" >"$WORK/out_$tag" 2>"$WORK/err_$tag" || true
}
codes() { cat "$WORK/rc_$1"/rank.* 2>/dev/null | sort | tr '\n' ' '; }
want_codes() { for _ in $(seq "$1"); do printf '%s ' "$2"; done; }

# prepare DIR NP ARGS...: a run that must succeed (exit 0, or 75/4 given as $want)
prepare() {
  local dir=$1 np=$2; shift 2
  rm -rf "$dir"
  local ep=$E3
  [[ " $* " == *" --train.epochs="* ]] && ep=
  rt "$np" prep train "${BASE[@]}" $ep --run.dir="$dir" "$@"
  [ "$(codes prep)" = "$(want_codes "$np" 0)" ] || { cat "$WORK/err_prep" >&2; fail "preparing $dir: $(codes prep)"; return 1; }
}

# refused NAME NP NEEDLE DIR ARGS...: every rank exits 2 with one error line
# naming NEEDLE; every file under DIR (and $EXTRA_DIR, if set) is unchanged.
refused() {
  local name=$1 np=$2 needle=$3 dir=$4; shift 4
  local before extra_before="" tag
  tag=$(tr -c "A-Za-z0-9\n" _ <<<"${name}_$np")
  before=$(tree_sums "$dir")
  [ -z "${EXTRA_DIR:-}" ] || extra_before=$(tree_sums "$EXTRA_DIR")
  rt "$np" "$tag" "$@"
  local errors
  errors=$(grep -c '^ringtrain: error:' "$WORK/err_$tag" || true)
  if [ "$(codes "$tag")" != "$(want_codes "$np" 2)" ]; then
    fail "$name ($np ranks): exit codes '$(codes "$tag")', expected 2 on every rank"; cat "$WORK/err_$tag" >&2
  elif ! grep -qF -- "$needle" "$WORK/err_$tag"; then
    fail "$name ($np ranks): message does not mention '$needle'"; cat "$WORK/err_$tag" >&2
  elif [ "$errors" != 1 ]; then
    fail "$name ($np ranks): $errors error lines, expected one"; cat "$WORK/err_$tag" >&2
  elif [ "$(tree_sums "$dir")" != "$before" ]; then
    fail "$name ($np ranks): files in $dir changed"
  elif [ -n "${EXTRA_DIR:-}" ] && [ "$(tree_sums "$EXTRA_DIR")" != "$extra_before" ]; then
    fail "$name ($np ranks): files in $EXTRA_DIR changed"
  elif find "$dir" -name '*.tmp' | grep -q .; then
    fail "$name ($np ranks): a temporary file is left behind"
  else
    pass "$name ($np ranks): $(grep '^ringtrain: error:' "$WORK/err_$tag" | cut -c1-160)"
  fi
}

for np in 1 2; do
  R=$WORK/r$np
  # A finished run without checkpoints, resumed with another model: before,
  # a fresh run replaced best.h5, final.h5 and metrics.jsonl.
  prepare "$R/nockpt" "$np" --checkpoint.keep_last=0 || true
  refused "resume auto over a run without checkpoints" "$np" "holds a run" "$R/nockpt" \
    train "${BASE[@]/--model.hidden=32/--model.hidden=8}" $E3 --run.dir="$R/nockpt" --resume=auto --checkpoint.keep_last=0
  # A run stopped before its first evaluation (checkpoints, no metrics.jsonl):
  # before, a fresh run was accepted there and pruned its own checkpoints.
  prepare "$R/stopped" "$np" --train.stop_after_steps=2 || true
  refused "fresh run over a stopped run" "$np" "already holds a run" "$R/stopped" \
    train "${BASE[@]}" $E3 --run.dir="$R/stopped"
  # The same, settings changed on resume: config.ini is not rewritten first.
  refused "resume with other settings keeps config.ini" "$np" "optim.lr (0.1 -> 0.5)" "$R/stopped" \
    train "${BASE[@]}" $E3 --run.dir="$R/stopped" --resume=auto --optim.lr=0.5
  # A plan shorter than the checkpoint's step.
  prepare "$R/done" "$np" || true
  refused "resume past the end of the plan" "$np" "raise train.epochs" "$R/done" \
    train "${BASE[@]}" --run.dir="$R/done" --resume=auto --train.epochs=1
  # The data file replaced by a smaller one under the same name.
  cp "$D/data.h5" "$WORK/swap.h5"
  SWAP=("${BASE[@]/--data.train=*/--data.train=$WORK/swap.h5}")
  BASE_SAVED=("${BASE[@]}"); BASE=("${SWAP[@]}")
  prepare "$R/swap" "$np" --train.stop_after_steps=20 || true
  BASE=("${BASE_SAVED[@]}")
  cp "$D/small.h5" "$WORK/swap.h5"
  refused "resume after the data shrank" "$np" "the training data now gives 240" "$R/swap" \
    train "${SWAP[@]}" $E3 --run.dir="$R/swap" --resume=auto
  # restore_best needs best.h5: checked before anything is written.
  prepare "$R/rb" "$np" --early_stop.restore_best=true --train.epochs=6 --train.stop_after_steps=60 || true
  rm -f "$R/rb/best.h5"
  refused "restore_best without best.h5" "$np" "early_stop.restore_best" "$R/rb" \
    train "${BASE[@]}" --run.dir="$R/rb" --resume=auto --early_stop.restore_best=true --train.epochs=6
  # checkpoints/ a symlink to a folder of other checkpoints.
  mkdir -p "$R/elsewhere" && cp "$R/done/checkpoints/"*.h5 "$R/elsewhere/"
  mkdir -p "$R/linked" && ln -s "$R/elsewhere" "$R/linked/checkpoints"
  EXTRA_DIR=$R/elsewhere refused "checkpoints/ is a symlink (fresh)" "$np" "is a symlink" "$R/linked" \
    train "${BASE[@]}" $E3 --run.dir="$R/linked"
  EXTRA_DIR=$R/elsewhere refused "checkpoints/ is a symlink (resume)" "$np" "is a symlink" "$R/linked" \
    train "${BASE[@]}" $E3 --run.dir="$R/linked" --resume=auto
  # The user's own config file is the run directory's config.ini.
  mkdir -p "$R/exp1"
  printf '# my experiment: keep this comment\n[model]\nhidden = 32\n' >"$R/exp1/config.ini"
  refused "--config is run.dir/config.ini" "$np" "--config" "$R/exp1" \
    train --config "$R/exp1/config.ini" "${BASE[@]}" $E3 --run.dir="$R/exp1"
  refused "--config is run.dir/config.ini (resume auto)" "$np" "--config" "$R/exp1" \
    train --config "$R/exp1/config.ini" "${BASE[@]}" $E3 --run.dir="$R/exp1" --resume=auto
  # A checkpoint resumed into another run's directory.
  refused "resume PATH into another run" "$np" "holds another run" "$R/done" \
    train "${BASE[@]}" $E3 --run.dir="$R/done" --resume="$R/swap/checkpoints/ckpt-20.h5"
done

R=$WORK/r2
# Entries ringtrain writes, planted as links or special files.
mkdir -p "$R/lockl" && echo "precious" >"$R/victim.txt" && ln -s "$R/victim.txt" "$R/lockl/run.lock"
before=$(sha256sum <"$R/victim.txt")
refused "run.lock is a symlink" 2 "run.lock" "$R/lockl" train "${BASE[@]}" $E3 --run.dir="$R/lockl"
[ "$(sha256sum <"$R/victim.txt")" = "$before" ] && pass "the symlink's target is unchanged" || fail "victim.txt changed"
prepare "$R/bestl" 2 --train.stop_after_steps=20 || true
rm "$R/bestl/best.h5" && ln -s "$R/victim.txt" "$R/bestl/best.h5"
refused "best.h5 is a symlink" 2 "best.h5 is a symlink" "$R/bestl" train "${BASE[@]}" $E3 --run.dir="$R/bestl" --resume=auto
[ "$(sha256sum <"$R/victim.txt")" = "$before" ] && pass "best.h5's target is unchanged" || fail "victim.txt changed"
mkdir -p "$R/fifo" && mkfifo "$R/fifo/metrics.jsonl"
refused "metrics.jsonl is a FIFO" 2 "not a regular file" "$R/fifo" train "${BASE[@]}" $E3 --run.dir="$R/fifo" --resume=auto
[ -p "$R/fifo/metrics.jsonl" ] && pass "the FIFO is still a FIFO" || fail "the FIFO was replaced"

# A data file planted under one of the run's own names, then resumed with it.
prepare "$R/planted" 2 --train.stop_after_steps=5 || true
cp "$D/data.h5" "$R/planted/final.h5"
refused "data.train is the run's final.h5" 2 "is the run directory's final.h5" "$R/planted" \
  train "${BASE[@]/--data.train=*/--data.train=$R/planted/final.h5}" $E3 --run.dir="$R/planted" --resume=auto

# --resume auto where a launch died before its first checkpoint: only its
# config.ini and events.jsonl are there, so it starts over (and says so).
prepare "$R/early" 2 --train.stop_after_steps=1 --checkpoint.keep_last=0 || true
rm -f "$R/early/manifest.json" "$R/early/run.lock"
rt 2 early train "${BASE[@]}" $E3 --run.dir="$R/early" --resume=auto
[ "$(codes early)" = "0 0 " ] && grep -q "only the records of a launch that never checkpointed" "$WORK/out_early" \
  && pass "resume auto over a launch that never checkpointed starts over" \
  || { fail "resume auto over an unfinished launch: $(codes early)"; cat "$WORK/err_early" >&2; }

# --resume auto where a launch of the same settings got as far as an
# evaluation (metrics.jsonl) but not its first checkpoint, as when a job is
# killed between the two (the checkpoint is written before best.h5): it
# starts over, and ends as an uninterrupted run would. The state is made from
# a run stopped after its first evaluation that kept no checkpoint: its
# best.h5, manifest and "end" record removed, its config.ini saying it kept 2.
# Refused, files unchanged: other settings (one a resume may change too),
# another world size, a best.h5 (its checkpoints were deleted), an "end".
prepare "$R/evalonly" 2 --train.stop_after_steps=25 --checkpoint.keep_last=0 || true
cp -a "$R/evalonly" "$R/evalonly_best"
rm -f "$R/evalonly/best.h5" "$R/evalonly/manifest.json"
grep -v '"event":"end"' "$R/evalonly/events.jsonl" >"$WORK/ev" && cat "$WORK/ev" >"$R/evalonly/events.jsonl"
sed -i 's/^keep_last = 0$/keep_last = 2/' "$R/evalonly/config.ini"
for c in other world batch ended noevents; do cp -a "$R/evalonly" "$R/evalonly_$c"; done
rm "$R/evalonly_noevents/events.jsonl"
grep '"event":"end"' "$R/evalonly_best/events.jsonl" >>"$R/evalonly_ended/events.jsonl"
refused "resume auto, no checkpoint, other settings" 2 "it has other settings: optim.lr (0.1 -> 0.3)" \
  "$R/evalonly_other" train "${BASE[@]}" $E3 --run.dir="$R/evalonly_other" --resume=auto --optim.lr=0.3
refused "resume auto, no checkpoint, other batch (resume-free key)" 2 "train.batch_per_rank (16 -> 8)" \
  "$R/evalonly_batch" train "${BASE[@]/--train.batch_per_rank=16/--train.batch_per_rank=8}" $E3 \
  --run.dir="$R/evalonly_batch" --resume=auto
refused "resume auto, no checkpoint, other world size" 1 "it ran on 2 ranks" "$R/evalonly_world" \
  train "${BASE[@]}" $E3 --run.dir="$R/evalonly_world" --resume=auto
refused "resume auto, no checkpoint, events.jsonl gone (world size unknown)" 1 "world size is unknown" \
  "$R/evalonly_noevents" train "${BASE[@]}" $E3 --run.dir="$R/evalonly_noevents" --resume=auto
refused "resume auto, no checkpoint, but best.h5" 2 "it has best.h5" "$R/evalonly_best" \
  train "${BASE[@]}" $E3 --run.dir="$R/evalonly_best" --resume=auto --checkpoint.keep_last=0 --train.stop_after_steps=5
refused "resume auto, no checkpoint, launch ended" 2 "records that it ended" "$R/evalonly_ended" \
  train "${BASE[@]}" $E3 --run.dir="$R/evalonly_ended" --resume=auto
rt 2 evalonly train "${BASE[@]}" $E3 --run.dir="$R/evalonly" --resume=auto
rt 2 evalref train "${BASE[@]}" $E3 --run.dir="$R/evalref"
# metrics.jsonl without its clock fields
metrics_but_time() {
  "$PY" -c "import json,sys; [print({k: v for k, v in json.loads(l).items() if k not in ('elapsed_s', 'samples_per_s')}) for l in open(sys.argv[1] + '/metrics.jsonl')]" "$1"
}
if [ "$(codes evalonly)" = "0 0 " ] && grep -q "stopped before its first checkpoint: starting it over" "$WORK/out_evalonly" \
   && same_params "$R/evalonly/final.h5" "$R/evalref/final.h5" \
   && [ "$(grep -c '"event":"start"' "$R/evalonly/events.jsonl")" = 1 ] \
   && [ "$(metrics_but_time "$R/evalonly")" = "$(metrics_but_time "$R/evalref")" ]; then
  pass "resume auto over an evaluated launch without checkpoint: started over, final.h5 and metrics.jsonl as an uninterrupted run's"
else
  fail "resume auto over an evaluated launch: $(codes evalonly)"; cat "$WORK/out_evalonly" "$WORK/err_evalonly" >&2
fi

# A checkpoint whose name says another step than it holds (copied or
# renamed): the newest is chosen by name, so resuming it would set newer
# checkpoints aside for an older state. Refused, every file unchanged.
prepare "$R/named" 2 --train.stop_after_steps=40 || true
first=$(ls "$R/named/checkpoints" | sort -t- -k2 -n | head -1)
cp "$R/named/checkpoints/$first" "$R/named/checkpoints/ckpt-999.h5"
refused "a checkpoint named for another step" 2 "not the 999 its name says" "$R/named" \
  train "${BASE[@]}" $E3 --run.dir="$R/named" --resume=auto

# run.lock that is another name of a data file, or a data file called
# run.lock: ringtrain writes its name into the lock file, so both are refused
# before that (before: the data file held "pid ... on ..." afterwards).
mkdir -p "$R/lockdata" "$R/lockname"
cp "$D/data.h5" "$R/lockdata/x.h5" && ln "$R/lockdata/x.h5" "$R/lockdata/run.lock"
refused "run.lock is a hard link of the data file" 2 "has other names (a hard link)" "$R/lockdata" \
  train "${BASE[@]/--data.train=*/--data.train=$R/lockdata/x.h5}" $E3 --run.dir="$R/lockdata"
cp "$D/data.h5" "$R/lockname/run.lock"
sum=$(sha256sum <"$R/lockname/run.lock")
refused "the data file is the run's run.lock" 2 "is not a lock file of ringtrain's" "$R/lockname" \
  train "${BASE[@]/--data.train=*/--data.train=$R/lockname/run.lock}" $E3 --run.dir="$R/lockname"
[ "$(sha256sum <"$R/lockname/run.lock")" = "$sum" ] && pass "the data file called run.lock is unchanged" \
  || fail "the data file called run.lock was written"

# Resuming with --config <run>/config.ini (the copy ringtrain wrote) is fine
# and leaves it as it is.
prepare "$R/cfg" 2 --train.stop_after_steps=10 || true
before=$(sha256sum <"$R/cfg/config.ini")
rt 2 cfg train --config "$R/cfg/config.ini" --run.dir="$R/cfg" --resume=auto --run.progress=false
[ "$(codes cfg)" = "0 0 " ] && [ "$(sha256sum <"$R/cfg/config.ini")" = "$before" ] \
  && pass "resume with --config run/config.ini: exit 0, config.ini unchanged" \
  || { fail "resume with --config run/config.ini: $(codes cfg)"; cat "$WORK/err_cfg" >&2; }

# Train longer: a finished run resumed with more epochs continues.
prepare "$R/longer" 2 || true
last_before=$(tail -1 "$R/longer/metrics.jsonl" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['step'])")
rt 2 longer train "${BASE[@]}" --run.dir="$R/longer" --resume=auto --train.epochs=5
last_after=$(tail -1 "$R/longer/metrics.jsonl" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['step'])")
if [ "$(codes longer)" = "0 0 " ] && [ "$last_after" -gt "$last_before" ] && grep -q "the plan changes from" "$WORK/out_longer"; then
  pass "train longer: resumed at step $last_before, trained to step $last_after"
else
  fail "train longer: codes '$(codes longer)', steps $last_before -> $last_after"; cat "$WORK/out_longer" "$WORK/err_longer" >&2
fi

# A batch larger than a rank's shard: trained as batches of the shard, and
# the lr scaled for those (before: for the batch asked for).
rt 2 bigbatch train "${BASE[@]/--train.batch_per_rank=16/--train.batch_per_rank=1000}" $E3 --run.dir="$R/bigbatch" \
  --eval.batch_size=2147483647
glob=$("$PY" -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if '\"start\"' in l][0]['global_batch'])" "$R/bigbatch/events.jsonl" 2>/dev/null || echo none)
[ "$(codes bigbatch)" = "0 0 " ] && [ "$glob" = 480 ] && grep -q "training on batches of 240" "$WORK/out_bigbatch" \
  && pass "batch above the shard: batches of 240 per rank, global batch 480 in the lr rule; eval.batch_size=2^31-1 runs" \
  || { fail "batch above the shard: codes '$(codes bigbatch)', global batch $glob"; cat "$WORK/out_bigbatch" "$WORK/err_bigbatch" >&2; }

# Two jobs on one directory: the second is refused while the first holds it.
LONG=(--data.train="$D/long.h5" --data.val_fraction=0.1 --train.batch_per_rank=32 --model.hidden=256,256
      --checkpoint.every_steps=100 --run.progress=false)
"$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 2 "$RINGTRAIN" train "${LONG[@]}" --train.epochs=200 --run.dir="$R/two" \
  >"$WORK/out_first" 2>&1 &
FIRST=$!
for _ in $(seq 600); do grep -q "^pid" "$R/two/run.lock" 2>/dev/null && break; sleep 0.05; done
rt 2 second train "${LONG[@]}" --train.epochs=200 --run.dir="$R/two"
kill -USR1 "$FIRST" 2>/dev/null || true  # mpirun forwards it: the first job checkpoints and exits 75
first_rc=0
wait "$FIRST" || first_rc=$?
starts=$(grep -c '"event":"start"' "$R/two/events.jsonl" || true)
if [ "$(codes second)" = "2 2 " ] && grep -q "is in use by another ringtrain job (pid" "$WORK/err_second" \
   && [ "$starts" = 1 ] && [ "$first_rc" = 75 ]; then
  pass "a second job on the same run.dir is refused: $(grep '^ringtrain: error:' "$WORK/err_second" | cut -c1-160)"
else
  fail "two jobs: second '$(codes second)', first exited $first_rc, $starts start records"; cat "$WORK/err_second" >&2
fi

# The launcher killed with SIGKILL, then --resume auto at once: the ranks it
# left behind still hold the lock, so the new job waits its turn (refused,
# retried) and never writes under them; the resumed run then ends exactly
# as an uninterrupted one.
SHORT=("${LONG[@]}" --train.epochs=30)  # LONG sets no train.epochs
rt 2 ref train "${SHORT[@]}" --run.dir="$R/ref"
"$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 2 "$RINGTRAIN" train "${SHORT[@]}" --run.dir="$R/killed" >"$WORK/out_killed" 2>&1 &
KILLED=$!
for _ in $(seq 1200); do compgen -G "$R/killed/checkpoints/ckpt-*.h5" >/dev/null && break; sleep 0.05; done
kill -KILL "$KILLED" 2>/dev/null || true
refusals=0
for _ in $(seq 200); do
  rt 2 resumed train "${SHORT[@]}" --run.dir="$R/killed" --resume=auto
  grep -q "is in use by another ringtrain job" "$WORK/err_resumed" || break
  refusals=$((refusals + 1)); sleep 0.1
done
same=no
same_params "$R/ref/final.h5" "$R/killed/final.h5" && same=yes
if [ "$(codes resumed)" = "0 0 " ] && [ "$same" = yes ]; then
  pass "launcher killed, resumed at once: refused $refusals time(s) while the old ranks lived, then final.h5 bit-identical to an uninterrupted run"
else
  fail "killed launcher: resumed '$(codes resumed)', final.h5 identical: $same"; cat "$WORK/err_resumed" >&2
fi

finish
