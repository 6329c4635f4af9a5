# shellcheck shell=bash
# A throw-away single-node Slurm cluster on this machine (sourced).
#
#   source tests/slurm/slurm_cluster.sh
#   slurm_cluster_available || skip "..."      # packages installed?
#   slurm_cluster_start                        # sets SLURM_CONF, SC_DIR, ...
#   sbatch --wait ...
#   slurm_cluster_stop                         # idempotent; call it from an EXIT trap
#
# Everything lives under one mktemp scratch folder (SC_DIR): slurm.conf, the
# munge key, socket, seed and pid files, slurmctld's state, slurmd's spool,
# the logs. munged always runs on a socket of its own inside SC_DIR, so a
# system munged (if any) is neither used nor disturbed; slurm is pointed at
# it with AuthInfo=socket=... . slurmctld and slurmd listen on a pair of free
# TCP ports picked at start. Nothing under /etc, /run or /var is written.
# The daemons run as the calling user (SlurmUser = SlurmdUser = that user), so
# root is not needed: jobs can then only run as that same user (tested as root
# and as nobody).
#
# Settings for Slurm on one machine without cgroups: proctrack/linuxproc
# and task/none (no cgroups needed), select/cons_tres with CR_Core, MpiDefault=pmix
# (Debian's Open MPI only initialises under --mpi=pmix), no accounting.
# AuthInfo cred_expire=SC_CRED_EXPIRE (default 5 s here, 120 s in Slurm): a
# requeued job waits that long (BeginTime) before it may start again.

SC_DIR=""
SC_CRED_EXPIRE=${SC_CRED_EXPIRE:-5}

slurm_cluster_available() {
  local c
  for c in slurmctld slurmd sbatch srun scontrol scancel squeue sinfo munged mungekey; do
    command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$c" >/dev/null 2>&1 || return 1
  done
  [ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so ] || ls /usr/lib/*/slurm-wlm/mpi_pmix.so >/dev/null 2>&1
}

# Two free TCP ports on 127.0.0.1 (bound and released; printed "A B").
_sc_free_ports() {
  /usr/bin/python3 - <<'PY'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
PY
}

_sc_log() { echo "[slurm-cluster] $*" >&2; }

# Waits up to $1 seconds for command "$2..." to succeed.
_sc_wait_for() {
  local t=$1; shift
  local deadline=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

_sc_node_ready() { sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^idle'; }

# Starts munged, slurmctld and slurmd. Returns non-zero (and prints the logs)
# when the node is not idle within 60 s. Exports SLURM_CONF for the clients.
slurm_cluster_start() {
  export PATH=$PATH:/usr/sbin
  SC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-slurm-XXXXXX")
  chmod 700 "$SC_DIR"
  mkdir -p "$SC_DIR"/{munge,state,spool,log,run}
  chmod 700 "$SC_DIR/munge"
  local host ctld_port slurmd_port cpus
  host=$(hostname -s)
  read -r ctld_port slurmd_port <<<"$(_sc_free_ports)"
  cpus=$(nproc)

  # munge: our own key and socket
  mungekey --create --keyfile="$SC_DIR/munge/munge.key" --force >/dev/null 2>&1 \
    || { dd if=/dev/urandom of="$SC_DIR/munge/munge.key" bs=1024 count=1 2>/dev/null; }
  chmod 400 "$SC_DIR/munge/munge.key"
  SC_MUNGE_SOCKET=$SC_DIR/munge/munge.socket
  munged --force --socket="$SC_MUNGE_SOCKET" --key-file="$SC_DIR/munge/munge.key" \
    --pid-file="$SC_DIR/munge/munged.pid" --seed-file="$SC_DIR/munge/munged.seed" \
    --log-file="$SC_DIR/log/munged.log" 2>>"$SC_DIR/log/munged.log" \
    || { _sc_log "munged failed to start"; cat "$SC_DIR/log/munged.log" >&2; return 1; }
  _sc_wait_for 10 test -S "$SC_MUNGE_SOCKET" || { _sc_log "no munge socket"; return 1; }

  export SLURM_CONF=$SC_DIR/slurm.conf
  cat >"$SLURM_CONF" <<EOF
# written by tests/slurm/slurm_cluster.sh; removed with $SC_DIR
ClusterName=ringtrain-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SC_MUNGE_SOCKET,cred_expire=$SC_CRED_EXPIRE
StateSaveLocation=$SC_DIR/state
SlurmdSpoolDir=$SC_DIR/spool/%n
SlurmctldPidFile=$SC_DIR/run/slurmctld.pid
SlurmdPidFile=$SC_DIR/run/slurmd.pid
SlurmctldLogFile=$SC_DIR/log/slurmctld.log
SlurmdLogFile=$SC_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# A requeued job becomes eligible cred_expire s later, and then waits for the
# next scheduling pass (backfill every 30 s by default): pass every 2 s here.
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
JobRequeue=1
KillWait=10
# sbatch --wait polls every 2 s only while MinJobAge/2 <= 2 (else 2, 8, 32 s...)
MinJobAge=4
InactiveLimit=0
SlurmdTimeout=60
PlugStackConfig=$SC_DIR/plugstack.conf
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  : >"$SC_DIR/plugstack.conf"

  # RINGTRAIN_SLURM_CLUSTER marks the daemons and everything they start
  # (slurmstepd, the jobs), so slurm_cluster_stop finds what to end.
  RINGTRAIN_SLURM_CLUSTER=$SC_DIR slurmctld -f "$SLURM_CONF" -i \
    || { _sc_log "slurmctld failed"; cat "$SC_DIR/log/slurmctld.log" >&2; return 1; }
  RINGTRAIN_SLURM_CLUSTER=$SC_DIR slurmd -f "$SLURM_CONF" -N "$host" \
    || { _sc_log "slurmd failed"; cat "$SC_DIR/log/slurmd.log" >&2; return 1; }
  if ! _sc_wait_for 60 _sc_node_ready; then
    _sc_log "node not idle after 60 s:"; sinfo -N -l >&2 || true
    tail -n 30 "$SC_DIR/log/slurmctld.log" "$SC_DIR/log/slurmd.log" >&2 || true
    return 1
  fi
}

# Pids of our cluster's processes: those that carry our marker in their
# environment (the daemons) or hold a file under SC_DIR open (slurmstepd keeps
# slurmd's log open; it does not inherit slurmd's environment), and all their
# descendants (the jobs' processes).
_sc_marked_pids() {
  local e pid ppid rest
  local -A parent=() marked=()
  for e in /proc/[0-9]*/stat; do
    pid=${e#/proc/}; pid=${pid%/stat}
    read -r rest 2>/dev/null <"$e" || continue
    rest=${rest##*) }               # fields after "(comm) "
    read -r _ ppid _ <<<"$rest"
    parent[$pid]=$ppid
    if tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF "RINGTRAIN_SLURM_CLUSTER=$SC_DIR" \
      || find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -lname "$SC_DIR/*" 2>/dev/null | grep -q .; then
      marked[$pid]=1
    fi
  done
  local changed=1
  while [ $changed = 1 ]; do
    changed=0
    for pid in "${!parent[@]}"; do
      [ -z "${marked[$pid]:-}" ] && [ -n "${marked[${parent[$pid]}]:-}" ] && { marked[$pid]=1; changed=1; }
    done
  done
  for pid in "${!marked[@]}"; do
    [ -d "/proc/$pid" ] && [ "$pid" != $$ ] && [ "$pid" != "$BASHPID" ] && echo "$pid"
  done
  return 0
}

_sc_kill_pidfile() {  # $1 pid file, $2 signal
  local pid
  [ -s "$1" ] || return 0
  pid=$(cat "$1" 2>/dev/null) || return 0
  [ -n "$pid" ] && kill -"$2" "$pid" 2>/dev/null || true
}

# Cancels every job, stops the daemons, ends any leftover job process,
# removes the scratch folder (kept, with its logs, when SC_KEEP=1).
slurm_cluster_stop() {
  [ -n "$SC_DIR" ] && [ -d "$SC_DIR" ] || return 0
  if [ -S "${SC_MUNGE_SOCKET:-/nonexistent}" ]; then
    scancel --full --quiet --partition=test 2>/dev/null || true
    _sc_wait_for 15 bash -c '[ -z "$(squeue -h -o %i 2>/dev/null)" ]' || true
  fi
  _sc_kill_pidfile "$SC_DIR/run/slurmd.pid" TERM
  _sc_kill_pidfile "$SC_DIR/run/slurmctld.pid" TERM
  local i pids
  for i in $(seq 50); do
    pids=$(_sc_marked_pids)
    [ -z "$pids" ] && break
    [ "$i" = 25 ] && kill -KILL $pids 2>/dev/null
    [ "$i" -lt 25 ] && kill -TERM $pids 2>/dev/null
    sleep 0.2
  done
  _sc_kill_pidfile "$SC_DIR/munge/munged.pid" TERM
  _sc_wait_for 5 bash -c "! kill -0 \$(cat '$SC_DIR/munge/munged.pid' 2>/dev/null) 2>/dev/null" || \
    _sc_kill_pidfile "$SC_DIR/munge/munged.pid" KILL
  if [ "${SC_KEEP:-0}" = 1 ]; then
    _sc_log "kept $SC_DIR"
  else
    rm -rf "$SC_DIR"
  fi
  SC_DIR=""
  unset SLURM_CONF
}
