#!/usr/bin/env bash
# The evaluation suite (issue #16) on full splits: quantizes the proxy W4A4KV4 with each method,
# scores every zero-shot task and MMLU (0-shot) on FP and each quantized model, and prints one
# markdown table (task, metric, value ± stderr per model) with the 6-task average.
# Usage: bash bench/tasks_table.sh ./build/kurtail OUTDIR [LIMIT]
#   METHODS="rtn quarot kurtail" (default), WEIGHTS=rtn|gptq (default rtn), SEED=0.
# LIMIT (default 0 = full splits) is passed as --limit. KURTAIL_DATA must be set.
set -euo pipefail
bin=${1:?kurtail binary}; out=${2:?output directory}; limit=${3:-0}
methods=${METHODS:-rtn quarot kurtail}; weights=${WEIGHTS:-rtn}; seed=${SEED:-0}
: "${KURTAIL_DATA:?set KURTAIL_DATA}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
model=$KURTAIL_DATA/models/tinyllama-8m
mkdir -p "$out"
tasks=piqa,arc_easy,arc_challenge,boolq,lambada_openai,openbookqa,winogrande,hellaswag

names=(fp); paths=("$model")
for m in $methods; do
  q=$out/q-$m
  if [ ! -e "$q" ]; then
    s=$(date +%s)
    "$bin" quantize --method "$m" --weights "$weights" --seed "$seed" --w 4 --a 4 --kv 4 --out "$q" -q >/dev/null
    echo "quantize $m: $(( $(date +%s) - s )) s" >&2
  fi
  names+=("$m"); paths+=("$q")
done

for i in "${!names[@]}"; do
  n=${names[$i]}; p=${paths[$i]}
  for part in tasks mmlu; do
    f=$out/$n-$part.json
    [ -s "$f" ] && continue
    if [ $part = tasks ]; then t=$tasks; else t=mmlu; fi
    s=$(date +%s)
    "$bin" eval --model "$p" --tasks "$t" --limit "$limit" --json -q > "$f.tmp"
    mv "$f.tmp" "$f"
    echo "eval $n $part: $(( $(date +%s) - s )) s" >&2
  done
done

# One row per (task, metric); one column per model.
header="| task (n) | metric |"; sep="|---|---|"
for n in "${names[@]}"; do header+=" $n |"; sep+="---|"; done
echo "$header"; echo "$sep"
cell() {  # model task metric -> "value ± stderr"
  jq -r --arg t "$2" --arg m "$3" \
    '.tasks[$t] | if .[$m] == null then "-" else "\(.[$m] * 10000 | round / 10000) ± \(.[$m + "_stderr"] * 10000 | round / 10000)" end' \
    "$out/$1-tasks.json"
}
for t in piqa winogrande hellaswag arc_easy arc_challenge lambada_openai boolq openbookqa; do
  nd=$(jq -r --arg t "$t" '.tasks[$t].n // .tasks[$t].docs // "?"' "$out/fp-tasks.json")
  for metric in acc acc_norm perplexity; do
    has=$(jq -r --arg t "$t" --arg m "$metric" '.tasks[$t] | has($m)' "$out/fp-tasks.json")
    [ "$has" = true ] || continue
    row="| $t ($nd) | $metric |"
    for n in "${names[@]}"; do row+=" $(cell "$n" "$t" "$metric") |"; done
    echo "$row"
  done
done
row="| **6-task average** | acc_norm else acc |"
for n in "${names[@]}"; do
  row+=" $(jq -r '[.tasks | (.piqa.acc_norm, .winogrande.acc, .hellaswag.acc_norm, .arc_easy.acc_norm,
          .arc_challenge.acc_norm, .lambada_openai.acc)] | add / 6 * 10000 | round / 10000' "$out/$n-tasks.json") |"
done
echo "$row"
nm=$(jq -r '.tasks.mmlu.n // "?"' "$out/fp-mmlu.json")
row="| mmlu ($nm) | acc |"
for n in "${names[@]}"; do
  row+=" $(jq -r '.tasks.mmlu | "\(.acc * 10000 | round / 10000) ± \(.acc_stderr * 10000 | round / 10000)"' "$out/$n-mmlu.json") |"
done
echo "$row"
for g in humanities other social_sciences stem; do
  ng=$(jq -r --arg g "$g" '.tasks.mmlu.groups[$g].n' "$out/fp-mmlu.json")
  row="| - $g ($ng) | acc |"
  for n in "${names[@]}"; do
    row+=" $(jq -r --arg g "$g" '.tasks.mmlu.groups[$g] | "\(.acc * 10000 | round / 10000) ± \(.acc_stderr * 10000 | round / 10000)"' "$out/$n-mmlu.json") |"
  done
  echo "$row"
done
echo
echo "| model | execution | docs/s per task | mmlu docs/s |"
echo "|---|---|---|---|"
for n in "${names[@]}"; do
  ex=$(jq -r '.execution' "$out/$n-tasks.json")
  dps=$(jq -r '[.tasks | to_entries[] | "\(.key) \(.value.docs_per_s | round)"] | join(", ")' "$out/$n-tasks.json")
  echo "| $n | $ex | $dps | $(jq -r '.tasks.mmlu.docs_per_s | round' "$out/$n-mmlu.json") |"
done
