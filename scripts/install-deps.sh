#!/usr/bin/env bash
# Installs exactly the Debian 12 packages lull needs that are missing.
# Idempotent: a machine that has them all is left untouched (no apt-get update).
# Works as root, or through sudo when run as another user.
#
#   scripts/install-deps.sh            build + test + bench + fuzz dependencies
#   scripts/install-deps.sh --docs     the same, plus doxygen (scripts/apidocs.sh)
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config   # toolchain
  liburcu-dev                        # RCU (memb flavour) and cds_lfht
  libck-dev                          # Concurrency Kit: atomics, backoff, bitmaps
  libcmocka-dev                      # unit tests
  libbenchmark-dev g++               # benchmark harness (through bench/shim)
  gnuplot-nox python3                # benchmark report: plots, JSON post-processing
  valgrind                           # instruction counts (scripts/callgrind.sh)
  clang                              # libFuzzer and a second compiler
  libclang-rt-14-dev                 # sanitizer and libFuzzer runtimes for clang
)
case "${1:-}" in
  "") ;;
  --docs) pkgs+=(doxygen) ;;         # the API reference
  *) echo "usage: scripts/install-deps.sh [--docs]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
