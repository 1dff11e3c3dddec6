#!/usr/bin/env bash
# `ei plot`: a synthetic metrics.jsonl (with a partial last line, as a killed run leaves) becomes a
# PNG of the requested size; clear errors for a missing gnuplot, an empty file, missing arguments.
set -euo pipefail
: "${EI_BIN:?EI_BIN must point to the ei binary}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 120 steps of a decaying loss, a validation loss every 20 steps, one skipped step.
awk 'BEGIN { for (s = 1; s <= 120; s++) {
         loss = 2 + 1.5 * exp(-s / 30) + 0.05 * sin(s);
         line = sprintf("{\"step\": %d, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": 0.5, \"tokens_per_s\": 4000", s, loss, 0.005);
         if (s == 60) line = sprintf("{\"step\": 60, \"loss\": null, \"lr\": 0.005, \"grad_norm\": null, \"tokens_per_s\": 0, \"skipped\": true");
         if (s % 20 == 0) line = line sprintf(", \"val_loss\": %.6f", loss + 0.1);
         print line ", \"bad_steps\": 0}" } }' > "$work/metrics.jsonl"
printf '{"step": 121, "lo' >> "$work/metrics.jsonl"

"$EI_BIN" plot --help | grep -q "metrics.jsonl" || fail "--help does not describe the command"

if ! command -v gnuplot >/dev/null 2>&1; then
  # Without gnuplot the command must say so clearly; nothing more can be checked.
  if "$EI_BIN" plot "$work/metrics.jsonl" -o "$work/loss.png" 2>"$work/err"; then fail "succeeded without gnuplot"; fi
  grep -q "gnuplot-nox" "$work/err" || fail "no clear message without gnuplot: $(cat "$work/err")"
  echo "gnuplot not installed: checked the error message only"
  exit 0
fi

"$EI_BIN" plot "$work/metrics.jsonl" -o "$work/loss.png" --smooth 0.8 --lr --width 800 --height 500 \
  >"$work/out" 2>"$work/err" || fail "ei plot failed: $(cat "$work/err")"
grep -q "119 training points, 6 validation points" "$work/out" || fail "unexpected summary: $(cat "$work/out")"
grep -q "1 line that are not JSON" "$work/err" || fail "the partial line was not reported"
[ -s "$work/loss.png" ] || fail "no image"
# PNG signature, then the IHDR chunk: width and height as big-endian 32-bit numbers.
sig=$(od -An -tx1 -N8 "$work/loss.png" | tr -d ' \n')
[ "$sig" = "89504e470d0a1a0a" ] || fail "not a PNG (signature $sig)"
w=$(od -An -tu1 -j16 -N4 "$work/loss.png" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
h=$(od -An -tu1 -j20 -N4 "$work/loss.png" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
[ "$w" = 800 ] && [ "$h" = 500 ] || fail "image is ${w}x${h}, expected 800x500"
ls "$work" | grep -q "tmp" && fail "temporary files left next to the output"

# two runs overlaid
cp "$work/metrics.jsonl" "$work/other.jsonl"
"$EI_BIN" plot "$work/metrics.jsonl" "$work/other.jsonl" -o "$work/two.png" >/dev/null 2>&1 || fail "two runs"
[ -s "$work/two.png" ] || fail "no image for two runs"

# errors
if EI_GNUPLOT=/nonexistent/gnuplot "$EI_BIN" plot "$work/metrics.jsonl" -o "$work/x.png" 2>"$work/err"; then
  fail "succeeded with a missing gnuplot"
fi
grep -q "gnuplot not found" "$work/err" || fail "unclear message for a missing gnuplot: $(cat "$work/err")"
: > "$work/empty.jsonl"
if "$EI_BIN" plot "$work/empty.jsonl" -o "$work/x.png" 2>"$work/err"; then fail "succeeded on an empty file"; fi
grep -q "no steps with a finite loss" "$work/err" || fail "unclear message for an empty file: $(cat "$work/err")"
if "$EI_BIN" plot "$work/missing.jsonl" -o "$work/x.png" 2>"$work/err"; then fail "succeeded on a missing file"; fi
grep -q "missing.jsonl" "$work/err" || fail "missing file not named: $(cat "$work/err")"
set +e
"$EI_BIN" plot "$work/metrics.jsonl" 2>"$work/err"; rc=$?
set -e
[ "$rc" = 2 ] || fail "missing -o should be a usage error (exit 2), got $rc"
[ -e "$work/x.png" ] && fail "an image was written on error"
echo "cli_plot: ok"
