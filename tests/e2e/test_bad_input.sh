#!/usr/bin/env bash
# Bad input, table-driven, on 1 and 2 ranks: each case must end EVERY rank
# with exit code 2 (3 for a full disk; recorded per rank), print one
# "ringtrain: error:" line that names the problem, never hang (each run is
# under a timeout), and leave an existing run's files byte-for-byte
# untouched, models, records and config.ini alike (cases on @RUN@, @RUN3@ and
# @FULL@ work on a copy of a prepared run directory whose files are compared
# afterwards).
source "$(dirname "$0")/common.sh" "$@"
"$PY" -c "import h5py, numpy" 2>/dev/null || skip_test "python3-h5py / python3-numpy not installed"

D=$WORK/data
mkdir -p "$D"
"$PY" - "$D" <<'PY'
import gzip, sys, h5py, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
def save(name, X, y, xname="X", yname="y"):
    with h5py.File(f"{d}/{name}", "w") as f:
        f[xname] = X
        f[yname] = y
X = rng.normal(size=(40, 4)).astype(np.float32)
y = (np.arange(40) % 3).astype(np.int32)
save("good.h5", X, y)
save("val_5feat.h5", rng.normal(size=(10, 5)).astype(np.float32), y[:10])
save("val_labels7.h5", X[:10], np.full(10, 7, np.int32))
Xn = X.copy(); Xn[13, 2] = np.nan; save("nan.h5", Xn, y)
Xi = X.copy(); Xi[26, 0] = np.inf; save("inf.h5", Xi, y)
save("x1d.h5", X[:, 0].copy(), y)
save("names.h5", X, y, xname="features")
save("floatlabels.h5", X, y.astype(np.float32))
save("tiny.h5", X[2:3], y[2:3])  # one row, label 2
save("rowsdiffer.h5", X, y[:30])
ym = y.copy(); ym[5] = -1; save("neglabel.h5", X, ym)
# IDX: a truncated gzip stream, and images without their labels file
hdr = bytes([0, 0, 8, 3, 0, 0, 0, 50, 0, 0, 0, 4, 0, 0, 0, 4])
full = gzip.compress(hdr + bytes(range(256)) * 4)
open(f"{d}/cut-images-idx3-ubyte.gz", "wb").write(full[: len(full) // 2])
open(f"{d}/cut-labels-idx1-ubyte.gz", "wb").write(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 50]) + bytes(i % 3 for i in range(50))))
open(f"{d}/lonely-images-idx3-ubyte.gz", "wb").write(full)
open(f"{d}/notdata.bin", "w").write("just text\n")
# a truncated HDF5 file
big = rng.normal(size=(4000, 16)).astype(np.float32)
save("big.h5", big, (np.arange(4000) % 3).astype(np.int32))
raw = open(f"{d}/big.h5", "rb").read()
open(f"{d}/trunc.h5", "wb").write(raw[: len(raw) // 2])
# one flipped byte in a Fletcher32-checksummed chunk
with h5py.File(f"{d}/sum.h5", "w") as f:
    f.create_dataset("X", data=big, chunks=(500, 16), fletcher32=True)
    f["y"] = (np.arange(4000) % 3).astype(np.int32)
raw = bytearray(open(f"{d}/sum.h5", "rb").read())
raw[len(raw) // 2] ^= 0x40
open(f"{d}/flipped.h5", "wb").write(bytes(raw))
save("hugelabels.h5", X, (np.arange(40) % 3 * 100000).astype(np.int64))
save("oneclass.h5", X, np.zeros(40, np.int32))
PY
printf '[optim]\nlearning_rate = 0.1\n' >"$D/unknown_key.ini"
printf '[optim\nlr = 0.1\n' >"$D/malformed.ini"
printf 'not a directory\n' >"$D/afile"
mkdir -p "$D/oldrun" && echo '{}' >"$D/oldrun/metrics.jsonl"

good=(--data.train="$D/good.h5" --data.val_fraction=0 --train.epochs=1 --run.progress=false)

# Prepared run directories, for each world size n: prev<n> (finished),
# stopped<n> (stopped after 2 of 4 steps: a resume has work to do), prev3 (3 ranks).
prep=(--data.train="$D/good.h5" --data.val_fraction=0.25 --train.epochs=4 --run.progress=false
      --checkpoint.keep_last=3)
for n in 1 2 3; do
  rt_mpirun "$n" "$RINGTRAIN" train "${prep[@]}" --run.dir="$D/prev$n" >"$WORK/prep.log" 2>&1 \
    || { cat "$WORK/prep.log" >&2; fail "preparing a run on $n ranks"; }
done
for n in 1 2; do
  rt_mpirun "$n" "$RINGTRAIN" train "${prep[@]}" --run.dir="$D/stopped$n" --train.stop_after_steps=2 \
    >"$WORK/prep.log" 2>&1 || { cat "$WORK/prep.log" >&2; fail "preparing a stopped run on $n ranks"; }
done
# A tiny file system for the full-disk case (root only; skipped otherwise).
TINY="$WORK/tiny"
mkdir -p "$TINY"
if mount -t tmpfs -o size=4m tmpfs "$TINY" 2>/dev/null; then
  trap 'umount "$TINY" 2>/dev/null; rm -rf "$WORK"' EXIT
else
  TINY=""
fi
# name | expected text in the message | arguments
cases=(
  "unknown option|train.bogus|${good[*]} --train.bogus=1"
  "malformed integer|train.batch_per_rank|${good[*]} --train.batch_per_rank=abc"
  "zero batch|train.batch_per_rank|${good[*]} --train.batch_per_rank=0"
  "negative epochs|train.epochs|--data.train=$D/good.h5 --train.epochs=-3"
  "non-finite lr|optim.lr|${good[*]} --optim.lr=inf"
  "bad boolean|train.shuffle|${good[*]} --train.shuffle=perhaps"
  "bad activation|model.activation|${good[*]} --model.activation=swish"
  "bad hidden sizes|model.hidden|${good[*]} --model.hidden=64,-1"
  "bad algorithm|comm.algorithm|${good[*]} --comm.algorithm=butterfly"
  "missing config|nope.ini|${good[*]} --config $D/nope.ini"
  "unknown INI key|optim.learning_rate|${good[*]} --config $D/unknown_key.ini"
  "malformed INI|config|${good[*]} --config $D/malformed.ini"
  "no training data|data.train|--run.progress=false"
  "missing train file|no such file|--data.train=$D/missing.h5"
  "not a data file|bad magic|--data.train=$D/notdata.bin"
  "truncated IDX|truncated|--data.train=$D/cut-images-idx3-ubyte.gz"
  "IDX without labels|lonely-labels-idx1-ubyte.gz|--data.train=$D/lonely-images-idx3-ubyte.gz"
  "truncated HDF5|trunc.h5|--data.train=$D/trunc.h5"
  "wrong dataset name|no dataset named 'X'|--data.train=$D/names.h5"
  "X not 2-D|dimensions|--data.train=$D/x1d.h5"
  "y rows differ|rows but|--data.train=$D/rowsdiffer.h5"
  "float labels|integer labels|--data.train=$D/floatlabels.h5"
  "negative label|label -1|--data.train=$D/neglabel.h5"
  "label out of range|out of range|${good[*]} --data.val=$D/val_labels7.h5"
  "NaN feature|non-finite|--data.train=$D/nan.h5 --data.val_fraction=0"
  "infinite feature|non-finite|--data.train=$D/inf.h5 --data.val_fraction=0"
  "feature count mismatch|features per row|${good[*]} --data.val=$D/val_5feat.h5"
  "fewer rows than ranks|fewer than the 2 ranks|--data.train=$D/tiny.h5 --data.val_fraction=0"
  "val split leaves nothing|data.val_fraction|--data.train=$D/good.h5 --data.val_fraction=0.99"
  "unwritable run dir|afile/run|--data.train=$D/good.h5 --run.dir=$D/afile/run"
  "run dir holds a run|already holds a run|--data.train=$D/good.h5 --run.dir=$D/oldrun"
  "regression on IDX|regression|--task=regression --data.train=$D/lonely-images-idx3-ubyte.gz"
  "abbreviated key|--optim.l|${good[*]} --optim.l=0.3"
  "config file without --config|unexpected argument|${good[*]} $D/unknown_key.ini"
  "integer overflow|train.batch_per_rank|${good[*]} --train.batch_per_rank=4294967297"
  "flipped byte in HDF5|checksum|--data.train=$D/flipped.h5 --data.val_fraction=0"
  "labels are not classes|classes|--data.train=$D/hugelabels.h5"
  "a single class|2 or more classes|--data.train=$D/oneclass.h5"
  "resume with another architecture|holds a 4-256-128-3 relu model, this run builds 4-8-3|${prep[*]} --run.dir=@RUN@ --resume=auto --model.hidden=8"
  "checkpoint of another architecture|this run builds 4-32-16-3|${prep[*]} --resume=@RUN@/checkpoints/ckpt-4.h5 --model.hidden=32,16"
  "init_from another architecture|train.init_from: |${prep[*]} --train.init_from=@RUN@/best.h5 --model.hidden=8"
  "resume on another world size|train.allow_reshape|${prep[*]} --run.dir=@RUN3@ --resume=auto"
  "resume a missing checkpoint|nothere.h5|${prep[*]} --resume=$D/nothere.h5"
  "negative timeout|comm.timeout_seconds|${good[*]} --comm.timeout_seconds=-5"
  "full disk|No space left on device|${prep[*]} --run.dir=@FULL@ --resume=auto|3"
  "disk full mid-run|.h5.tmp: No space left on device|${prep[*]} --run.dir=@NEARLYFULL@ --resume=auto|3"
)

# Fingerprint of every file of a run directory (run.lock aside: each job that
# takes the lock writes its name there).
# A run that fails mid-way on a full disk (exit 3) has appended its records:
# there the models and checkpoints alone must be untouched.
run_sums() {  # dir want
  if [ "$2" = 3 ]; then (cd "$1" && find . -name '*.h5' -print0 | sort -z | xargs -0 -r sha256sum)
  else (cd "$1" && find . -path ./run.lock -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum); fi
}

# Each case runs in the background and leaves its verdict in $WORK/verdict_<tag>
# ("ok: ..." or "FAIL: ..." lines, then any diagnostics): the cases take turns
# with up to $BAD_INPUT_JOBS at once (mpirun's start-up is most of each case's
# time, and waiting), except those on the shared tmpfs, which run one by one.
run_case() {  # np name needle args code
  local np=$1 name=$2 needle=$3 args=$4 want=$5 tag="${2// /_}_np$1" prepared="" copy=""
  local run="$WORK/run_$tag" rc_dir="$WORK/rc_$tag" out="$WORK/out_$tag" err="$WORK/err_$tag"
  local verdict="$WORK/verdict_$tag"
  case "$args" in
    *@RUN3@*) prepared="$D/prev3"; copy="$WORK/copy_$tag"; args=${args//@RUN3@/$copy} ;;
    *@RUN@*) prepared="$D/prev$np"; copy="$WORK/copy_$tag"; args=${args//@RUN@/$copy} ;;
    *FULL@*)
      [ -n "$TINY" ] || { echo "SKIP: $name: cannot mount a tmpfs here (not root)" >"$verdict"; return; }
      prepared="$D/stopped$np"; copy="$TINY/run"; args=${args//@FULL@/$copy}; args=${args//@NEARLYFULL@/$copy} ;;
  esac
  if [ -n "$copy" ]; then
    rm -rf "$copy" && cp -a "$prepared" "$copy"
    if [ "$copy" = "$TINY/run" ]; then
      # Full: not a byte left. Nearly full: room for config.ini and the
      # metrics, not for the next checkpoint.
      local room=0
      [[ "$4" == *@NEARLYFULL@* ]] && room=$((96 * 1024))
      local avail
      avail=$(df --output=avail -B1 "$TINY" | tail -1)
      head -c $((avail > room ? avail - room : 0)) /dev/zero >"$TINY/filler" 2>/dev/null || true
    fi
  fi
  mkdir -p "$rc_dir"
  [[ "$args" == *--run.dir=* ]] || args="$args --run.dir=$run"
  # (|| keeps set -e from ending the case before its verdict is written)
  local launcher_rc=0
  # shellcheck disable=SC2086  # args is a word list by design
  timeout 60 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n "$np" bash -c \
    '"$@"; echo $? >"'"$rc_dir"'/rank.${OMPI_COMM_WORLD_RANK:-0}"' _ \
    "$RINGTRAIN" train $args >"$out" 2>"$err" || launcher_rc=$?
  local codes want_codes
  codes=$(cat "$rc_dir"/rank.* 2>/dev/null | sort | tr '\n' ' ' || true)
  want_codes=$(for _ in $(seq "$np"); do printf '%s ' "$want"; done)
  local errors
  errors=$(grep -c '^ringtrain: error:' "$err" || true)
  {
    if [ "$launcher_rc" = 124 ]; then
      echo "FAIL: $name ($np ranks): hung (killed after 60 s)"
    elif [ "$codes" != "$want_codes" ]; then
      echo "FAIL: $name ($np ranks): exit codes per rank '$codes', expected '$want_codes'"; cat "$err"
    elif ! grep -qF -- "$needle" "$err"; then
      echo "FAIL: $name ($np ranks): message does not mention '$needle'"; cat "$err"
    elif [ "$errors" != 1 ]; then
      echo "FAIL: $name ($np ranks): $errors error lines, expected exactly one"; cat "$err"
    elif [ -n "$copy" ] && [ "$(run_sums "$copy" "$want")" != "$(run_sums "$prepared" "$want")" ]; then
      echo "FAIL: $name ($np ranks): files of the existing run changed"
    elif [ -n "$copy" ] && find "$copy" -name '*.tmp' | grep -q .; then
      echo "FAIL: $name ($np ranks): a temporary file is left behind"
    else
      echo "ok: $name ($np ranks): $(grep '^ringtrain: error:' "$err" | cut -c1-150)"
    fi
  } >"$verdict"
  if [ -n "$copy" ]; then rm -rf "$copy" "$TINY/filler" 2>/dev/null || true; fi
}

BAD_INPUT_JOBS=${BAD_INPUT_JOBS:-3}
tags=()
for entry in "${cases[@]}"; do
  IFS='|' read -r name needle args want <<<"$entry"
  for np in 1 2; do
    # Fewer training rows than ranks needs more than one rank.
    [ "$name" = "fewer rows than ranks" ] && [ "$np" = 1 ] && continue
    tags+=("${name// /_}_np$np")
    if [[ "$args" == *FULL@* ]]; then
      wait  # the tmpfs is shared: this case runs alone
      run_case "$np" "$name" "$needle" "$args" "${want:-2}"
    else
      while [ "$(jobs -rp | wc -l)" -ge "$BAD_INPUT_JOBS" ]; do wait -n || true; done
      run_case "$np" "$name" "$needle" "$args" "${want:-2}" &
    fi
  done
done
wait
for tag in "${tags[@]}"; do
  v="$WORK/verdict_$tag"
  if [ ! -s "$v" ]; then fail "$tag: no verdict (the case did not finish)"; continue; fi
  first=$(head -1 "$v")
  case "$first" in
    "ok: "*) pass "${first#ok: }" ;;
    "FAIL: "*) fail "${first#FAIL: }"; tail -n +2 "$v" >&2 ;;
    *) echo "$first" ;;
  esac
done
echo "$(( ${#cases[@]} )) bad inputs, each on 1 and 2 ranks (but 'fewer rows than ranks')"
finish
