#!/usr/bin/env bash
# bench_checkpoint.sh: what checkpointing costs a training run, measured side
# by side in one invocation: the same run with checkpoints every epoch
# (checkpoint.keep_last=2, the default) and without (checkpoint.keep_last=0),
# interleaved R times; medians and the overhead as a ratio.
#
#   default  the Fashion-MNIST MLP (784-256-128-10, 235k parameters, SGD with
#            momentum), 2 ranks, E epochs of 54,000 rows
#   big      784-8192-4096-4096-10 (56.8M parameters) with AdamW: a 680 MB
#            checkpoint (weights, m, v) every epoch; 1 rank by default, so
#            that the background writer has the second core of this 2-core
#            machine (--big-ranks 2 to share it)
# Both runs evaluate after every epoch; the figure is the wall time of the
# training loop (ringtrain's `done: ... in X s`), which includes the time
# the loop spends handing states to the background writer (also reported).
set -euo pipefail
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$script_dir")

usage() {
  cat <<EOF
usage: bench/bench_checkpoint.sh [options] [RINGTRAIN_BINARY]
  RINGTRAIN_BINARY   default: $root/build/release/ringtrain
  -r, --repeats R    runs per configuration, interleaved (default 3)
  -e, --epochs E     epochs of the default model (default 5)
  --big-rows N       training rows of the big model (default 16000)
  --big-epochs E     epochs of the big model (default 2)
  --big-ranks P      ranks of the big model (default 1)
  --only default|big one of the two models
  -o, --output FILE  JSON summary
  --work-dir DIR     run folders and logs (default: a new folder under /tmp)
EOF
}
repeats=3 epochs=5 big_rows=16000 big_epochs=2 big_ranks=1 only="" output="" work_dir="" binary=""
while (($#)); do
  case $1 in
    -r|--repeats) repeats=$2; shift 2 ;;
    -e|--epochs) epochs=$2; shift 2 ;;
    --big-rows) big_rows=$2; shift 2 ;;
    --big-epochs) big_epochs=$2; shift 2 ;;
    --big-ranks) big_ranks=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -o|--output) output=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "bench_checkpoint.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) binary=$1; shift ;;
  esac
done
binary=${binary:-$root/build/release/ringtrain}
[[ -x $binary ]] || { echo "bench_checkpoint.sh: no ringtrain binary at $binary (build first)" >&2; exit 2; }
work_dir=${work_dir:-$(mktemp -d /tmp/ringtrain-bench-ckpt-XXXXXX)}
mkdir -p "$work_dir"
mpirun_args=(--oversubscribe --bind-to none)
[[ $(id -u) == 0 ]] && mpirun_args+=(--allow-run-as-root)
data=/usr/share/datasets/fashion-mnist

# run NAME RANKS ARGS...: prints "wall_s handing_off_s ksamples_per_s"
run() {
  local name=$1 ranks=$2; shift 2
  local dir="$work_dir/$name"
  rm -rf "$dir"
  mpirun "${mpirun_args[@]}" -np "$ranks" "$binary" train --run.dir="$dir" --run.progress=false "$@" \
    >"$dir.log" 2>&1 || { echo "bench_checkpoint.sh: run $name failed, see $dir.log" >&2; exit 3; }
  sed -n 's/^done: .* in \([0-9.]*\) s (\([0-9.]*\)k samples.*; \([0-9.]*\) s spent handing.*/\1 \3 \2/p' "$dir.log"
  rm -rf "$dir"  # big checkpoints fill the disk otherwise
}

declare -A args ranks
args[default]="--config $root/configs/fashion_mnist.ini --train.epochs=$epochs"
ranks[default]=2
args[big]="--data.train=$data/train-images-idx3-ubyte.gz --data.max_rows=$((big_rows * 10 / 9)) \
--model.hidden=8192,4096,4096 --optim.name=adamw --optim.lr=0.0005 --train.epochs=$big_epochs --eval.batch_size=256"
ranks[big]=$big_ranks
models=(default big)
[[ -n $only ]] && models=("$only")

declare -A results
for ((rep = 1; rep <= repeats; rep++)); do
  for model in "${models[@]}"; do
    # Alternate which of the pair runs first.
    modes=(with without)
    ((rep % 2 == 0)) && modes=(without with)
    for mode in "${modes[@]}"; do
      extra=()
      [[ $mode == without ]] && extra=(--checkpoint.keep_last=0)
      # shellcheck disable=SC2086
      line=$(run "${model}_${mode}_$rep" "${ranks[$model]}" ${args[$model]} "${extra[@]}")
      results[$model,$mode]+="$line;"
      echo "rep $rep $model $mode checkpoints: wall s, handing-off s, k samples/s = $line" >&2
    done
  done
done

raw=$(for k in "${!results[@]}"; do printf '%s=%s\n' "$k" "${results[$k]}"; done)
RAW="$raw" python3 - "$output" "${models[@]}" <<'PY'
import json, os, statistics, sys
out, models = sys.argv[1], sys.argv[2:]
raw = dict(line.split("=", 1) for line in os.environ["RAW"].splitlines())
def col(m, mode, i):
    return [float(x.split()[i]) for x in raw[f"{m},{mode}"].split(";") if x.strip()]
summary = {}
print(f"{'model':8} {'with ckpt (s)':>14} {'without (s)':>12} {'overhead':>9} {'hand-off (s)':>13}")
for m in models:
    w, wo = statistics.median(col(m, "with", 0)), statistics.median(col(m, "without", 0))
    save = statistics.median(col(m, "with", 1))
    summary[m] = {"with_s": col(m, "with", 0), "without_s": col(m, "without", 0), "median_with_s": w,
                  "median_without_s": wo, "overhead": w / wo - 1, "hand_off_s": col(m, "with", 1)}
    print(f"{m:8} {w:14.2f} {wo:12.2f} {100 * (w / wo - 1):8.2f}% {save:13.3f}")
if out:
    json.dump(summary, open(out, "w"), indent=2)
PY
