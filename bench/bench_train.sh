#!/usr/bin/env bash
# bench_train.sh: end-to-end training throughput, ringtrain against PyTorch,
# side by side in one invocation on the same machine.
#
# Configurations (each run R times, interleaved: rep 1 of all, rep 2 of all, ...,
# with the order rotated every repetition so that none always runs first):
#   rt1       ringtrain, 1 rank
#   rt2_ring  ringtrain, 2 ranks, comm.algorithm=ring (ringtrain's all-reduce)
#   rt2_mpi   ringtrain, 2 ranks, comm.algorithm=mpi  (MPI_Allreduce)
#   pt1       PyTorch, 1 process            (bench/pytorch_mlp.py)
#   pt2       PyTorch, DDP gloo, 2 processes (bench/pytorch_mlp.py)
# Same model (784-256-128-10 ReLU), SGD momentum 0.9, lr 0.1 * B/256, 64 rows
# per rank and step, 54000 training rows (10% of Fashion-MNIST's 60000 held
# out), E epochs. The figure compared is samples/s while training (steps only,
# no evaluation, no start-up): ringtrain's `done:` line, PyTorch's final JSON.
# Each configuration's median over its R runs goes into the table and ratios.
#
# This is a shared 2-core machine: before each run the script waits (up to
# --wait-idle seconds) for the CPUs to be idle, and reports how busy they were.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$script_dir")

usage() {
  cat <<EOF
usage: bench/bench_train.sh [options] [RINGTRAIN_BINARY]
  RINGTRAIN_BINARY     default: $root/build/release/ringtrain
  -e, --epochs E       epochs per run (default 3)
  -r, --repeats R      runs per configuration, interleaved (default 3)
  -o, --output FILE    write a JSON summary to FILE
  -b, --batch N        rows per rank (process) and step (default 64)
  --data-dir DIR       Fashion-MNIST IDX .gz files (default /usr/share/datasets/fashion-mnist)
  --python PATH        Python with torch for the PyTorch rows (default /usr/bin/python3)
  --no-pytorch         skip the PyTorch rows
  --work-dir DIR       run folders and logs (default: a new folder under /tmp, kept)
  --wait-idle S        before each run wait up to S s for idle CPUs (default 60; 0: off)
EOF
}

epochs=3 repeats=3 output="" batch=64 data_dir=/usr/share/datasets/fashion-mnist
python=/usr/bin/python3 use_pytorch=1 work_dir="" wait_idle=60 binary=""
while (($#)); do
  case $1 in
    -e|--epochs) epochs=$2; shift 2 ;;
    -r|--repeats) repeats=$2; shift 2 ;;
    -o|--output) output=$2; shift 2 ;;
    -b|--batch) batch=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --no-pytorch) use_pytorch=0; shift ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --wait-idle) wait_idle=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "bench_train.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) [[ -z $binary ]] || { echo "bench_train.sh: more than one binary given" >&2; exit 2; }
       binary=$1; shift ;;
  esac
done
for v in epochs repeats batch wait_idle; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench_train.sh: --${v//_/-} expects a number, got '${!v}'" >&2; exit 2; }
done
((epochs >= 1 && repeats >= 1 && batch >= 1)) || { echo "bench_train.sh: epochs, repeats, batch must be >= 1" >&2; exit 2; }

binary=${binary:-$root/build/release/ringtrain}
if [[ ! -x $binary ]]; then
  echo "bench_train.sh: ringtrain binary not found: $binary" >&2
  echo "  build it: cmake --preset release && cmake --build build/release -j2, or pass its path" >&2
  exit 2
fi
command -v mpirun >/dev/null || { echo "bench_train.sh: mpirun not found (apt-get install openmpi-bin)" >&2; exit 2; }
train_images=$data_dir/train-images-idx3-ubyte.gz test_images=$data_dir/t10k-images-idx3-ubyte.gz
for f in "$train_images" "$test_images" "$data_dir/train-labels-idx1-ubyte.gz" "$data_dir/t10k-labels-idx1-ubyte.gz"; do
  [[ -r $f ]] || { echo "bench_train.sh: missing data file $f (apt-get install dataset-fashion-mnist)" >&2; exit 2; }
done

mpirun_args=(--bind-to core)
[[ $(id -u) == 0 ]] && mpirun_args+=(--allow-run-as-root)

# PyTorch: 1 process needs torch and numpy; DDP also needs the gloo backend.
configs=(rt1 rt2_ring rt2_mpi)
pytorch_note="not requested (--no-pytorch)"
if ((use_pytorch)); then
  if ! "$python" -c 'import numpy, torch' 2>/dev/null; then
    pytorch_note="skipped: '$python' cannot import torch and numpy (Debian: apt-get install python3-torch; add libopenblas0-serial for its fast BLAS)"
    echo "NOTE: PyTorch rows $pytorch_note" >&2
  elif ! "$python" -c 'import sys, torch.distributed as d; sys.exit(not (d.is_available() and d.is_gloo_available()))' 2>/dev/null; then
    pytorch_note="DDP skipped: torch in '$python' has no gloo backend"
    echo "NOTE: PyTorch $pytorch_note" >&2
    configs+=(pt1)
  else
    pytorch_note="available"
    configs+=(pt1 pt2)
  fi
fi

declare -A label=(
  [rt1]="ringtrain 1 rank" [rt2_ring]="ringtrain 2 ranks (ring)" [rt2_mpi]="ringtrain 2 ranks (mpi)"
  [pt1]="PyTorch 1 process" [pt2]="PyTorch DDP 2 procs (gloo)")
# For the scaling figures (JSON, `ringtrain plot --bench`): world size, the
# system a configuration belongs to, and its 1-process baseline. Weak scaling:
# the batch per rank is fixed, so efficiency = samples/s / (ranks x baseline).
declare -A ranks=([rt1]=1 [rt2_ring]=2 [rt2_mpi]=2 [pt1]=1 [pt2]=2)
declare -A system=([rt1]="ringtrain (ring)" [rt2_ring]="ringtrain (ring)" [rt2_mpi]="ringtrain (MPI_Allreduce)"
  [pt1]="PyTorch DDP (gloo)" [pt2]="PyTorch DDP (gloo)")
declare -A baseline=([rt1]=rt1 [rt2_ring]=rt1 [rt2_mpi]=rt1 [pt1]=pt1 [pt2]=pt1)
declare -A rates accs comms busys others
clk_tck=$(getconf CLK_TCK) ncpu=$(nproc)
failures=0

work_dir=${work_dir:-$(mktemp -d /tmp/bench_train.XXXXXX)}
mkdir -p "$work_dir"

# Percentage of all CPUs that were busy during one second (from /proc/stat).
cpu_busy() {
  local a b
  read -ra a < /proc/stat; sleep 1; read -ra b < /proc/stat
  awk -v a="${a[*]:1}" -v b="${b[*]:1}" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); t = 0
    for (i = 1; i <= n; i++) t += y[i] - x[i]
    idle = (y[4] - x[4]) + (y[5] - x[5])
    printf "%.0f", (t > 0 ? 100 * (1 - idle / t) : 0) }'
}

# Waits until the CPUs are (nearly) idle or wait_idle seconds have passed;
# prints the last busy percentage measured.
wait_for_idle() {
  local busy waited=0
  ((wait_idle > 0)) || { echo "-"; return; }
  while busy=$(cpu_busy); ((busy > 15 && waited < wait_idle)); do
    sleep 1; waited=$((waited + 2))
  done
  echo "$busy"
}

run_ringtrain() {  # id np algorithm log run_dir
  local np=$2 algo=$3 log=$4 dir=$5 line
  rm -rf "$dir"
  if ! mpirun "${mpirun_args[@]}" -np "$np" "$binary" train --data.train="$train_images" \
      --data.test="$test_images" --run.dir="$dir" --train.epochs="$epochs" --run.progress=false \
      --comm.algorithm="$algo" --train.batch_per_rank="$batch" --data.val_fraction=0.1 >"$log" 2>&1; then
    return 1
  fi
  # done: 1266 steps, 162000 examples in 1.6 s (105.238k samples/s while training, 12.7% of it in the all-reduce); ...
  line=$(grep 'done:' "$log" | tail -n 1)
  rate=$(sed -nE 's/.*\(([0-9.eE+-]+)(k?) samples\/s while training.*/\1 \2/p' <<<"$line" |
         awk '{ printf "%.1f", $1 * ($2 == "k" ? 1000 : 1) }')
  comm=$(sed -nE 's/.* ([0-9.eE+-]+)% of it in the all-reduce.*/\1/p' <<<"$line")
  acc=$(sed -nE 's/.*"test_accuracy": *([0-9.eE+-]+).*/\1/p' "$dir/test_metrics.json" 2>/dev/null | head -n 1)
  [[ -n $rate ]]
}

run_pytorch() {  # id procs log json
  local procs=$2 log=$3 json=$4
  rm -f "$json"
  "$python" "$script_dir/pytorch_mlp.py" --procs "$procs" --epochs "$epochs" --batch-per-proc "$batch" \
    --data-dir "$data_dir" --json-out "$json" >"$log" 2>&1 || return 1
  read -r rate acc < <("$python" -c 'import json, sys; d = json.load(open(sys.argv[1]))
print("%.1f %s" % (d["samples_per_s"], d["test_accuracy"]))' "$json") || return 1
  comm=""
}

# "busy total" jiffies of all CPUs (user nice system irq softirq steal) and all jiffies.
cpu_jiffies() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit }' /proc/stat; }

# Runs one configuration; measures, besides its result, how much of the
# machine OTHER processes used meanwhile: all CPU time used on the machine
# minus the CPU time of the run's own processes (getrusage of the reaped
# children, through bash's `time`), as a percentage of wall time x CPUs.
run_one() {  # id rep
  local id=$1 rep=$2 log=$work_dir/$1-$2.log tf=$work_dir/$1-$2.time busy ok=1 b0 t0 b1 t1 real user sys
  busy=$(wait_for_idle)
  rate="" acc="" comm=""
  read -r b0 t0 < <(cpu_jiffies)
  local TIMEFORMAT='%R %U %S'
  {
    time case $id in
      rt1) run_ringtrain "$id" 1 ring "$log" "$work_dir/$id-$rep" ;;
      rt2_ring) run_ringtrain "$id" 2 ring "$log" "$work_dir/$id-$rep" ;;
      rt2_mpi) run_ringtrain "$id" 2 mpi "$log" "$work_dir/$id-$rep" ;;
      pt1) run_pytorch "$id" 1 "$log" "$work_dir/$id-$rep.json" ;;
      pt2) run_pytorch "$id" 2 "$log" "$work_dir/$id-$rep.json" ;;
    esac
  } 2>"$tf" || ok=0
  read -r b1 t1 < <(cpu_jiffies)
  read -r real user sys < <(tail -n 1 "$tf")
  other=$(awk -v db=$((b1 - b0)) -v hz="$clk_tck" -v r="$real" -v u="$user" -v s="$sys" -v n="$ncpu" \
    'BEGIN { o = 100 * (db / hz - u - s) / (r * n); printf "%.0f", (o < 0 ? 0 : o) }')
  if ((!ok)); then
    failures=$((failures + 1))
    printf '  [rep %d/%d] %-28s FAILED (log: %s)\n' "$rep" "$repeats" "${label[$id]}" "$log"
    tail -n 5 "$log" | sed 's/^/      /'
    return
  fi
  rates[$id]+=" $rate" accs[$id]+=" ${acc:-nan}" busys[$id]+=" $busy" others[$id]+=" $other"
  [[ -n $comm ]] && comms[$id]+=" $comm"
  printf '  [rep %d/%d] %-26s %7.1fk samples/s  test_acc %-6s%s  (other load: %s%% before, %s%% during)\n' \
    "$rep" "$repeats" "${label[$id]}" "$(awk -v r="$rate" 'BEGIN { print r / 1000 }')" "${acc:-n/a}" \
    "${comm:+  all-reduce $(printf '%4.1f' "$comm")%}" "$busy" "$other"
}

median() { tr ' ' '\n' | awk 'NF && $1 != "nan"' | sort -g | awk '{ v[NR] = $1 } END {
  if (NR == 0) { print "nan"; exit }
  print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "nan"; else printf "%.3f", a / b }'; }
json_num() { [[ $1 =~ ^-?[0-9.]+([eE][-+]?[0-9]+)?$ ]] && echo "$1" || echo null; }
json_list() { local out="" v; for v in $1; do out+="${out:+, }$(json_num "$v")"; done; echo "[$out]"; }

echo "bench_train: $epochs epoch(s) x $repeats repeat(s), batch $batch per rank; ringtrain: $binary"
echo "  PyTorch: $pytorch_note; logs and run folders: $work_dir"
start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
n=${#configs[@]}
for ((rep = 1; rep <= repeats; rep++)); do
  for ((k = 0; k < n; k++)); do
    run_one "${configs[$(((k + rep - 1) % n))]}" "$rep"
  done
done

declare -A med
echo
echo "Median of $repeats run(s), $epochs epoch(s) each; samples/s while training (steps only);"
echo "all-reduce: share of ringtrain's training time in the all-reduce call, waiting for the slowest rank included (median);"
echo "other load: CPU use by other processes during the runs, % of the machine (max over runs)"
printf '%-28s %12s %12s %12s %9s %11s %12s\n' "configuration" "samples/s" "min" "max" "test_acc" "all-reduce" "other load"
for id in "${configs[@]}"; do
  med[$id]=$(median <<<"${rates[$id]:-}")
  read -r lo hi < <(awk '{ lo = hi = "nan"; for (i = 1; i <= NF; i++) {
    if (lo == "nan" || $i < lo) lo = $i; if (hi == "nan" || $i > hi) hi = $i }
    print lo, hi }' <<<"${rates[$id]:-}")
  macc=$(median <<<"${accs[$id]:-}")
  mcomm=$(median <<<"${comms[$id]:-}")
  oload=$(awk '{ m = 0; for (i = 1; i <= NF; i++) if ($i > m) m = $i; print m }' <<<"${others[$id]:-}")
  printf '%-28s %12s %12s %12s %9s %11s %12s\n' "${label[$id]}" "${med[$id]}" "$lo" "$hi" "$macc" \
    "$([[ $mcomm == nan ]] && echo - || printf '%.1f%%' "$mcomm")" "max ${oload}%"
done
for id in rt1 rt2_ring rt2_mpi pt1 pt2; do [[ -n ${med[$id]:-} ]] || med[$id]=nan; done

ratio_names=(rt2_ring/pt2 rt2_ring/pt1 rt2_ring/rt1 rt2_ring/rt2_mpi rt2_mpi/pt2 rt1/pt1 pt2/pt1)
declare -A ratio_text=(
  [rt2_ring/pt2]="ringtrain 2 ranks (ring) / PyTorch DDP 2 procs"
  [rt2_ring/pt1]="ringtrain 2 ranks (ring) / PyTorch 1 process"
  [rt2_ring/rt1]="ringtrain 2 ranks (ring) / ringtrain 1 rank (scaling, ideal 2)"
  [rt2_ring/rt2_mpi]="ringtrain 2 ranks: ring / mpi"
  [rt2_mpi/pt2]="ringtrain 2 ranks (mpi) / PyTorch DDP 2 procs"
  [rt1/pt1]="ringtrain 1 rank / PyTorch 1 process"
  [pt2/pt1]="PyTorch DDP 2 procs / PyTorch 1 process")
declare -A ratios
echo
echo "Ratios of medians (> 1: the first is faster)"
for r in "${ratio_names[@]}"; do
  ratios[$r]=$(ratio "${med[${r%/*}]}" "${med[${r#*/}]}")
  printf '  %-62s %s\n' "${ratio_text[$r]}" "${ratios[$r]/#nan/n/a}"
done

if [[ -n $output ]]; then
  {
    echo "{"
    echo "  \"benchmark\": \"train\", \"start\": \"$start\", \"host\": \"$(hostname)\", \"cpus\": $(nproc),"
    echo "  \"epochs\": $epochs, \"repeats\": $repeats, \"batch_per_rank\": $batch, \"train_rows\": 54000,"
    echo "  \"metric\": \"samples/s while training, median over repeats\","
    echo "  \"ringtrain\": \"$binary\", \"pytorch\": \"${pytorch_note//\"/\'}\","
    echo "  \"configs\": {"
    sep=""
    for id in "${configs[@]}"; do
      printf '%s    "%s": {"label": "%s", "ranks": %s, "system": "%s", "scaling_baseline": "%s", "samples_per_s": %s, "runs_samples_per_s": %s, "test_accuracy": %s, "runs_test_accuracy": %s, "allreduce_percent": %s, "cpu_busy_percent_before": %s, "other_load_percent_during": %s}' \
        "$sep" "$id" "${label[$id]}" "${ranks[$id]}" "${system[$id]}" "${baseline[$id]}" "$(json_num "${med[$id]}")" "$(json_list "${rates[$id]:-}")" \
        "$(json_num "$(median <<<"${accs[$id]:-}")")" "$(json_list "${accs[$id]:-}")" \
        "$(json_num "$(median <<<"${comms[$id]:-}")")" "$(json_list "${busys[$id]:-}")" \
        "$(json_list "${others[$id]:-}")"
      sep=$',\n'
    done
    echo; echo "  },"
    echo "  \"ratios\": {"
    sep=""
    for r in "${ratio_names[@]}"; do
      printf '%s    "%s": %s' "$sep" "$r" "$(json_num "${ratios[$r]}")"; sep=$',\n'
    done
    echo; echo "  },"
    echo "  \"failures\": $failures"
    echo "}"
  } >"$output"
  echo "JSON summary: $output"
fi
((failures == 0)) || { echo "bench_train.sh: $failures run(s) failed; see $work_dir" >&2; exit 1; }
