#!/usr/bin/env bash
# Compares the quantize kernels of two revisions for one type in one process (bench/kernel_ab.cc).
#
# Usage: scripts/kernel-ab.sh [-a REV] [-b REV] TYPE [--rounds N] [--imatrix] [--uniform]
#   A defaults to HEAD and B to the working tree ("worktree"). Runs pinned to CPU
#   $KERNEL_AB_CPU (default the last one) when taskset exists. $KERNEL_AB_MARCH (default
#   -march=native) chooses the static target, e.g. "-march=x86-64-v3 -maes -mpclmul" for AVX2.
#   Shared machines drift even so: run it a few times.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rev_a=HEAD
rev_b=worktree
while getopts "a:b:" opt; do
  case $opt in
    a) rev_a=$OPTARG ;;
    b) rev_b=$OPTARG ;;
    *) echo "usage: $0 [-a REV] [-b REV] TYPE [hwyquant-kernel-ab options]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-a REV] [-b REV] TYPE [hwyquant-kernel-ab options]" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The include/ tree of a revision, or of the working tree.
export_tree() {
  mkdir -p "$2"
  if [ "$1" = worktree ]; then
    cp -r "$root/include" "$2/"
  else
    git -C "$root" archive "$1" include | tar -x -C "$2"
  fi
}
export_tree "$rev_a" "$work/a"
export_tree "$rev_b" "$work/b"

read -r -a march <<< "${KERNEL_AB_MARCH:--march=native}"
flags=(-O3 -DNDEBUG -std=c++17 "${march[@]}" -DHWY_WANT_AVX3_DL -ffp-contract=off -fno-fast-math)
c++ "${flags[@]}" -Dhwyquant=hwyquant_side_a -DKERNEL_AB_ENTRY=kernel_ab_quantize_a \
  -I"$work/a/include" -c "$root/bench/kernel_ab_side.cc" -o "$work/a.o" &
c++ "${flags[@]}" -Dhwyquant=hwyquant_side_b -DKERNEL_AB_ENTRY=kernel_ab_quantize_b \
  -I"$work/b/include" -c "$root/bench/kernel_ab_side.cc" -o "$work/b.o" &
wait %1 && wait %2
c++ "${flags[@]}" "$root/bench/kernel_ab.cc" "$work/a.o" "$work/b.o" -o "$work/kernel-ab"

echo "A: $rev_a, B: $rev_b"
if command -v taskset > /dev/null; then
  taskset -c "${KERNEL_AB_CPU:-$(($(nproc) - 1))}" "$work/kernel-ab" "$@"
else
  "$work/kernel-ab" "$@"
fi
