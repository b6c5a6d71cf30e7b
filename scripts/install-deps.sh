#!/usr/bin/env bash
# Installs every Debian 12 package hwyquant needs to build, test, fuzz and benchmark.
#
# Usage: scripts/install-deps.sh [PACKAGE...]   with packages, installs just those that are
# missing (the other set-up scripts use it); PKG:ARCH names enable that foreign architecture.
set -euo pipefail
default_packages=(
  build-essential cmake ninja-build pkg-config python3
  clang libclang-rt-14-dev            # libFuzzer and sanitizers
  clang-format                        # scripts/check-format.sh
  libhwy-dev catch2 libeigen3-dev xtensor-dev nlohmann-json3-dev
  libssl-dev libcurl4-openssl-dev libcpp-httplib-dev libcli11-dev libsqlite3-dev
  libyaml-cpp-dev
)
if [ $# -gt 0 ]; then packages=("$@"); else packages=("${default_packages[@]}"); fi
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
for p in "${missing[@]}"; do
  case "$p" in
    *:*)
      arch=${p##*:}
      dpkg --print-foreign-architectures | grep -qx "$arch" || $SUDO dpkg --add-architecture "$arch"
      ;;
  esac
done
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
