#!/usr/bin/env bash
# Instructions per operation, from valgrind --tool=callgrind: figures that do
# not move with the machine's load (docs/performance.md, "Instruction counts").
#
#   scripts/callgrind.sh [N] [--no-build] [--out DIR] [--layers store,wheel,registry]
#
# Builds bench/opcount.c (Release, in build-bench/), runs it under callgrind
# with N operations of each kind (default 100000), and prints a table of
# instructions per operation, lull's and the baselines'.  Writes
# out/bench/callgrind.out (open it with kcachegrind or callgrind_annotate),
# out/bench/opcount.md (the table docs/performance.md quotes) and
# out/bench/opcount.json.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-bench"
out="$root/out/bench"
n=100000
layers="store,wheel,registry"
do_build=1

while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) do_build=0 ;;
    --out) out="$2"; shift ;;
    --out=*) out="${1#*=}" ;;
    --layers) layers="$2"; shift ;;
    --layers=*) layers="${1#*=}" ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) n="$1" ;;
    *) echo "callgrind.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

for tool in valgrind callgrind_annotate python3; do
  command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool is needed (Debian: valgrind, python3)" >&2; exit 1; }
done

if [ "$do_build" = 1 ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLULL_BENCH=ON -DLULL_TESTS=OFF >/dev/null
  cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target lull_opcount >/dev/null
fi
mkdir -p "$out"

echo "== callgrind: $n operations of each kind ($layers); this takes a minute"
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
         "$build/bench/lull_opcount" "$n" "$layers" 2>"$out/callgrind.log" ||
  { cat "$out/callgrind.log" >&2; exit 1; }
callgrind_annotate --inclusive=yes --threshold=100 "$out/callgrind.out" >"$out/callgrind.annotate"
python3 "$root/bench/callgrind_report.py" "$out/callgrind.annotate" "$n" "$out"
