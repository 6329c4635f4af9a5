#!/usr/bin/env bash
# ringtrain launcher.
#
#   ./run_mpi.sh                  install what is missing, build Release, train the
#                                 default model on Fashion-MNIST on 2 ranks and draw
#                                 its training curves (<run dir>/curves.png)
#   ./run_mpi.sh test             install what is missing, build, run the whole test
#                                 suite (Release, then ASan+UBSan)
#   ./run_mpi.sh bench            install the PyTorch peer too, run bench/ side by side
#   ./run_mpi.sh [-np N] [--oversubscribe] [--hostfile FILE] [TRAIN OPTIONS...]
#                                 train with N ranks (default 2); TRAIN OPTIONS go to
#                                 `ringtrain train` (default --config configs/fashion_mnist.ini)
#
# Inside a Slurm allocation (sbatch, salloc: SLURM_JOB_ID and SLURM_NTASKS set)
# the ranks are started with `srun --mpi=pmix --kill-on-bad-exit=1` on the
# allocation's tasks (-np N: srun -n N) instead of mpirun; job scripts: slurm/.
#
# Environment: RINGTRAIN_TEST_PRESETS (default "release asan"),
# RINGTRAIN_NO_INSTALL=1 to never call apt-get, RINGTRAIN_LAUNCHER=mpirun to use
# mpirun even inside a Slurm allocation.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"

CORE_PKGS=(cmake make g++ openmpi-bin libopenmpi-dev libeigen3-dev libhdf5-dev hdf5-tools
           libboost-program-options-dev doctest-dev nlohmann-json3-dev zlib1g-dev dataset-fashion-mnist
           gnuplot-nox)  # ringtrain plot (curves.png)
TEST_PKGS=(python3 python3-h5py python3-numpy
           iproute2)  # tests/netns: ip netns, tc (two "hosts" joined by a shaped veth)
# tests/slurm starts a throw-away single-node Slurm cluster
SLURM_PKGS=(slurmctld slurmd slurm-client munge)
BENCH_PKGS=(python3-torch libopenblas0-serial)

say() { printf '[run_mpi] %s\n' "$*"; }
die() { printf '[run_mpi] error: %s\n' "$*" >&2; exit 2; }

# Installs the Debian packages of $@ that are missing (apt-get update once).
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  [ "${RINGTRAIN_NO_INSTALL:-0}" = 1 ] && die "missing Debian packages: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing Debian packages (run as root to install): ${missing[*]}"
    sudo=(sudo)
  fi
  say "installing: ${missing[*]}"
  if [ -z "${RINGTRAIN_APT_UPDATED:-}" ]; then
    "${sudo[@]}" apt-get update -qq
    export RINGTRAIN_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Configures (once) and builds a CMake preset; incremental afterwards.
build() {
  local preset=$1 dir=build/$1
  [ -f "$dir/CMakeCache.txt" ] || cmake --preset "$preset" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
}

mpirun_args() {
  MPIRUN=(mpirun)
  [ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
}

run_tests() {
  ensure_packages "${CORE_PKGS[@]}" "${TEST_PKGS[@]}" "${SLURM_PKGS[@]}"
  local preset status=0
  for preset in ${RINGTRAIN_TEST_PRESETS:-release asan}; do
    say "building preset '$preset'"
    build "$preset"
    say "testing preset '$preset'"
    # LeakSanitizer reports Open MPI's own never-freed start-up allocations.
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
      ctest --test-dir "build/$preset" --output-on-failure "$@" || status=$?
  done
  return $status
}

run_bench() {
  ensure_packages "${CORE_PKGS[@]}" "${TEST_PKGS[@]}" "${BENCH_PKGS[@]}"
  build release
  bash bench/bench_train.sh "$ROOT/build/release/ringtrain" "$@"
}

# True inside a Slurm allocation (sbatch, salloc), unless RINGTRAIN_LAUNCHER=mpirun.
in_slurm() {
  [ -n "${SLURM_JOB_ID:-}" ] && [ -n "${SLURM_NTASKS:-}" ] && [ "${RINGTRAIN_LAUNCHER:-}" != mpirun ]
}

run_train() {
  local np=2 np_given=0 oversubscribe=0 hostfile="" args=() has_config=0 has_dir=0 has_progress=0 run_dir=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --run.dir=*) has_dir=1; run_dir=${1#--run.dir=}; args+=("$1"); shift ;;
      --run.dir) [ $# -ge 2 ] || die "--run.dir needs a folder"; has_dir=1; run_dir=$2; args+=("$1" "$2"); shift 2 ;;
      -np|-n) [ $# -ge 2 ] || die "$1 needs a number"; np=$2; np_given=1; shift 2 ;;
      --oversubscribe) oversubscribe=1; shift ;;
      --hostfile) [ $# -ge 2 ] || die "--hostfile needs a file"; hostfile=$2; shift 2 ;;
      *)
        case "$1" in
          --config|--config=*) has_config=1 ;;
          --run.progress|--run.progress=*) has_progress=1 ;;
        esac
        args+=("$1"); shift ;;
    esac
  done
  [[ "$np" =~ ^[1-9][0-9]*$ ]] || die "-np expects a positive number of ranks, got '$np'"
  ensure_packages "${CORE_PKGS[@]}"
  build release
  [ $has_config = 1 ] || args=(--config "$ROOT/configs/fashion_mnist.ini" "${args[@]}")
  if [ $has_dir = 0 ]; then
    run_dir=runs/run-$(date +%Y%m%d-%H%M%S)-$$
    args+=("--run.dir=$run_dir")
  fi
  # mpirun gives rank 0 a pseudo-terminal even when our output is a pipe or a
  # file, so ringtrain cannot tell: the live bar is decided here.
  if [ $has_progress = 0 ]; then
    if [ -t 1 ]; then args+=(--run.progress=true); else args+=(--run.progress=false); fi
  fi

  if in_slurm; then
    # srun takes the hosts and the task count from the allocation; it forwards
    # SIGTERM/SIGUSR1 to every rank (ringtrain then checkpoints and exits 75).
    command -v srun >/dev/null || die "inside a Slurm allocation but srun is missing (or set RINGTRAIN_LAUNCHER=mpirun)"
    [ -z "$hostfile" ] || die "--hostfile does not apply inside a Slurm allocation (srun uses the allocation's nodes)"
    local SRUN=(srun --mpi=pmix --kill-on-bad-exit=1)
    [ $np_given = 1 ] && SRUN+=(-n "$np")
    [ $oversubscribe = 1 ] && SRUN+=(--overcommit)
    say "Slurm job $SLURM_JOB_ID ($SLURM_NTASKS tasks): ${SRUN[*]} build/release/ringtrain train ${args[*]}"
    exec "${SRUN[@]}" "$ROOT/build/release/ringtrain" train "${args[@]}"
  fi

  mpirun_args
  if [ -n "$hostfile" ]; then
    MPIRUN+=(--hostfile "$hostfile")
  elif [ "$np" -gt "$(nproc)" ] && [ $oversubscribe = 0 ]; then
    die "$np ranks on $(nproc) cores: add --oversubscribe (fine for testing, useless for timings)"
  fi
  if [ $oversubscribe = 1 ]; then
    MPIRUN+=(--oversubscribe --bind-to none)
  else
    MPIRUN+=(--bind-to core --map-by core)
  fi
  say "${MPIRUN[*]} -np $np build/release/ringtrain train ${args[*]}"
  # Pre-emption: mpirun forwards USR1 to the ranks and then exits with their
  # code (75), but treats a TERM of its own as an abort (exit 1). So TERM and
  # USR1 sent to this script reach mpirun as USR1; the ranks checkpoint, stop
  # and this script exits 75. Ctrl-C reaches mpirun from the terminal
  # directly; this script then waits for it rather than leave it behind.
  "${MPIRUN[@]}" -np "$np" "$ROOT/build/release/ringtrain" train "${args[@]}" &
  local launcher=$! rc=0
  trap 'kill -USR1 $launcher 2>/dev/null' TERM USR1
  trap ':' INT
  while kill -0 $launcher 2>/dev/null; do
    wait $launcher || true  # returns early when a trapped signal arrives
  done
  rc=0; wait $launcher || rc=$?  # the exit status bash kept for it
  plot_curves "$run_dir"
  exit $rc
}

# The training curves of a finished (or stopped) run as <run>/curves.png;
# a failure here is reported but never changes the training's exit code.
plot_curves() {
  local dir=$1
  [ -s "$dir/metrics.jsonl" ] || return 0  # no evaluation: nothing to draw
  if "$ROOT/build/release/ringtrain" plot "$dir" --output "$dir/curves.png" >/dev/null; then
    say "training curves: $dir/curves.png"
  else
    say "warning: could not draw $dir/curves.png (see the message above)"
  fi
}

case "${1:-}" in
  test) shift; run_tests "$@" ;;
  bench) shift; run_bench "$@" ;;
  -h|--help|help) sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//' ;;
  *) run_train "$@" ;;
esac
