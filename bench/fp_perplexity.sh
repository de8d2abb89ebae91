#!/usr/bin/env bash
# End-to-end FP32 perplexity throughput: tokens/s, peak RSS and perplexity as JSON.
# Usage: bench/fp_perplexity.sh [MODEL] [TEXT] [extra eval args...]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${KURTAIL_DATA:-../shared/data}"
MODEL="${1:-$DATA/models/tinyllama-8m}"
TEXT="${2:-$DATA/text/wikitext2_raw_test.joined.txt}"
shift $(( $# > 2 ? 2 : $# ))
./build/kurtail eval --model "$MODEL" --text "$TEXT" --json -q "$@"
