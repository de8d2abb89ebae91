#!/usr/bin/env bash
# Decode speed at depth 0 and at a depth D, alternating call by call, so that a slow stretch of
# a noisy host hits both sides alike (kurtail bench runs all of one depth, then the other).
# Usage: bash bench/depth_pairs.sh ./build/kurtail MODEL_DIR
#   env: DEPTH (2048), PAIRS (8), THREADS (2), TG (64), KDOTS ("f32 q8": --k-dot values)
# Prints one line per call (pair, k-dot, depth, t/s), then per k-dot the medians and the median
# of the pairs' ratios d / d0.
set -euo pipefail
K=${1:?kurtail binary}; MODEL=${2:?model directory}
DEPTH=${DEPTH:-2048}; PAIRS=${PAIRS:-8}; THREADS=${THREADS:-2}; TG=${TG:-64}; KDOTS=${KDOTS:-f32 q8}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq 1 "$PAIRS"); do
  for kd in $KDOTS; do
    for d in 0 "$DEPTH"; do
      # the table's last column is "t/s ± sd"; one repetition, so the mean is the call's speed
      ts=$("$K" bench --model "$MODEL" -p 0 -n "$TG" -d "$d" -t "$THREADS" -r 1 --k-dot "$kd" 2>/dev/null |
        awk -F'|' '/ tg/ {split($8, a, " "); print a[1]}')
      echo "$i $kd $d $ts" | tee -a "$out"
    done
  done
done
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
for kd in $KDOTS; do
  d0=$(awk -v k="$kd" '$2 == k && $3 == 0 {print $4}' "$out" | median)
  dd=$(awk -v k="$kd" -v d="$DEPTH" '$2 == k && $3 == d {print $4}' "$out" | median)
  ratio=$(awk -v k="$kd" -v d="$DEPTH" '$2 == k {if ($3 == 0) z[$1] = $4; else r[$1] = $4}
    END {for (i in z) if (i in r) print r[i] / z[i]}' "$out" | median)
  echo "k-dot $kd: median t/s d0 $d0, d$DEPTH $dd; median ratio d$DEPTH/d0 of the pairs $ratio"
done
