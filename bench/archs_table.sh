#!/usr/bin/env bash
# Per-family table for issue #15 on the random-weight checkpoints of $KURTAIL_DATA/models/archs:
# FP perplexity vs the golden (kurtail eval's protocol: ctx 64, every window of text.txt), then
# W4A4KV4 perplexity and KL vs FP for RTN, QuaRot and KurTail (calibration: the folder's own
# text.txt, 4 windows of 64; weights RTN). The weights are random: perplexities near 1e5 are
# only numbers to match, not quality.
# Usage: bash bench/archs_table.sh [KURTAIL_BIN] > table.md   (env OUTDIR, default /tmp/kt-archs)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-./build/kurtail}"
DATA="${KURTAIL_DATA:-../shared/data}"
OUT="${OUTDIR:-/tmp/kt-archs}"
mkdir -p "$OUT"
num() { grep -o "\"$1\": *[0-9.e+-]*" | head -1 | sed 's/.*: *//'; }
echo "| family | FP ppl | golden ppl | rel. diff | RTN ppl / KL | QuaRot ppl / KL | KurTail ppl / KL | execution (KurTail) |"
echo "|---|---|---|---|---|---|---|---|"
for fam in llama2 llama3.2 qwen2.5 qwen3 gemma gemma2 mistral phi3 phi3.5-longrope mixtral qwen2-moe \
           llama-rope-linear llama-rope-dynamic llama-rope-yarn; do
  d="$DATA/models/archs/$fam"
  [ -f "$d/config.json" ] || continue
  fp=$("$BIN" eval -q --json --model "$d" --text "$d/text.txt" --ctx 64 | num perplexity)
  gold=$(grep -o '"perplexity": *[0-9.e+-]*' "$d/golden.json" | head -1 | sed 's/.*: *//')
  rel=$(awk -v a="$fp" -v b="$gold" 'BEGIN { d = a / b - 1; if (d < 0) d = -d; printf "%.1e", d }')
  row="| $fam | $fp | $gold | $rel"
  for method in rtn quarot kurtail; do
    q="$OUT/$fam-$method"
    "$BIN" quantize -q --model "$d" --method "$method" --calib "$d/text.txt" --nsamples 4 --seqlen 64 --seed 0 \
      --out "$q" --force >/dev/null
    ev=$("$BIN" eval -q --json --model "$q" --text "$d/text.txt" --ctx 64 --kl-ref "$d")
    row="$row | $(printf '%s' "$ev" | num perplexity) / $(printf '%s' "$ev" | num kl)"
  done
  exe=$(printf '%s' "$ev" | grep -o '"execution": *"[^"]*"' | sed 's/.*: *"//; s/"$//')
  echo "$row | $exe |"
done
