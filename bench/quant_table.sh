#!/usr/bin/env bash
# Quantize tinyllama-8m (or $MODEL) with each configuration, then evaluate perplexity and KL vs
# the FP model on WikiText-2; prints one markdown row per configuration and keeps JSON in $OUT.
# Usage: bench/quant_table.sh [OUT_DIR] [extra eval args, e.g. --max-windows 100]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${KURTAIL_DATA:-../shared/data}"
MODEL="${MODEL:-$DATA/models/tinyllama-8m}"
OUT="${1:-out/table}"; shift $(( $# > 0 ? 1 : 0 ))
SEED="${SEED:-0}"
CONFIGS="${CONFIGS:-w8a8kv8-rtn w4a4kv4-rtn quarot-rtn quarot-gptq w4a16-gptq}"
mkdir -p "$OUT"
K=./build/kurtail
args_for() {
  case "$1" in
    w8a8kv8-rtn) echo "--method rtn --w 8 --a 8 --kv 8 --weights rtn" ;;
    w4a4kv4-rtn) echo "--method rtn --w 4 --a 4 --kv 4 --weights rtn" ;;
    w4a16-gptq)  echo "--method rtn --w 4 --a 16 --kv 16 --weights gptq" ;;
    quarot-rtn)  echo "--method quarot --w 4 --a 4 --kv 4 --weights rtn" ;;
    quarot-gptq) echo "--method quarot --w 4 --a 4 --kv 4 --weights gptq" ;;
    kurtail-rtn) echo "--method kurtail --w 4 --a 4 --kv 4 --weights rtn" ;;
    kurtail-gptq) echo "--method kurtail --w 4 --a 4 --kv 4 --weights gptq" ;;
    *) echo "unknown config $1" >&2; exit 2 ;;
  esac
}
echo "| config | perplexity | KL vs FP | top-1 agree | quantize s | quantize peak RSS MiB |"
echo "|---|---|---|---|---|---|"
$K eval --model "$MODEL" --json -q "$@" > "$OUT/fp.eval.json"
python3 -c "import json;j=json.load(open('$OUT/fp.eval.json'));print('| FP32 | %.2f | 0 | 100%% | - | - |'%j['perplexity'])"
for c in $CONFIGS; do
  $K quantize --model "$MODEL" $(args_for "$c") --seed "$SEED" --out "$OUT/$c" --force --json -q > "$OUT/$c.quant.json"
  $K eval --model "$OUT/$c" --kl-ref "$MODEL" --json -q "$@" > "$OUT/$c.eval.json"
  python3 -c "
import json;q=json.load(open('$OUT/$c.quant.json'));e=json.load(open('$OUT/$c.eval.json'))
print('| $c | %.2f | %.4f | %.1f%% | %.1f | %.0f |'%(e['perplexity'],e['kl'],100*e['top1_agreement'],q['seconds'],q['peak_rss_mib']))"
done
