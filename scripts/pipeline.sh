#!/usr/bin/env bash
# The whole pipeline for your own model, data and scenario: prepare -> train the gates -> export ->
# compile (full attention, window, EdgeInfinite f32 and quantised) -> ei-eval -> comparison table.
#
#   scripts/pipeline.sh --model M --config TRAIN.yaml --scenario S.yaml [options] -- [ei prepare options] INPUTS...
#
# Everything after `--` goes to `ei prepare` (inputs and their options: JSONL selectors, --template,
# --max-tokens, --task of the evaluation set, ...); the pipeline adds --tokenizer, --val-fraction and
# the output names. Example (QMSum-style JSONL, a Hugging Face Llama folder):
#
#   scripts/pipeline.sh --model models/llama-1b --config my_train.yaml --scenario configs/scenarios/summarize.yaml \
#     --out runs/mine -- --context 'meeting_transcripts[].{speaker}: {content}' \
#     --instruction 'general_query_list[].query' --answer 'general_query_list[].answer' --max-tokens 16384 data.jsonl
#
# options:
#   --model PATH        llama2.c .bin or Hugging Face folder (required)
#   --config FILE       `ei train` config (model, edgeinfinite and train sections; required). Its
#                       data.train / data.val / train.out_dir are set by the pipeline.
#   --scenario FILE     deployment scenario (configs/scenarios/*.yaml; required)
#   --tokenizer PATH    tokenizer (default: the model's own, i.e. --model)
#   --out DIR           everything goes here (default runs/pipeline): data/, train/, deploy/
#   --val-fraction F    documents held out for validation and the evaluation set (default 0.2)
#   --steps N           training steps (default: the config's)
#   --train-set K=V     extra `ei train --set` (repeatable)
#   --nnapi-lib LIB     also run the EdgeInfinite graph on NNAPI with this library
#   --threads, --full-context, --quant, --budget-mb, --prompt-tokens, --decode, --max-tasks,
#   --calib-samples, --calib-tokens: passed to scripts/deploy_eval.sh (see its --help)
#
# Environment: EI (default build/ei; built when missing).
set -euo pipefail
usage() { sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; }
die() { echo "pipeline.sh: error: $*" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)

model= config= scenario= tokenizer= out=runs/pipeline valf=0.2 steps=
train_sets=() deploy_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --model) model=${2:?}; shift 2 ;;
    --config) config=${2:?}; shift 2 ;;
    --scenario) scenario=${2:?}; shift 2 ;;
    --tokenizer) tokenizer=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --val-fraction) valf=${2:?}; shift 2 ;;
    --steps) steps=${2:?}; shift 2 ;;
    --train-set) train_sets+=(--set "${2:?}"); shift 2 ;;
    --nnapi-lib|--threads|--full-context|--quant|--budget-mb|--prompt-tokens|--decode|--max-tasks|--calib-samples|--calib-tokens)
      deploy_args+=("$1" "${2:?}"); shift 2 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (ei prepare options go after --; see --help)" ;;
  esac
done
[ -n "$model" ] && [ -n "$config" ] && [ -n "$scenario" ] || die "--model, --config and --scenario are required (see --help)"
[ $# -gt 0 ] || die "no inputs: give ei prepare's inputs after -- (see --help)"
[ -e "$model" ] || die "$model: no such file or folder"
[ -f "$config" ] || die "$config: no such file"
[ -f "$scenario" ] || die "$scenario: no such file"
tokenizer=${tokenizer:-$model}
EI=${EI:-$root/build/ei}
if [ ! -x "$EI" ]; then echo "== building ($EI not found)"; "$root/scripts/build.sh" release; fi
export EI
log() { printf '\n== %s\n' "$*"; }

data=$out/data train=$out/train
mkdir -p "$data"
log "prepare: dataset (train / validation split) and the validation evaluation set"
"$EI" prepare --tokenizer "$tokenizer" --val-fraction "$valf" -o "$data/ds.h5" --eval-set "$data/val.eis" "$@"

log "train the memory gates ($config)"
extra=()
[ -n "$steps" ] && extra+=(--set "train.steps=$steps")
[ "$tokenizer" != "$model" ] && extra+=(--set "model.tokenizer=$tokenizer")
rm -rf "$train"
"$EI" train --config "$config" --set "model.path=$model" --set "data.train=$data/ds.train.h5" \
  --set "data.val=$data/ds.val.h5" --set "train.out_dir=$train" "${extra[@]}" "${train_sets[@]}"
log "export"
"$EI" export "$train" -o "$train/gates.safetensors"
"$EI" plot "$train/metrics.jsonl" -o "$train/loss.png" --title "gate training ($(basename "$config"))" || true

"$root/scripts/deploy_eval.sh" --model "$model" --gates "$train/gates.safetensors" --scenario "$scenario" \
  --eval-set "$data/val.eis" --calib "$data/ds.train.h5" --out "$out/deploy" "${deploy_args[@]}"
