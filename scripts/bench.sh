#!/usr/bin/env bash
# lull against the alternatives, side by side, in one run.
#
#   scripts/bench.sh            build (Release), run the default set (a few
#                               minutes on 2 cores), print the table of ratios
#   scripts/bench.sh --full     more key counts, pending-timer counts, 4 threads
#   scripts/bench.sh --smoke    every benchmark once, briefly (CI): exits
#                               non-zero if any fails; its figures mean nothing
#
# Options:
#   --filter REGEX     only benchmarks whose name matches (google-benchmark regex)
#   --layers LIST      comma-separated subset of store,wheel,registry
#   --threads LIST     thread counts, e.g. 1,2,4 (default 1,2; --full 1,2,4)
#   --min-time S       seconds per repetition of a case (default 0.3)
#   --repetitions N    repetitions per case, the median is reported (default 5)
#   --no-interleave    run each case's repetitions back to back (default:
#                      in a random order across the layer's cases)
#   --out DIR          output directory (default out/bench)
#   --no-build         use the binaries already in build-bench/
#   --no-deps          do not run scripts/install-deps.sh first
#   --no-plots         skip the SVG plots
#
# Environment: BENCH_CMAKE_ARGS adds arguments to the cmake configure step
# (e.g. BENCH_CMAKE_ARGS=-DLULL_WERROR=ON in CI).
#
# Writes, under out/bench/: report.txt (the table), results.json (every
# figure and ratio), raw/*.json (google-benchmark's own output), plots/*.svg
# (with gnuplot; skipped with a message when it is missing).
# docs/performance.md says how to read them.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-bench"
out="$root/out/bench"
mode=default
filter=""
layers="store,wheel,registry"
threads=""
min_time=""
reps=""
do_build=1
do_deps=1
do_plots=1
interleave=1

usage() { sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --full) mode=full ;;
    --smoke) mode=smoke ;;
    --filter) filter="$2"; shift ;;
    --filter=*) filter="${1#*=}" ;;
    --layers) layers="$2"; shift ;;
    --layers=*) layers="${1#*=}" ;;
    --threads) threads="$2"; shift ;;
    --threads=*) threads="${1#*=}" ;;
    --min-time) min_time="$2"; shift ;;
    --min-time=*) min_time="${1#*=}" ;;
    --repetitions) reps="$2"; shift ;;
    --repetitions=*) reps="${1#*=}" ;;
    --out) out="$2"; shift ;;
    --out=*) out="${1#*=}" ;;
    --no-build) do_build=0 ;;
    --no-deps) do_deps=0 ;;
    --no-plots) do_plots=0 ;;
    --no-interleave) interleave=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

case "$mode" in
  # Five short repetitions rather than three long ones, in the same time: a
  # shared machine's slow spells last about a second, and the median of
  # five survives two of them (lull and the baselines alike).
  default) : "${min_time:=0.3}" "${reps:=5}" ;;
  full)    : "${min_time:=0.3}" "${reps:=5}" ;;
  smoke)   : "${min_time:=0.01}" "${reps:=1}"; do_plots=0 ;;
esac

if [ "$do_deps" = 1 ] && [ "$do_build" = 1 ] && [ -x "$root/scripts/install-deps.sh" ]; then
  "$root/scripts/install-deps.sh"
fi
command -v python3 >/dev/null || { echo "bench.sh: python3 is needed for the report" >&2; exit 1; }

targets=()
IFS=, read -r -a layer_list <<< "$layers"
for l in "${layer_list[@]}"; do
  case "$l" in
    store|wheel|registry) targets+=("lull_bench_$l") ;;
    *) echo "bench.sh: unknown layer '$l' (store, wheel, registry)" >&2; exit 2 ;;
  esac
done
# The smoke run also builds and runs (natively, briefly) the callgrind driver
# and scripts/ab.sh's A/B program (this build's liblull.so against itself).
[ "$mode" = smoke ] && targets+=(lull_opcount lull_ab_get lull_shared)

if [ "$do_build" = 1 ]; then
  echo "== building (Release) in $build"
  # shellcheck disable=SC2086  # BENCH_CMAKE_ARGS is a list of arguments
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLULL_BENCH=ON -DLULL_TESTS=OFF \
        ${BENCH_CMAKE_ARGS:-} >"$build.configure.log" 2>&1 || { cat "$build.configure.log" >&2; exit 1; }
  rm -f "$build.configure.log"
  cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target "${targets[@]}" \
        >/dev/null || { echo "bench.sh: build failed" >&2;
                        cmake --build "$build" -j1 --target "${targets[@]}" >&2 || true; exit 1; }
fi

rm -rf "$out/raw"
mkdir -p "$out/raw"

gb_args=(--benchmark_min_time="$min_time" --benchmark_repetitions="$reps")
# With repetitions, google-benchmark runs them in a random order across all
# the cases of a layer: lull's repetitions and the baseline's then meet the
# same slow and fast spells of a shared machine, and a ratio of medians
# compares like with like (--no-interleave: each case's repetitions back to
# back, as before).
[ "$reps" -gt 1 ] && gb_args+=(--benchmark_report_aggregates_only=false)
[ "$reps" -gt 1 ] && [ "$interleave" = 1 ] && gb_args+=(--benchmark_enable_random_interleaving=true)
[ -n "$filter" ] && gb_args+=(--benchmark_filter="$filter")
lb_args=()
[ "$mode" = full ] && lb_args+=(--lb_full)
[ -n "$threads" ] && lb_args+=(--lb_threads="$threads")

if [ "$mode" != smoke ]; then
  nproc_=$(nproc 2>/dev/null || echo 1)
  load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
  if awk -v l="$load" -v n="$nproc_" 'BEGIN { exit !(l > 0.5 * n) }'; then
    echo "== note: load average $load on $nproc_ CPUs: other work is running, figures will be noisy"
  fi
fi

failed=0
start=$(date +%s)
for t in "${targets[@]}"; do
  exe="$build/bench/$t"
  if [ "$t" = lull_opcount ]; then
    echo "== opcount: 2000 operations of each kind (natively; scripts/callgrind.sh for counts)"
    "$exe" 2000 "$layers" || { echo "bench.sh: lull_opcount failed" >&2; failed=1; }
    continue
  fi
  [ "$t" = lull_shared ] && continue
  if [ "$t" = lull_ab_get ]; then
    so="$build/lib/liblull.so.0"
    echo "== ab_get: $so against itself, 4 slices (scripts/ab.sh)"
    "$exe" "$so" "$so" 1024 2 4 || { echo "bench.sh: lull_ab_get failed" >&2; failed=1; }
    continue
  fi
  layer="${t#lull_bench_}"
  [ -x "$exe" ] || { echo "bench.sh: $exe is missing (build it, or drop --no-build)" >&2; exit 1; }
  total=$("$exe" --benchmark_list_tests "${lb_args[@]}" ${filter:+--benchmark_filter="$filter"} | wc -l)
  echo "== $layer: $total cases (min_time ${min_time}s x $reps)"
  [ "$total" -gt 0 ] || continue
  if ! "$exe" "${gb_args[@]}" "${lb_args[@]}" --lb_total="$total" \
       --benchmark_out="$out/raw/$layer.json" --benchmark_out_format=json; then
    echo "bench.sh: $t failed (exit status above)" >&2
    failed=1
  fi
done
echo "== ran in $(( $(date +%s) - start ))s"
echo

report_args=("$out" --mode "$mode")
[ "$do_plots" = 1 ] && report_args+=(--plots)
if ! python3 "$root/bench/report.py" "${report_args[@]}"; then
  failed=1
fi
if [ "$failed" != 0 ]; then
  echo "bench.sh: FAILED (see the errors above)" >&2
  exit 1
fi
