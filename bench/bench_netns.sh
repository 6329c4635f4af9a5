#!/usr/bin/env bash
# bench_netns.sh: training step time when communication is expensive. Two
# "hosts" on this machine (network namespaces joined by a veth link shaped to
# --rate, default 1 Gbit/s: bench/netns_cluster.sh), one ringtrain rank in
# each, Open MPI over TCP, each host on its own core. Several configurations
# (extra `ringtrain train` options, e.g. overlap of the all-reduce with the
# backward pass, gradient compression) run side by side in one invocation.
#
# Every run: 2 ranks (one per host), --comm.algorithm=ring, 64 rows per rank
# and step, the model 784-<hidden>-10 (default 784-2048-2048-10, 5.8M
# parameters: 23 MB of fp32 gradient per step, about 190 ms on a 1 Gbit/s
# link, so the link dominates), Fashion-MNIST training rows, --steps steps,
# no validation split, no test set, no checkpoints, one evaluation at the
# end (outside the timed steps). Each configuration runs --repeats times,
# interleaved (repetition 1 of all, then 2, ...; the order rotates every
# repetition, as in bench_train.sh).
#
# The figure: step time = 1000 * train_s / steps, from the "end" record of
# the run's events.jsonl (train_s counts the training steps only: forward,
# backward, all-reduce, optimizer; not start-up, data loading, evaluation),
# steps = trained_examples / (2 * 64).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$script_dir")
# shellcheck source=netns_cluster.sh
source "$script_dir/netns_cluster.sh"
PY=/usr/bin/python3   # Debian's python3 (json); not a pyenv shim

usage() {
  cat <<EOF
usage: bench/bench_netns.sh [options] [RINGTRAIN_BINARY]
  RINGTRAIN_BINARY     default: $root/build/release/ringtrain
  --rate R             link rate per direction, a tc rate (1gbit, 100mbit) or none (default 1gbit)
  --hidden LIST        hidden layer sizes (default 2048,2048: 784-2048-2048-10)
  --steps N            training steps per run (default 40)
  --repeats R          runs per configuration, interleaved and rotated (default 3)
  --config NAME=ARGS   a configuration: NAME and extra 'ringtrain train' options,
                       space-separated; repeatable; the first one replaces the defaults:
                         plain="" overlap="--comm.overlap=true" bf16="--comm.compression=bf16"
                         fp16="--comm.compression=fp16" overlap_bf16="--comm.overlap=true --comm.compression=bf16"
  --json FILE          also write the results as JSON
  --work-dir DIR       run folders and logs (default: a new folder under /tmp, kept)
  --data-dir DIR       Fashion-MNIST IDX .gz files (default /usr/share/datasets/fashion-mnist)
  --wait-idle S        before each run wait up to S s for idle CPUs (default 30; 0: off)
  --mpi-args ARGS      extra mpirun options for every run, space-separated
                       (e.g. "--mca btl_tcp_links 2")
Needs root, iproute2 (ip, tc) and Open MPI; exits 2 when network namespaces are unavailable.
EOF
}

die() { echo "bench_netns.sh: $*" >&2; exit 2; }

rate=1gbit hidden=2048,2048 steps=40 repeats=3 json="" work_dir="" binary=""
data_dir=/usr/share/datasets/fashion-mnist wait_idle=30 batch=64 mpi_args=""
config_names=() config_args=()
add_config() {  # NAME=ARGS
  local name=${1%%=*} args=${1#*=}
  [[ $1 == *=* ]] || die "--config expects NAME=ARGS, got '$1'"
  [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "--config: name '$name' must be [A-Za-z0-9_.-]+"
  local n
  for n in ${config_names[@]+"${config_names[@]}"}; do
    [[ $n != "$name" ]] || die "--config: name '$name' given twice"
  done
  config_names+=("$name") config_args+=("$args")
}
need_arg() { (($2 >= 2)) || die "option '$1' needs a value"; }
while (($#)); do
  case $1 in
    --rate) need_arg "$1" $#; rate=$2; shift 2 ;;
    --hidden) need_arg "$1" $#; hidden=$2; shift 2 ;;
    --steps) need_arg "$1" $#; steps=$2; shift 2 ;;
    --repeats) need_arg "$1" $#; repeats=$2; shift 2 ;;
    --json) need_arg "$1" $#; json=$2; shift 2 ;;
    --work-dir) need_arg "$1" $#; work_dir=$2; shift 2 ;;
    --data-dir) need_arg "$1" $#; data_dir=$2; shift 2 ;;
    --wait-idle) need_arg "$1" $#; wait_idle=$2; shift 2 ;;
    --mpi-args) need_arg "$1" $#; mpi_args=$2; shift 2 ;;
    --config) need_arg "$1" $#; add_config "$2"; shift 2 ;;
    --config=*) add_config "${1#--config=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) [[ -z $binary ]] || die "more than one binary given ('$binary', '$1')"
       binary=$1; shift ;;
  esac
done
if ((${#config_names[@]} == 0)); then
  add_config plain=
  add_config overlap=--comm.overlap=true
  add_config bf16=--comm.compression=bf16
  add_config fp16=--comm.compression=fp16
  add_config "overlap_bf16=--comm.overlap=true --comm.compression=bf16"
fi
for v in steps repeats wait_idle; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v//_/-} expects a number, got '${!v}'"
done
((steps >= 1 && repeats >= 1)) || die "--steps and --repeats must be >= 1"
[[ $hidden =~ ^([1-9][0-9]*(,[1-9][0-9]*)*)?$ ]] || die "--hidden expects sizes like 2048,2048, got '$hidden'"
[[ $rate == none || $rate =~ ^[0-9]+(\.[0-9]+)?[A-Za-z]*$ ]] || die "--rate expects a tc rate (1gbit, 100mbit) or none, got '$rate'"

binary=${binary:-$root/build/release/ringtrain}
[[ -x $binary ]] || die "ringtrain binary not found: $binary (build it, or pass its path)"
binary=$(readlink -f "$binary")
command -v mpirun >/dev/null || die "mpirun not found (apt-get install openmpi-bin)"
[[ -x $PY ]] || die "$PY not found (apt-get install python3)"
train_images=$data_dir/train-images-idx3-ubyte.gz
for f in "$train_images" "$data_dir/train-labels-idx1-ubyte.gz"; do
  [[ -r $f ]] || die "missing data file $f (apt-get install dataset-fashion-mnist)"
done
why=$(netns_available 2>&1) || die "network namespaces unavailable: ${why#netns_available: }"

# Parameters of 784-<hidden>-10: weights and biases of each dense layer.
params=$(awk -v h="$hidden" 'BEGIN { n = split(h, s, ","); prev = 784; p = 0
  for (i = 1; i <= n; i++) { p += prev * s[i] + s[i]; prev = s[i] }
  print p + prev * 10 + 10 }')
# One pass over exactly the rows the steps need (at most all 60000): no
# epoch boundary inside the run, and little start-up time spent reading rows.
rows=$((steps * 2 * batch)); ((rows <= 60000)) || rows=60000

# Options of every run. A configuration may override one of them (say
# --comm.algorithm=mpi): ringtrain refuses an option given twice, so an
# option the configuration sets is left out of the common ones.
common=(--data.train="$train_images" "--data.max_rows=$rows" --data.val_fraction=0
  --model.hidden="$hidden" --train.max_steps="$steps" "--train.batch_per_rank=$batch"
  --comm.algorithm=ring --checkpoint.keep_last=0 --train.evals=1 --run.progress=false)
run_args() {  # CONFIG_INDEX RUN_DIR -> the train options in array `args`
  local extra o e name keep
  read -r -a extra <<<"${config_args[$1]}"
  args=(train)
  for o in "${common[@]}"; do
    name=${o%%=*} keep=1
    for e in ${extra[@]+"${extra[@]}"}; do [[ ${e%%=*} != "$name" ]] || keep=0; done
    ((keep)) && args+=("$o")
  done
  args+=(${extra[@]+"${extra[@]}"} --run.dir="$2")
}

work_dir=${work_dir:-$(mktemp -d /tmp/bench_netns.XXXXXX)}
mkdir -p "$work_dir"
work_dir=$(readlink -f "$work_dir")

# Tear the cluster down however the script ends. The signal traps only turn
# the signal into an exit; the runs are waited for with `wait`, which a
# trapped signal interrupts at once (a foreground mpirun would delay it).
trap netns_cluster_down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Every option a configuration names must be one this binary knows; checked
# against `ringtrain train --help` before anything runs.
help=$("$binary" train --help 2>&1) || die "'$binary train --help' failed"
for i in "${!config_names[@]}"; do
  read -r -a extra <<<"${config_args[i]}"
  for e in ${extra[@]+"${extra[@]}"}; do
    [[ $e == --?* ]] || die "config '${config_names[i]}': '$e' is not a --section.key=value option"
    opt=${e%%=*}
    grep -qE -- "(^|[[:space:]])${opt//./\\.}([[:space:]]|\$)" <<<"$help" ||
      die "config '${config_names[i]}': option ${e%%=*} is not accepted by $binary (not in 'ringtrain train --help')"
  done
done

# Percentage of all CPUs busy during one second (/proc/stat).
cpu_busy() {
  local a b
  read -ra a </proc/stat; sleep 1; read -ra b </proc/stat
  awk -v a="${a[*]:1}" -v b="${b[*]:1}" 'BEGIN { n = split(a, x, " "); split(b, y, " "); t = 0
    for (i = 1; i <= n; i++) t += y[i] - x[i]
    idle = (y[4] - x[4]) + (y[5] - x[5]); printf "%.0f", (t > 0 ? 100 * (1 - idle / t) : 0) }'
}
wait_for_idle() {  # prints the last busy percentage
  local busy waited=0
  ((wait_idle > 0)) || { echo "-"; return; }
  while busy=$(cpu_busy); ((busy > 15 && waited < wait_idle)); do sleep 1; waited=$((waited + 2)); done
  echo "$busy"
}

# Runs ringtrain across the two hosts; returns its status.
read -r -a mpi_extra <<<"$mpi_args"
run_cluster() {  # LOG ARGS...
  local log=$1; shift
  netns_mpirun 1 ${mpi_extra[@]+"${mpi_extra[@]}"} "$binary" "$@" >"$log" 2>&1 &
  wait $!
}

# "step_ms samples_per_s comm_share steps" of a finished run.
read_end() {  # RUN_DIR
  "$PY" - "$1/events.jsonl" "$batch" <<'PY'
import json, sys
end = None
with open(sys.argv[1]) as f:
    for line in f:
        if line.strip():
            e = json.loads(line)
            if e.get("event") == "end":
                end = e
if end is None:
    sys.exit("no end record in " + sys.argv[1])
if end.get("reason") != "completed":
    sys.exit("run ended with reason %r" % end.get("reason"))
steps = end["trained_examples"] / (2 * int(sys.argv[2]))
train_s = end["train_s"]
print("%.6f %.3f %.6f %g" % (1000 * train_s / steps, end["samples_per_s"],
                             end["comm_s"] / train_s if train_s > 0 else float("nan"), steps))
PY
}

netns_cluster_up "rtb$$" "$rate" || die "cannot bring the two-host cluster up"
link=$(netns_link_throughput 50 2>/dev/null | awk '{ print $1 }') || link=""
echo "bench_netns: 2 hosts (namespaces ${NETNS_CLUSTER_NS[*]}, $NETNS_CLUSTER_CIDR), link $rate per direction" \
  "(measured ${link:-?} Mbit/s TCP payload h0->h1); model 784-${hidden//,/-}-10, $params parameters" \
  "($((params * 4)) B fp32 gradient); $steps steps x $repeats repeat(s), batch $batch per rank"
echo "  ringtrain: $binary; logs and run folders: $work_dir${mpi_args:+; mpirun options: $mpi_args}"

# A one-step trial of each configuration across the cluster: catches values
# the binary refuses (the --help check only sees names) and a broken cluster
# before the timed runs.
for i in "${!config_names[@]}"; do
  name=${config_names[i]} dir=$work_dir/trial-${config_names[i]}
  rm -rf "$dir"
  run_args "$i" "$dir"
  args=("${args[@]/#--train.max_steps=*/--train.max_steps=1}")
  if ! run_cluster "$dir.log" "${args[@]}"; then
    msg=$(grep -m1 -E 'error|Error|ERROR' "$dir.log" || tail -n 1 "$dir.log")
    die "config '$name' (${config_args[i]:-no extra options}): a 1-step trial run failed: ${msg:-no output} (log: $dir.log)"
  fi
  rm -f "$dir"/best*.h5 "$dir"/final.h5
done

runs_file=$work_dir/runs.tsv
: >"$runs_file"
failures=0
n=${#config_names[@]}
for ((rep = 1; rep <= repeats; rep++)); do
  for ((k = 0; k < n; k++)); do
    i=$(((k + rep - 1) % n)) name=${config_names[i]}
    dir=$work_dir/$name-$rep
    rm -rf "$dir"
    busy=$(wait_for_idle)
    run_args "$i" "$dir"
    if run_cluster "$dir.log" "${args[@]}" && res=$(read_end "$dir" 2>"$dir.err"); then
      # The model files (47 MB a run for the default model) are not needed for
      # the timing; the logs, events and metrics stay.
      rm -f "$dir"/best*.h5 "$dir"/final.h5
      read -r step_ms sps share nsteps <<<"$res"
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rep" "$step_ms" "$sps" "$share" "$busy" >>"$runs_file"
      printf '  [rep %d/%d] %-16s %9.1f ms/step  %8.1f samples/s  comm %5.1f%%  (%s steps; CPUs %s%% busy before)\n' \
        "$rep" "$repeats" "$name" "$step_ms" "$sps" "$(awk -v s="$share" 'BEGIN { print 100 * s }')" "$nsteps" "$busy"
    else
      failures=$((failures + 1))
      printf '  [rep %d/%d] %-16s FAILED (log: %s)\n' "$rep" "$repeats" "$name" "$dir.log"
      tail -n 3 "$dir.log" "$dir.err" 2>/dev/null | sed 's/^/      /'
    fi
  done
done

# Table, ratios and JSON from the same numbers, by one Python program.
configs_json=$("$PY" -c 'import json, sys
n = (len(sys.argv) - 1) // 2
print(json.dumps([[sys.argv[1 + i], sys.argv[1 + n + i]] for i in range(n)]))' \
  "${config_names[@]}" "${config_args[@]}")
"$PY" - "$runs_file" "$configs_json" "$json" "$rate" "$params" "$steps" "$repeats" "$hidden" "$batch" \
  "${link:-}" "$binary" "$failures" "$mpi_args" <<'PY'
import json, statistics, sys
runs_file, configs, out, rate, params, steps, repeats, hidden, batch, link, binary, failures, mpi_args = sys.argv[1:]
configs = json.loads(configs)
names = [n for n, _ in configs]
runs = {n: [] for n in names}
with open(runs_file) as f:
    for line in f:
        name, rep, step_ms, sps, share, busy = line.rstrip("\n").split("\t")
        runs[name].append({"rep": int(rep), "step_ms": float(step_ms), "samples_per_s": float(sps),
                           "comm_share": float(share), "cpu_busy_before": None if busy == "-" else float(busy)})
med = lambda xs: statistics.median(xs) if xs else None
base = "plain" if "plain" in names else names[0]
res = {}
for name, args in configs:
    r = runs[name]
    res[name] = {"args": args,
                 "step_ms": med([x["step_ms"] for x in r]),
                 "min_step_ms": min((x["step_ms"] for x in r), default=None),
                 "max_step_ms": max((x["step_ms"] for x in r), default=None),
                 "runs_step_ms": [x["step_ms"] for x in r],
                 "samples_per_s": med([x["samples_per_s"] for x in r]),
                 "comm_share": med([x["comm_share"] for x in r]),
                 "runs_cpu_busy_before_percent": [x["cpu_busy_before"] for x in r]}
b = res[base]["step_ms"]
for name in names:
    s = res[name]["step_ms"]
    res[name]["speedup_over_plain"] = b / s if b and s else None

def fmt(v, f):
    return "-" if v is None else f % v
print()
print("Step time (ms, median of %s run(s) of %s steps; training steps only), %s link, %s parameters"
      % (repeats, steps, rate, params))
print("comm share: time in the all-reduce / training time (median); speedup: %s step / config step" % base)
print("%-16s %10s %10s %10s %12s %11s %8s   %s" % ("config", "step_ms", "min", "max", "samples/s",
                                                  "comm share", "speedup", "options"))
for name, args in configs:
    r = res[name]
    print("%-16s %10s %10s %10s %12s %11s %8s   %s" % (
        name, fmt(r["step_ms"], "%.1f"), fmt(r["min_step_ms"], "%.1f"), fmt(r["max_step_ms"], "%.1f"),
        fmt(r["samples_per_s"], "%.1f"), fmt(r["comm_share"] and 100 * r["comm_share"], "%.1f%%"),
        fmt(r["speedup_over_plain"], "%.3f"), args or "(none)"))

# Ratios of medians (> 1: the second is slower, i.e. the first is faster):
# every configuration against the baseline, and a combined one "A_B"
# against each of its parts "A" and "B" when those ran too.
pairs = [(n, base) for n in names if n != base]
for n in names:
    parts = n.split("_")
    if len(parts) == 2 and all(p in names for p in parts):
        pairs += [(n, p) for p in parts if (n, p) not in pairs]
ratios = {}
print()
print("Ratios of median step times (> 1: the first is faster)")
for a, c in pairs:
    sa, sc = res[a]["step_ms"], res[c]["step_ms"]
    v = sc / sa if sa and sc else None
    ratios["%s/%s" % (a, c)] = v
    print("  %-40s %s" % ("%s vs %s" % (a, c), fmt(v, "%.3f")))

if out:
    doc = {"benchmark": "netns", "rate": rate, "link_measured_mbit_per_s": float(link) if link else None,
           "params": int(params), "model": "784-%s-10" % hidden.replace(",", "-"), "hidden": hidden,
           "steps": int(steps), "repeats": int(repeats), "batch_per_rank": int(batch), "ranks": 2,
           "hosts": 2, "algorithm": "ring", "ringtrain": binary, "mpirun_extra_args": mpi_args, "baseline": base,
           "metric": "ms per training step (1000 * train_s / steps), median over repeats",
           "configs": res, "ratios": ratios, "failures": int(failures)}
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print("JSON summary:", out)
PY
((failures == 0)) || { echo "bench_netns.sh: $failures run(s) failed; see $work_dir" >&2; exit 1; }
