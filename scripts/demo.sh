#!/usr/bin/env bash
# The main job, end to end on the shipped fixtures (../shared/fixtures):
#   build -> autograd self-check -> base model check (stories260K story, perplexity) ->
#   train: EdgeInfinite gate training on long TinyStories documents (scripts/train_stories_lm.sh:
#          prepare, train, export, evaluate window vs edgeinfinite) ->
#   deploy: compile the stories_lm scenario as full-attention, window and EdgeInfinite graphs (f32,
#          w8 and a per-tensor plan under a size budget), run them with ei-eval on the held-out
#          documents (cpu; nnapi against the conformance library) and print the comparison table
#          (scripts/deploy_eval.sh).
# Options are passed to `ei train` (e.g. --set train.steps=50). Takes about 8 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== build"
scripts/build.sh release
EI=build/ei
export EI
echo; echo "== ei selfcheck (autograd gradients vs finite differences, float64)"
"$EI" selfcheck
FIX=${EI_FIXTURES:-../shared/fixtures}
echo; echo "== base model: greedy story from stories260K (first 64 tokens)"
"$EI" generate --model "$FIX/models/stories260K/stories260K.bin" --temperature 0 --max-tokens 64
echo; echo "== base model: perplexity of tinystories.txt, one BOS-prefixed document per paragraph"
"$EI" eval --ppl "$FIX/text/tinystories.txt" --model "$FIX/models/stories260K/stories260K.bin" --paragraphs
RUNS=${RUNS:-runs}
export RUNS
scripts/train_stories_lm.sh "$@"

DATA=$RUNS/data/stories_lm
echo; echo "== deploy: graphs, ei-eval on the held-out documents, comparison table"
scripts/deploy_eval.sh --model "$FIX/models/stories260K/stories260K.bin" --gates "$RUNS/stories_lm/gates.safetensors" \
  --scenario configs/scenarios/stories_lm.yaml --eval-set "$DATA/val_lm.eis" --calib "$DATA/ds.train.h5" \
  --calib-samples 1 --max-tasks 3 --nnapi-lib build/tests/nnapi/libei_fake_nnapi_fl7.so --out "$RUNS/deploy"
