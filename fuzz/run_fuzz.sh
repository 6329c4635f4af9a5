#!/usr/bin/env bash
# Builds the fuzz preset (if needed), writes the seed corpora, and runs each
# libFuzzer target for a bounded time. See fuzz/README.md.
#
#   fuzz/run_fuzz.sh [SECONDS_PER_TARGET]      default 60
#
# Environment: FUZZ_TARGETS (default "fuzz_idx fuzz_ini fuzz_model"), FUZZ_WORK
# (default build/fuzz/work: seeds/, corpus/<target>/ kept between runs,
# artifacts/<target>/), RINGTRAIN (default build/release/ringtrain: fuzz_model's
# seeds come from a tiny run of it; without it, or without h5py, fuzz_model is
# skipped with a message).
# Exit status: 0 when no target found anything, 1 when one did (the reproducer
# is printed), 77 when clang or the libFuzzer runtime is missing.
set -euo pipefail

seconds=${1:-60}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS_PER_TARGET]  (a positive integer, default 60)" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=build/fuzz
work=${FUZZ_WORK:-$build/work}
targets=${FUZZ_TARGETS:-fuzz_idx fuzz_ini fuzz_model}
ringtrain=${RINGTRAIN:-$build/../release/ringtrain}

# clang and its libFuzzer runtime (Debian: clang-14 libclang-rt-14-dev).
if ! command -v clang++ > /dev/null || ! command -v clang > /dev/null; then
  echo "run_fuzz.sh: clang/clang++ not found (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <cstddef>\n#include <cstdint>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
  > "$probe/p.cpp"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" 2> "$probe/err"; then
  echo "run_fuzz.sh: clang++ cannot link -fsanitize=fuzzer: the libFuzzer runtime is missing" \
    "(Debian: apt-get install libclang-rt-14-dev): $(head -n 1 "$probe/err")" >&2
  exit 77
fi
command -v python3 > /dev/null || { echo "run_fuzz.sh: python3 is needed for the seed corpora" >&2; exit 77; }

jobs=$(nproc 2> /dev/null || echo 2)
(( jobs > 2 )) && jobs=2  # the development machine has 2 cores
[[ -f $build/CMakeCache.txt ]] || cmake --preset fuzz
# shellcheck disable=SC2086
cmake --build "$build" -j "$jobs" --target $targets

rm -rf "$work/seeds"
python3 fuzz/make_corpus.py "$work/seeds"
if [[ " $targets " == *" fuzz_model "* ]]; then
  # h5py may live in the system python only
  py=python3
  python3 -c "import h5py, numpy" 2> /dev/null || py=/usr/bin/python3
  if [[ ! -x $ringtrain ]] || ! "$py" -c "import h5py, numpy" 2> /dev/null; then
    echo "run_fuzz.sh: skipping fuzz_model: it needs h5py and a ringtrain binary for its seeds" \
      "(RINGTRAIN=$ringtrain)" >&2
    targets=${targets//fuzz_model/}
  else
    "$py" fuzz/make_model_corpus.py "$work/seeds/model" "$ringtrain"
  fi
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
# libhdf5's own leaks on malformed files (see lsan.supp)
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/fuzz/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
summary=()
for t in $targets; do
  case $t in
    fuzz_idx) seeds=$work/seeds/idx; extra=(-max_len=8192) ;;
    fuzz_ini) seeds=$work/seeds/ini; extra=(-max_len=4096 "-dict=$work/seeds/ini.dict") ;;
    fuzz_model) seeds=$work/seeds/model; extra=(-max_len=131072) ;;
    *) echo "run_fuzz.sh: unknown target $t" >&2; exit 2 ;;
  esac
  corpus=$work/corpus/$t
  artifacts=$work/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  log=$work/$t.log
  echo "== $t: ${seconds}s, corpus $corpus, log $log"
  rc=0
  "$build/fuzz/$t" "$corpus" "$seeds" "${extra[@]}" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
    > "$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -E '^#[0-9]+.*(DONE|INITED|NEW|REDUCE|pulse)' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
  summary+=("$t: ${execs:-?} executions, ${rate:-?} exec/s, ${cov:-cov ?}")
  found=$(grep -oE "(crash|leak|timeout|oom|slow-unit)-[0-9a-f]+" "$log" | sort -u || true)
  if (( rc != 0 )) || [[ -n $found ]]; then
    status=1
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*uncaught exception|.*terminate called|.*abort)' "$log" \
      | head -n 5 || true
    for a in $found; do
      [[ $a == slow-unit-* ]] && continue
      echo "FOUND by $t: $artifacts/$a   (reproduce: $build/fuzz/$t $artifacts/$a)"
    done
    [[ -z $found ]] && echo "FAILED: $t exited with status $rc; see $log"
  fi
done
# A target that crashed leaves its scratch directory (named with its pid) behind.
for d in /dev/shm/ringtrain-fuzz-* "${TMPDIR:-/tmp}"/ringtrain-fuzz-*; do
  [[ -d $d ]] || continue
  pid=${d##*-}
  if [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2> /dev/null; then rm -rf "$d"; fi
done
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$status"
