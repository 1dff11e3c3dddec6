# Shared by the launch scripts: repository root, the ei binary (built if missing), fixtures.
# Source it; it changes into the repository root so the configs' relative paths resolve.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
FIXTURES=${EI_FIXTURES:-../shared/fixtures}
if [ ! -d "$FIXTURES/models/stories260K" ]; then
  echo "fixtures not found at $FIXTURES (set EI_FIXTURES)" >&2
  exit 1
fi
EI=${EI:-build/ei}
if [ ! -x "$EI" ]; then
  echo "== building ($EI not found)"
  scripts/build.sh release
fi
MODEL=$FIXTURES/models/stories260K/stories260K.bin
TOKENIZER=$FIXTURES/models/stories260K/tok512.bin
# Where datasets and runs go (relative to the repository root unless absolute).
RUNS=${RUNS:-runs}
log() { printf '\n== %s\n' "$*"; }
# val_loss MODE [extra ei eval options]: mean loss on the validation set (stdout: the number)
val_loss() {
  local mode=$1; shift
  "$EI" eval --data "$VAL" --model "$MODEL" --mode "$mode" --max-samples "$EVAL_SAMPLES" \
    --max-tokens "$EVAL_TOKENS" "$@" 2>/dev/null | awk '$1 == "loss" {print $2}'
}
# STEPS=N in the environment shortens a run (warmup scaled along); expands to `ei train` options.
steps_args=()
if [ -n "${STEPS:-}" ]; then
  steps_args=(--set "train.steps=$STEPS" --set "train.warmup_steps=$(( STEPS / 10 ))")
fi
# train_and_export TITLE [ei train options]: trains CONFIG on $DATA/ds.{train,val}.h5 into $OUT, then
# exports the merged model to $OUT/export and draws $OUT/loss.png.
train_and_export() {
  local title=$1; shift
  log "train (gates only; progress below, one JSON line per step in $OUT/metrics.jsonl)"
  rm -rf "$OUT"
  "$EI" train --config "$CONFIG" --set "data.train=$DATA/ds.train.h5" --set "data.val=$DATA/ds.val.h5" \
    --set "train.out_dir=$OUT" "${steps_args[@]}" "$@"
  log "export"
  "$EI" export "$OUT" --merged "$OUT/export"
  "$EI" plot "$OUT/metrics.jsonl" -o "$OUT/loss.png" --title "$title"
}
