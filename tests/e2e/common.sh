# Shared helpers of the end-to-end tests (sourced). Usage in a test:
#   source "$(dirname "$0")/common.sh" "$@"     # $1 = path of the ringtrain binary
set -euo pipefail
RINGTRAIN=$(readlink -f "${1:?usage: $0 PATH_TO_RINGTRAIN}")
MPIEXEC=${RINGTRAIN_MPIEXEC:-mpiexec}
read -r -a MPIEXEC_ARGS <<<"${RINGTRAIN_MPIEXEC_ARGS:---oversubscribe --bind-to none}"
if [ "$(id -u)" = 0 ]; then MPIEXEC_ARGS+=(--allow-run-as-root); fi
PY=/usr/bin/python3
FASHION=/usr/share/datasets/fashion-mnist
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-e2e-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FAILURES=0
PASSES=0

fail() { echo "FAIL: $*" >&2; FAILURES=$((FAILURES + 1)); }
pass() { echo "ok: $*"; PASSES=$((PASSES + 1)); }
skip_test() { echo "SKIP: $*"; exit 77; }  # CTest SKIP_RETURN_CODE
rt_mpirun() { local np=$1; shift; "$MPIEXEC" "${MPIEXEC_ARGS[@]}" -n "$np" "$@"; }
# pid of rank $2 of the ringtrain run whose --run.dir is $1 (not the launcher)
rank_pid() {
  local pid
  for pid in $(pgrep -x ringtrain); do
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qx -- "--run.dir=$1" || continue
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$pid"; return; }
  done
}
# same_params A.h5 B.h5: exit 0 if the two model files hold the same
# parameters, bit for bit (their /model datasets; metadata and config aside).
same_params() {
  "$PY" - "$1" "$2" <<'PY'
import sys, h5py
def params(p):
    out = {}
    with h5py.File(p, "r") as f:
        f["model"].visititems(lambda n, o: out.__setitem__(n, o[()].tobytes()) if hasattr(o, "shape") else None)
    return out
a, b = params(sys.argv[1]), params(sys.argv[2])
sys.exit(0 if a == b and a else 1)
PY
}
finish() {
  echo "$PASSES passed, $FAILURES failed"
  [ "$FAILURES" = 0 ]
}
