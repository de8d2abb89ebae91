#!/usr/bin/env bash
# One row per (method, bits, weight algorithm): perplexity and KL vs FP on the first WINDOWS
# windows of WikiText-2 raw test, plus mean per-token kurtosis and quantization-kernel share
# averaged over every layer's linear-input sites (attn_in, o_in, mlp_in, down_in).
# Usage: bench/method_table.sh [OUT_DIR]   env: MODEL, WINDOWS (128), SEED (0), METHODS, BITS, WALGOS,
#   RESUME=1 reuses rows whose three json files already exist in OUT_DIR (same settings assumed).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${KURTAIL_DATA:-../shared/data}"
MODEL="${MODEL:-$DATA/models/tinyllama-8m}"
OUT="${1:-out/methods}"; WINDOWS="${WINDOWS:-128}"; SEED="${SEED:-0}"
METHODS="${METHODS:-rtn smoothquant quarot smoothrot smoothrot-all duquant crossquant kurtail}"
BITS="${BITS:-4:4:4 4:8:8}"; WALGOS="${WALGOS:-rtn gptq}"
mkdir -p "$OUT"
K="${KURTAIL_BIN:-./build/kurtail}"
echo "| method | W/A/KV | weights | perplexity | KL vs FP | top-1 | mean kurtosis | zero share | quantize s |"
echo "|---|---|---|---|---|---|---|---|---|"
[[ "${RESUME:-0}" == 1 && -s "$OUT/fp.json" ]] || $K eval --model "$MODEL" --max-windows "$WINDOWS" --json -q > "$OUT/fp.json"
python3 -c "import json;j=json.load(open('$OUT/fp.json'));print('| FP32 | 32/32/32 | - | %.2f | 0 | 100%% | - | - | - |'%j['perplexity'])"
for b in $BITS; do IFS=: read -r w a kv <<< "$b"
for wa in $WALGOS; do for m in $METHODS; do
  tag="$m-w${w}a${a}kv${kv}-$wa"
  if [[ "${RESUME:-0}" != 1 || ! -s "$OUT/$tag.analyze.json" ]]; then
  $K quantize --model "$MODEL" --method "$m" --w "$w" --a "$a" --kv "$kv" --weights "$wa" --seed "$SEED" \
     --out "$OUT/$tag" --force --json -q > "$OUT/$tag.quant.json"
  $K eval --model "$OUT/$tag" --kl-ref "$MODEL" --max-windows "$WINDOWS" --json -q > "$OUT/$tag.eval.json"
  $K analyze --model "$OUT/$tag" --nsamples 4 --seqlen 256 --bits "$a" --json -q > "$OUT/$tag.analyze.json"
  rm -rf "$OUT/$tag"   # the quantized model is not needed once measured
  fi
  python3 - "$OUT/$tag" "$m" "$w/$a/$kv" "$wa" <<'PY'
import json, sys
p, m, bits, wa = sys.argv[1:]
q = json.load(open(p + ".quant.json")); e = json.load(open(p + ".eval.json")); a = json.load(open(p + ".analyze.json"))[0]
ks, zs = [], []
for L in a["layers"]:
    for s in ("attn_in", "o_in", "mlp_in", "down_in"):
        if s in L["sites"]:
            st = L["sites"][s]; ks.append(st["kurtosis_mean"])
            zs.append(st["crossquant_zero_share"] if m == "crossquant" else st["zero_share"])
print("| %s | %s | %s | %.2f | %.4f | %.1f%% | %.2f | %.3f | %.1f |" % (m, bits, wa, e["perplexity"], e["kl"],
      100 * e["top1_agreement"], sum(ks) / len(ks), sum(zs) / len(zs), q["seconds"]))
PY
done; done; done
