#!/usr/bin/env bash
# Installs a lull build tree into a temporary prefix and builds and runs the
# out-of-tree consumer (tests/consumer) against it, both ways:
#   - CMake:      find_package(lull CONFIG) -> lull::lull (and lull::lull_static)
#   - pkg-config: pkg-config --cflags --libs lull (shared, and --static),
#                 and lull liburcu-memb with LULL_INLINE_READ
#   - dlopen():   tests/consumer/dlopen.c loads liblull.so.0 at run time
# then checks the installed liblull.so.0: SONAME liblull.so.0, and only
# lull_* symbols exported (none starting with lull__).
#
#   scripts/consumer-test.sh [build-dir]     (default: build)
#
# ctest runs it as install_consumer in non-sanitizer builds.  Needs cmake,
# make, pkg-config, objdump, nm and a C compiler ($CC, default cc).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
: "${CC:=cc}"
export CC

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lull-consumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "consumer-test: FAIL: $*" >&2; exit 1; }

echo "== install $build -> $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }

so=$(find "$prefix" -name 'liblull.so.0' | head -n1)
[ -n "$so" ] || fail "no liblull.so.0 installed"
libdir=$(dirname "$so")
for f in "$libdir/liblull.so" "$libdir/liblull.a" "$libdir/pkgconfig/lull.pc" \
         "$libdir/cmake/lull/lullConfig.cmake" "$libdir/cmake/lull/lullConfigVersion.cmake" \
         "$prefix/include/lull.h"; do
  [ -e "$f" ] || fail "missing $f"
done
for h in "$src"/include/lull/*.h; do
  [ -e "$prefix/include/lull/$(basename "$h")" ] || fail "header $(basename "$h") not installed"
done
real=$(readlink -f "$so")
echo "   $(basename "$so") -> $(basename "$real")"

echo "== SONAME"
soname=$(objdump -p "$so" | awk '$1 == "SONAME" { print $2 }')
echo "   SONAME $soname"
[ "$soname" = liblull.so.0 ] || fail "SONAME is '$soname', want liblull.so.0"

echo "== exported symbols"
syms=$(nm -D --defined-only "$so" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
n=$(printf '%s\n' "$syms" | grep -c .)
bad=$(printf '%s\n' "$syms" | grep -v '^lull_' || true)
bad2=$(printf '%s\n' "$syms" | grep '^lull__' || true)
[ -z "$bad$bad2" ] || fail "symbols outside lull_*: $(echo $bad $bad2)"
echo "   $n symbols, all lull_*"

export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== CMake consumer (find_package(lull CONFIG))"
cmake -S "$src/tests/consumer" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_BUILD_TYPE=Release >"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "consumer configure"; }
grep -- '-- lull ' "$tmp/cmake.log" || true
cmake --build "$tmp/cmake" >"$tmp/cmake-build.log" 2>&1 || { cat "$tmp/cmake-build.log"; fail "consumer build"; }
objdump -p "$tmp/cmake/consumer" | grep -q 'NEEDED *liblull\.so\.0' || fail "CMake consumer does not link liblull.so.0"
"$tmp/cmake/consumer" || fail "CMake consumer (shared) failed"
[ -x "$tmp/cmake/consumer_static" ] || fail "lull::lull_static not provided"
! objdump -p "$tmp/cmake/consumer_static" | grep -q 'NEEDED *liblull' || fail "consumer_static links liblull.so"
"$tmp/cmake/consumer_static" || fail "CMake consumer (static) failed"

echo "== pkg-config consumer"
export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
echo "   pkg-config --modversion lull: $(pkg-config --modversion lull)"
echo "   pkg-config --cflags --libs lull: $(pkg-config --cflags --libs lull)"
echo "   pkg-config --static --libs lull: $(pkg-config --static --libs lull)"
make -s -f "$src/tests/consumer/Makefile" OUT="$tmp" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; fail "pkg-config build"; }
objdump -p "$tmp/consumer-pc" | grep -q 'NEEDED *liblull\.so\.0' || fail "pkg-config consumer does not link liblull.so.0"
"$tmp/consumer-pc" || fail "pkg-config consumer (shared) failed"
"$tmp/consumer-pc-static" || fail "pkg-config consumer (static) failed"
objdump -p "$tmp/consumer-pc-inline" | grep -q 'NEEDED *liburcu-memb\.so' || fail "inline consumer does not link liburcu-memb"
"$tmp/consumer-pc-inline" || fail "pkg-config consumer (LULL_INLINE_READ) failed"

echo "== dlopen consumer"
! objdump -p "$tmp/dlopen-consumer" | grep -q 'NEEDED *liblull' || fail "dlopen consumer links liblull"
"$tmp/dlopen-consumer" "$so" || fail "dlopen consumer failed"

echo "consumer-test: OK"
