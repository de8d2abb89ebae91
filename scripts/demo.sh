#!/usr/bin/env bash
# The main job on the default model: KurTail W4A4KV4 (RTN weights) on tinyllama-8m, then
# perplexity and KL divergence against the full-precision model on WikiText-2.
# Usage: bash scripts/demo.sh [MODEL] [extra quantize args]
#   env: WINDOWS=64 limits the eval; OUT=out/demo-kurtail; QUICK=1 (CI) learns for a few
#   iterations on a few windows and evaluates 2 windows, to prove the job runs end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${KURTAIL_DATA:-../shared/data}"
MODEL="${1:-$DATA/models/tinyllama-8m}"; shift $(( $# > 0 ? 1 : 0 ))
OUT="${OUT:-out/demo-kurtail}"
QUICK_ARGS=()
if [ "${QUICK:-0}" = 1 ]; then QUICK_ARGS=(--nsamples 4 --kt-iters 5 --kt-tokens 512); WINDOWS="${WINDOWS:-2}"; fi
mkdir -p "$(dirname "$OUT")"
# --force replaces only a previous kurtail output at OUT (never another directory)
./build/kurtail quantize --model "$MODEL" --method kurtail --w 4 --a 4 --kv 4 --out "$OUT" --force "${QUICK_ARGS[@]}" "$@"
./build/kurtail eval --model "$OUT" --kl-ref "$MODEL" --max-windows "${WINDOWS:-64}"
