#!/usr/bin/env bash
# Fails when a tracked C++ file is not as .clang-format lays it out (Debian 12's clang-format 14).
#
# Usage: scripts/check-format.sh [--fix]   with --fix, rewrites the files instead of failing.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh clang-format
mapfile -t files < <(git ls-files '*.h' '*.cc' '*.cpp')
if [ "${1:-}" = --fix ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
if ! clang-format --dry-run -Werror "${files[@]}"; then
  echo "check-format: run scripts/check-format.sh --fix and commit the result" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files formatted as .clang-format says"
