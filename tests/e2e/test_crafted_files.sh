#!/usr/bin/env bash
# Crafted files ("never trust a file"): data files, models and checkpoints
# whose sizes, types and values were written to hurt, several with the
# content CRC recomputed so that ringtrain's own checksum passes. Each case
# must end every rank with exit code 2 and exactly one "ringtrain: error:"
# line naming the problem, within a timeout (no crash, no hang, no huge
# allocation), and leave the files that were there before byte-for-byte
# unchanged. Checkpoints are resumed with `train --resume FILE` on 1 and 2 ranks.
source "$(dirname "$0")/common.sh" "$@"
"$PY" -c "import h5py, numpy" 2>/dev/null || skip_test "python3-h5py / python3-numpy not installed"
HERE=$(cd "$(dirname "$0")" && pwd)

D=$WORK/data
mkdir -p "$D"
"$PY" - "$D" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
X = rng.normal(size=(40, 4)).astype(np.float32)
y = (np.arange(40) % 3).astype(np.int32)
def save(name, **data):
    with h5py.File(f"{d}/{name}", "w") as f:
        for k, v in data.items():
            f[k] = v
save("good.h5", X=X, y=y)
save("good16.h5", X=rng.normal(size=(40, 16)).astype(np.float32), y=y)
# X declared (2^60+1, 16) by chunking, never written (fill values)
with h5py.File(f"{d}/huge_x.h5", "w") as f:
    f.create_dataset("X", shape=(2**60 + 1, 16), dtype="f4", chunks=(64, 16), maxshape=(None, 16))
    f["y"] = y
# the same declared by patching the dataspace of a contiguous X (old format: no checksum)
with h5py.File(f"{d}/patched_x.h5", "w", libver="earliest") as f:
    f.create_dataset("X", data=np.ones((3, 16), np.float32))
raw = open(f"{d}/patched_x.h5", "rb").read()
pat = (3).to_bytes(8, "little") + (16).to_bytes(8, "little")
assert raw.count(pat) in (1, 2), raw.count(pat)  # dims, and maxdims when stored
open(f"{d}/patched_x.h5", "wb").write(raw.replace(pat, (2**60 + 1).to_bytes(8, "little") + (16).to_bytes(8, "little")))
# 2^40 rows (chunked, unwritten): with data.max_rows=100
with h5py.File(f"{d}/rows2e40.h5", "w") as f:
    f.create_dataset("X", shape=(2**40, 4), dtype="f4", chunks=(1024, 4))
    f.create_dataset("y", shape=(2**40,), dtype="i4", chunks=(1024,))
save("x_strings.h5", X=np.full((40, 4), b"1.5", dtype="S3"), y=y)
save("x_compound.h5", X=np.zeros((40, 4), dtype=[("a", "f4"), ("b", "i4")]), y=y)
yb = y.astype(np.uint64); yb[7] = 2**32 + 1
save("label_2e32.h5", X=X, y=yb)
Xd = X.astype(np.float64); Xd[9, 1] = 1e300
save("x_1e300.h5", X=Xd, y=y)
# X's values in an external raw file, and X as a link into another HDF5 file
np.ones((40, 4), np.float32).tofile(f"{d}/outside.bin")
with h5py.File(f"{d}/x_external.h5", "w") as f:
    f.create_dataset("X", shape=(40, 4), dtype="f4", external=[(f"{d}/outside.bin", 0, 640)])
    f["y"] = y
with h5py.File(f"{d}/x_elink.h5", "w") as f:
    f["X"] = h5py.ExternalLink(f"{d}/good.h5", "/X")
    f["y"] = y
PY

# A real run (AdamW, so two optimizer slots), its model and checkpoints.
rt_mpirun 1 "$RINGTRAIN" train --data.train="$D/good.h5" --data.val_fraction=0.25 --train.epochs=2 \
  --model.hidden=5 --optim.name=adamw --run.progress=false --run.dir="$D/run1" >"$WORK/prep.log" 2>&1 \
  || { cat "$WORK/prep.log" >&2; fail "preparing a run"; finish; exit 1; }
rt_mpirun 2 "$RINGTRAIN" train --data.train="$D/good.h5" --data.val_fraction=0.25 --train.epochs=2 \
  --model.hidden=5 --optim.name=adamw --run.progress=false --run.dir="$D/run2" >"$WORK/prep.log" 2>&1 \
  || { cat "$WORK/prep.log" >&2; fail "preparing a run on 2 ranks"; finish; exit 1; }
# a model with 16 inputs, for X declared (2^60+1) x 16: the product wraps to 16
"$RINGTRAIN" train --data.train="$D/good16.h5" --data.val_fraction=0.25 --train.epochs=1 --model.hidden=3 \
  --run.progress=false --run.dir="$D/run16" >"$WORK/prep.log" 2>&1 \
  || { cat "$WORK/prep.log" >&2; fail "preparing a 16-input model"; finish; exit 1; }
CK1=$(ls "$D"/run1/checkpoints/ckpt-*.h5 | sort -V | tail -1)
CK2=$(ls "$D"/run2/checkpoints/ckpt-*.h5 | sort -V | tail -1)

PYTHONPATH="$HERE/../../fuzz" "$PY" - "$D" "$CK1" "$CK2" <<'PY'
import sys, h5py, numpy as np
import ringtrain_h5 as rh
d, ck1, ck2 = sys.argv[1:4]
for n, ck in (("1", ck1), ("2", ck2)):
    def craft(name, change, **kw):
        m = rh.load(ck)
        change(m)
        rh.save(f"{d}/{name}{n}.h5", m, **kw)
    craft("negstep", lambda m: m["trainer"].update(step=-7))            # CRC recomputed
    craft("nanslot", lambda m: m["slots"]["m"]["dense_0/kernel"].flat.__setitem__(3, np.nan))
    craft("rsrows", lambda m: m.update(rank_state=np.zeros((5, 4), np.int64)))
    craft("slotsmismatch", lambda m: m["optimizer"].update(slots="m,v,w"))
    # rank_state declared 2^62 x 4, never written
    rh.save(f"{d}/hugers{n}.h5", rh.load(ck))
    with h5py.File(f"{d}/hugers{n}.h5", "a") as f:
        del f["trainer/rank_state"]
        f["trainer"].create_dataset("rank_state", shape=(2**62, 4), dtype="<i8", chunks=(1, 4))
m = rh.load(ck1)
m["tensors"]["dense_1/kernel"].flat[0] = np.nan
rh.save(f"{d}/nanmodel.h5", m)
m = rh.load(ck1); m["model_attrs"]["architecture"] = "4-4000000-100-3"; rh.save(f"{d}/arch_big.h5", m)
m = rh.load(ck1); m["model_attrs"]["architecture"] = "4-16777216-16777216-3"; rh.save(f"{d}/arch_huge.h5", m)
m = rh.load(ck1); m["model_attrs"]["architecture"] = "-".join(["4"] * 300 + ["3"]); rh.save(f"{d}/arch_deep.h5", m)
m = rh.load(ck1); m["trainer"]["world_size"] = 0; rh.save(f"{d}/world0.h5", m)
rh.save(f"{d}/oldformat.h5", rh.load(ck1), libver="earliest")  # no metadata checksums
# config as an array of strings (was read into one string's buffer)
rh.save(f"{d}/configarray.h5", rh.load(ck1))
with h5py.File(f"{d}/configarray.h5", "a") as f:
    del f["config"]
    f["config"] = np.array([b"x" * 8] * 1000, dtype="S8")
# a kernel stored as text, and one as float64 beyond float32
rh.save(f"{d}/textkernel.h5", rh.load(ck1))
with h5py.File(f"{d}/textkernel.h5", "a") as f:
    del f["model/dense_0/kernel"]
    f["model/dense_0/kernel"] = np.full((4, 5), b"0.5", dtype="S3")
m = rh.load(ck1); m["tensors"]["dense_0/kernel"] = m["tensors"]["dense_0/kernel"].astype(np.float64) * 1e300
rh.save(f"{d}/bigkernel.h5", m)
PY

# Fingerprint of every file the cases may touch.
sums() { (cd "$D" && find . -type f ! -name '*.log' -print0 | sort -z | xargs -0 sha256sum); }
before=$(sums)

# np | name | expected text | command words (@D@ is the data folder)
cases=(
  "1|predict: X declared 2^60+1 x 16|declares|predict --model @D@/run16/best.h5 --input @D@/huge_x.h5 --output @D@/P.h5"
  "1|predict: patched dataspace 2^60+1 x 16|patched_x.h5|predict --model @D@/run16/best.h5 --input @D@/patched_x.h5 --output @D@/P.h5"
  "1|inspect: rank_state 2^62 x 4|rank_state|inspect @D@/hugers1.h5"
  "1|inspect: negative step|'step' = -7|inspect @D@/negstep1.h5"
  "1|resume: rank_state 2^62 x 4|rank_state|train @GOOD@ --resume=@D@/hugers1.h5"
  "2|resume: rank_state 2^62 x 4|rank_state|train @GOOD@ --resume=@D@/hugers2.h5"
  "1|resume: negative step|'step' = -7|train @GOOD@ --resume=@D@/negstep1.h5"
  "2|resume: negative step|'step' = -7|train @GOOD@ --resume=@D@/negstep2.h5"
  "1|inspect: architecture 4-4000000-100-3 without its tensors|4-4000000-100-3|inspect @D@/arch_big.h5"
  "1|inspect: architecture 4-16777216-16777216-3|parameters|inspect @D@/arch_huge.h5"
  "1|evaluate: NaN weight|non-finite|evaluate --model @D@/nanmodel.h5 --data @D@/good.h5"
  "1|resume: NaN optimizer slot|non-finite|train @GOOD@ --resume=@D@/nanslot1.h5"
  "2|resume: NaN optimizer slot|non-finite|train @GOOD@ --resume=@D@/nanslot2.h5"
  "1|train: 2^40 rows with data.max_rows=100|rows2e40.h5|train --data.train=@D@/rows2e40.h5 --data.max_rows=100 --data.val_fraction=0"
  "2|train: 2^40 rows with data.max_rows=100|rows2e40.h5|train --data.train=@D@/rows2e40.h5 --data.max_rows=100 --data.val_fraction=0"
  "1|train: X of strings|not numbers|train --data.train=@D@/x_strings.h5 --run.progress=false"
  "1|predict: X of strings|not numbers|predict --model @D@/run1/best.h5 --input @D@/x_strings.h5 --output @D@/P.h5"
  "1|train: X of a compound type|not numbers|train --data.train=@D@/x_compound.h5"
  "1|train: uint64 label 2^32+1|4294967297|train --data.train=@D@/label_2e32.h5"
  "1|train: float64 feature 1e300|beyond the range of float32|train --data.train=@D@/x_1e300.h5 --data.val_fraction=0"
  "1|train: 300 hidden layers|model.hidden: 300 hidden layers, at most 256|train --data.train=@D@/good.h5 --model.hidden=$(seq -s, 300 | sed 's/[0-9]\+/4/g')"
  "1|inspect: 300 hidden layers|256 hidden layers|inspect @D@/arch_deep.h5"
  "1|inspect: rank_state rows differ from world_size|world_size|inspect @D@/rsrows1.h5"
  "2|resume: rank_state rows differ from world_size|world_size|train @GOOD@ --resume=@D@/rsrows2.h5"
  "1|inspect: a slot listed but not stored|w|inspect @D@/slotsmismatch1.h5"
  "1|inspect: world_size 0|world_size|inspect @D@/world0.h5"
  "1|inspect: the old HDF5 format (no metadata checksums)|superblock version 0|inspect @D@/oldformat.h5"
  "1|inspect: config as an array of strings|config|inspect @D@/configarray.h5"
  "1|inspect: a kernel stored as text|not numbers|inspect @D@/textkernel.h5"
  "1|inspect: a float64 kernel beyond float32|beyond the range of float32|inspect @D@/bigkernel.h5"
  "1|train: X in an external raw file|external|train --data.train=@D@/x_external.h5"
  "1|train: X linked from another file|another file|train --data.train=@D@/x_elink.h5"
)
GOOD="--data.train=$D/good.h5 --data.val_fraction=0.25 --train.epochs=3 --model.hidden=5 --optim.name=adamw --run.progress=false"

printf 'a prediction file that is already there\n' >"$D/P.h5"
before=$(sums)
# Each case runs with about 4 GB of memory at most, so a reader that trusts a
# declared size fails the case instead of filling the machine. ulimit -v in a
# plain build; an ASan binary reserves terabytes of shadow memory at start-up
# (ulimit -v stops it before main), so there ASan's own allocator refuses any
# one allocation above 4000 MB, which ends the run with a non-2 exit code.
if ldd "$RINGTRAIN" 2>/dev/null | grep -qE 'lib(asan|tsan)'; then
  MEMORY_CAP='export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}max_allocation_size_mb=4000"'
else
  MEMORY_CAP='ulimit -v 4000000'
fi
i=0
for entry in "${cases[@]}"; do
  IFS='|' read -r np name needle words <<<"$entry"
  i=$((i + 1))
  words=${words//@GOOD@/$GOOD}
  words=${words//@D@/$D}
  [[ $words == train* ]] && words="$words --run.dir=$WORK/run_$i"
  rc_dir="$WORK/rc_$i" err="$WORK/err_$i"
  mkdir -p "$rc_dir"
  launcher_rc=0
  # shellcheck disable=SC2086  # words is a word list by design
  timeout 120 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n "$np" bash -c \
    "$MEMORY_CAP"'; "$@"; echo $? >"'"$rc_dir"'/rank.${OMPI_COMM_WORLD_RANK:-0}"' _ \
    "$RINGTRAIN" $words >"$WORK/out_$i" 2>"$err" || launcher_rc=$?
  codes=$(cat "$rc_dir"/rank.* 2>/dev/null | sort | tr '\n' ' ' || true)
  want=$(for _ in $(seq "$np"); do printf '2 '; done)
  errors=$(grep -c '^ringtrain: error:' "$err" || true)
  after=$(sums)
  if [ "$launcher_rc" = 124 ]; then
    fail "$name ($np ranks): hung (killed after 120 s)"
  elif [ "$codes" != "$want" ]; then
    fail "$name ($np ranks): exit codes per rank '$codes', expected '$want'"; tail -5 "$err" >&2
  elif ! grep '^ringtrain: error:' "$err" | grep -qF -- "$needle"; then
    fail "$name ($np ranks): the error does not mention '$needle'"; cat "$err" >&2
  elif [ "$errors" != 1 ]; then
    fail "$name ($np ranks): $errors error lines, expected exactly one"; cat "$err" >&2
  elif [ "$after" != "$before" ]; then
    fail "$name ($np ranks): a file that was there before changed"; diff <(echo "$before") <(echo "$after") >&2
  else
    pass "$name ($np ranks): $(grep '^ringtrain: error:' "$err" | cut -c1-160)"
  fi
done

# data.max_rows limits the labels the probe reads: a bad label past the rows
# used is not read (and the run works).
"$PY" - "$D" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
X = np.random.default_rng(1).normal(size=(200, 4)).astype(np.float32)
y = (np.arange(200) % 3).astype(np.int64); y[150] = -1
with h5py.File(f"{d}/late_bad_label.h5", "w") as f:
    f["X"] = X; f["y"] = y
PY
if "$RINGTRAIN" train --data.train="$D/late_bad_label.h5" --data.max_rows=100 --data.val_fraction=0 --train.epochs=1 \
  --model.hidden=4 --run.progress=false --run.dir="$WORK/run_maxrows" >"$WORK/out_maxrows" 2>&1; then
  pass "data.max_rows=100: the label in row 150 is not read"
else
  fail "data.max_rows=100: $(grep 'error' "$WORK/out_maxrows")"
fi
echo "${#cases[@]} crafted files"
finish
