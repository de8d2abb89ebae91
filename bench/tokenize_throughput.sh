#!/usr/bin/env bash
# Tokenizer throughput (MB/s) and peak-RSS growth per MB of text, per tokenizer kind, on
# WikiText-2 and on a 50 MB text of one line (WikiText-2 with newlines turned into spaces,
# repeated) and on one 2 MB word (letters only); both generated in /tmp, never committed. Uses kurtail_bench's BM_TokenizeFile, which
# tokenizes through tokenize_file (the path `eval --text` and `--calib` use).
# Usage: bench/tokenize_throughput.sh [BUILD_DIR] [TIMEOUT_S]   env: TEXTS="file ..." (default: all three)
#   Prints one line per (kind, text): MB/s, tokens, RSS MiB per MB, a hash of the ids.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
LIMIT="${2:-600}"
DATA="${KURTAIL_DATA:-../shared/data}"
WIKI="$DATA/text/wikitext2_raw_test.joined.txt"
LINE=/tmp/kurtail_oneline_50mb.txt
if [ ! -f "$LINE" ]; then  # whole copies only, so no UTF-8 character is cut
  tr '\n' ' ' < "$WIKI" > "$LINE.part"
  : > "$LINE.tmp"
  while [ "$(stat -c %s "$LINE.tmp")" -lt 50000000 ]; do cat "$LINE.part" >> "$LINE.tmp"; done
  mv "$LINE.tmp" "$LINE" && rm -f "$LINE.part"
fi
WORD=/tmp/kurtail_word_2mb.txt   # one 2 MB word: WikiText-2's letters without spaces
if [ ! -f "$WORD" ]; then
  tr -cd 'a-zA-Z' < "$WIKI" > "$WORD.part"
  cat "$WORD.part" "$WORD.part" "$WORD.part" | head -c 2000000 > "$WORD" && rm -f "$WORD.part"
fi
run() {  # kind tokenizer text
  local out rc=0
  out=$(KT_TOKENIZER="$2" KT_TEXT="$3" timeout "$LIMIT" "$BUILD/kurtail_bench" \
        --benchmark_filter=BM_TokenizeFile --benchmark_format=json 2>/dev/null) || rc=$?
  if [ "$rc" = 124 ]; then
    printf '%-14s %-10s > %s s (timed out)\n' "$1" "$(basename "$3")" "$LIMIT"; return
  fi
  echo "$out" | awk -v k="$1" -v t="$(basename "$3")" '
    /"MB_per_s"/ {gsub(/[,]/,""); mbs=$2} /"tokens"/ {gsub(/[,]/,""); tok=$2}
    /"rss_mib_per_mb"/ {gsub(/[,]/,""); rss=$2} /"ids_fnv"/ {gsub(/[,]/,""); h=$2}
    END {printf "%-14s %-34s %8.2f MB/s %10d tokens %8.2f MiB RSS per MB  ids %s\n", k, t, mbs, tok, rss, h}'
}
for text in ${TEXTS:-"$WIKI" "$LINE" "$WORD"}; do
  run sentencepiece "$DATA/models/tinyllama-8m/tokenizer.model" "$text"
  run byte-bpe "$DATA/models/smollm2-135m-tokenizer/tokenizer.json" "$text"
  run spm-scores "$DATA/models/aidreams260K/tok512.bin" "$text"
  run spm-scores-gguf "$DATA/models/ggml-vocab/ggml-vocab-llama-spm.gguf" "$text"
done
