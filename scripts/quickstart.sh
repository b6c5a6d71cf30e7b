#!/usr/bin/env bash
# README's main command: installs dependencies, builds the hwyquant CLI and quantizes the bundled
# sample model (data/sample-model) to TYPE (default Q4_K_M) in one streaming pass.
set -euo pipefail
cd "$(dirname "$0")/.."
type=${1:-Q4_K_M}
./scripts/install-deps.sh
build_dir=${HWYQUANT_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build_dir" -j "$(nproc)" --target hwyquant
"$build_dir/pipeline/hwyquant" run data/sample-model "$type" -o "sample-model-$type.gguf"
