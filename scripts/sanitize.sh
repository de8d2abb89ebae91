#!/usr/bin/env bash
# The reliability CI step: a clang build with AddressSanitizer + UndefinedBehaviorSanitizer and
# the libFuzzer targets (build-san), then the whole test suite under the sanitizers, the
# regression inputs of every fuzzer, and a short fuzzing run per target (ctest label "fuzz").
# Usage: bash scripts/sanitize.sh [BUILD_DIR]    env: FUZZ_SECONDS (20 per target)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build-san}"
EXTRA_PKGS="clang libclang-rt-14-dev libomp-14-dev" bash scripts/build.sh "$BUILD" -DCMAKE_CXX_COMPILER=clang++ -DKURTAIL_SANITIZE=ON -DKURTAIL_FUZZ=ON
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1"
ctest --test-dir "$BUILD" --output-on-failure -j2
