#!/usr/bin/env bash
# Per-layer activation statistics for the original model and the full-precision QuaRot and
# KurTail transforms of it (same seed). Prints a markdown table.
# Usage: bench/kurtosis_table.sh [OUT_DIR]   (env MODEL, SEED, NSAMPLES)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${KURTAIL_DATA:-../shared/data}"
MODEL="${MODEL:-$DATA/models/tinyllama-8m}"
OUT="${1:-out/kurtosis}"; SEED="${SEED:-0}"; NS="${NSAMPLES:-16}"
mkdir -p "$OUT"
K=./build/kurtail
$K quantize --model "$MODEL" --method quarot --w 16 --a 16 --kv 16 --seed "$SEED" --out "$OUT/quarot-fp" --force -q >/dev/null
$K quantize --model "$MODEL" --method kurtail --w 16 --a 16 --kv 16 --seed "$SEED" --out "$OUT/kurtail-fp" --force -q >/dev/null
$K analyze --model "$MODEL" --nsamples "$NS" --json -q > "$OUT/original.json"
$K analyze --model "$OUT/quarot-fp" --nsamples "$NS" --json -q > "$OUT/quarot.json"
$K analyze --model "$OUT/kurtail-fp" --nsamples "$NS" --json -q > "$OUT/kurtail.json"
python3 - "$OUT" <<'PY'
import json, sys
d = sys.argv[1]
runs = {k: json.load(open(f"{d}/{k}.json"))[0] for k in ("original", "quarot", "kurtail")}
sites = ["attn_in", "mlp_in", "o_in", "down_in", "k", "v"]
print("| layer | site | kurtosis orig / QuaRot / KurTail | max/median orig / QuaRot / KurTail | int4 zero share orig / QuaRot / KurTail |")
print("|---|---|---|---|---|")
for L in range(len(runs["original"]["layers"]) - 1):
    for s in sites:
        v = [runs[k]["layers"][L]["sites"].get(s) for k in runs]
        if not all(v): continue
        f = lambda key, fmt: " / ".join(fmt % x[key] for x in v)
        print(f"| {L} | {s} | {f('kurtosis_mean','%.2f')} | {f('max_over_median','%.1f')} | {f('zero_share','%.3f')} |")
PY
