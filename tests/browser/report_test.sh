#!/usr/bin/env bash
# Browser test (ctest label "browser"): `kurtail analyze --out report.html` renders in headless
# Chromium with its SVG charts present and non-empty, and screenshots to a real PNG.
# Exit 77 (ctest: skipped) only when chromium is not installed.
set -euo pipefail
KURTAIL="$1"
command -v chromium >/dev/null || { echo "chromium not installed"; exit 77; }
DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"' EXIT
"$KURTAIL" analyze -q --nsamples 2 --seqlen 64 --method quarot --out "$DIR/report.html"
FLAGS="--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
--disable-component-update --disable-sync --user-data-dir=$DIR/profile"
timeout 120 chromium $FLAGS --dump-dom "file://$DIR/report.html" > "$DIR/dom.html" 2>/dev/null
svgs=$(grep -o '<svg' "$DIR/dom.html" | wc -l)
lines=$(grep -o '<polyline class="series"[^>]*points="[0-9]' "$DIR/dom.html" | wc -l)
empty=$( (grep -o 'points=""' "$DIR/dom.html" || true) | wc -l)
echo "svg charts: $svgs, non-empty series: $lines, empty series: $empty"
[ "$svgs" -ge 20 ] || { echo "FAIL: expected >= 20 charts"; exit 1; }
[ "$lines" -ge 40 ] || { echo "FAIL: expected >= 40 drawn series"; exit 1; }
grep -q "channel absmax, sorted" "$DIR/dom.html" || { echo "FAIL: channel plot missing"; exit 1; }
timeout 120 chromium $FLAGS --window-size=1200,1600 --screenshot="$DIR/shot.png" "file://$DIR/report.html" >/dev/null 2>&1
size=$(stat -c %s "$DIR/shot.png")
head -c 8 "$DIR/shot.png" | od -An -tx1 | grep -q "89 50 4e 47" || { echo "FAIL: screenshot is not a PNG"; exit 1; }
[ "$size" -gt 20000 ] || { echo "FAIL: screenshot too small ($size bytes)"; exit 1; }
echo "screenshot $size bytes: ok"
