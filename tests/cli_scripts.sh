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

# the deploy half of the main job on those gates (scripts/deploy_eval.sh, small): every graph
# compiles, every row of the comparison table has numbers, nnapi on the conformance library agrees
EI_EVAL=${EI_EVAL_BIN:-$(dirname "$EI_BIN")/ei-eval}
export EI_EVAL
NN=$(dirname "$EI_BIN")/tests/nnapi/libei_fake_nnapi_fl7.so
nn_args=()
[ -f "$NN" ] && nn_args=(--nnapi-lib "$NN")
log=$tmp/deploy.log
D=$tmp/data/stories_lm
# one 500-token document, so that the full-attention graph of 640 slots holds it
"$EI_BIN" prepare --tokenizer "$EI_FIXTURES/models/stories260K/tok512.bin" --eval-set "$tmp/small.eis" --task lm \
  --max-tokens 500 --lm-overflow cut --quiet "$D/docs/doc00.txt" > /dev/null 2>&1 || fail "prepare the small eval set"
(cd "$EI_SOURCE_DIR" && scripts/deploy_eval.sh --model "$EI_FIXTURES/models/stories260K/stories260K.bin" \
  --gates "$tmp/stories_lm/gates.safetensors" --scenario configs/scenarios/stories_lm.yaml --eval-set "$tmp/small.eis" \
  --calib "$D/ds.train.h5" --calib-samples 1 --calib-tokens 256 --max-tasks 1 --prompt-tokens 600 --decode 8 \
  --full-context 640 --threads 1 --out "$tmp/deploy" "${nn_args[@]}") > "$log" 2>&1 ||
  { cat "$log"; fail "deploy_eval.sh"; }
sum=$tmp/deploy/summary.txt
[ "$(wc -l < "$sum")" = 6 ] || { cat "$log"; fail "deploy summary has $(wc -l < "$sum") lines, expected header + 5 rows"; }
for g in full window edgeinfinite edgeinfinite-w8 edgeinfinite-plan; do
  awk -v g="$g" '$1 == g { ok = $3 ~ /^[0-9.]+$/ && $4 ~ /^[0-9.]+$/ && $7 ~ /^[0-9.]+$/ } END { exit !ok }' "$sum" ||
    fail "deploy summary row $g: $(grep "^$g " "$sum")"
  [ -s "$tmp/deploy/$g.eig" ] || fail "$g.eig missing"
done
[ -s "$tmp/deploy/plan.yaml" ] || fail "the budget plan was not written"
# the quantised files are smaller than the f32 one
fs() { stat -c %s "$tmp/deploy/$1.eig"; }
[ "$(fs edgeinfinite-w8)" -lt "$(fs edgeinfinite)" ] || fail "w8 file not smaller than f32"
if [ ${#nn_args[@]} -gt 0 ]; then grep -q "nnapi and cpu agree" "$log" || { cat "$log"; fail "nnapi check"; }; fi

# the same pipeline for "your own model": the Hugging Face layout of the fixture, text input. The
# binaries it runs are the ones above; the sanitizer build leaves this part (shell only) to the
# release build, where it takes a tenth of the time.
if [ "${EI_SANITIZE:-0}" = 1 ]; then
  echo "skip pipeline.sh in the sanitizer build (run by the release build)"
else
log=$tmp/pipeline.log
head -c 120000 "$EI_FIXTURES/text/tinystories.txt" > "$tmp/own.txt"
(cd "$EI_SOURCE_DIR" && scripts/pipeline.sh --model "$EI_FIXTURES/models/stories260K-hf" \
  --config configs/train/stories_lm.yaml --scenario configs/scenarios/stories_lm.yaml --out "$tmp/own" --steps 2 \
  --train-set train.eval_samples=1 --train-set train.warmup_steps=0 --max-tasks 1 --prompt-tokens 600 --decode 8 \
  --full-context 640 --calib-samples 1 --calib-tokens 256 --threads 1 \
  -- --doc-mode paragraphs --max-tokens 2048 --piece-docs --min-tokens 64 "$tmp/own.txt") > "$log" 2>&1 ||
  { cat "$log"; fail "pipeline.sh"; }
[ -s "$tmp/own/train/gates.safetensors" ] && [ -s "$tmp/own/deploy/summary.txt" ] || { cat "$log"; fail "pipeline outputs"; }
[ "$(wc -l < "$tmp/own/deploy/summary.txt")" = 6 ] || { cat "$log"; fail "pipeline summary"; }
fi

log=$tmp/pk.log
(cd "$EI_SOURCE_DIR" && scripts/train_stories_passkey.sh --set train.eval_samples=1 --quiet) > "$log" 2>&1 ||
  { cat "$log"; fail "train_stories_passkey.sh"; }
check_run stories_passkey
echo "ok: both launch scripts and the deploy script ran end to end"
