#!/usr/bin/env bash
# compressed-tensors export (issue #18) on the 8M proxy: for QuaRot and KurTail at W4A4 and
# W4A16 (GPTQ weights, no R3, K/V fp), with R4 the full Hadamard (704 = 16 x 44, Paley) or the
# block-diagonal Sylvester one (--r4-block 64), perplexity and KL vs FP of
#   orig:   the quantized directory as kurtail runs it (activation clip 0.9 for A4)
#   export: the exported directory read back by kurtail (what vLLM runs: no clip, absmax)
# W4A16 has no activation quantizer: orig and export are the same model (CompressedTensorsExport.
# EvalOnTheExportEqualsTheOriginalExactly shows bit-identical perplexity), so only export is run.
# Usage: bash bench/ct_export_table.sh ./build/kurtail OUTDIR   (KURTAIL_DATA must be set)
#   WINDOWS (default 16) windows of CTX (default 256) tokens of wikitext-2 test; NSAMPLES (default
#   32) calibration windows of 512 tokens for GPTQ and KurTail.
set -euo pipefail
bin=${1:?kurtail binary}; out=${2:?output directory}
win=${WINDOWS:-16}; ctx=${CTX:-256}; ns=${NSAMPLES:-32}
: "${KURTAIL_DATA:?set KURTAIL_DATA}"
model=$KURTAIL_DATA/models/tinyllama-8m
mkdir -p "$out"
ev() {  # model -> "ppl kl top1"
  "$bin" eval --model "$1" --kl-ref "$model" --max-windows "$win" --ctx "$ctx" --json -q |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.2f / %.4f / %.3f" % (j["perplexity"], j["kl"], j["top1_agreement"]))'
}
echo "FP perplexity on these windows: $("$bin" eval --model "$model" --max-windows "$win" --ctx "$ctx" --json -q | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["perplexity"])')"
echo "| method | W/A | R4 | orig ppl / KL / top-1 | export ppl / KL / top-1 |"
echo "|---|---|---|---|---|"
for m in quarot kurtail; do
  for a in 4 16; do
    for r4 in full 64; do
      q=$out/q-$m-a$a-r4$r4; x=$out/ct-$m-a$a-r4$r4
      blk=(); [ "$r4" = full ] || blk=(--r4-block "$r4")
      t0=$(date +%s)
      [ -e "$q" ] || "$bin" quantize --method "$m" --weights gptq --nsamples "$ns" --w 4 --a "$a" --kv 16 --no-r3 "${blk[@]}" --out "$q" -q >/dev/null
      echo "quantize $m A$a R4 $r4: $(( $(date +%s) - t0 )) s" >&2
      [ -e "$x" ] || "$bin" export --format compressed-tensors --model "$q" --out "$x" --dtype float32 -q
      o="(= export)"; [ "$a" = 16 ] || o=$(ev "$q")
      echo "| $m | W4A$a | $r4 | $o | $(ev "$x") |"
    done
  done
done
