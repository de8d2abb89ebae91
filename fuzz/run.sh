#!/usr/bin/env bash
# Runs one libFuzzer target: replays fuzz/regressions/<target>/* (inputs that once crashed),
# then fuzzes for SECONDS from a fresh corpus of generated seeds plus real files from
# $KURTAIL_DATA. Crashing inputs land in out/fuzz-artifacts/<target>/.
# Usage: fuzz/run.sh BINARY SECONDS [libFuzzer args...]
#   env: FUZZ_SECONDS (overrides SECONDS), MAX_LEN (65536), RUNS (-1: no limit)
set -euo pipefail
BIN="$1"; SECS="${FUZZ_SECONDS:-$2}"; shift 2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="${KURTAIL_DATA:-$ROOT/../shared/data}"
NAME="$(basename "$BIN")"
CORPUS="$(mktemp -d /tmp/kurtail-corpus.XXXXXX)"
trap 'rm -rf "$CORPUS"' EXIT
ART="${ARTIFACTS:-$ROOT/out/fuzz-artifacts}/$NAME"
mkdir -p "$ART"

KT_FUZZ_WRITE_SEEDS="$CORPUS" "$BIN" >/dev/null 2>&1
seed() { [ -f "$1" ] && cp "$1" "$CORPUS/real_$(basename "$1")_$2" || true; }
# Parts-format seeds: [u32 len][part]... the last part without a length (fuzz_util.h).
# Plain bash (no python on a bare CI machine); "-" stands for an empty part.
u32le() { local n=$1; printf "\\x$(printf %02x $((n & 255)))\\x$(printf %02x $(((n >> 8) & 255)))\\x$(printf %02x $(((n >> 16) & 255)))\\x$(printf %02x $(((n >> 24) & 255)))"; }
parts() {
  local out="$1"; shift
  : > "$out"
  while [ $# -gt 0 ]; do
    local f="$1"; shift
    local n=0; [ "$f" != "-" ] && n=$(stat -c %s "$f")
    [ $# -gt 0 ] && u32le "$n" >> "$out"
    [ "$f" != "-" ] && cat "$f" >> "$out"
  done
  return 0
}
case "$NAME" in
  fuzz_gguf) for f in "$DATA"/models/ggml-vocab/*.gguf; do seed "$f" 0; done ;;
  fuzz_hf_config) for f in "$DATA"/models/*/config.json; do seed "$f" "$(basename "$(dirname "$f")")"; done ;;
  fuzz_tokenizer_json) [ -f "$DATA/models/smollm2-135m-tokenizer/tokenizer.json" ] &&
      parts "$CORPUS/real_smollm2" - "$DATA/models/smollm2-135m-tokenizer/tokenizer.json" ;;
  fuzz_tokenizer_bin) [ -f "$DATA/models/aidreams260K/tok512.bin" ] &&
      printf '\x00\x02' > "$CORPUS/n" && parts "$CORPUS/real_tok512" "$CORPUS/n" "$DATA/models/aidreams260K/tok512.bin" && rm "$CORPUS/n" ;;
  fuzz_llama2c) seed "$DATA/models/aidreams260K/aidreams260K.bin" 0 ;;
esac

REG="$ROOT/fuzz/regressions/$NAME"
if compgen -G "$REG/*" >/dev/null; then
  echo "$NAME: replaying $(ls "$REG" | wc -l) regression inputs"
  "$BIN" -rss_limit_mb=2048 "$REG"/*
fi
echo "$NAME: fuzzing for ${SECS}s from $(ls "$CORPUS" | wc -l) seeds"
rc=0
"$BIN" -max_total_time="$SECS" -runs="${RUNS:--1}" -max_len="${MAX_LEN:-65536}" -rss_limit_mb=2048 -timeout=20 \
  -print_final_stats=1 -artifact_prefix="$ART/" "$@" "$CORPUS" > "$CORPUS.log" 2>&1 || rc=$?
grep -v "^#[0-9].*\(NEW\|REDUCE\|pulse\)" "$CORPUS.log" | tail -40
rm -f "$CORPUS.log"
exit "$rc"
