#!/usr/bin/env bash
# Compares the symbols liblull.so exports with the checked-in baseline
# docs/abi/lull.symbols (first line "# SONAME <soname>", then one name a line,
# sorted).
#   - a symbol in the baseline but no longer exported, with the same SONAME:
#     FAIL (an ABI break needs a SONAME bump: project(VERSION) major);
#   - after a SONAME bump, removals are reported and the baseline must be
#     regenerated;
#   - a new symbol: a notice (add it to the baseline with --update).
#
#   scripts/abi-check.sh [--update] [liblull.so|build-dir] [baseline]
#
# Default library: build/lib/liblull.so.  ctest runs it as install_abi in
# non-sanitizer builds.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
update=0
if [ "${1:-}" = --update ]; then update=1; shift; fi
lib=${1:-$src/build/lib/liblull.so}
base=${2:-$src/docs/abi/lull.symbols}
[ -d "$lib" ] && lib=$lib/lib/liblull.so
[ -e "$lib" ] || { echo "abi-check: no library at $lib" >&2; exit 2; }

soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
[ -n "$soname" ] || { echo "abi-check: $lib has no SONAME" >&2; exit 1; }
current=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | LC_ALL=C sort -u)

if [ "$update" = 1 ]; then
  { echo "# SONAME $soname"; printf '%s\n' "$current"; } >"$base"
  echo "abi-check: wrote $base ($(printf '%s\n' "$current" | grep -c .) symbols, SONAME $soname)"
  exit 0
fi
[ -e "$base" ] || { echo "abi-check: no baseline $base (run with --update)" >&2; exit 2; }

base_soname=$(awk '$1 == "#" && $2 == "SONAME" { print $3; exit }' "$base")
baseline=$(grep -v '^#' "$base" | grep . | LC_ALL=C sort -u)
removed=$(LC_ALL=C comm -23 <(printf '%s\n' "$baseline") <(printf '%s\n' "$current") | grep . || true)
added=$(LC_ALL=C comm -13 <(printf '%s\n' "$baseline") <(printf '%s\n' "$current") | grep . || true)

status=0
if [ -n "$added" ]; then
  echo "abi-check: notice: new exported symbols (add them: scripts/abi-check.sh --update):"
  printf '  + %s\n' $added
fi
if [ -n "$removed" ]; then
  if [ "$soname" = "$base_soname" ]; then
    echo "abi-check: FAIL: symbols removed without a SONAME bump ($soname):" >&2
    printf '  - %s\n' $removed >&2
    status=1
  else
    echo "abi-check: symbols removed with SONAME $base_soname -> $soname (regenerate the baseline):"
    printf '  - %s\n' $removed
  fi
elif [ "$soname" != "$base_soname" ]; then
  echo "abi-check: notice: SONAME $base_soname -> $soname (regenerate the baseline)"
fi
[ $status -ne 0 ] || echo "abi-check: OK ($(printf '%s\n' "$current" | grep -c .) symbols, SONAME $soname)"
exit $status
