#!/usr/bin/env bash
# Byte-identity table for refactors (issue #14): for every method x weight algorithm, quantize
# tinyllama-8m on a small config, print sha256 of model.safetensors and recipe.json and the
# eval perplexity / KL vs FP. Run before and after a refactor; the rows must agree.
# Usage: bash bench/identity_table.sh [KURTAIL_BIN] > table.md
#   env: OUTDIR (default /tmp/kt-identity); QUANT_ARGS (e.g. --fake: fp32 grid weights, the
#   default output before quantize wrote packed weights)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-./build/kurtail}"
DATA="${KURTAIL_DATA:-../shared/data}"
MODEL="$DATA/models/tinyllama-8m"
OUT="${OUTDIR:-/tmp/kt-identity}"
mkdir -p "$OUT"
echo "| method | weights | sha256(model.safetensors) | sha256(recipe.json) | ppl | KL |"
echo "|---|---|---|---|---|---|"
for method in rtn quarot kurtail smoothquant smoothrot smoothrot-all duquant crossquant; do
  for weights in rtn gptq; do
    q="$OUT/$method-$weights"
    "$BIN" quantize -q --model "$MODEL" --method "$method" --weights "$weights" --truncate-layers 2 \
      --nsamples 8 --kt-iters 20 --seed 0 --out "$q" --force ${QUANT_ARGS:-} >/dev/null
    st=$(sha256sum "$q/model.safetensors" | cut -c1-16)
    rc=$(sha256sum "$q/recipe.json" | cut -c1-16)
    ev=$("$BIN" eval -q --json --model "$q" --kl-ref "$MODEL" --max-windows 4 --ctx 256)
    ppl=$(printf '%s' "$ev" | grep -o '"perplexity": *[0-9.e+-]*' | head -1 | sed 's/.*: *//')
    kl=$(printf '%s' "$ev" | grep -o '"kl": *[0-9.e+-]*' | head -1 | sed 's/.*: *//')
    echo "| $method | $weights | $st | $rc | $ppl | $kl |"
  done
done
