#!/usr/bin/env bash
# A against B: the hot get of two builds of lull, interleaved in one process.
#
#   scripts/ab.sh [--keys N] [--threads T] [--slices S] A B
#
# A and B are git revisions (HEAD, a commit, a branch; "." is the working
# tree) or paths to a built liblull.so.  Each revision is exported with git
# archive and built (Release, its liblull.so only) under out/ab/; then
# bench/ab_get.c loads both libraries and runs the 1 Ki-key get (--keys) at
# two threads (--threads) in S short slices (default 400) alternating A
# and B, and prints B's time over A's: the median over slice pairs and its
# quartiles.  On a shared machine whose speed drifts, this resolves a few
# percent where two runs of scripts/bench.sh do not (docs/performance.md,
# "Measuring a change").  Needs what scripts/bench.sh needs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-bench"
out="$root/out/ab"
keys=1024
threads=2
slices=400
revs=()

while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys="$2"; shift ;;
    --threads) threads="$2"; shift ;;
    --slices) slices="$2"; shift ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "ab.sh: unknown option $1" >&2; exit 2 ;;
    *) revs+=("$1") ;;
  esac
  shift
done
[ "${#revs[@]}" = 2 ] || { echo "usage: scripts/ab.sh [--keys N] [--threads T] [--slices S] A B" >&2; exit 2; }

jobs="$(nproc 2>/dev/null || echo 2)"

# The A/B program, from this tree's bench/.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLULL_BENCH=ON -DLULL_TESTS=OFF \
      >/dev/null || { echo "ab.sh: configure failed" >&2; exit 1; }
cmake --build "$build" -j "$jobs" --target lull_ab_get >/dev/null ||
  { echo "ab.sh: building lull_ab_get failed" >&2; exit 1; }

# Print the path of revision $1's liblull.so, building it first.
lib_of() {
  local rev="$1" src dir
  if [ -f "$rev" ]; then
    echo "$rev"
    return
  fi
  if [ "$rev" = . ]; then
    src="$root"
    dir="$out/worktree"
  else
    local sha
    sha="$(git -C "$root" rev-parse --verify -q "$rev^{commit}")" ||
      { echo "ab.sh: $rev is neither a file nor a revision" >&2; exit 2; }
    src="$out/src-$sha"
    dir="$out/build-$sha"
    if [ ! -d "$src" ]; then
      mkdir -p "$src.tmp"
      git -C "$root" archive "$sha" | tar -x -C "$src.tmp"
      mv "$src.tmp" "$src"
    fi
  fi
  echo "ab.sh: building $rev's liblull.so in $dir" >&2
  cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DLULL_TESTS=OFF >/dev/null &&
    cmake --build "$dir" -j "$jobs" --target lull_shared >/dev/null ||
    { echo "ab.sh: building $rev failed" >&2; exit 1; }
  echo "$dir/lib/liblull.so.0"
}

a="$(lib_of "${revs[0]}")"
b="$(lib_of "${revs[1]}")"
"$build/bench/lull_ab_get" "$a" "$b" "$keys" "$threads" "$slices"
