#!/usr/bin/env bash
# Passkey S-SFT of the EdgeInfinite memory gates with stories260K, end to end: generate passkey
# samples (TinyStories filler, a 5-digit key at depths 0..1 of 1K and 2K-token prompts, loss on the
# answer only) -> train -> export -> evaluate window vs edgeinfinite on held-out samples (answer loss
# and greedy exact match).
#
#   scripts/train_stories_passkey.sh [--set key=value ...]   (extra options go to `ei train`)
#   STEPS=40 scripts/train_stories_passkey.sh
#
# With a 4-token sink and a 256-token window, a key deeper than ~390 tokens from the end of the prompt
# has left the caches: only the compressive memory can carry it to the question.
# Output (RUNS=runs by default): $RUNS/stories_passkey/{metrics.jsonl, ckpt-*.h5, gates.safetensors, loss.png, results.txt}
set -euo pipefail
source "$(dirname "$0")/common.sh"
DATA=$RUNS/data/stories_passkey
OUT=$RUNS/stories_passkey
CONFIG=configs/train/stories_passkey.yaml
VAL=$DATA/ds.val.h5
EVAL_SAMPLES=${EVAL_SAMPLES:-16}

log "prepare: passkey samples, lengths 1024 and 2048 tokens, 5 depths, 8 keys each"
rm -rf "$DATA" && mkdir -p "$DATA"
"$EI" prepare --passkey --tokenizer "$TOKENIZER" --filler "$FIXTURES/text/tinystories.txt" \
  --lengths 1024,2048 --depths 0,0.25,0.5,0.75,1 --per-cell 8 --val-fraction 0.2 --seed 1234 \
  --output "$DATA/ds.h5" --eval-set "$DATA/val.eis"

train_and_export "stories260K gate training (passkey)" "$@"

log "evaluate on the held-out passkey samples (answer tokens only)"
row() { # name, extra eval options
  local name=$1; shift
  "$EI" eval --data "$VAL" --model "$MODEL" --exact --max-samples "$EVAL_SAMPLES" "$@" 2>/dev/null |
    awk -v name="$name" '$1 == "loss" {l = $2} $1 == "exact" {e = $2} END {printf "%-36s %10.4f %10.3f\n", name, l, e}'
}
{
  printf '%-36s %10s %10s\n' "mode" "ans. loss" "exact"
  row "window (sink 4 + window 256)" --mode window
  row "edgeinfinite, untrained gates" --mode edgeinfinite
  row "edgeinfinite, trained gates" --mode edgeinfinite --gates "$OUT/gates.safetensors"
} | tee "$OUT/results.txt"
echo "loss curve: $OUT/loss.png"
