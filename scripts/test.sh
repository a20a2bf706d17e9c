#!/bin/sh
# test.sh — installs what is missing, builds, and runs the whole suite twice: a normal build and
# an AddressSanitizer + UndefinedBehaviorSanitizer build (a leak or UB report fails the run).
# CI runs exactly this (.ci/run). Set AH_TEST_QUICK=1 to skip the sanitizer pass locally.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc)
"$top/scripts/deps.sh"

run_suite() { # <build dir> <cmake args...>
    dir=$1
    shift
    cmake -S "$top" -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j"$jobs" 2>&1 | grep -v -e '^\[' -e '^Consolidate' || true
    cmake --build "$dir" -j"$jobs" >/dev/null # fails the script if the build failed
    (cd "$dir" && ctest --output-on-failure --timeout 900 -j"$jobs" ${CTEST_EXCLUDE:+-E "$CTEST_EXCLUDE"})
}

echo "== build and test (RelWithDebInfo)"
run_suite "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [ "${AH_TEST_QUICK:-0}" != 1 ]; then
    echo "== build and test (ASan + UBSan)"
    # A small quarantine keeps freed memory from looking like growth in the memory-bound tests
    # (they add ahtest.memory_slack_kib() to their bounds under ASan).
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1:quarantine_size_mb=16"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
    # The integration tests on PostgreSQL run once, above; the store suite runs on it here too.
    CTEST_EXCLUDE='^integration/pg-'
    run_suite "$top/build-asan" -DCMAKE_BUILD_TYPE=Debug -DAH_SANITIZE=ON
fi
echo "== all tests passed"
