#!/usr/bin/env bash
# kurtail W4A4KV4 and W4A8KV4 vs llama.cpp Q4_0 on the same model, same machine, interleaved
# (issue #19). Prints one llama-bench-style table with each row's ratio to llama.cpp's.
#   LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin bash bench/llama_side_by_side.sh ./build/kurtail OUT_DIR
# env: MODEL (FP model; default the proxy), METHOD (quarot), PP (512), TG (128), DEPTHS ("0"),
#      THREADS ("1 2"), REPS (3, per llama-bench / kurtail bench call), ROUNDS (3: each round runs
#      every engine once per thread count and depth, so slow drifts of a shared machine hit all
#      engines alike), QUANT_ARGS (extra `kurtail quantize` arguments, e.g. "--nsamples 4").
# Steps: `kurtail export-gguf` (f16) -> `llama-quantize ... Q4_0`; `kurtail quantize` of the
# two kurtail configurations (RTN weights, the method's online Hadamards); then the rounds.
# llama.cpp is never built or run by CI: point LLAMA_CPP_BIN at a build of your own (this
# repository's docs/RESULTS.md says which commit was measured).
set -euo pipefail
K=${1:?kurtail binary}; OUT=${2:?output directory}
: "${LLAMA_CPP_BIN:?set LLAMA_CPP_BIN to the directory holding llama-bench and llama-quantize}"
: "${KURTAIL_DATA:?set KURTAIL_DATA}"
MODEL=${MODEL:-$KURTAIL_DATA/models/tinyllama-8m}; METHOD=${METHOD:-quarot}
PP=${PP:-512}; TG=${TG:-128}; DEPTHS=${DEPTHS:-0}; THREADS=${THREADS:-1 2}; REPS=${REPS:-3}; ROUNDS=${ROUNDS:-3}
QUANT_ARGS=${QUANT_ARGS:-}
for tool in llama-bench llama-quantize; do
  [ -x "$LLAMA_CPP_BIN/$tool" ] || { echo "llama_side_by_side: $LLAMA_CPP_BIN/$tool: not an executable" >&2; exit 2; }
done
mkdir -p "$OUT/runs"

[ -s "$OUT/f16.gguf" ] || "$K" export-gguf --model "$MODEL" --out "$OUT/f16.gguf" --type f16 -q
[ -s "$OUT/q4_0.gguf" ] || "$LLAMA_CPP_BIN/llama-quantize" "$OUT/f16.gguf" "$OUT/q4_0.gguf" Q4_0 >"$OUT/llama-quantize.log" 2>&1
declare -A bits=([w4a4kv4]="--w 4 --a 4 --kv 4" [w4a8kv4]="--w 4 --a 8 --kv 4")
for c in w4a4kv4 w4a8kv4; do
  # shellcheck disable=SC2086
  [ -e "$OUT/$c" ] || "$K" quantize --model "$MODEL" --method "$METHOD" --weights rtn ${bits[$c]} $QUANT_ARGS --out "$OUT/$c" -q
done

for r in $(seq 1 "$ROUNDS"); do
  for t in $THREADS; do
    for d in $DEPTHS; do
      f="$OUT/runs/r$r-t$t-d$d"
      if [ ! -s "$f-llama.json" ]; then
        if ! "$LLAMA_CPP_BIN/llama-bench" -m "$OUT/q4_0.gguf" -p "$PP" -n "$TG" -d "$d" -t "$t" -r "$REPS" -o json \
          >"$f-llama.tmp" 2>"$OUT/llama-bench.log"; then
          echo "llama_side_by_side: llama-bench failed; its last lines ($OUT/llama-bench.log):" >&2
          tail -3 "$OUT/llama-bench.log" >&2
          exit 1
        fi
        mv "$f-llama.tmp" "$f-llama.json"
      fi
      for c in w4a4kv4 w4a8kv4; do
        [ -s "$f-$c.json" ] || "$K" bench --model "$OUT/$c" -p "$PP" -n "$TG" -d "$d" -t "$t" -r "$REPS" --json >"$f-$c.json"
      done
      echo "round $r, $t threads, depth $d done" >&2
    done
  done
done

python3 - "$OUT" <<'PY'
import glob, json, os, statistics as st, sys
out = sys.argv[1]
rows = {}  # (engine, threads, test) -> [t/s per round]
meta = {}
for f in sorted(glob.glob(os.path.join(out, "runs", "*.json"))):  # r<round>-t<threads>-d<depth>-<engine>.json
    engine = f.rsplit("-", 1)[1][:-5]
    data = json.load(open(f))
    recs = data if isinstance(data, list) else data["rows"]
    for x in recs:
        n = x["n_prompt"] or x["n_gen"]
        test = ("pp" if x["n_prompt"] else "tg") + str(n) + (f" @ d{x['n_depth']}" if x.get("n_depth") else "")
        key = (engine, x["n_threads"], test)
        rows.setdefault(key, []).append(x["avg_ts"])
        meta[engine] = (x["model_type"], x["model_size"], x["model_n_params"])
def human(b, unit):
    if unit == "B":
        return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.2f} MiB"
    return f"{b / 1e9:.2f} B" if b >= 1e9 else f"{b / 1e6:.2f} M"
print("| engine | model | size | params | threads | test | t/s (mean ± sd over rounds) | vs llama.cpp Q4_0 |")
print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |")
order = ["llama", "w4a4kv4", "w4a8kv4"]
for (engine, threads, test) in sorted(rows, key=lambda k: (k[1], k[2][:2], int(k[2].split("@ d")[1]) if "@" in k[2] else 0, k[2], order.index(k[0]))):
    v = rows[(engine, threads, test)]
    base = rows.get(("llama", threads, test))
    ratio = f"{st.mean(v) / st.mean(base):.2f}x" if base else "-"
    name, size, params = meta[engine]
    sd = f" ± {st.stdev(v):.2f}" if len(v) > 1 else ""
    label = "llama.cpp" if engine == "llama" else "kurtail"
    print(f"| {label} | {name} | {human(size, 'B')} | {human(params, 'P')} | {threads} | {test} | {st.mean(v):.2f}{sd} | {ratio} |")
PY
