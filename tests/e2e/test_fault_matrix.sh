#!/usr/bin/env bash
# A short fault matrix (bench/fault_matrix.py): SIGKILL a random rank at a
# random moment and rank 0 during a checkpoint write; each job must end within
# 30 s and --resume auto must end bit-identical to an uninterrupted run.
# The full 20-trial matrix: python3 bench/fault_matrix.py --ringtrain BINARY
source "$(dirname "$0")/common.sh" "$@"
[ -r "$FASHION/train-images-idx3-ubyte.gz" ] || skip_test "Fashion-MNIST not installed (dataset-fashion-mnist)"
"$PY" -c "import h5py" 2>/dev/null || skip_test "python3-h5py not installed"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if "$PY" "$ROOT/bench/fault_matrix.py" --ringtrain "$RINGTRAIN" --trials 2 --rows 3000 --epochs 4 \
    --json "$WORK/faults.json" 2>&1 | tee "$WORK/faults.log"; then
  pass "fault matrix: $(grep '^summary' "$WORK/faults.log")"
else
  fail "fault matrix"
fi
finish
