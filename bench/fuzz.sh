#!/bin/sh
# fuzz.sh TARGET SECONDS [BUILD_DIR] — a long libFuzzer run of one target (fuzz/), from its seed
# corpus; prints the executions and stops at the first finding (the reproducer
# is written into the current directory). New inputs are minimised into fuzz/corpus/TARGET with
# -merge=1 afterwards, so the committed corpus only grows by inputs that add coverage.
#   bench/fuzz.sh fuzz_head 3600
set -eu
t=${1:?usage: bench/fuzz.sh TARGET SECONDS [BUILD_DIR]}
secs=${2:?usage: bench/fuzz.sh TARGET SECONDS [BUILD_DIR]}
top=$(cd "$(dirname "$0")/.." && pwd)
bdir=${3:-$top/build/fuzz}
[ -f "$bdir/CMakeCache.txt" ] || cmake -S "$top/fuzz" -B "$bdir" -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build "$bdir" -j2 --target "$t" >/dev/null
work=$(mktemp -d /tmp/ah-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$top/fuzz/corpus/$t/." "$work/"
"$bdir/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -max_len=16384 \
    -print_final_stats=1 "$work" 2>&1 |
    grep -E "stat::number_of_executed_units|ERROR|SUMMARY|DONE|crash-|INFO: fuzzed for" || true
"$bdir/$t" -merge=1 "$top/fuzz/corpus/$t" "$work" 2>/dev/null | tail -1 || true
