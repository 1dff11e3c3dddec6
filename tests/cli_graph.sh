#!/usr/bin/env bash
# Compiled graphs against the eager model through the CLI, on the stories260K fixture with gates
# trained for a few steps: `ei generate --graph` gives the same greedy tokens as `ei generate --mode
# edgeinfinite` with the same options (512 new tokens: past the model's trained context), and
# `ei eval --graph --ppl` equals `ei eval --mode edgeinfinite` to 1e-4 (the first 8K tokens of
# sherlock_holmes.txt here; docs/deploy.md records the 64K-token run). f16 weights stay close.
set -euo pipefail
: "${EI_BIN:?}" "${EI_FIXTURES:?}" "${EI_SOURCE_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0
MODEL=$EI_FIXTURES/models/stories260K/stories260K.bin
TOK=$EI_FIXTURES/models/stories260K/tok512.bin
cd "$EI_SOURCE_DIR"
# gates: a short training run on long TinyStories documents
head -c 60000 "$EI_FIXTURES/text/tinystories.txt" > "$tmp/a.txt"
"$EI_BIN" prepare --tokenizer "$TOK" --output "$tmp/ds.h5" --doc-mode whole --max-tokens 1024 "$tmp/a.txt" \
  > /dev/null 2>&1 || fail "prepare"
"$EI_BIN" train --config configs/train/stories_lm.yaml --set "data.train=$tmp/ds.h5" --set data.val= \
  --set "train.out_dir=$tmp/run" --set train.steps=4 --set train.warmup_steps=0 --set train.grad_accum=1 \
  --set edgeinfinite.segment=32 --set edgeinfinite.window=64 --set train.eval_every=0 \
  --set train.checkpoint_every=0 --set train.threads=1 --quiet > "$tmp/train.log" 2>&1 || { cat "$tmp/train.log"; fail "train"; }
G=$tmp/run/gates.safetensors
"$EI_BIN" compile --model "$MODEL" --gates "$G" --scenario configs/scenarios/stories.yaml -o "$tmp/s.eig" 2>/dev/null ||
  fail "compile"
"$EI_BIN" compile --model "$MODEL" --gates "$G" --scenario configs/scenarios/stories.yaml --set precision.weights=f16 \
  -o "$tmp/h.eig" 2>/dev/null || fail "compile f16"
# whole-model quantised weights (the embedding too: gathered as w8 with its row scales)
for q in w8 w4g32; do
  "$EI_BIN" compile --model "$MODEL" --gates "$G" --scenario configs/scenarios/stories.yaml --set precision.weights=$q \
    -o "$tmp/$q.eig" 2>/dev/null || fail "compile $q"
done
# K/V caches in f16 and i8 (scales from calibration), and w8 weights with a8 / a16 activations
for kv in f16 i8; do
  "$EI_BIN" compile --model "$MODEL" --gates "$G" --scenario configs/scenarios/stories.yaml --set precision.kv_cache=$kv \
    --calib "$tmp/ds.h5" --calib-samples 2 -o "$tmp/kv$kv.eig" 2>/dev/null || fail "compile kv_cache $kv"
done
for a in a8 a16; do
  "$EI_BIN" compile --model "$MODEL" --gates "$G" --scenario configs/scenarios/stories.yaml --set precision.weights=w8 \
    --set precision.activations=$a --calib "$tmp/ds.h5" --calib-samples 2 -o "$tmp/w8$a.eig" 2>/dev/null || fail "compile w8$a"
done
if "$EI_BIN" compile --model "$MODEL" --gates "$G" --scenario configs/scenarios/stories.yaml --set precision.activations=a8 \
  -o "$tmp/x.eig" 2> "$tmp/err"; then fail "a8 without --calib accepted"; fi
grep -q "needs calibration data" "$tmp/err" || fail "a8 without --calib: $(cat "$tmp/err")"
if "$EI_BIN" compile --model "$MODEL" --gates "$G" --scenario configs/scenarios/stories.yaml --set precision.activations=a8 \
  --calib "$tmp/ds.h5" -o "$tmp/x.eig" 2> "$tmp/err"; then fail "a8 with float weights accepted"; fi
grep -q "has none" "$tmp/err" || fail "a8 with f32 weights: $(cat "$tmp/err")"
# the scenario's options are the gate file's apart from segment / sink / window
EIOPTS=(--mode edgeinfinite --gates "$G" --segment 32 --sink 4 --window 64)
"$EI_BIN" generate --graph "$tmp/s.eig" --temperature 0 --max-tokens 512 --ids > "$tmp/g.txt" 2>/dev/null ||
  fail "generate --graph"
"$EI_BIN" generate --model "$MODEL" "${EIOPTS[@]}" --temperature 0 --max-tokens 512 --ids > "$tmp/e.txt" 2>/dev/null ||
  fail "generate eager"
cmp -s "$tmp/g.txt" "$tmp/e.txt" || fail "greedy tokens differ: $(head -c 300 "$tmp/g.txt") / $(head -c 300 "$tmp/e.txt")"
[ "$(wc -w < "$tmp/g.txt")" -ge 400 ] || fail "too few tokens generated: $(wc -w < "$tmp/g.txt")"
TXT=$EI_FIXTURES/text/sherlock_holmes.txt
loss() { awk '$1 == "loss" {print $2}'; }
# 2K tokens in the sanitizer build (still 60 compressions of the 64-token window; ASan runs the
# nine evaluations about 20x slower), 8K in the release build.
NTOK=8192
[ "${EI_SANITIZE:-0}" = 1 ] && NTOK=2048
lg=$("$EI_BIN" eval --graph "$tmp/s.eig" --ppl "$TXT" --max-tokens "$NTOK" 2>/dev/null | loss)
le=$("$EI_BIN" eval --model "$MODEL" "${EIOPTS[@]}" --ppl "$TXT" --max-tokens "$NTOK" 2>/dev/null | loss)
lh=$("$EI_BIN" eval --graph "$tmp/h.eig" --ppl "$TXT" --max-tokens "$NTOK" 2>/dev/null | loss)
l8=$("$EI_BIN" eval --graph "$tmp/w8.eig" --ppl "$TXT" --max-tokens "$NTOK" 2>/dev/null | loss)
l4=$("$EI_BIN" eval --graph "$tmp/w4g32.eig" --ppl "$TXT" --max-tokens "$NTOK" 2>/dev/null | loss)
lkh=$("$EI_BIN" eval --graph "$tmp/kvf16.eig" --ppl "$TXT" --max-tokens "$NTOK" 2>/dev/null | loss)
lk8=$("$EI_BIN" eval --graph "$tmp/kvi8.eig" --ppl "$TXT" --max-tokens "$NTOK" 2>/dev/null | loss)
la8=$("$EI_BIN" eval --graph "$tmp/w8a8.eig" --ppl "$TXT" --max-tokens "$NTOK" 2>/dev/null | loss)
la16=$("$EI_BIN" eval --graph "$tmp/w8a16.eig" --ppl "$TXT" --max-tokens "$NTOK" 2>/dev/null | loss)
echo "loss: graph $lg, eager $le, f16 graph $lh, w8 graph $l8, w4g32 graph $l4"
echo "loss: kv f16 $lkh, kv i8 $lk8, w8a8 $la8, w8a16 $la16"
awk -v a="$lg" -v b="$le" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-4 * b) }' ||
  fail "graph loss $lg differs from eager $le"
awk -v a="$lh" -v b="$le" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-2 * b) }' ||
  fail "f16 graph loss $lh far from f32 $le"
# bounds: measured w8 +0.02%, w4g32 +2.4% of the f32 loss here (3.9466 -> 3.9474, 4.0413)
awk -v a="$l8" -v b="$le" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-2 * b) }' ||
  fail "w8 graph loss $l8 far from f32 $le"
awk -v a="$l4" -v b="$le" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 6e-2 * b) }' ||
  fail "w4g32 graph loss $l4 far from f32 $le"
within() { # A B REL: |A - B| <= REL * B
  awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= r * b) }'
}
# bounds: measured kv f16 +0.0%, kv i8 +0.01%, w8a8 +0.5%, w8a16 +0.0% of the f32 loss (stories_lm gates)
within "$lkh" "$le" 1e-3 || fail "kv f16 loss $lkh far from f32 $le"
within "$lk8" "$le" 5e-3 || fail "kv i8 loss $lk8 far from f32 $le"
within "$la8" "$le" 2e-2 || fail "w8a8 loss $la8 far from f32 $le"
within "$la16" "$l8" 2e-3 || fail "w8a16 loss $la16 far from w8 $l8"
# options that a graph fixes are refused
if "$EI_BIN" eval --graph "$tmp/s.eig" --ppl "$TXT" --window 8 > /dev/null 2>&1; then fail "--window accepted with --graph"; fi
echo "ok"
