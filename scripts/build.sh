#!/usr/bin/env bash
# Installs the Debian packages kurtail needs (when missing; chromium only runs the report browser test), configures and builds with -j2.
# Usage: bash scripts/build.sh [BUILD_DIR] [extra cmake args...]   env: EXTRA_PKGS (more Debian packages)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
shift $(( $# > 0 ? 1 : 0 ))
PKGS="cmake g++ make pkg-config ccache libopenblas-dev libeigen3-dev nlohmann-json3-dev \
libpcre2-dev libbz2-dev libsentencepiece-dev libcli11-dev libgtest-dev libbenchmark-dev chromium ${EXTRA_PKGS:-}"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q $missing
fi
# ccache: paths relative to the checkout, so a fresh clone elsewhere (CI) reuses the cache
export CCACHE_BASEDIR="$(pwd)" CCACHE_NOHASHDIR=1
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$BUILD" -j2
