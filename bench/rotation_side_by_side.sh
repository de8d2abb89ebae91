#!/usr/bin/env bash
# QuaRot vs SpinQuant vs KurTail (issue #17) on one model: the same seed, calibration text and
# quantizers for all three, W4A4KV4, RTN and GPTQ weights, several seeds. Per run: perplexity
# on the whole WikiText-2 test and KL vs FP on its first KL_WINDOWS windows (the integer
# kernels; KL runs the FP model alongside, so it doubles the cost), the zero-shot tasks, the
# quantize wall time, the rotation-learning time and the peak RSS; then one table of means and
# standard deviations over the seeds.
# Usage: bash bench/rotation_side_by_side.sh ./build/kurtail OUT_DIR
#   env: MODEL (tinyllama-8m), SEEDS ("0 1 2"), WALGOS ("rtn gptq"), METHODS ("quarot spinquant kurtail"),
#        TASKS (paper6), TASK_LIMIT (0 = full splits), WINDOWS (0 = the whole test text), KL_WINDOWS (128).
# Order: weight algorithm, then seed, then method, so a partial run has every method of a seed.
# Runs that already have their three json files in OUT_DIR are kept (resumable).
set -euo pipefail
K=${1:?kurtail binary}; OUT=${2:?output directory}
: "${KURTAIL_DATA:?set KURTAIL_DATA}"
MODEL=${MODEL:-$KURTAIL_DATA/models/tinyllama-8m}
SEEDS=${SEEDS:-0 1 2}; WALGOS=${WALGOS:-rtn gptq}; METHODS=${METHODS:-quarot spinquant kurtail}
TASKS=${TASKS:-paper6}; TASK_LIMIT=${TASK_LIMIT:-0}; WINDOWS=${WINDOWS:-0}; KL_WINDOWS=${KL_WINDOWS:-128}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
mkdir -p "$OUT"
for wa in $WALGOS; do for seed in $SEEDS; do for m in $METHODS; do
  tag="$m-$wa-s$seed"
  [ -s "$OUT/$tag.tasks.json" ] && continue
  s=$(date +%s)
  $K quantize --model "$MODEL" --method "$m" --weights "$wa" --seed "$seed" --w 4 --a 4 --kv 4 \
     --out "$OUT/$tag" --force --json -q > "$OUT/$tag.quant.json"
  if [ "$WINDOWS" = "$KL_WINDOWS" ]; then  # one pass gives both
    $K eval --model "$OUT/$tag" --kl-ref "$MODEL" --max-windows "$KL_WINDOWS" --json -q > "$OUT/$tag.kl.json"
    cp "$OUT/$tag.kl.json" "$OUT/$tag.ppl.json"
  else
    $K eval --model "$OUT/$tag" --max-windows "$WINDOWS" --json -q > "$OUT/$tag.ppl.json"
    $K eval --model "$OUT/$tag" --kl-ref "$MODEL" --max-windows "$KL_WINDOWS" --json -q > "$OUT/$tag.kl.json"
  fi
  $K eval --model "$OUT/$tag" --tasks "$TASKS" --limit "$TASK_LIMIT" --json -q > "$OUT/$tag.tasks.tmp"
  mv "$OUT/$tag.tasks.tmp" "$OUT/$tag.tasks.json"
  rm -rf "${OUT:?}/$tag"
  echo "$tag: $(( $(date +%s) - s )) s" >&2
done; done; done

python3 - "$OUT" "$SEEDS" "$WALGOS" "$METHODS" <<'PY'
import json, statistics as st, sys
out, seeds, walgos, methods = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
def six(t):  # QuaRot's 6-task average: acc_norm where the task has it, else acc
    names = ["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge", "lambada_openai"]
    v = [t[n].get("acc_norm", t[n]["acc"]) for n in names if n in t]
    return sum(v) / len(v) if len(v) == 6 else float("nan")
def ms(v, f):
    return (f % st.mean(v)) + ((" ± " + f % st.stdev(v)) if len(v) > 1 else "")
print("| method | weights | seeds | WikiText-2 ppl | KL vs FP | top-1 agreement | 6-task avg | quantize s | learning s | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for wa in walgos:
    for m in methods:
        rows = []
        for s in seeds:
            p = f"{out}/{m}-{wa}-s{s}"
            try:
                q, e, k, t = (json.load(open(p + x)) for x in (".quant.json", ".ppl.json", ".kl.json", ".tasks.json"))
            except FileNotFoundError:
                continue
            learn = q.get("spinquant", q.get("kurtail", {})).get("learn_seconds", 0.0)
            rows.append((e["perplexity"], k["kl"], 100 * k["top1_agreement"], six(t["tasks"]), q["seconds"], learn,
                         q["peak_rss_mib"]))
        if not rows:
            continue
        cols = list(zip(*rows))
        fm = ["%.2f", "%.4f", "%.1f%%", "%.4f", "%.0f", "%.0f", "%.0f"]
        print(f"| {m} | {wa} | {len(rows)} | " + " | ".join(ms(c, f) for c, f in zip(cols, fm)) + " |")
PY
