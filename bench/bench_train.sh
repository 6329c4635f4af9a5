#!/usr/bin/env bash
# bench_train.sh: end-to-end training throughput and scaling, ringtrain against
# PyTorch, side by side in one invocation on the same machine.
#
# Configurations (each run R times, interleaved: rep 1 of all, rep 2 of all, ...,
# with the order rotated every repetition so that none always runs first):
#   rt1       ringtrain, 1 rank, batch B
#   rt1_b2x   ringtrain, 1 rank, batch 2B  (strong-scaling baseline: the global batch of 2 ranks x B)
#   rt2_ring  ringtrain, 2 ranks x B, comm.algorithm=ring (ringtrain's all-reduce)
#   rt2_shm   ringtrain, 2 ranks x B, comm.algorithm=shm  (ringtrain's shared-memory all-reduce)
#   rt2_shm_ar  the same with comm.shard_optimizer=false: the whole all-reduce, then
#             every rank's full optimizer step (rt2_shm and rt2_ring shard it)
#   rt2_mpi   ringtrain, 2 ranks x B, comm.algorithm=mpi  (MPI_Allreduce)
#   pt1       PyTorch, 1 process, batch B          (bench/pytorch_mlp.py)
#   pt1_b2x   PyTorch, 1 process, batch 2B
#   pt2       PyTorch, DDP gloo, 2 processes x B
# Same model (784-256-128-10 ReLU), SGD momentum 0.9, lr 0.1 * global batch / 256,
# 54000 training rows (10% of Fashion-MNIST's 60000 held out), E epochs. The
# figure compared is samples/s while training (steps only, no evaluation, no
# start-up): ringtrain's "end" record in events.jsonl, PyTorch's final JSON.
# ringtrain runs with --run.profile=true (a barrier before each all-reduce, so
# that waiting for the slowest rank is timed apart from communication); the
# barrier is part of the timed step, so ringtrain's figures are conservative
# (--no-profile leaves it out).
# Each configuration's median over its R runs goes into the tables: throughput,
# ringtrain's step-time breakdown, weak and strong scaling, ratios.
#
# This is a shared 2-core machine: before each run the script waits (up to
# --wait-idle seconds) for the CPUs to be idle, and reports how busy they were.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$script_dir")
all_configs=(rt1 rt1_b2x rt2_ring rt2_shm rt2_shm_ar rt2_mpi pt1 pt1_b2x pt2)

usage() {
  cat <<EOF
usage: bench/bench_train.sh [options] [RINGTRAIN_BINARY]
  RINGTRAIN_BINARY     default: $root/build/release/ringtrain
  -e, --epochs E       epochs per run (default 3)
  -r, --repeats R      runs per configuration, interleaved (default 3)
  -o, --output FILE, --json FILE
                       also write the figures of the tables as JSON to FILE
  -b, --batch B        rows per rank (process) and step (default 64); the
                       *_b2x configurations use 2B on one rank
  --configs LIST       comma-separated subset of: ${all_configs[*]}
                       (default: all; PyTorch ones only where torch is usable)
  --data-dir DIR       Fashion-MNIST IDX .gz files (default /usr/share/datasets/fashion-mnist)
  --python PATH        Python with torch for the PyTorch rows (default /usr/bin/python3)
  --no-pytorch         skip the PyTorch rows (pt1, pt1_b2x, pt2)
  --no-profile         run ringtrain as users do, without --run.profile=true (no
                       barrier before each all-reduce: about 3% faster on 2 ranks;
                       the breakdown then counts the waiting in the all-reduce)
  --work-dir DIR       run folders, logs and runs.jsonl (default: a new folder under /tmp, kept)
  --wait-idle S        before each run wait up to S s for idle CPUs (default 60; 0: off)
Configurations: rt1 (ringtrain 1 rank, B), rt1_b2x (1 rank, 2B), rt2_ring,
rt2_shm, rt2_mpi (2 ranks x B, comm.algorithm ring|shm|mpi), rt2_shm_ar
(shm without the sharded optimizer), pt1 (PyTorch 1
process, B), pt1_b2x (1 process, 2B), pt2 (PyTorch DDP gloo, 2 processes x B).
Weak scaling efficiency = samples/s(2 x B) / (2 x samples/s(1 x B));
strong scaling speedup = samples/s(2 x B) / samples/s(1 x 2B), efficiency = speedup / 2.
Exit status: 0 all runs succeeded, 1 some run failed, 2 bad usage or missing files.
EOF
}

epochs=3 repeats=3 output="" batch=64 data_dir=/usr/share/datasets/fashion-mnist
python=/usr/bin/python3 use_pytorch=1 work_dir="" wait_idle=60 binary="" config_list="" use_profile=1
need_arg() { (($# >= 2)) || { echo "bench_train.sh: option '$1' needs a value" >&2; exit 2; }; }
while (($#)); do
  case $1 in
    -e|--epochs) need_arg "$@"; epochs=$2; shift 2 ;;
    -r|--repeats) need_arg "$@"; repeats=$2; shift 2 ;;
    -o|--output|--json) need_arg "$@"; output=$2; shift 2 ;;
    -b|--batch) need_arg "$@"; batch=$2; shift 2 ;;
    --configs) need_arg "$@"; config_list=$2; shift 2 ;;
    --data-dir) need_arg "$@"; data_dir=$2; shift 2 ;;
    --python) need_arg "$@"; python=$2; shift 2 ;;
    --no-pytorch) use_pytorch=0; shift ;;
    --no-profile) use_profile=0; shift ;;
    --work-dir) need_arg "$@"; work_dir=$2; shift 2 ;;
    --wait-idle) need_arg "$@"; wait_idle=$2; shift 2 ;;
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

# The configurations asked for, in the canonical order.
declare -A wanted=()
if [[ -n $config_list ]]; then
  IFS=',' read -ra req <<<"$config_list"
  for id in "${req[@]}"; do
    id=${id//[[:space:]]/}
    [[ -n $id ]] || continue
    [[ " ${all_configs[*]} " == *" $id "* ]] || {
      echo "bench_train.sh: unknown configuration '$id' in --configs (known: ${all_configs[*]})" >&2; exit 2; }
    wanted[$id]=1
  done
  ((${#wanted[@]})) || { echo "bench_train.sh: --configs names no configuration" >&2; exit 2; }
else
  for id in "${all_configs[@]}"; do wanted[$id]=1; done
fi

binary=${binary:-$root/build/release/ringtrain}
if [[ ! -x $binary ]]; then
  echo "bench_train.sh: ringtrain binary not found: $binary" >&2
  echo "  build it: cmake --preset release && cmake --build build/release -j2, or pass its path" >&2
  exit 2
fi
command -v mpirun >/dev/null || { echo "bench_train.sh: mpirun not found (apt-get install openmpi-bin)" >&2; exit 2; }
# The tables and the JSON are made with python3's json module (no torch needed).
pyjson=$(command -v python3 || true)
[[ -n $pyjson ]] || { echo "bench_train.sh: python3 not found (needed for the summary; apt-get install python3)" >&2; exit 2; }
train_images=$data_dir/train-images-idx3-ubyte.gz test_images=$data_dir/t10k-images-idx3-ubyte.gz
for f in "$train_images" "$test_images" "$data_dir/train-labels-idx1-ubyte.gz" "$data_dir/t10k-labels-idx1-ubyte.gz"; do
  [[ -r $f ]] || { echo "bench_train.sh: missing data file $f (apt-get install dataset-fashion-mnist)" >&2; exit 2; }
done

mpirun_args=(--bind-to core)
[[ $(id -u) == 0 ]] && mpirun_args+=(--allow-run-as-root)

# --run.profile=true: a barrier before the gradient all-reduce, so that the
# waiting for the slowest rank is timed apart from the communication. An older
# binary without it still runs, its all-reduce share then includes the waiting.
train_help=$("$binary" train --help 2>&1 || true)  # captured: grep -q would SIGPIPE it under pipefail
if [[ $use_profile == 0 ]]; then
  profile_args=() profile_note="off (--no-profile): no barrier before the all-reduce, as users run it; waiting for the slowest rank is counted in the all-reduce"
elif [[ $train_help == *--run.profile* ]]; then
  profile_args=(--run.profile=true) profile_note="on: --run.profile=true puts a barrier before each all-reduce; the barrier is included in ringtrain's timings (conservative)"
else
  profile_args=() profile_note="off: this binary has no --run.profile; waiting for the slowest rank is counted in the all-reduce"
  echo "NOTE: profiling $profile_note" >&2
fi

# PyTorch: 1 process needs torch and numpy; DDP also needs the gloo backend.
pt_usable="pt1 pt1_b2x pt2"
pytorch_note="not requested (--no-pytorch)"
if ((use_pytorch)); then
  if ! "$python" -c 'import numpy, torch' 2>/dev/null; then
    pt_usable=""
    pytorch_note="skipped: '$python' cannot import torch and numpy (Debian: apt-get install python3-torch; add libopenblas0-serial for its fast BLAS)"
    echo "NOTE: PyTorch rows $pytorch_note" >&2
  elif ! "$python" -c 'import sys, torch.distributed as d; sys.exit(not (d.is_available() and d.is_gloo_available()))' 2>/dev/null; then
    pt_usable="pt1 pt1_b2x"
    pytorch_note="DDP skipped: torch in '$python' has no gloo backend"
    echo "NOTE: PyTorch $pytorch_note" >&2
  else
    pytorch_note="available"
  fi
else
  pt_usable=""
fi
configs=()
for id in "${all_configs[@]}"; do
  [[ -n ${wanted[$id]:-} ]] || continue
  if [[ $id == pt* && " $pt_usable " != *" $id "* ]]; then
    [[ -n $config_list ]] && echo "NOTE: $id skipped (PyTorch: $pytorch_note)" >&2
    continue
  fi
  configs+=("$id")
done
((${#configs[@]})) || { echo "bench_train.sh: no configuration left to run" >&2; exit 2; }

# Per configuration: label, world size, batch per rank, how it runs, and for the
# scaling figures (JSON, `ringtrain plot --bench`) the system it belongs to,
# its weak-scaling baseline (the 1-process run with the same batch per rank;
# a 1-process run is its own) and, for 2 processes, its strong-scaling
# baseline (the 1-process run with the same global batch).
b2=$((2 * batch))
declare -A label=(
  [rt1]="ringtrain 1 rank" [rt1_b2x]="ringtrain 1 rank, batch x2" [rt2_ring]="ringtrain 2 ranks (ring)"
  [rt2_shm]="ringtrain 2 ranks (shm)" [rt2_shm_ar]="ringtrain 2 ranks (shm, unsharded)"
  [rt2_mpi]="ringtrain 2 ranks (mpi)" [pt1]="PyTorch 1 process" [pt1_b2x]="PyTorch 1 process, batch x2" [pt2]="PyTorch DDP 2 procs (gloo)")
declare -A ranks=([rt1]=1 [rt1_b2x]=1 [rt2_ring]=2 [rt2_shm]=2 [rt2_shm_ar]=2 [rt2_mpi]=2 [pt1]=1 [pt1_b2x]=1 [pt2]=2)
declare -A bpr=([rt1]=$batch [rt1_b2x]=$b2 [rt2_ring]=$batch [rt2_shm]=$batch [rt2_shm_ar]=$batch [rt2_mpi]=$batch
  [pt1]=$batch [pt1_b2x]=$b2 [pt2]=$batch)
declare -A algo=([rt1]=ring [rt1_b2x]=ring [rt2_ring]=ring [rt2_shm]=shm [rt2_shm_ar]=shm [rt2_mpi]=mpi)
declare -A extra=([rt2_shm_ar]=--comm.shard_optimizer=false)  # more ringtrain options
declare -A system=([rt1]="ringtrain (ring)" [rt1_b2x]="ringtrain (ring)" [rt2_ring]="ringtrain (ring)"
  [rt2_shm]="ringtrain (shm)" [rt2_shm_ar]="ringtrain (shm, unsharded)" [rt2_mpi]="ringtrain (MPI_Allreduce)"
  [pt1]="PyTorch DDP (gloo)" [pt1_b2x]="PyTorch DDP (gloo)" [pt2]="PyTorch DDP (gloo)")
declare -A baseline=([rt1]=rt1 [rt1_b2x]=rt1_b2x [rt2_ring]=rt1 [rt2_shm]=rt1 [rt2_shm_ar]=rt1 [rt2_mpi]=rt1
  [pt1]=pt1 [pt1_b2x]=pt1_b2x [pt2]=pt1)
declare -A strong=([rt2_ring]=rt1_b2x [rt2_shm]=rt1_b2x [rt2_shm_ar]=rt1_b2x [rt2_mpi]=rt1_b2x [pt2]=pt1_b2x)
clk_tck=$(getconf CLK_TCK) ncpu=$(nproc)
failures=0

work_dir=${work_dir:-$(mktemp -d /tmp/bench_train.XXXXXX)}
mkdir -p "$work_dir"
runs_file=$work_dir/runs.jsonl
: >"$runs_file"

# The Python side (json module only): `record` reads one finished run (ringtrain's
# events.jsonl, or PyTorch's JSON), appends it to runs.jsonl as one JSON line
# and prints the per-run line; `summary` reads runs.jsonl, prints the tables and
# writes the JSON summary. Arguments are key=value.
read -r -d '' py_helper <<'PY' || true
import json, math, os, re, socket, statistics, sys

def kv(args):
    return dict(a.split("=", 1) for a in args)

def num(s):
    try:
        v = float(s)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        return None

def last_end(path):
    end = None
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a torn last line of a killed run
                if isinstance(rec, dict) and rec.get("event") == "end":
                    end = rec  # several only for resumed runs: the last counts
    except OSError:
        pass
    return end

PARTS = [("compute", "compute_s"), ("allreduce", "comm_s"), ("wait", "wait_s"),
         ("optimizer", "optimizer_s"), ("data", "data_s")]

def ringtrain_run(a, r):
    end = last_end(os.path.join(a["run_dir"], "events.jsonl"))
    if end and num(end.get("samples_per_s")):
        r["samples_per_s"] = end["samples_per_s"]
        r["train_s"] = end.get("train_s")
        r["steps"] = end.get("step")
        r["trained_examples"] = end.get("trained_examples")
        r["comm"] = end.get("comm")
        acc = (end.get("test") or {}).get("test_accuracy")
        bd = end.get("breakdown")
        t = num(end.get("train_s"))
        if isinstance(bd, dict) and t:
            b = {k: bd.get(k) for k in ("data_s", "compute_s", "wait_s", "comm_s", "optimizer_s",
                                        "eval_s", "checkpoint_s", "profiled_wait")}
            for name, key in PARTS:
                v = num(bd.get(key))
                b[name + "_percent"] = None if v is None else 100 * v / t
            r["breakdown"] = b
    else:  # an older binary: the done line
        # done: 1266 steps, 162000 examples in 1.6 s (105.238k samples/s while training, 12.7% of it in the all-reduce); ...
        line = ""
        with open(a["log"], errors="replace") as f:
            for l in f:
                if "done:" in l:
                    line = l
        m = re.search(r"done: (\d+) steps, (\d+) examples in ([0-9.eE+-]+) s \(([0-9.eE+-]+)(k?) samples/s", line)
        if not m:
            return False
        r["samples_per_s"] = float(m.group(4)) * (1000 if m.group(5) else 1)
        r["steps"], r["trained_examples"], r["train_s"] = int(m.group(1)), int(m.group(2)), float(m.group(3))
        acc = None
    if acc is None:
        try:
            with open(os.path.join(a["run_dir"], "test_metrics.json")) as f:
                acc = json.load(f).get("test_accuracy")
        except (OSError, ValueError):
            acc = None
    r["test_accuracy"] = acc
    return True

def pytorch_run(a, r):
    try:
        with open(a["json"]) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return False
    if not num(d.get("samples_per_s")):
        return False
    r["samples_per_s"] = d["samples_per_s"]
    r["train_s"] = d.get("train_seconds")
    r["test_accuracy"] = d.get("test_accuracy")
    r["trained_examples"] = d.get("train_rows", 0) * d.get("epochs", 0)
    steps = d.get("steps")
    if steps is None and d.get("train_rows") and d.get("procs"):
        steps = -(-d["train_rows"] // d["procs"] // d["batch_per_proc"]) * d["epochs"]
    r["steps"] = steps
    r["blas"] = d.get("blas")
    return True

def record(a):
    r = {"config": a["id"], "rep": int(a["rep"]), "ok": a["ok"] == "1", "label": a["label"],
         "ranks": int(a["ranks"]), "batch_per_rank": int(a["batch"]),
         "global_batch": int(a["ranks"]) * int(a["batch"]), "system": a["system"],
         "scaling_baseline": a["baseline"], "strong_baseline": a["strong"] or None,
         "cpu_busy_percent_before": num(a["busy"]), "other_load_percent_during": num(a["other"]),
         "wall_s": num(a["real"]), "log": a["log"]}
    good = r["ok"]
    if good:
        try:
            good = ringtrain_run(a, r) if a["kind"] == "rt" else pytorch_run(a, r)
        except Exception as e:  # an unreadable result is a failed run, still recorded
            r["error"], good = repr(e), False
    if good:
        t, s = num(r.get("train_s")), r.get("steps")
        r["ms_per_step"] = 1000 * t / s if t and s else None
    r["ok"] = good
    with open(a["out"], "a") as f:
        f.write(json.dumps(r) + "\n")
    if not good:
        return 1
    bd = r.get("breakdown")
    parts = ""
    if bd:
        parts = "  compute {:.0f}% all-reduce {:.1f}% wait {:.1f}%".format(
            bd["compute_percent"] or 0, bd["allreduce_percent"] or 0, bd["wait_percent"] or 0)
    acc = r.get("test_accuracy")
    print("  [rep {}/{}] {:<28} {:7.1f}k samples/s {:6.3f} ms/step  test_acc {:<6}{}  (other load: {}% before, {}% during)".format(
        r["rep"], a["repeats"], r["label"], r["samples_per_s"] / 1000, r.get("ms_per_step") or float("nan"),
        "n/a" if acc is None else "%.4f" % acc, parts, a["busy"], a["other"]))
    return 0

def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float)) and math.isfinite(x)]
    return statistics.median(xs) if xs else None

def fmt(v, f="{:.1f}", none="-"):
    return none if v is None else f.format(v)

def ratio(a, b):
    return a / b if a is not None and b else None

def summary(a):
    ids = a["configs"].split()
    runs = []
    with open(a["runs"]) as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    cfg = {}
    for i in ids:
        rs = [r for r in runs if r["config"] == i]
        ok = [r for r in rs if r["ok"]]
        meta = rs[0] if rs else {}
        rates = [r["samples_per_s"] for r in ok]
        c = {"label": meta.get("label", i), "ranks": meta.get("ranks"), "system": meta.get("system"),
             "scaling_baseline": meta.get("scaling_baseline"), "strong_baseline": meta.get("strong_baseline"),
             "batch_per_rank": meta.get("batch_per_rank"), "global_batch": meta.get("global_batch"),
             "samples_per_s": med(rates), "samples_per_s_min": min(rates) if rates else None,
             "samples_per_s_max": max(rates) if rates else None, "runs_samples_per_s": rates,
             "ms_per_step": med([r.get("ms_per_step") for r in ok]),
             "runs_ms_per_step": [r.get("ms_per_step") for r in ok],
             "test_accuracy": med([r.get("test_accuracy") for r in ok]),
             "runs_test_accuracy": [r.get("test_accuracy") for r in ok],
             "cpu_busy_percent_before": [r.get("cpu_busy_percent_before") for r in ok],
             "other_load_percent_during": [r.get("other_load_percent_during") for r in ok],
             "runs": len(rs), "failures": len(rs) - len(ok)}
        bds = [r["breakdown"] for r in ok if r.get("breakdown")]
        if i.startswith("rt"):
            c["comm"] = next((r["comm"] for r in ok if r.get("comm")), None)
            # The all-reduce call with the waiting in it (the figure of older versions).
            c["allreduce_percent"] = med([(b["allreduce_percent"] or 0) + (b["wait_percent"] or 0) for b in bds]) \
                if bds else None
            if bds:
                b = {k + "_percent": med([x[k + "_percent"] for x in bds]) for k, _ in PARTS}
                for k in ("eval_s", "checkpoint_s", "compute_s", "comm_s", "wait_s", "optimizer_s", "data_s"):
                    b[k] = med([x.get(k) for x in bds])
                b["ms_per_step"] = c["ms_per_step"]
                b["profiled_wait"] = all(x.get("profiled_wait") for x in bds)
                c["breakdown"] = b
            else:
                c["breakdown"] = None
        cfg[i] = c
    rate = lambda i: cfg[i]["samples_per_s"] if i in cfg else None
    # A weak-scaling baseline left out by --configs: a stub without a figure, so
    # that every "scaling_baseline" names a config (`ringtrain plot --bench`
    # leaves out configurations whose baseline has no samples/s).
    stubs = {}
    for i in ids:
        base = cfg[i]["scaling_baseline"]
        if base and base not in cfg and base not in stubs:
            stubs[base] = {"label": base, "ranks": 1, "system": cfg[i]["system"], "scaling_baseline": base,
                           "samples_per_s": None, "not_run": True}
    B, E, R = int(a["batch"]), a["epochs"], a["repeats"]

    print()
    print(f"Median of {R} run(s), {E} epoch(s) each; samples/s while training (steps only, all ranks);")
    print("ms/step: training seconds / steps (rank 0); other load: CPU use by other processes during the runs, % of the machine (max over runs)")
    print(f"{'configuration':<30} {'batch':>8} {'samples/s':>10} {'min':>10} {'max':>10} {'ms/step':>8} {'test_acc':>9} {'other load':>11}")
    for i in ids:
        c = cfg[i]
        batch = f"{c['ranks']}x{c['batch_per_rank']}"
        loads = [x for x in c["other_load_percent_during"] if x is not None]
        fail = f"  ({c['failures']} failed)" if c["failures"] else ""
        print(f"{c['label']:<30} {batch:>8} {fmt(c['samples_per_s']):>10} {fmt(c['samples_per_s_min']):>10} "
              f"{fmt(c['samples_per_s_max']):>10} {fmt(c['ms_per_step'], '{:.3f}'):>8} "
              f"{fmt(c['test_accuracy'], '{:.4f}'):>9} {('max %.0f%%' % max(loads)) if loads else '-':>11}{fail}")

    rt = [i for i in ids if i.startswith("rt")]
    if rt:
        print()
        print(f"ringtrain step-time breakdown (rank 0), median share of the training time per run; profiling {a['profile']}")
        print("compute: forward+backward; all-reduce: communication only; waiting: for the slowest rank (the barrier);")
        print("optimizer: the update; batch rows: gathering the batch; eval s / ckpt s: seconds per run outside the training time")
        print(f"{'configuration':<30} {'compute':>8} {'all-reduce':>10} {'waiting':>8} {'optimizer':>9} {'batch rows':>10} "
              f"{'eval s':>7} {'ckpt s':>7} {'ms/step':>8}")
        for i in rt:
            c, b = cfg[i], cfg[i]["breakdown"]
            if not b:
                print(f"{c['label']:<30} {'(no breakdown)':>8}")
                continue
            p = lambda k: fmt(b[k + "_percent"], "{:.1f}%")
            print(f"{c['label']:<30} {p('compute'):>8} {p('allreduce'):>10} {p('wait'):>8} {p('optimizer'):>9} "
                  f"{p('data'):>10} {fmt(b['eval_s'], '{:.3f}'):>7} {fmt(b['checkpoint_s'], '{:.3f}'):>7} "
                  f"{fmt(b['ms_per_step'], '{:.3f}'):>8}")

    scal = {"definitions": {
        "weak": "efficiency = samples/s(2 ranks x B) / (2 * samples/s(1 rank x B)); ideal 1",
        "strong": "speedup = samples/s(2 ranks x B) / samples/s(1 rank x 2B) (same global batch 2B); "
                  "efficiency = speedup / 2; ideal 1"},
        "weak": {}, "strong": {}}
    two = [i for i in ids if cfg[i]["ranks"] == 2]
    print()
    print(f"Weak scaling: batch {B} per rank fixed; efficiency = samples/s(2 x {B}) / (2 x samples/s(1 x {B})), ideal 100%")
    print(f"{'2-rank configuration':<30} {'1 x ' + str(B):>12} {'2 x ' + str(B):>12} {'efficiency':>11}")
    for i in two:
        base = cfg[i]["scaling_baseline"]
        eff = ratio(rate(i), 2 * rate(base)) if rate(base) else None
        scal["weak"][i] = {"baseline": base, "baseline_samples_per_s": rate(base),
                           "samples_per_s": rate(i), "efficiency": eff}
        print(f"{cfg[i]['label']:<30} {fmt(rate(base)):>12} {fmt(rate(i)):>12} {fmt(eff and 100 * eff, '{:.1f}%'):>11}")
    print()
    print(f"Strong scaling: global batch {2 * B} fixed; speedup = samples/s(2 x {B}) / samples/s(1 x {2 * B}), "
          "efficiency = speedup / 2, ideal 100%")
    print(f"{'2-rank configuration':<30} {'1 x ' + str(2 * B):>12} {'2 x ' + str(B):>12} {'speedup':>8} {'efficiency':>11}")
    for i in two:
        base = cfg[i]["strong_baseline"]
        sp = ratio(rate(i), rate(base))
        scal["strong"][i] = {"baseline": base, "baseline_samples_per_s": rate(base),
                             "samples_per_s": rate(i), "speedup": sp, "efficiency": sp and sp / 2}
        print(f"{cfg[i]['label']:<30} {fmt(rate(base)):>12} {fmt(rate(i)):>12} {fmt(sp, '{:.3f}'):>8} "
              f"{fmt(sp and 50 * sp, '{:.1f}%'):>11}")

    ratio_text = [
        ("rt2_ring/pt2", "ringtrain 2 ranks (ring) / PyTorch DDP 2 procs"),
        ("rt2_shm/pt2", "ringtrain 2 ranks (shm) / PyTorch DDP 2 procs"),
        ("rt2_mpi/pt2", "ringtrain 2 ranks (mpi) / PyTorch DDP 2 procs"),
        ("rt2_ring/pt1", "ringtrain 2 ranks (ring) / PyTorch 1 process"),
        ("rt2_ring/rt1", "ringtrain 2 ranks (ring) / ringtrain 1 rank (weak scaling, ideal 2)"),
        ("rt2_ring/rt2_mpi", "ringtrain 2 ranks: ring / mpi"),
        ("rt2_shm/rt2_mpi", "ringtrain 2 ranks: shm / mpi"),
        ("rt2_shm/rt2_ring", "ringtrain 2 ranks: shm / ring"),
        ("rt2_shm/rt2_shm_ar", "ringtrain 2 ranks shm: sharded optimizer / all-reduce"),
        ("rt1/pt1", "ringtrain 1 rank / PyTorch 1 process"),
        ("rt1_b2x/pt1_b2x", "ringtrain 1 rank / PyTorch 1 process, batch x2"),
        ("pt2/pt1", "PyTorch DDP 2 procs / PyTorch 1 process")]
    ratios = {}
    print()
    print("Ratios of medians (> 1: the first is faster)")
    for key, text in ratio_text:
        x, y = key.split("/")
        ratios[key] = ratio(rate(x), rate(y))
        if x in cfg and y in cfg:  # the JSON has every key, null where one side was not run
            print(f"  {text:<68} {fmt(ratios[key], '{:.3f}', 'n/a')}")

    if a.get("output"):
        doc = {"benchmark": "train", "start": a["start"], "host": socket.gethostname(), "cpus": os.cpu_count(),
               "epochs": int(E), "repeats": int(R), "batch_per_rank": B, "train_rows": 54000,
               "metric": "samples/s while training, median over repeats",
               "profile": a["profile"].startswith("on"), "profile_note": a["profile"],
               "ringtrain": a["binary"], "pytorch": a["pytorch"], "work_dir": a["work_dir"],
               "configs": {**cfg, **stubs}, "scaling": scal, "ratios": ratios,
               "failures": sum(1 for r in runs if not r["ok"]), "runs": runs}
        tmp = a["output"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, a["output"])
        print(f"JSON summary: {a['output']}")
    return 0

cmd, args = sys.argv[1], kv(sys.argv[2:])
sys.exit(record(args) if cmd == "record" else summary(args))
PY

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

run_ringtrain() {  # np algorithm batch log run_dir [more options]
  local np=$1 algorithm=$2 rows=$3 log=$4 dir=$5
  shift 5
  rm -rf "$dir"
  mpirun "${mpirun_args[@]}" -np "$np" "$binary" train --data.train="$train_images" \
    --data.test="$test_images" --run.dir="$dir" --train.epochs="$epochs" --run.progress=false \
    --comm.algorithm="$algorithm" --train.batch_per_rank="$rows" --data.val_fraction=0.1 \
    "${profile_args[@]}" "$@" >"$log" 2>&1
}

run_pytorch() {  # procs batch log json
  local procs=$1 rows=$2 log=$3 json=$4
  rm -f "$json"
  "$python" "$script_dir/pytorch_mlp.py" --procs "$procs" --epochs "$epochs" --batch-per-proc "$rows" \
    --data-dir "$data_dir" --json-out "$json" >"$log" 2>&1
}

# "busy total" jiffies of all CPUs (user nice system irq softirq steal) and all jiffies.
cpu_jiffies() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit }' /proc/stat; }

# Runs one configuration and records it (one JSON line in runs.jsonl); measures,
# besides its result, how much of the machine OTHER processes used meanwhile:
# all CPU time used on the machine minus the CPU time of the run's own
# processes (getrusage of the reaped children, through bash's `time`), as a
# percentage of wall time x CPUs.
run_one() {  # id rep
  local id=$1 rep=$2 log=$work_dir/$1-$2.log tf=$work_dir/$1-$2.time busy ok=1 b0 b1 real user sys other
  local kind=rt dir=$work_dir/$1-$2 json=$work_dir/$1-$2.json
  [[ $id == pt* ]] && kind=pt
  busy=$(wait_for_idle)
  read -r b0 _ < <(cpu_jiffies)
  local TIMEFORMAT='%R %U %S'
  {
    if [[ $kind == rt ]]; then
      time run_ringtrain "${ranks[$id]}" "${algo[$id]}" "${bpr[$id]}" "$log" "$dir" ${extra[$id]:-}
    else
      time run_pytorch "${ranks[$id]}" "${bpr[$id]}" "$log" "$json"
    fi
  } 2>"$tf" || ok=0
  read -r b1 _ < <(cpu_jiffies)
  read -r real user sys < <(tail -n 1 "$tf")
  other=$(awk -v db=$((b1 - b0)) -v hz="$clk_tck" -v r="$real" -v u="$user" -v s="$sys" -v n="$ncpu" \
    'BEGIN { o = 100 * (db / hz - u - s) / (r * n); printf "%.0f", (o < 0 ? 0 : o) }')
  if ! "$pyjson" -c "$py_helper" record out="$runs_file" kind="$kind" id="$id" rep="$rep" repeats="$repeats" \
      ok="$ok" label="${label[$id]}" ranks="${ranks[$id]}" batch="${bpr[$id]}" system="${system[$id]}" \
      baseline="${baseline[$id]}" strong="${strong[$id]:-}" busy="$busy" other="$other" real="$real" \
      log="$log" run_dir="$dir" json="$json"; then
    failures=$((failures + 1))
    printf '  [rep %d/%d] %-28s FAILED (log: %s)\n' "$rep" "$repeats" "${label[$id]}" "$log"
    tail -n 5 "$log" | sed 's/^/      /'
  fi
}

echo "bench_train: $epochs epoch(s) x $repeats repeat(s), batch $batch per rank ($b2 for *_b2x); ringtrain: $binary"
echo "  configurations: ${configs[*]}"
echo "  ringtrain profiling $profile_note"
echo "  PyTorch: $pytorch_note; logs, run folders and runs.jsonl: $work_dir"
start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
n=${#configs[@]}
for ((rep = 1; rep <= repeats; rep++)); do
  for ((k = 0; k < n; k++)); do
    run_one "${configs[$(((k + rep - 1) % n))]}" "$rep"
  done
done

"$pyjson" -c "$py_helper" summary runs="$runs_file" configs="${configs[*]}" output="$output" start="$start" \
  epochs="$epochs" repeats="$repeats" batch="$batch" binary="$binary" pytorch="$pytorch_note" \
  profile="$profile_note" work_dir="$work_dir" || { echo "bench_train.sh: the summary failed; runs are in $runs_file" >&2; exit 1; }
((failures == 0)) || { echo "bench_train.sh: $failures run(s) failed; see $work_dir" >&2; exit 1; }
