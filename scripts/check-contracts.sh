#!/usr/bin/env bash
# Checks that the public headers are the contract they claim to be.
#
#   1. Every function declared with LULL_API in include/lull.h and
#      include/lull/*.h has a contract block: the /* ... */ comment directly
#      above its declaration names the function.  A block may document a run
#      of consecutive declarations (no blank line between them) if it names
#      each of them, as the registry's ready-made rules do.
#   2. With a library: every lull_* symbol liblull.so exports is declared
#      LULL_API in a public header, and every declared function is exported.
#
#   scripts/check-contracts.sh [liblull.so|build-dir]
#
# Without an argument only the headers are checked (and build/lib/liblull.so
# too if it exists).  Exit 1 lists every offender.  ctest runs it as
# docs_contracts (label "docs") in non-sanitizer builds.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
lib=${1:-}
if [ -z "$lib" ] && [ -e "$src/build/lib/liblull.so" ]; then lib=$src/build/lib/liblull.so; fi
[ -n "$lib" ] && [ -d "$lib" ] && lib=$lib/lib/liblull.so

headers=("$src/include/lull.h" "$src/include/lull"/*.h)
status=0

# One line per declaration: "<file>:<line> <name> ok|missing".
# (Plain POSIX awk, one file a run: mawk has no ENDFILE.)
check_header() {
  awk -v file="${1#"$src"/}" '
{
    line[++n] = $0
    if ($0 ~ /^LULL_API[ \t]/) indecl = 1
    decl[n] = indecl
    if (indecl && $0 ~ /;/) indecl = 0
    if ($0 ~ /^LULL_API[ \t]/) { start[n] = 1 } else { start[n] = 0 }
}
END {
    for (i = 1; i <= n; i++) {
        if (!start[i]) continue
        text = line[i]
        for (j = i + 1; text !~ /\(/ && j <= n; j++) text = text " " line[j]
        name = text
        sub(/[ \t]*\(.*/, "", name)
        sub(/.*[^A-Za-z0-9_]/, "", name)
        k = i - 1                       # skip the declarations of the same run
        while (k > 0 && decl[k]) k--
        ok = 0
        if (k > 0 && line[k] ~ /\*\/[ \t]*$/) {
            block = ""
            for (; k > 0; k--) {
                block = line[k] "\n" block
                if (line[k] ~ /\/\*/) break
            }
            if (match(block, "(^|[^A-Za-z0-9_])" name "([^A-Za-z0-9_]|$)")) ok = 1
        }
        printf "%s:%d %s %s\n", file, i, name, ok ? "ok" : "missing"
    }
}' "$1"
}
report=$(for h in "${headers[@]}"; do check_header "$h"; done)

missing=$(awk '$3 == "missing" { print "  " $1 ": " $2 }' <<<"$report")
declared=$(awk '{ print $2 }' <<<"$report" | LC_ALL=C sort -u)
ndecl=$(grep -c . <<<"$declared" || true)
if [ "$ndecl" -eq 0 ]; then
  echo "check-contracts: no LULL_API declaration found in include/" >&2
  exit 1
fi
if [ -n "$missing" ]; then
  echo "check-contracts: FAIL: public functions without a contract block naming them:" >&2
  printf '%s\n' "$missing" >&2
  status=1
fi

if [ -n "$lib" ]; then
  [ -e "$lib" ] || { echo "check-contracts: no library at $lib" >&2; exit 2; }
  exported=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' |
             grep '^lull_' | LC_ALL=C sort -u || true)
  undeclared=$(LC_ALL=C comm -23 <(printf '%s\n' "$exported") <(printf '%s\n' "$declared") | grep . || true)
  unexported=$(LC_ALL=C comm -13 <(printf '%s\n' "$exported") <(printf '%s\n' "$declared") | grep . || true)
  if [ -n "$undeclared" ]; then
    echo "check-contracts: FAIL: exported from $(basename "$lib") but declared in no public header:" >&2
    printf '  %s\n' $undeclared >&2
    status=1
  fi
  if [ -n "$unexported" ]; then
    echo "check-contracts: FAIL: declared LULL_API but not exported from $(basename "$lib"):" >&2
    printf '  %s\n' $unexported >&2
    status=1
  fi
  nexp=$(grep -c . <<<"$exported" || true)
fi

if [ $status -eq 0 ]; then
  if [ -n "$lib" ]; then
    echo "check-contracts: OK ($ndecl public functions, each with a contract block; $nexp exported, all declared)"
  else
    echo "check-contracts: OK ($ndecl public functions, each with a contract block; no library checked)"
  fi
fi
exit $status
