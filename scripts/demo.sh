#!/usr/bin/env bash
# The main job, end to end on the shipped fixtures (../shared/fixtures):
#   build -> autograd self-check -> base model check (stories260K story, perplexity) ->
#   EdgeInfinite gate training on long TinyStories documents (scripts/train_stories_lm.sh:
#   prepare, train, export, evaluate window vs edgeinfinite).
# Options are passed to `ei train` (e.g. --set train.steps=50). Takes about 10 minutes on 2 cores.
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
scripts/train_stories_lm.sh "$@"
