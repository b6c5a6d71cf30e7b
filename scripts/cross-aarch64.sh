#!/usr/bin/env bash
# Cross-compiles the kernels and their tests for aarch64 and runs them under qemu-user on every
# Arm target Highway has (NEON, SVE, SVE2, SVE_256, SVE2_128), at several SVE vector lengths.
#
# Usage: scripts/cross-aarch64.sh      build dir: $HWYQUANT_AARCH64_BUILD_DIR or build-aarch64.
# Installs (apt, arm64 multiarch) Debian's aarch64 cross compiler, libhwy-dev:arm64,
# libssl-dev:arm64 and qemu-user-static when they are missing. The pipeline (curl, sqlite, ...)
# is not cross-built: it has no SIMD of its own and calls only the kernels' public API.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${HWYQUANT_AARCH64_BUILD_DIR:-build-aarch64}
jobs=${HWYQUANT_JOBS:-$(nproc)}

./scripts/install-deps.sh g++-aarch64-linux-gnu libhwy-dev:arm64 libssl-dev:arm64 qemu-user-static

start=$SECONDS
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release -DHWYQUANT_BUILD_PIPELINE=OFF -DHWYQUANT_BUILD_BENCH=OFF >/dev/null
cmake --build "$build_dir" -j "$jobs"
echo "=== cross-aarch64: built in $((SECONDS - start))s"

if [ -d ../shared/golden ]; then export HWYQUANT_REQUIRE_SHARED=1; fi
status=0
# qemu's default CPU ("max") has SVE2 with 512-bit vectors: NEON, SVE and SVE2 run there.
echo "=== cross-aarch64: every test, default qemu CPU"
unset QEMU_CPU
# install_test configures a consumer with the host toolchain, which says nothing about aarch64.
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" -E install_test || status=1
# 128- and 256-bit vectors enable SVE2_128 and SVE_256; 2048-bit ones, the widest SVE allows,
# check that no kernel assumes a bound on the lane count.
for bytes in 16 32 256; do
  echo "=== cross-aarch64: SIMD tests, SVE vector length $((bytes * 8)) bits"
  for test in simd_legacy_test simd_kquants_test; do
    QEMU_CPU="max,sve-default-vector-length=$bytes" \
      qemu-aarch64-static "$build_dir/tests/$test" || status=1
  done
done
echo "=== cross-aarch64: total $((SECONDS - start))s (exit $status)"
exit "$status"
