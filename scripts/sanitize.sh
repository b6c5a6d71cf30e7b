#!/usr/bin/env bash
# Builds the whole test suite with AddressSanitizer + UndefinedBehaviorSanitizer and runs it with ctest.
#
# Usage: scripts/sanitize.sh [extra cmake args]   build dir: $HWYQUANT_ASAN_BUILD_DIR or build-asan.
# Every test runs; none is skipped. HWYQUANT_SANITIZER_BUILD=1 is exported so that a test too
# slow under the sanitizers can shrink its problem size (never its coverage of types, targets
# or code paths). Any sanitizer report aborts the test, so ctest fails.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${HWYQUANT_ASAN_BUILD_DIR:-build-asan}
jobs=${HWYQUANT_JOBS:-$(nproc)}

start=$SECONDS
# RelWithDebInfo: the sanitizers slow -O0 code far more, and -g names the lines in reports.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHWYQUANT_SANITIZE=ON \
  -DHWYQUANT_BUILD_BENCH=OFF "$@"
cmake --build "$build_dir" -j "$jobs"
build_seconds=$((SECONDS - start))

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_init_order=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export HWYQUANT_SANITIZER_BUILD=1
# Tests that need ../shared fail rather than skip when it is there.
if [ -d ../shared/golden ]; then export HWYQUANT_REQUIRE_SHARED=1; fi

test_start=$SECONDS
status=0
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" || status=$?
test_seconds=$((SECONDS - test_start))

echo "=== sanitize summary: build ${build_seconds}s, ctest ${test_seconds}s (exit ${status})"
# ctest's record of each test's last duration: the slowest ones are what to shrink first.
cost_file="$build_dir/Testing/Temporary/CTestCostData.txt"
if [ -f "$cost_file" ]; then
  echo "slowest tests (seconds):"
  # Lines are "<name with spaces> <runs> <average seconds>", up to a "---" line. The last stage
  # reads all its input: `head` would close the pipe early and pipefail would turn sort's
  # SIGPIPE into this script's exit status.
  sed '/^---/,$d' "$cost_file" |
    awk '{cost = $NF; NF -= 2; printf "%10.1f  %s\n", cost, $0}' | sort -g -r | awk 'NR <= 10'
fi
exit "$status"
