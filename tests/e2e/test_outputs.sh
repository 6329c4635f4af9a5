#!/usr/bin/env bash
# Outputs that ringtrain must not write: `predict --output`, `plot --output`
# / `--script` and `convert ... OUT` refuse (exit 2, one "ringtrain: error:"
# line naming the path) a path that is one of the files they read (by inode:
# hard links, symbolic links and other spellings count), a directory, device
# node, FIFO, socket or symbolic link, a read-only file, a missing folder, or
# a temporary name that is not a regular file. Every case compares a
# fingerprint of the whole data folder (each entry's type, link target and
# content) before and after: a refused command changes nothing, leaves no
# temporary and every FIFO, device and link stays what it was. Then what must
# keep working (replacing an output of its own, a stale temporary that is a
# second name of another file), a UTF-8 byte-order mark in a config file, and
# a signal in the middle of `convert`, which must leave no OUT.tmp behind.
source "$(dirname "$0")/common.sh" "$@"
"$PY" -c "import h5py, numpy" 2>/dev/null || skip_test "python3-h5py / python3-numpy not installed"

O=$WORK/orig  # the data and a trained run, copied afresh into $D when a case changed $D
mkdir -p "$O"
"$PY" - "$O" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
with h5py.File(f"{d}/good.h5", "w") as f:
    f["X"] = rng.normal(size=(40, 4)).astype(np.float32)
    f["y"] = (np.arange(40) % 3).astype(np.int32)
def idx(dims, values):
    return bytes([0, 0, 8, len(dims)]) + b"".join(int(v).to_bytes(4, "big") for v in dims) + bytes(values)
open(f"{d}/s-images-idx3-ubyte", "wb").write(idx([30, 2, 2], [i % 256 for i in range(120)]))
open(f"{d}/s-labels-idx1-ubyte", "wb").write(idx([30], [i % 3 for i in range(30)]))
PY
rt_mpirun 1 "$RINGTRAIN" train --data.train="$O/good.h5" --data.val_fraction=0.25 --train.epochs=2 \
  --run.progress=false --run.dir="$O/run" >"$WORK/prep.log" 2>&1 || { cat "$WORK/prep.log" >&2; fail "preparing a run"; }
echo '{"benchmark": "allreduce", "ranks": 2, "results": [{"bytes": 4096, "ring_busbw_gbs": 1.5, "mpi_busbw_gbs": 1.2},
  {"bytes": 1048576, "ring_busbw_gbs": 7.5, "mpi_busbw_gbs": 6.0}]}' >"$O/bench.json"

# $D: the data, the run, and what must survive every refused command.
D=$WORK/d
make_data() {
  rm -rf "$D" && mkdir -p "$D" && cp -a "$O/." "$D/"
  mkfifo "$D/fifo" "$D/fifo-images-idx3-ubyte"
  ln -s /dev/null "$D/devnull"
  ln "$D/good.h5" "$D/hardlink.h5"
  ln -s good.h5 "$D/symlink.h5"
  ln -s s-labels-idx1-ubyte "$D/labels-link"
  mkdir "$D/adir"
  cp "$D/good.h5" "$D/readonly.h5" && chmod 444 "$D/readonly.h5"
  echo "a file someone cares about" >"$D/victim.txt"
  ln -s victim.txt "$D/tmplink.h5.tmp"  # the temporary of tmplink.h5 leads elsewhere
  cp "$D/good.h5" "$D/data.h5.tmp"      # an input whose name is data.h5's temporary
  mkfifo "$D/tmpfifo.h5.tmp"
  "$PY" -c "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$D/sock"
  chardev=""
  if mknod "$D/chardev" c 1 3 2>/dev/null; then chardev="$D/chardev"; fi  # /dev/null's numbers, in our folder
}
make_data
ckpt=$(find "$D/run/checkpoints" -name 'ckpt-*.h5' | head -1)

fingerprint() {
  (cd "$D" && find . -print0 | sort -z | xargs -0 stat -c '%N %F %s %a' \
    && find . -type f -print0 | sort -z | xargs -0 sha256sum)
}

# bad NAME EXPECTED_MESSAGE COMMAND...: exit 2, one error line containing
# the message, within a timeout, and the data folder exactly as it was.
bad() {
  local name=$1 want=$2 rc=0 before
  shift 2
  before=$(fingerprint)
  timeout 60 "$@" >"$WORK/bad.out" 2>"$WORK/bad.err" || rc=$?
  if [ $rc = 124 ]; then
    fail "$name: hung (killed after 60 s)"
  elif [ $rc != 2 ] || [ "$(grep -c '^ringtrain: error: ' "$WORK/bad.err")" != 1 ] \
       || ! grep -qF -- "$want" "$WORK/bad.err"; then
    fail "$name: rc $rc, stderr: $(cat "$WORK/bad.err")"
  elif [ "$(fingerprint)" != "$before" ]; then
    fail "$name: the data folder changed: $(diff <(echo "$before") <(fingerprint) | head -5 | tr '\n' ' ')"
  else
    pass "$name: $(head -c 160 "$WORK/bad.err")"
    return
  fi
  make_data  # each case starts from intact files
}

P=("$RINGTRAIN" predict --model "$D/run/best.h5" --input "$D/good.h5")
C0=("$RINGTRAIN" convert "$D/s-images-idx3-ubyte")
bad "predict onto its model" "is an input" "${P[@]}" --output "$D/run/best.h5"
bad "predict onto its input" "is an input" "${P[@]}" --output "$D/good.h5"
bad "predict onto its input, other spelling" "the input '$D/good.h5'" "${P[@]}" --output "$D/run/../good.h5"
bad "predict onto a hard link of its input" "the input '$D/good.h5'" "${P[@]}" --output "$D/hardlink.h5"
bad "predict onto a symlink to its input" "is a symbolic link" "${P[@]}" --output "$D/symlink.h5"
bad "predict onto a symlink to /dev/null" "is a symbolic link" "${P[@]}" --output "$D/devnull"
bad "predict onto a FIFO" "is a FIFO" "${P[@]}" --output "$D/fifo"
bad "predict onto a socket" "is a socket" "${P[@]}" --output "$D/sock"
bad "predict onto a directory" "is a directory" "${P[@]}" --output "$D/adir"
bad "predict into a missing folder" "folder '$D/none' does not exist" "${P[@]}" --output "$D/none/p.h5"
bad "predict through a file" "Not a directory" "${P[@]}" --output "$D/good.h5/p.h5"
bad "predict onto a read-only file" "is read-only" "${P[@]}" --output "$D/readonly.h5"
bad "predict: temporary is a symlink" "tmplink.h5.tmp', where" "${P[@]}" --output "$D/tmplink.h5"
bad "predict: temporary is a FIFO" "is a FIFO" "${P[@]}" --output "$D/tmpfifo.h5"
bad "predict: temporary is the input" "data.h5.tmp', where" \
  "$RINGTRAIN" predict --model "$D/run/best.h5" --input "$D/data.h5.tmp" --output "$D/data.h5"
bad "predict: empty output name" "empty" "${P[@]}" --output ""
if [ -n "$chardev" ]; then
  bad "predict onto a character device" "is a character device" "${P[@]}" --output "$chardev"
else
  echo "SKIP: character device cases (mknod not permitted here)"
fi

# A run directory's files are its training's alone, inputs of the command or not.
bad "predict onto a run's best.h5 (not its model)" "one of the files of the ringtrain run" \
  "$RINGTRAIN" predict --model "$D/run/final.h5" --input "$D/good.h5" --output "$D/run/best.h5"
bad "plot onto a run's run.lock" "one of the files of the ringtrain run" "$RINGTRAIN" plot "$D/run" --output "$D/run/run.lock"
bad "convert into a run's checkpoints/" "one of the files of the ringtrain run" "${C0[@]}" "$D/run/checkpoints/new.h5"
bad "plot onto best.h5" "is an input" "$RINGTRAIN" plot "$D/run" --output "$D/run/best.h5"
bad "plot onto metrics.jsonl" "is an input" "$RINGTRAIN" plot "$D/run" --output "$D/run/metrics.jsonl"
bad "plot onto a checkpoint" "is an input" "$RINGTRAIN" plot "$D/run" --output "$ckpt"
bad "plot onto config.ini, other spelling" "the input '$D/run/config.ini'" \
  "$RINGTRAIN" plot "$D/run" --output "$D/run/checkpoints/../config.ini"
bad "plot --script onto events.jsonl" "plot: --script" \
  "$RINGTRAIN" plot "$D/run" --output "$WORK/c.png" --script "$D/run/events.jsonl"
bad "plot --script equal to --output" "same file" "$RINGTRAIN" plot "$D/run" --output "$WORK/c.png" --script "$WORK/c.png"
bad "plot onto its --bench file" "is an input" "$RINGTRAIN" plot --bench "$D/bench.json" --output "$D/bench.json"
bad "plot onto a symlink to /dev/null" "is a symbolic link" "$RINGTRAIN" plot "$D/run" --output "$D/devnull"
bad "plot onto a FIFO" "is a FIFO" "$RINGTRAIN" plot "$D/run" --output "$D/fifo"
bad "plot onto the run directory" "is a directory" "$RINGTRAIN" plot "$D/run" --output "$D/run"

C=("$RINGTRAIN" convert "$D/s-images-idx3-ubyte")
bad "convert onto its labels file" "is an input" "${C[@]}" "$D/s-labels-idx1-ubyte"
bad "convert onto its images file" "is an input" "${C[@]}" "$D/s-images-idx3-ubyte"
bad "convert onto its labels, other spelling" "the input '$D/s-labels-idx1-ubyte'" "${C[@]}" "$D/adir/../s-labels-idx1-ubyte"
bad "convert onto a symlink to its labels" "is a symbolic link" "${C[@]}" "$D/labels-link"
bad "convert onto a symlink to /dev/null" "is a symbolic link" "${C[@]}" "$D/devnull"
bad "convert onto a FIFO" "is a FIFO" "${C[@]}" "$D/fifo"
bad "convert onto a directory" "is a directory" "${C[@]}" "$D/adir"
bad "convert into a missing folder" "does not exist" "${C[@]}" "$D/none/x.h5"
bad "convert from a FIFO (no hang)" "not a regular file" "$RINGTRAIN" convert "$D/fifo-images-idx3-ubyte" "$WORK/x.h5"
bad "evaluate on a FIFO (no hang)" "not a regular file" \
  "$RINGTRAIN" evaluate --model "$D/run/best.h5" --data "$D/fifo-images-idx3-ubyte"
# Inputs that are a FIFO (opening one waits for a writer), a device or a folder.
bad "inspect a FIFO (no hang)" "not a regular file" "$RINGTRAIN" inspect "$D/fifo"
bad "evaluate --model a FIFO (no hang)" "not a regular file" "$RINGTRAIN" evaluate --model "$D/fifo" --data "$D/good.h5"
bad "predict --input a FIFO (no hang)" "not a regular file" "${P[@]/$D\/good.h5/$D/fifo}" --output "$WORK/p.h5"
bad "plot --bench a FIFO (no hang)" "is a FIFO" "$RINGTRAIN" plot --bench "$D/fifo" --output "$WORK/b.png"
bad "train --resume a FIFO (no hang)" "not a regular file" \
  "$RINGTRAIN" train --data.train="$D/good.h5" --resume="$D/fifo" --run.dir="$WORK/rf" --run.progress=false
bad "train --config a named FIFO (no hang)" "is a named FIFO" \
  "$RINGTRAIN" train --config "$D/fifo" --data.train="$D/good.h5" --run.dir="$WORK/cf" --run.progress=false
bad "train --config /dev/zero (endless)" "'/dev/zero' is a device" \
  "$RINGTRAIN" train --config /dev/zero --data.train="$D/good.h5" --run.dir="$WORK/cz" --run.progress=false
bad "train --config a folder" "is a directory" \
  "$RINGTRAIN" train --config "$D/adir" --data.train="$D/good.h5" --run.dir="$WORK/cd" --run.progress=false
head -c $((17 << 20)) /dev/zero | tr '\0' '#' >"$WORK/huge.ini"
bad "train --config of 17 MiB" "larger than 16 MiB" \
  "$RINGTRAIN" train --config "$WORK/huge.ini" --data.train="$D/good.h5" --run.dir="$WORK/ch" --run.progress=false
# A record nested 200,000 deep inside events.jsonl (nlohmann's printer
# recurses per level: SIGSEGV before) is refused as not JSON.
cp -a "$D/run" "$WORK/deep"
"$PY" - "$WORK/deep/events.jsonl" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
lines.insert(1, '{"event":' + '{"a":' * 200000 + '1' + '}' * 200000 + '}')
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
bad "report on a record nested 200,000 deep" "line 2 is not a JSON object" "$RINGTRAIN" report "$WORK/deep"
bad "plot on a record nested 200,000 deep" "line 2 is not a JSON object" "$RINGTRAIN" plot "$WORK/deep" --output "$WORK/deep.png"
if [ -n "$chardev" ]; then
  bad "convert onto a character device" "is a character device" "${C[@]}" "$chardev"
  [ -c "$chardev" ] && pass "the character device is still one" || fail "the character device was replaced"
fi
[ -p "$D/fifo" ] && [ -L "$D/devnull" ] && [ -S "$D/sock" ] && [ -c /dev/null ] \
  && pass "FIFO, symlink, socket and /dev/null are what they were" || fail "a special file was replaced"

# --- what must keep working ------------------------------------------------------
ok() {  # NAME COMMAND...: exit 0
  local name=$1 rc=0
  shift
  timeout 60 "$@" >"$WORK/ok.out" 2>"$WORK/ok.err" || rc=$?
  if [ $rc = 0 ]; then pass "$name"; else fail "$name: rc $rc, stderr: $(cat "$WORK/ok.err")"; fi
}
ok "predict writes an output" "${P[@]}" --output "$WORK/p.h5"
ok "predict replaces its own output" "${P[@]}" --output "$WORK/p.h5"
ok "predict writes a file of another name into a run directory" "${P[@]}" --output "$D/run/predictions.h5"
printf '[train]\nepochs = 1\n' >"$WORK/pipe.ini"
ok "train --config from a pipe (process substitution)" "$RINGTRAIN" train --config <(cat "$WORK/pipe.ini") \
  --data.train="$D/good.h5" --run.dir="$WORK/piperun" --run.progress=false
ok "train --config /dev/stdin fed by a pipe" bash -c 'cat "$1" | "$2" train --config /dev/stdin --data.train="$3" \
  --run.dir="$4" --run.progress=false' _ "$WORK/pipe.ini" "$RINGTRAIN" "$D/good.h5" "$WORK/stdinrun"
if command -v gnuplot >/dev/null; then
  ok "plot draws into the run directory" "$RINGTRAIN" plot "$D/run" --output "$D/run/curves.png"
  ok "plot replaces its own picture" "$RINGTRAIN" plot "$D/run" --output "$D/run/curves.png"
  ok "plot draws benchmark files" "$RINGTRAIN" plot --bench "$D/bench.json" --output "$WORK/bench.png"
fi
# A stale temporary that is a second name of another file (a hard link left
# by an interrupted write): the write must not go through it into that file.
cp "$D/good.h5" "$WORK/other.h5" && ln "$WORK/other.h5" "$WORK/q.h5.tmp"
other_sum=$(sha256sum <"$WORK/other.h5")
ok "predict past a stale hard-linked temporary" "${P[@]}" --output "$WORK/q.h5"
[ "$(sha256sum <"$WORK/other.h5")" = "$other_sum" ] && [ ! -e "$WORK/q.h5.tmp" ] \
  && pass "the file behind the stale temporary is unchanged" || fail "the stale temporary's other file changed"
printf '\xef\xbb\xbf[model]\nhidden = 8\n[train]\nepochs = 1\n' >"$WORK/bom.ini"
ok "a config file with a UTF-8 byte-order mark" "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 1 "$RINGTRAIN" train --config "$WORK/bom.ini" \
  --data.train="$D/good.h5" --run.progress=false --run.dir="$WORK/bomrun"
grep -qx 'hidden = 8' "$WORK/bomrun/config.ini" && pass "the BOM config's first section was read" \
  || fail "model.hidden from the BOM config not in config.ini"
ok "convert writes an output" "${C[@]}" "$WORK/s.h5"

# --- a signal in the middle of convert -------------------------------------------
# An input large enough that writing the output takes a while; the signal is
# sent as soon as OUT.tmp appears (no timing assumed: a run that ends before
# its temporary is seen is tried again).
"$PY" - "$D" <<'PY'
import sys, numpy as np
d, rows = sys.argv[1], 100000
def header(dims): return bytes([0, 0, 8, len(dims)]) + b"".join(v.to_bytes(4, "big") for v in dims)
with open(f"{d}/big-images-idx3-ubyte", "wb") as f:
    f.write(header([rows, 28, 28]))
    f.write((np.arange(rows * 784, dtype=np.uint32) % 251).astype(np.uint8).tobytes())
with open(f"{d}/big-labels-idx1-ubyte", "wb") as f:
    f.write(header([rows]))
    f.write((np.arange(rows) % 10).astype(np.uint8).tobytes())
PY
signal_case() {  # SIGNAL EXIT_STATUS
  local sig=$1 want=$2 out=$WORK/big.h5 try rc caught=0
  rm -f "$out.tmp"
  echo "an older output" >"$out"
  local sum
  sum=$(sha256sum <"$out")
  for try in 1 2 3; do
    # A background job of a script ignores SIGINT unless told otherwise.
    (trap - INT; exec "$RINGTRAIN" convert "$D/big-images-idx3-ubyte" "$out") >/dev/null 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      if [ -e "$out.tmp" ]; then kill "-$sig" "$pid"; caught=1; break; fi
    done
    rc=0; { wait "$pid"; } 2>/dev/null || rc=$?  # (no "Hangup" notice from bash)
    [ $caught = 1 ] && break
    echo "$out: convert ended before its temporary was seen; again" && echo "an older output" >"$out"
  done
  if [ $caught = 0 ]; then fail "SIG$sig mid-convert: never caught convert while it wrote"
  elif [ $rc != "$want" ]; then fail "SIG$sig mid-convert: exit status $rc, expected $want"
  elif [ -e "$out.tmp" ]; then fail "SIG$sig mid-convert: $out.tmp left behind"
  elif [ "$(sha256sum <"$out" 2>&1)" != "$sum" ]; then fail "SIG$sig mid-convert: the older output changed"
  else pass "SIG$sig mid-convert: exit status $rc, no temporary, the older output intact"; fi
}
signal_case TERM 143
signal_case INT 130
signal_case HUP 129
finish
