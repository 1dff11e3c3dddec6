#!/usr/bin/env bash
# Language-modelling S-SFT of the EdgeInfinite memory gates on long TinyStories documents with the
# stories260K model, end to end: prepare -> train -> export -> evaluate window vs edgeinfinite.
#
#   scripts/train_stories_lm.sh [--set key=value ...]     (extra options go to `ei train`)
#   STEPS=40 scripts/train_stories_lm.sh                   (shorter run)
#
# Data: tinystories.txt cut into 24 documents of about 4.2K tokens (whole stories kept together);
# 6 go to validation. Segment 128, window 256, sink 4 (configs/train/stories_lm.yaml).
# Data: $RUNS/data/stories_lm/{ds.train.h5, ds.val.h5, val_lm.eis (the validation documents for ei-eval)}
# Output (RUNS=runs by default): $RUNS/stories_lm/{metrics.jsonl, ckpt-*.h5, gates.safetensors, loss.png, export/, results.txt}
set -euo pipefail
source "$(dirname "$0")/common.sh"
DATA=$RUNS/data/stories_lm
OUT=$RUNS/stories_lm
CONFIG=configs/train/stories_lm.yaml
VAL=$DATA/ds.val.h5
EVAL_SAMPLES=${EVAL_SAMPLES:-6}
EVAL_TOKENS=${EVAL_TOKENS:-0}

log "prepare: $FIXTURES/text/tinystories.txt -> 24 documents"
rm -rf "$DATA" && mkdir -p "$DATA/docs"
# Cut at story boundaries (blank lines) into 24 files of about equal size.
awk -v n=24 -v total="$(wc -c < "$FIXTURES/text/tinystories.txt")" -v dir="$DATA/docs" '
  BEGIN { doc = 0; size = 0; RS = ""; ORS = "\n\n" }
  { f = sprintf("%s/doc%02d.txt", dir, doc); print > f; size += length($0) + 2
    if (size >= (doc + 1) * total / n && doc < n - 1) { close(f); doc++ } }' "$FIXTURES/text/tinystories.txt"
"$EI" prepare --tokenizer "$TOKENIZER" --output "$DATA/ds.h5" --eval-set "$DATA/val_lm.eis" --doc-mode whole --val-fraction 0.25 \
  --max-tokens 16384 --seed 1234 "$DATA"/docs/doc*.txt

train_and_export "stories260K gate training (LM, 4K-token documents)" "$@"

log "evaluate on the validation documents (mean NLL of every token, whole documents)"
w=$(val_loss window)
u=$(val_loss edgeinfinite)
t=$(val_loss edgeinfinite --gates "$OUT/gates.safetensors")
{
  printf '%-36s %10s %10s\n' "mode" "val loss" "val ppl"
  for row in "window (sink 4 + window 256)|$w" "edgeinfinite, untrained gates|$u" "edgeinfinite, trained gates|$t"; do
    name=${row%%|*}; v=${row##*|}
    printf '%-36s %10.4f %10.3f\n' "$name" "$v" "$(awk -v x="$v" 'BEGIN{print exp(x)}')"
  done
} | tee "$OUT/results.txt"
awk -v w="$w" -v u="$u" -v t="$t" 'BEGIN {
  if (t < w && t < u) print "\ntrained gates beat both the window baseline and the untrained gates";
  else print "\nwarning: trained gates did not beat both baselines" }'
echo "loss curve: $OUT/loss.png"
