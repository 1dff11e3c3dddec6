#!/usr/bin/env bash
# `ei eval --mode full` on samples longer than the model's context (stories260K: 512): 2048-token
# samples from `ei prepare --max-tokens 2048` score with the same sliding window as `--ppl` on the
# same text (default and custom --ctx/--stride give the --ppl loss of the same tokens), and options
# that do not apply to the chosen input or mode are errors.
set -euo pipefail
EI=${EI_BIN:?EI_BIN not set}
FIX=${EI_FIXTURES:?EI_FIXTURES not set}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
BIN=$FIX/models/stories260K/stories260K.bin
TOK=$FIX/models/stories260K/tok512.bin
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "cli_eval_long: FAIL: $*" >&2; exit 1; }
field() { sed -n "s/^$1 //p"; }

# about 3,000 tokens of whole stories: one 2048-token piece and a shorter one
awk 'BEGIN { RS = ""; ORS = "\n\n" } { print; if ((n += length($0)) > 11000) exit }' \
  "$FIX/text/tinystories.txt" > "$TMP/doc.txt"
"$EI" prepare --quiet --tokenizer "$TOK" --max-tokens 2048 --output "$TMP/long.h5" "$TMP/doc.txt" > "$TMP/stats"
grep -q "max 2048;" "$TMP/stats" || fail "no 2048-token sample: $(cat "$TMP/stats")"
grep -q "0 truncated" "$TMP/stats" || fail "split pieces reported as truncated: $(cat "$TMP/stats")"

# The first sample is BOS + the first 2047 tokens of the text, which is what --ppl --max-tokens 2048
# scores: the same sliding window gives the same loss over the same 2047 predictions.
for window in "" "--ctx 256 --stride 64" "--ctx 384"; do
  # shellcheck disable=SC2086
  "$EI" eval --data "$TMP/long.h5" --model "$BIN" --mode full --max-samples 1 $window > "$TMP/d" 2>"$TMP/err" ||
    fail "eval --data --mode full $window: $(cat "$TMP/err")"
  # shellcheck disable=SC2086
  "$EI" eval --ppl "$TMP/doc.txt" --model "$BIN" --mode full --max-tokens 2048 $window > "$TMP/p" 2>/dev/null ||
    fail "eval --ppl $window"
  [ "$(field tokens < "$TMP/d")" = 2047 ] || fail "$window: --data scored $(field tokens < "$TMP/d") tokens, not 2047"
  [ "$(field loss < "$TMP/d")" = "$(field loss < "$TMP/p")" ] ||
    fail "$window: --data loss $(field loss < "$TMP/d") differs from --ppl $(field loss < "$TMP/p")"
  echo "${window:-default}: $(field loss < "$TMP/d")" >> "$TMP/losses"
done
[ "$(cut -d' ' -f2- "$TMP/losses" | sort -u | wc -l)" = 3 ] || fail "--ctx/--stride changed nothing: $(cat "$TMP/losses")"

# every sample, the short last one too: each predicts all its tokens but BOS
read -r ns nt < <(sed -n 's/.*: 1 documents, \([0-9]*\) samples, \([0-9]*\) tokens.*/\1 \2/p' "$TMP/stats")
[ "${ns:-0}" -ge 2 ] || fail "expected several samples: $(cat "$TMP/stats")"
"$EI" eval --data "$TMP/long.h5" --model "$BIN" --mode full --json > "$TMP/j" 2>/dev/null || fail "eval all samples"
grep -q "\"samples\":$ns,\"tokens\":$((nt - ns))," "$TMP/j" || fail "expected $ns samples, $((nt - ns)) tokens: $(cat "$TMP/j")"

# options that do not apply: usage errors (exit 2) naming the option
bad() { # expected-text, ei eval arguments...
  local want=$1; shift
  set +e
  "$EI" eval --model "$BIN" "$@" > /dev/null 2> "$TMP/err"
  local rc=$?
  set -e
  [ $rc -eq 2 ] || fail "'$*' exited $rc, expected 2"
  grep -q -- "$want" "$TMP/err" || fail "'$*': $(cat "$TMP/err")"
}
bad "--paragraphs applies to --ppl" --data "$TMP/long.h5" --paragraphs
bad "--exact and --allow-tokenizer-mismatch apply to --data" --ppl "$TMP/doc.txt" --exact
bad "--max-samples, --exact" --ppl "$TMP/doc.txt" --max-samples 3
bad "--tokenizer applies to --ppl" --data "$TMP/long.h5" --tokenizer "$TOK"
bad "--ctx and --stride apply to --mode full" --data "$TMP/long.h5" --mode window --stride 64
bad "--ctx and --stride apply to --mode full" --ppl "$TMP/doc.txt" --mode edgeinfinite --ctx 256
echo "cli_eval_long: ok"
