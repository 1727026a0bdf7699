#!/usr/bin/env bash
# Builds the API reference (HTML) from the public headers into out/apidocs/:
#
#   scripts/apidocs.sh           then open out/apidocs/html/index.html
#
# Installs doxygen first if it is missing (scripts/install-deps.sh --docs).
# The headers' contract blocks are plain C comments, not Doxygen syntax;
# docs/Doxyfile runs each header through this script's --filter, which turns
# them into Doxygen blocks without changing their text:
#   - the comment directly above a LULL_API declaration becomes that
#     function's documentation: a brief (the "name - what" line) and the
#     whole block verbatim, as in the header; a block above a run of
#     declarations documents each of them (@copydoc);
#   - the file's opening comment, and other free-standing blocks ("Common to
#     every writer"), become the file's documentation, verbatim;
#   - a comment directly above a type or macro documents it; a comment after
#     a member (same or next line) documents that member.
# Then it checks, from Doxygen's XML, that every function the headers
# declare LULL_API is documented in the reference (exit 1 otherwise).
set -euo pipefail

if [ "${1:-}" = --filter ]; then
  exec awk '
function flush_block(i, j,    k, first, rest, nx, brief, head, isfile, isdecl, runend) {
    first = L[i]
    rest = substr(first, 3)                      # after the "/*"
    nx = (j < n) ? L[j + 1] : ""
    isdecl = (nx ~ /^LULL_API[ \t]/)
    isfile = (!isdecl && (nblocks == 1 || (j > i && (nx ~ /^[ \t]*$/ || nx ~ /^\/\*/))))
    if (!isdecl && !isfile) {                    # documents the type or macro below
        if (nx ~ /[^ \t]/ && nx !~ /^\/\*/) sub(/^\/\*/, "/**", L[i])
        return                                   # else a separator: left alone
    }
    if (isdecl) {                                # the run of declarations it covers
        runend = j + 1
        while (1) {
            while (runend < n && L[runend] !~ /;/) runend++
            if (runend < n && L[runend + 1] ~ /^LULL_API[ \t]/) { runend++; continue }
            break
        }
        first = ""                               # the others copy the first one
        for (k = j + 1; k <= runend; k++) {
            if (L[k] !~ /^LULL_API[ \t]/) continue
            if (first != "") { L[k] = "/** @copydoc " first " */\n" L[k]; continue }
            first = L[k]
            sub(/[ \t]*\(.*/, "", first)
            sub(/.*[^A-Za-z0-9_]/, "", first)
        }
    }
    if (i == j) {                                # one line: it is its own brief
        sub(/^\/\*/, "/** @brief", L[i])
        return
    }
    brief = rest
    sub(/^[ \t]*/, "", brief)
    if (brief == "") brief = L[i + 1]
    sub(/^[ \t]*\*[ \t]*/, "", brief)
    gsub(/[@\\]/, "\\\\&", brief)           # no Doxygen commands in the brief
    if (isfile) {
        head = "/** @file\n"
    } else {
        sub(/^[A-Za-z0-9_, ]* - /, "", brief)
        if (brief !~ /\.[ \t]*$/) brief = brief " ..."
        head = "/** @brief " brief "\n"
    }
    sub(/^ /, "", rest)                          # verbatim: the text without " * "
    L[i] = head "@verbatim" (rest ~ /[^ \t]/ ? "\n" rest : "")
    for (k = i + 1; k <= j; k++)
        if (L[k] !~ /^[ \t]*\*\/[ \t]*$/) sub(/^[ \t]*\*( |$)/, "", L[k])
    sub(/[ \t]*\*\/[ \t]*$/, "\n@endverbatim */", L[j])
}
{ L[++n] = $0 }
END {
    nblocks = 0
    for (i = 1; i <= n; i++) {
        if (L[i] ~ /^\/\*/ && L[i] !~ /^\/\*\*/) {
            for (j = i; j <= n && L[j] !~ /\*\//; j++) {}
            if (j > n) break
            nblocks++
            flush_block(i, j)
            i = j
            continue
        }
        # a comment after a member: on its line, or alone on the next one
        if (L[i] ~ /[;,{][ \t]*\/\*[^*@]/ && L[i] !~ /^[ \t]*\/\*/)
            sub(/\/\*/, "/**<", L[i])
        else if (L[i] ~ /^[ \t]+\/\*[^*@]/ && i > 1 && L[i - 1] ~ /;[ \t]*(\/\*.*)?$/)
            sub(/\/\*/, "/**<", L[i])
    }
    for (i = 1; i <= n; i++) print L[i]
}' "$2"
fi

src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
if ! command -v doxygen >/dev/null; then
  scripts/install-deps.sh --docs
fi

LULL_VERSION=$(awk '/#define LULL_VERSION_STRING/ { gsub(/"/, "", $3); print $3 }' include/lull/common.h)
export LULL_VERSION
rm -rf out/apidocs
mkdir -p out/apidocs
doxygen docs/Doxyfile
if [ -s out/apidocs/warnings.log ]; then
  echo "apidocs: doxygen warnings (out/apidocs/warnings.log):"
  cat out/apidocs/warnings.log
fi

# Coverage: every LULL_API function has a documented entry in the reference.
declared=$(grep -h -A3 '^LULL_API' include/lull.h include/lull/*.h |
           tr '\n' ' ' | grep -o 'LULL_API[^(]*(' | sed 's/[[:space:]]*($//; s/.*[^A-Za-z0-9_]//' |
           LC_ALL=C sort -u)
missing=()
for f in $declared; do
  # the member's XML entry: its name, then a non-empty brief or detail
  if ! awk -v f="$f" '
      /<memberdef kind="function"/ { inmem = 1; body = "" }
      inmem { body = body $0 "\n" }
      /<\/memberdef>/ && inmem {
          inmem = 0
          if (body ~ ("<name>" f "</name>") && body ~ /<(briefdescription|detaileddescription)>[^<]*<(para|verbatim)/) found = 1
      }
      END { exit found ? 0 : 1 }' out/apidocs/xml/*.xml; then
    missing+=("$f")
  fi
done
n=$(grep -c . <<<"$declared")
if [ ${#missing[@]} -gt 0 ]; then
  echo "apidocs: FAIL: undocumented in the reference: ${missing[*]}" >&2
  exit 1
fi
echo "apidocs: out/apidocs/html/index.html ($n public functions, each documented)"
