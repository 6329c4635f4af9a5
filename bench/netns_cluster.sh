# shellcheck shell=bash
# netns_cluster.sh: a "virtual two-host cluster" on one machine, for
# benchmarks and tests that need a real (and, if wanted, slow) network
# between MPI ranks. Source it; sourcing only defines functions and changes
# nothing (no shell options, no variables, no traps).
#
#   source bench/netns_cluster.sh
#   netns_available || exit 77                 # root + working `ip netns`?
#   trap netns_cluster_down EXIT INT TERM      # always tear down
#   netns_cluster_up "rtns$$" 1gbit            # namespaces rtns<PID>h0, rtns<PID>h1
#   netns_mpirun 1 ./ringtrain train ...       # one rank in each namespace
#   netns_cluster_down
#
# What netns_cluster_up builds: two network namespaces ${PREFIX}h0 and
# ${PREFIX}h1 joined by one veth pair (rtv0 in h0, rtv1 in h1), each end with
# an address from 10.213.X.0/24 (X from the PID; .1 is h0, .2 is h1), loopback
# up in both and no route anywhere else: the only addresses that can ever be
# reached are those two and loopback. With a RATE other than "none", both veth
# ends get a token-bucket qdisc (tc tbf) that limits what each end SENDS, so
# the link is RATE in each direction (full duplex, like a switched Ethernet
# port). netem (delay, loss) is not available in this kernel.
#
# Open MPI then sees two hosts: mpirun runs inside h0, the hostfile names the
# two addresses, mpirun starts the daemon (orted) of h1 through a launch agent
# (--mca plm_rsh_agent) that enters h1 instead of ssh'ing, and all MPI traffic
# goes over TCP on the veth (btl tcp,self; pml ob1: no shared memory, no UCX).
# Each host also gets its own hostname (a UTS namespace, unshare --uts; the
# namespace's name): Open MPI tells nodes apart by hostname, and with one
# name for both, MPI_Comm_split_type(SHARED) gave inconsistent node sizes
# (2 on one host, 3 on the other) and crashed in ob1 with 2 ranks per host.
# Each host's processes are pinned to that host's cores with taskset, because
# with --bind-to none they would otherwise all land on core 0.
#
# Variables (all optional, read when the functions run):
#   NETNS_CLUSTER_CORES_0  cores (taskset list) of host h0; default 0
#   NETNS_CLUSTER_CORES_1  cores of host h1; default 1 (0 on a 1-core machine)
#                          With NP_PER_HOST > 1 a host's ranks share its list.
#   NETNS_MPIRUN_TIMEOUT   seconds after which netns_mpirun kills its mpirun
#                          (timeout -k 10); default none
#   NETNS_CLUSTER_BTL      Open MPI byte transfer layers; default tcp,self
#                          (tcp,vader,self: ranks of one host talk through
#                          shared memory, as on a real node)
#   NETNS_CLUSTER_TBF_BURST, NETNS_CLUSTER_TBF_LATENCY
#                          tbf burst and latency (default 256kb, 50ms)
# State of the cluster that is up (set by netns_cluster_up, cleared by
# netns_cluster_down; read-only for callers): NETNS_CLUSTER_NS (array of the
# two namespaces), NETNS_CLUSTER_ADDRS (their addresses), NETNS_CLUSTER_DEVS
# (veth end in each), NETNS_CLUSTER_CIDR, NETNS_CLUSTER_RATE,
# NETNS_CLUSTER_DIR (temp folder: agent, hostfiles, agent.log),
# NETNS_CLUSTER_AGENT.
#
# Requires root, iproute2 (ip, tc), util-linux (taskset, unshare), Open MPI (mpirun),
# and /usr/bin/python3 for netns_link_throughput only.

# netns_available: 0 when network namespaces and veth pairs can be created
# here (probed with a throwaway namespace that is deleted again); otherwise
# prints why (one line, stderr) and returns 1.
netns_available() {
  local probe err
  if [[ $(id -u) != 0 ]]; then
    echo "netns_available: network namespaces need root (running as uid $(id -u))" >&2; return 1
  fi
  local tool
  for tool in ip tc taskset mpirun; do
    command -v "$tool" >/dev/null 2>&1 || { echo "netns_available: '$tool' not found" >&2; return 1; }
  done
  probe="rtprobe$$x${RANDOM}"
  if ! err=$(ip netns add "$probe" 2>&1); then
    echo "netns_available: 'ip netns add' does not work here: ${err//$'\n'/ }" >&2; return 1
  fi
  # A veth pair inside the probe namespace (both ends there, so nothing
  # touches the root namespace) and running a command in it.
  if ! err=$( { ip -n "$probe" link add rtp0 type veth peer name rtp1 &&
                ip netns exec "$probe" true; } 2>&1); then
    ip netns del "$probe" >/dev/null 2>&1 || true
    echo "netns_available: a veth pair or 'ip netns exec' does not work in a namespace: ${err//$'\n'/ }" >&2; return 1
  fi
  ip netns del "$probe" >/dev/null 2>&1 || true
  return 0
}

# netns_cluster_up PREFIX RATE: builds the cluster (see the top of the file).
# PREFIX should contain the caller's PID (parallel runs must not collide);
# RATE is a tc rate (1gbit, 100mbit) or "none" (veth at full speed). Refuses
# to reuse namespaces that already exist. On failure tears down what it built
# and returns 1.
netns_cluster_up() {
  local prefix=${1:?netns_cluster_up: usage: netns_cluster_up PREFIX RATE} rate=${2:?netns_cluster_up: usage: netns_cluster_up PREFIX RATE}
  if [[ -n ${NETNS_CLUSTER_DIR:-} ]]; then
    echo "netns_cluster_up: a cluster is already up in this shell (${NETNS_CLUSTER_NS[*]}); call netns_cluster_down first" >&2
    return 1
  fi
  if [[ ! $prefix =~ ^[A-Za-z0-9_.-]{1,40}$ ]]; then
    echo "netns_cluster_up: PREFIX '$prefix' must be 1-40 characters of [A-Za-z0-9_.-]" >&2; return 1
  fi
  local ns0=${prefix}h0 ns1=${prefix}h1 ns
  for ns in "$ns0" "$ns1"; do
    if [[ -e /run/netns/$ns ]]; then
      echo "netns_cluster_up: namespace $ns already exists (not ours: left alone); pick another PREFIX" >&2; return 1
    fi
  done
  # The third octet from the PID. The namespaces are private networks with no
  # route out, so two clusters with the same X cannot disturb each other or
  # the host; varying X only keeps logs of parallel runs distinguishable.
  local x=$(( $$ % 250 + 2 ))
  NETNS_CLUSTER_CIDR=10.213.$x.0/24
  NETNS_CLUSTER_ADDRS=("10.213.$x.1" "10.213.$x.2")
  NETNS_CLUSTER_DEVS=(rtv0 rtv1)
  NETNS_CLUSTER_RATE=$rate
  NETNS_CLUSTER_NS=()
  NETNS_CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/netns_cluster.$prefix.XXXXXX") || {
    echo "netns_cluster_up: cannot create a temp folder" >&2; NETNS_CLUSTER_DIR=""; return 1; }
  NETNS_CLUSTER_AGENT=$NETNS_CLUSTER_DIR/agent.sh

  local err i
  # Each namespace is recorded as soon as it exists, so that a failure (or a
  # signal) half-way tears down exactly what was made, and nothing else.
  for ns in "$ns0" "$ns1"; do
    if ! err=$(ip netns add "$ns" 2>&1); then
      echo "netns_cluster_up: ip netns add $ns: ${err//$'\n'/ }" >&2; netns_cluster_down; return 1
    fi
    NETNS_CLUSTER_NS+=("$ns")
  done
  # Both veth ends are created directly inside their namespaces: nothing is
  # ever added to the root namespace, so the names cannot collide there.
  if ! err=$( {
      ip link add "${NETNS_CLUSTER_DEVS[0]}" netns "$ns0" type veth peer name "${NETNS_CLUSTER_DEVS[1]}" netns "$ns1" &&
      for i in 0 1; do
        ip -n "${NETNS_CLUSTER_NS[i]}" link set lo up &&
        ip -n "${NETNS_CLUSTER_NS[i]}" addr add "${NETNS_CLUSTER_ADDRS[i]}/24" dev "${NETNS_CLUSTER_DEVS[i]}" &&
        ip -n "${NETNS_CLUSTER_NS[i]}" link set "${NETNS_CLUSTER_DEVS[i]}" up || exit 1
      done; } 2>&1); then
    echo "netns_cluster_up: veth setup failed: ${err//$'\n'/ }" >&2; netns_cluster_down; return 1
  fi
  if [[ $rate != none ]]; then
    # tbf on the egress of each end. burst 256kb: a few GSO super-packets (up
    # to 64 KiB each on veth) fit, so the bucket does not throttle below the
    # rate; latency 50ms bounds the queue (about 6 MB at 1gbit) so that TCP
    # sees back-pressure instead of drops. (Measured here: one TCP stream gets
    # 956 Mbit/s of payload, two opposite streams 956-979 Mbit/s each, the
    # same with latency 5ms; unshaped the veth carries 11-13 Gbit/s.)
    for i in 0 1; do
      if ! err=$(tc -n "${NETNS_CLUSTER_NS[i]}" qdisc add dev "${NETNS_CLUSTER_DEVS[i]}" root tbf \
                   rate "$rate" burst "${NETNS_CLUSTER_TBF_BURST:-256kb}" \
                   latency "${NETNS_CLUSTER_TBF_LATENCY:-50ms}" 2>&1); then
        echo "netns_cluster_up: tc tbf rate '$rate' on ${NETNS_CLUSTER_DEVS[i]}: ${err//$'\n'/ }" >&2
        netns_cluster_down; return 1
      fi
    done
  fi
  # Wait until both ends report carrier (veth needs a moment after `up`).
  local ok=0 _
  for _ in $(seq 1 50); do
    if ip -n "$ns0" -o link show dev "${NETNS_CLUSTER_DEVS[0]}" | grep -q 'state UP' &&
       ip -n "$ns1" -o link show dev "${NETNS_CLUSTER_DEVS[1]}" | grep -q 'state UP'; then ok=1; break; fi
    sleep 0.1
  done
  if ((!ok)); then
    echo "netns_cluster_up: the veth link did not come up" >&2; netns_cluster_down; return 1
  fi

  # The launch agent. Open MPI's rsh launcher calls it as `AGENT [OPTIONS]
  # HOST COMMAND...` and, like ssh, expects COMMAND's words to be joined and
  # run by a shell (they contain quoting meant for that shell). Instead of
  # logging in somewhere it enters HOST's namespace, pinned to HOST's cores.
  # The environment passes through unchanged (ip netns exec and taskset keep
  # it), so PATH, LD_LIBRARY_PATH and OMPI_* reach the daemon as they would
  # through `ssh` with the same shell setup.
  cat >"$NETNS_CLUSTER_AGENT" <<EOF
#!/bin/sh
# Launch agent of the netns cluster $prefix (written by netns_cluster_up).
while [ \$# -gt 0 ]; do case \$1 in -*) shift ;; *) break ;; esac; done
host=\${1:?agent: no host}; shift
case \$host in
  ${NETNS_CLUSTER_ADDRS[0]}|$ns0) ns=$ns0; cores=\${NETNS_CLUSTER_CORES_0:-0} ;;
  ${NETNS_CLUSTER_ADDRS[1]}|$ns1) ns=$ns1; cores=\${NETNS_CLUSTER_CORES_1:-$( (($(nproc) > 1)) && echo 1 || echo 0)} ;;
  *) echo "netns agent: '\$host' is not a host of cluster $prefix" >&2; exit 255 ;;
esac
echo "\$(date +%T) \$host -> \$ns cores \$cores: \$*" >>"$NETNS_CLUSTER_DIR/agent.log"
# Its own hostname too (a UTS namespace): Open MPI tells nodes apart by name,
# and two "hosts" both called $(hostname -s) confuse MPI_Comm_split_type.
exec ip netns exec "\$ns" unshare --uts sh -c 'hostname "\$0" && exec taskset -c "\$1" sh -c "\$2"' "\$ns" "\$cores" "\$*"
EOF
  chmod +x "$NETNS_CLUSTER_AGENT"
  return 0
}

# netns_exec I COMMAND...: runs COMMAND inside host I's namespace (I = 0, 1).
netns_exec() {
  local i=${1:?netns_exec: usage: netns_exec 0|1 COMMAND...}; shift
  [[ -n ${NETNS_CLUSTER_NS[i]:-} ]] || { echo "netns_exec: no cluster is up (host $i)" >&2; return 1; }
  ip netns exec "${NETNS_CLUSTER_NS[i]}" "$@"
}

# netns_link_bytes I: "TX_BYTES RX_BYTES" of host I's veth end.
netns_link_bytes() {
  local i=${1:?netns_link_bytes: usage: netns_link_bytes 0|1} d
  [[ -n ${NETNS_CLUSTER_NS[i]:-} ]] || { echo "netns_link_bytes: no cluster is up" >&2; return 1; }
  d=/sys/class/net/${NETNS_CLUSTER_DEVS[i]}/statistics
  # ip netns exec mounts the namespace's own /sys, where the device is visible.
  ip netns exec "${NETNS_CLUSTER_NS[i]}" sh -c "echo \$(cat $d/tx_bytes) \$(cat $d/rx_bytes)"
}

# netns_mpirun NP_PER_HOST ARGS...: mpirun ARGS from inside h0, NP_PER_HOST
# ranks on each of the two hosts (ranks 0..N-1 on h0, N..2N-1 on h1), over
# TCP on the veth only. ARGS are mpirun options and/or the program; returns
# mpirun's exit status.
netns_mpirun() {
  local n=${1:?netns_mpirun: usage: netns_mpirun NP_PER_HOST ARGS...}; shift
  [[ -n ${NETNS_CLUSTER_DIR:-} ]] || { echo "netns_mpirun: no cluster is up (netns_cluster_up first)" >&2; return 1; }
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "netns_mpirun: NP_PER_HOST must be a positive integer, got '$n'" >&2; return 1; }
  local hostfile=$NETNS_CLUSTER_DIR/hostfile.$n
  printf '%s slots=%d\n' "${NETNS_CLUSTER_ADDRS[0]}" "$n" "${NETNS_CLUSTER_ADDRS[1]}" "$n" >"$hostfile"
  local c0=${NETNS_CLUSTER_CORES_0:-0} c1=${NETNS_CLUSTER_CORES_1:-}
  [[ -n $c1 ]] || { if (($(nproc) > 1)); then c1=1; else c1=0; fi; }
  (
    # A subshell, so none of this leaks to the caller. Inside a Slurm job
    # mpirun would use Slurm's launcher and node list instead of ours.
    while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(SLURM|PMIX|PMI)_' || true)
    export NETNS_CLUSTER_CORES_0=$c0 NETNS_CLUSTER_CORES_1=$c1
    if [[ $(id -u) == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
    # taskset here pins mpirun and its local ranks (host 0); the agent pins h1.
    # NETNS_MPIRUN_TIMEOUT (seconds, optional) bounds the whole run.
    local limit=()
    [[ -n ${NETNS_MPIRUN_TIMEOUT:-} ]] && limit=(timeout -k 10 "$NETNS_MPIRUN_TIMEOUT")
    # shellcheck disable=SC2016  # $0 and $@ belong to the inner sh
    exec "${limit[@]}" ip netns exec "${NETNS_CLUSTER_NS[0]}" unshare --uts \
      sh -c 'hostname "$0" && exec "$@"' "${NETNS_CLUSTER_NS[0]}" taskset -c "$c0" \
      mpirun --hostfile "$hostfile" -np $((2 * n)) \
        --mca plm rsh --mca plm_rsh_agent "$NETNS_CLUSTER_AGENT" \
        --mca pml ob1 --mca btl "${NETNS_CLUSTER_BTL:-tcp,self}" \
        --mca btl_tcp_if_include "$NETNS_CLUSTER_CIDR" --mca oob_tcp_if_include "$NETNS_CLUSTER_CIDR" \
        --bind-to none "$@"
  )
}

# netns_link_throughput [MBYTES]: sends MBYTES (default 100) MB over one TCP
# connection from h0 to h1 and prints the achieved rate as "MBIT_PER_S
# SECONDS" (payload only; the clock stops when h1 confirms it got all).
netns_link_throughput() {
  local mb=${1:-100}
  [[ -n ${NETNS_CLUSTER_DIR:-} ]] || { echo "netns_link_throughput: no cluster is up" >&2; return 1; }
  local py=$NETNS_CLUSTER_DIR/throughput.py
  cat >"$py" <<'PY'
import socket, sys, time
role, addr, nbytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
port = 5201
if role == "server":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(1); s.settimeout(30)
    print("listening", flush=True)
    c, _ = s.accept(); got = 0
    while True:
        b = c.recv(1 << 20)
        if not b: break
        got += len(b)
    c.sendall(str(got).encode()); c.close()
else:
    chunk = b"\0" * (1 << 20)
    c = socket.create_connection((addr, port), timeout=30)
    t0 = time.perf_counter(); left = nbytes
    while left > 0:
        n = min(left, len(chunk)); c.sendall(chunk[:n]); left -= n
    c.shutdown(socket.SHUT_WR)
    got = int(c.recv(64).decode()); dt = time.perf_counter() - t0
    if got != nbytes: sys.exit("throughput: sent %d, received %d" % (nbytes, got))
    print("%.1f %.3f" % (8 * nbytes / dt / 1e6, dt))
PY
  local fifo=$NETNS_CLUSTER_DIR/throughput.ready spid rc=0
  rm -f "$fifo"; mkfifo "$fifo"
  ip netns exec "${NETNS_CLUSTER_NS[1]}" /usr/bin/python3 "$py" server "${NETNS_CLUSTER_ADDRS[1]}" 0 >"$fifo" &
  spid=$!
  read -r _ <"$fifo" || true   # the server is listening (or died)
  ip netns exec "${NETNS_CLUSTER_NS[0]}" /usr/bin/python3 "$py" client "${NETNS_CLUSTER_ADDRS[1]}" \
    $((mb * 1000000)) || rc=1
  wait "$spid" || rc=1
  rm -f "$fifo"
  return $rc
}

# netns_cluster_down: removes everything netns_cluster_up made (processes in
# the two namespaces, the namespaces, and with them the veth pair and its
# qdiscs, the temp folder). Idempotent; never fails, so it is safe in a trap
# on EXIT, INT and TERM, also when netns_cluster_up stopped half-way.
netns_cluster_down() {
  local ns pids pid k
  for ns in ${NETNS_CLUSTER_NS[@]+"${NETNS_CLUSTER_NS[@]}"}; do
    [[ -e /run/netns/$ns ]] || continue
    # Leftover daemons or ranks (a killed benchmark) would keep the namespace
    # alive after `ip netns del`: end them first, TERM, then KILL.
    for k in TERM TERM TERM TERM TERM KILL; do
      pids=$(ip netns pids "$ns" 2>/dev/null | grep -vxE "$$|${BASHPID:-$$}" || true)
      [[ -n $pids ]] || break
      for pid in $pids; do kill -s "$k" "$pid" 2>/dev/null || true; done
      sleep 0.2
    done
    ip netns del "$ns" >/dev/null 2>&1 || true
  done
  if [[ -n ${NETNS_CLUSTER_DIR:-} && -d $NETNS_CLUSTER_DIR ]]; then rm -rf "$NETNS_CLUSTER_DIR" || true; fi
  NETNS_CLUSTER_NS=() NETNS_CLUSTER_ADDRS=() NETNS_CLUSTER_DEVS=()
  # shellcheck disable=SC2034  # state read by callers
  NETNS_CLUSTER_DIR="" NETNS_CLUSTER_AGENT="" NETNS_CLUSTER_CIDR="" NETNS_CLUSTER_RATE=""
  return 0
}
