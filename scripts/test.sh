#!/usr/bin/env bash
# Builds lull and runs every test (unit, stress, examples) three ways:
# plain, ASan+UBSan, and TSan.  The README's test command; .ci/run calls it.
#
#   scripts/test.sh                 all three builds
#   scripts/test.sh plain tsan      only those
#   LULL_STRESS_SECONDS=600 scripts/test.sh plain    long stress runs
#
# Build trees go to build/test-<config>.  With CI=true warnings are errors.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(plain asan tsan)
werror=OFF
[ "${CI:-}" = true ] && werror=ON
jobs=$(nproc)

passed=0 failed=0 summary=()
for c in "${configs[@]}"; do
  case "$c" in
    plain) san="" ;;
    asan)  san="address,undefined" ;;
    tsan)  san="thread" ;;
    *) echo "test.sh: unknown build '$c' (plain, asan, tsan)" >&2; exit 2 ;;
  esac
  dir="build/test-$c"
  mkdir -p "$dir"
  echo "=== $c: configure and build ($dir)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLULL_SANITIZE="$san" \
        -DLULL_WERROR="$werror" -DLULL_TESTS=ON >"$dir/configure.log" 2>&1 \
    || { cat "$dir/configure.log"; exit 1; }
  cmake --build "$dir" -j"$jobs"
  echo "=== $c: ctest"
  log="$dir/ctest.log"
  set +e
  (cd "$dir" && ctest --output-on-failure -j"$jobs" 2>&1) | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1 || true)
  total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
  nfail=$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
  if [ -z "$line" ]; then total=0; nfail=1; fi
  [ "$rc" -ne 0 ] && [ "$nfail" -eq 0 ] && nfail=1
  passed=$((passed + total - nfail)); failed=$((failed + nfail))
  summary+=("$c: $((total - nfail))/$total")
done

echo "=== summary: ${summary[*]}"
echo "lull: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
