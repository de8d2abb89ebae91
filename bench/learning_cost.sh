#!/usr/bin/env bash
# What learning the rotations costs (issue #17): SpinQuant (end to end, a backward pass through
# the whole model per window) vs KurTail (one FP capture pass, then layer-wise kurtosis
# descent on captured rows), one thread, as the model grows in layers and hidden size and as
# the calibration grows. Prints one row per run: learning seconds (the method's own timer),
# process CPU seconds, peak RSS.
# Usage: bash bench/learning_cost.sh BUILD_DIR OUT_DIR   (BUILD_DIR holds kurtail and kurtail_make_checkpoint)
#   env: SQ_ITERS (4): SpinQuant steps per run (its time per step is what scales; 100 steps
#        is the default of a real run), KT_ITERS (200, KurTail's default).
set -euo pipefail
B=${1:?build dir}; OUT=${2:?output dir}
: "${KURTAIL_DATA:?set KURTAIL_DATA}"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
SQ_ITERS=${SQ_ITERS:-4}; KT_ITERS=${KT_ITERS:-200}
PROXY=$KURTAIL_DATA/models/tinyllama-8m
mkdir -p "$OUT"
# wider synthetic models (random weights: only their shapes matter here), 2 layers each
[ -d "$OUT/h512" ] || "$B/kurtail_make_checkpoint" --hidden 512 --ffn 1408 --heads 16 --kv-heads 8 --layers 2 --dtype f32 --out "$OUT/h512" 2>/dev/null
[ -d "$OUT/h1024" ] || "$B/kurtail_make_checkpoint" --hidden 1024 --ffn 2816 --heads 16 --kv-heads 8 --layers 2 --dtype f32 --out "$OUT/h1024" 2>/dev/null

echo "| method | model | layers | hidden | calibration | learning CPU s | learning wall s | process CPU s | peak RSS MiB | per unit (CPU) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
run() {  # method model layers label extra-args...
  local m=$1 model=$2 L=$3 label=$4; shift 4
  local tag="$m-$(basename "$model")-L$L-${label//[^a-z0-9]/_}"
  /usr/bin/time -f "%U %S %M" -o "$OUT/$tag.time" "$B/kurtail" quantize --model "$model" --method "$m" --w 4 --a 4 --kv 4 \
    --seqlen 512 --truncate-layers "$L" --out "$OUT/$tag.q" --force --json -q "$@" > "$OUT/$tag.json"
  rm -rf "${OUT:?}/$tag.q"
  python3 - "$OUT/$tag" "$m" "$(basename "$model")" "$L" "$label" <<'PY'
import json, sys
p, m, model, L, label = sys.argv[1:]
q = json.load(open(p + ".json")); u, s, rss = open(p + ".time").read().split()
sec = q.get(m, {}).get("learn_seconds", 0.0); cpu = q.get(m, {}).get("learn_cpu_seconds", 0.0)
hidden = {"tinyllama-8m": 256, "h512": 512, "h1024": 1024}[model]
if m == "spinquant":
    sq = q["spinquant"]; windows = sq["steps"] * sq["windows_per_step"] + 2 * sq["windows_per_step"]
    unit = "%.2f s per window (fwd+bwd; the 2 loss evaluations counted as windows)" % (cpu / windows)
else:
    unit = "capture %.1f s wall" % q["kurtail"]["capture_seconds"]
print("| %s | %s | %s | %d | %s | %.1f | %.1f | %.1f | %.0f | %s |" % (m, model, L, hidden, label, cpu, sec,
      float(u) + float(s), int(rss) / 1024, unit))
PY
}
for L in 2 4 8; do
  run spinquant "$PROXY" "$L" "2 win/step" --sq-iters "$SQ_ITERS" --sq-batch 2
  run kurtail "$PROXY" "$L" "2048 rows" --kt-iters "$KT_ITERS"
done
for b in 1 4; do run spinquant "$PROXY" 8 "$b win/step" --sq-iters "$SQ_ITERS" --sq-batch "$b"; done
for n in 32 512; do run kurtail "$PROXY" 8 "$n rows" --kt-iters "$KT_ITERS" --kt-tokens "$n"; done
for h in h512 h1024; do
  run spinquant "$OUT/$h" 2 "2 win/step" --sq-iters "$SQ_ITERS" --sq-batch 2
  run kurtail "$OUT/$h" 2 "2048 rows" --kt-iters "$KT_ITERS"
done
