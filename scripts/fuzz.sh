#!/bin/sh
# scripts/fuzz.sh - build the libFuzzer targets and run each for a while.
#
#   scripts/fuzz.sh [seconds] [target...]     run (default 60 s, every target)
#   scripts/fuzz.sh --merge [seconds] [target...]
#                                             fuzz, then merge what was found
#                                             into fuzz/corpus/<target>/ (minimised)
#
# Builds with clang in build-fuzz/ (-DLULL_FUZZ=ON: ASan, UBSan, coverage).
# Each target starts from a COPY of fuzz/corpus/<target>/ in a temp dir, so
# the committed corpus is untouched (unless --merge), plus the regression
# inputs of fuzz/regress/<target>/ (read only, never merged into the
# corpus; see fuzz/regress/README.md); crashes, leaks and timeouts are
# written to out/fuzz/<target>/.  Prints exec/s and coverage
# (libFuzzer's last status line) per target; exits non-zero on any finding.
# Environment: JOBS (make -j, default 2), FUZZ_FLAGS (extra libFuzzer flags),
# BUILD_DIR (default build-fuzz/).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-"$root/build-fuzz"}
all="fuzz_store fuzz_wheel fuzz_registry"

merge=0
if [ "${1:-}" = "--merge" ]; then
    merge=1
    shift
fi
secs=60
case "${1:-}" in
    ''|*[!0-9]*) ;;
    *) secs=$1; shift ;;
esac
targets=${*:-$all}

CC=clang cmake -S "$root" -B "$build" -DLULL_FUZZ=ON -DLULL_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086
make -C "$build" -j"${JOBS:-2}" $targets >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0
for t in $targets; do
    exe="$build/fuzz/$t"
    [ -x "$exe" ] || { echo "fuzz.sh: no such target: $t" >&2; exit 2; }
    corpus="$root/fuzz/corpus/$t"
    work="$tmp/$t"
    out="$root/out/fuzz/$t"
    mkdir -p "$work" "$out"
    [ -d "$corpus" ] && cp -R "$corpus/." "$work/"
    regress="$root/fuzz/regress/$t"
    [ -d "$regress" ] || regress=
    log="$tmp/$t.log"
    rc=0
    # new finds go to the first directory ($work); $regress is only read
    # shellcheck disable=SC2086
    "$exe" -max_total_time="$secs" -max_len=4096 -timeout=30 -print_final_stats=1 \
        -artifact_prefix="$out/" ${FUZZ_FLAGS:-} "$work" ${regress:+"$regress"} >"$log" 2>&1 || rc=$?
    status=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    if [ "$rc" -ne 0 ]; then
        fail=1
        echo "$t: FAILED (exit $rc); artifacts in $out/"
        grep -E 'fuzz_[a-z]+: |ERROR|SUMMARY|Test unit written' "$log" | head -n 20 || true
    else
        echo "$t: ok, ${eps:-?} exec/s"
    fi
    echo "  $status"
    if [ "$merge" = 1 ] && [ "$rc" -eq 0 ]; then
        # minimise: merge the old corpus and the new finds into a fresh dir
        fresh="$tmp/$t.merged"
        mkdir -p "$fresh" "$corpus"
        "$exe" -merge=1 -max_len=4096 "$fresh" "$corpus" "$work" >"$tmp/$t.merge.log" 2>&1
        rm -f "$corpus"/*
        cp "$fresh"/* "$corpus"/ 2>/dev/null || true
        echo "  corpus: $(find "$corpus" -type f | wc -l) files, $(du -sh --apparent-size "$corpus" | cut -f1)"
    fi
done
exit "$fail"
