#!/usr/bin/env bash
# The launch scripts end to end, shortened (2 steps, small evaluations) and writing into a temporary
# RUNS folder: prepare -> train -> export -> plot -> evaluation table.
set -euo pipefail
: "${EI_BIN:?}" "${EI_FIXTURES:?}" "${EI_SOURCE_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export EI="$EI_BIN" EI_FIXTURES RUNS="$tmp" STEPS=2 EVAL_SAMPLES=1 EVAL_TOKENS=1024
export ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0

check_run() { # name, number of table rows expected
  local out=$tmp/$1
  for f in metrics.jsonl gates.safetensors loss.png ckpt-2.h5 results.txt export/edgeinfinite.json \
           export/config.json export/gates.safetensors; do
    [ -s "$out/$f" ] || fail "$1: $f missing"
  done
  [ "$(grep -c '"step"' "$out/metrics.jsonl")" = 2 ] || fail "$1: expected 2 metrics lines"
  # header + 3 rows, each with finite numbers
  [ "$(wc -l < "$out/results.txt")" = 4 ] || fail "$1: results table has $(wc -l < "$out/results.txt") lines"
  awk 'NR > 1 { for (i = NF - 1; i <= NF; i++) if ($i !~ /^[0-9.]+$/) exit 1 }' "$out/results.txt" ||
    fail "$1: non-numeric value in results: $(cat "$out/results.txt")"
}

log=$tmp/lm.log
(cd "$EI_SOURCE_DIR" && scripts/train_stories_lm.sh --set data.max_tokens=1024 --set train.eval_samples=1 \
  --quiet) > "$log" 2>&1 || { cat "$log"; fail "train_stories_lm.sh"; }
check_run stories_lm

log=$tmp/pk.log
(cd "$EI_SOURCE_DIR" && scripts/train_stories_passkey.sh --set train.eval_samples=1 --quiet) > "$log" 2>&1 ||
  { cat "$log"; fail "train_stories_passkey.sh"; }
check_run stories_passkey
echo "ok: both launch scripts ran end to end"
