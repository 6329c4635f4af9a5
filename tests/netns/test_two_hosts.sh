#!/usr/bin/env bash
# Two "hosts" on one machine: two network namespaces joined by a veth link
# shaped to 1 Gbit/s (bench/netns_cluster.sh), one ringtrain rank in each,
# Open MPI over TCP on the veth. Checks that the run completes with its files,
# that the ranks really were on different hosts (the gradients crossed the
# veth: both ends sent at least the ring all-reduce's bytes), and that the
# final model equals, bit for bit, the one of the same run with plain
# `mpirun -np 2` on one host (shared memory): the transport must not change
# the arithmetic. Needs root and iproute2; skips (77) otherwise.
# Usage: test_two_hosts.sh PATH_TO_RINGTRAIN
# shellcheck disable=SC2015  # `check && pass ... || fail ...`: pass always returns 0
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../e2e/common.sh
source "$here/../e2e/common.sh" "$@"   # set -euo pipefail, RINGTRAIN, WORK, pass/fail/finish
# shellcheck source=../../bench/netns_cluster.sh
source "$here/../../bench/netns_cluster.sh"

[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip_test "Fashion-MNIST not installed (dataset-fashion-mnist)"
"$PY" -c "import h5py, numpy" 2>/dev/null || skip_test "python3-h5py / python3-numpy not installed"
reason=$(netns_available 2>&1) || skip_test "network namespaces unavailable: $reason"

# common.sh's EXIT trap only removes $WORK; the cluster must go too, also on
# Ctrl-C or a kill (the signal traps turn into an exit, which runs this).
cleanup() { netns_cluster_down; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

netns_cluster_up "rtt$$" 1gbit || { fail "netns_cluster_up"; finish; exit 1; }
# Every run is bounded, and runs in the background so that a TERM (ctest's
# timeout, Ctrl-C) reaches the traps above at once and the cluster goes.
export NETNS_MPIRUN_TIMEOUT=150
in_bg() { "$@" & wait $!; }
tc -n "${NETNS_CLUSTER_NS[0]}" qdisc show dev "${NETNS_CLUSTER_DEVS[0]}" | grep -q "tbf .*rate 1Gbit" &&
  tc -n "${NETNS_CLUSTER_NS[1]}" qdisc show dev "${NETNS_CLUSTER_DEVS[1]}" | grep -q "tbf .*rate 1Gbit" &&
  pass "both veth ends shaped (tbf 1Gbit)" || fail "tbf qdisc missing on a veth end"

steps=60
train=(train --data.train="$FASHION/train-images-idx3-ubyte.gz" --data.max_rows=6000
       "--train.max_steps=$steps" --run.progress=false --comm.algorithm=ring --train.batch_per_rank=64
       --comm.timeout_seconds=60)

read -r tx0_before _ < <(netns_link_bytes 0)
read -r tx1_before _ < <(netns_link_bytes 1)
if in_bg netns_mpirun 1 "$RINGTRAIN" "${train[@]}" --run.dir="$WORK/hosts" >"$WORK/hosts.log" 2>&1; then
  pass "2-rank run across two namespaces exits 0"
else
  cat "$WORK/hosts.log"; fail "2-rank run across two namespaces failed"
fi
read -r tx0_after _ < <(netns_link_bytes 0)
read -r tx1_after _ < <(netns_link_bytes 1)
grep -q "2 rank(s)" "$WORK/hosts.log" && pass "runs on 2 ranks" || fail "not 2 ranks"
# The agent must have been used to start host 1's daemon inside namespace h1.
grep -q " -> ${NETNS_CLUSTER_NS[1]} .*orted" "$NETNS_CLUSTER_DIR/agent.log" 2>/dev/null &&
  pass "launch agent started the daemon in ${NETNS_CLUSTER_NS[1]}" || fail "launch agent never entered ${NETNS_CLUSTER_NS[1]}"

[ -s "$WORK/hosts/best.h5" ] && pass "best.h5 written" || fail "best.h5 missing"
"$PY" - "$WORK/hosts/events.jsonl" "$steps" <<'PY' && pass "events.jsonl ends with reason completed after $steps steps" || fail "events.jsonl end record"
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
end = [e for e in events if e.get("event") == "end"]
assert len(end) == 1, end
assert end[0]["reason"] == "completed", end[0]
assert end[0]["step"] == int(sys.argv[2]), end[0]
PY

# Different hosts: with 2 ranks the ring all-reduce sends, per step and rank,
# half the gradient in the reduce-scatter and half in the all-gather, i.e.
# parameters x 4 bytes. Had both ranks been in one namespace, or had MPI
# talked through shared memory, the veth would have carried next to nothing.
need=$("$PY" - "$WORK/hosts/events.jsonl" <<'PY' || echo 0
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
start = next(e for e in events if e.get("event") == "start")
end = next(e for e in events if e.get("event") == "end")
print(start["parameters"] * 4 * end["step"])
PY
)
sent0=$((tx0_after - tx0_before)) sent1=$((tx1_after - tx1_before))
echo "veth tx bytes during the run: h0 $sent0, h1 $sent1; ring all-reduce minimum per end: $need"
if ((need > 0 && sent0 >= need && sent1 >= need)); then
  pass "gradients crossed the veth in both directions (ranks on different hosts)"
else
  fail "veth carried h0 $sent0 / h1 $sent1 bytes, expected at least $need each"
fi

# The same training on one host, plain mpirun (shared memory), no namespaces.
if in_bg timeout -k 10 150 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 2 "$RINGTRAIN" "${train[@]}" --run.dir="$WORK/plain" >"$WORK/plain.log" 2>&1; then
  pass "the same run with plain mpirun -np 2 exits 0"
else
  cat "$WORK/plain.log"; fail "plain mpirun run failed"
fi
"$PY" - "$WORK/hosts/final.h5" "$WORK/plain/final.h5" <<'PY' && pass "final.h5 parameters bit-identical to the one-host run" || fail "final models differ"
import sys, h5py
def params(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.startswith("model/"):
                out[name] = obj[()]
        f.visititems(visit)
    return out
a, b = params(sys.argv[1]), params(sys.argv[2])
assert a and sorted(a) == sorted(b), (sorted(a), sorted(b))
assert any(n.endswith("kernel") for n in a), sorted(a)
for n in a:
    assert a[n].dtype == b[n].dtype and a[n].shape == b[n].shape, n
    assert a[n].tobytes() == b[n].tobytes(), "dataset %s differs" % n
print("compared", len(a), "datasets,", sum(v.size for v in a.values()), "values")
PY

# Two ranks per host: comm.algorithm=auto must find two nodes and take the
# node-aware path; only the two leaders' ring crosses the link, so each veth
# end carries the bytes of a 2-rank ring (parameters x 4 B per step), not the
# 1.5x of a flat 4-rank ring whose two host-crossing hops carry 3/4 of the
# buffer each way. The result matches a flat ring on one host to rounding.
hsteps=30
htrain=(train --data.train="$FASHION/train-images-idx3-ubyte.gz" --data.max_rows=8000
        "--train.max_steps=$hsteps" --run.progress=false --train.batch_per_rank=32 --comm.timeout_seconds=120)
read -r tx0_before _ < <(netns_link_bytes 0)
if in_bg netns_mpirun 2 "$RINGTRAIN" "${htrain[@]}" --comm.algorithm=auto --run.dir="$WORK/hier" >"$WORK/hier.log" 2>&1; then
  pass "4 ranks, 2 per host, comm.algorithm=auto exits 0"
else
  cat "$WORK/hier.log"; fail "4-rank auto run across two hosts failed"
fi
read -r tx0_after _ < <(netns_link_bytes 0)
grep -q "4 rank(s), all-reduce 'auto (hierarchical)'" "$WORK/hier.log" &&
  pass "auto took the node-aware path across hosts" || fail "auto did not resolve to hierarchical: $(grep -m1 'all-reduce' "$WORK/hier.log")"
hneed=$("$PY" -c 'import json,sys
ev=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(next(e for e in ev if e["event"]=="start")["parameters"]*4*int(sys.argv[2]))' "$WORK/hier/events.jsonl" "$hsteps" 2>/dev/null || echo 0)
hsent=$((tx0_after - tx0_before))
echo "veth tx bytes of h0 during the node-aware run: $hsent; one leader ring: $hneed"
if ((hneed > 0 && hsent >= hneed && hsent * 4 < hneed * 5)); then
  pass "only the node leaders' ring crossed the link ($hsent bytes, under 1.25x one ring)"
else
  fail "h0 sent $hsent bytes; expected one leader ring's $hneed (to under 1.25x)"
fi
if in_bg timeout -k 10 150 "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n 4 "$RINGTRAIN" "${htrain[@]}" --comm.algorithm=ring --run.dir="$WORK/flat" >"$WORK/flat.log" 2>&1; then
  "$PY" - "$WORK/hier/final.h5" "$WORK/flat/final.h5" <<'PY' && pass "node-aware result equals the flat ring's to rounding" || fail "node-aware and flat ring results differ"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    names = []
    a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and n.startswith("model/") else None)
    assert names
    worst = max(float(np.max(np.abs(a[n][()] - b[n][()]) / (1e-3 + np.abs(b[n][()])))) for n in names)
    print("largest relative difference", worst)
    assert worst < 1e-3, worst
PY
else
  cat "$WORK/flat.log"; fail "flat 4-rank ring run failed"
fi
# shm cannot span hosts: refused on every rank with exit 2, no hang.
rc=0
in_bg netns_mpirun 1 "$RINGTRAIN" "${htrain[@]}" --comm.algorithm=shm --run.dir="$WORK/shm" >"$WORK/shm.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "comm.algorithm=shm needs every rank on one node" "$WORK/shm.log" &&
  pass "comm.algorithm=shm across hosts: exit 2 with the reason" || fail "shm across hosts: exit $rc, $(tail -n 2 "$WORK/shm.log")"

netns_cluster_down
ip netns list | grep -q "rtt$$h" && fail "namespaces left after netns_cluster_down" || pass "cluster torn down"
finish
