#!/usr/bin/env bash
# Configures, builds and runs every test: README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# The web page is tested in a real Chromium; with its dependencies installed, a missing browser fails.
./scripts/install-browser-test-deps.sh
export HWYQUANT_REQUIRE_BROWSER=1
build_dir=${HWYQUANT_BUILD_DIR:-build}
jobs=${HWYQUANT_JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$build_dir" -j "$jobs"
# Tests that need ../shared fail rather than skip when CI provides it.
if [ -d ../shared/golden ]; then export HWYQUANT_REQUIRE_SHARED=1; fi
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
