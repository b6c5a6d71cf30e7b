#!/usr/bin/env bash
# Installs every Debian 12 package hwyquant needs to build, test, fuzz and benchmark.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config python3
  clang libclang-rt-14-dev            # libFuzzer and sanitizers
  libhwy-dev catch2 libeigen3-dev xtensor-dev nlohmann-json3-dev
  libssl-dev libcurl4-openssl-dev libcpp-httplib-dev libcli11-dev libsqlite3-dev
  libyaml-cpp-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
