#!/usr/bin/env bash
# Quality against size of the quantisation schemes and plans (docs/quantisation.md, "Results"):
# one scenario compiled with every weight scheme (each with the MSE-searched and with max-abs
# scales), activation and KV-cache type and two size budgets, each evaluated with
# `ei eval --graph --ppl` on the same text, against the eager float model with the same gates.
# Prints a markdown table (and writes it to WORK/quant.md).
#
#   bench/bench_quant.sh --gates G.safetensors --calib D.h5 [options]
#
# options:
#   --model M          base model (default: the stories260K fixture)
#   --scenario S.yaml  (default configs/scenarios/stories_lm.yaml: the options the gates of
#                      scripts/train_stories_lm.sh were trained with)
#   --text FILE        evaluation text (default: the fixtures' sherlock_holmes.txt)
#   --tokens N         tokens of it (default 65536)
#   --budgets A,B      size budgets as fractions of the f32 weight bytes (default 0.35,0.22)
#   --work DIR         where the .eig files go (default /tmp/ei-bench-quant)
#   --threads N        (default 2)
# Environment: EI (default build/ei), EI_FIXTURES (default ../shared/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; }
die() { echo "bench_quant.sh: error: $*" >&2; exit 2; }
FIX=${EI_FIXTURES:-../shared/fixtures}
EI=${EI:-build/ei}
model=$FIX/models/stories260K/stories260K.bin scenario=configs/scenarios/stories_lm.yaml
text=$FIX/text/sherlock_holmes.txt tokens=65536 budgets=0.35,0.22 work=/tmp/ei-bench-quant threads=2
gates= calib=
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --gates) gates=${2:?}; shift 2 ;;
    --calib) calib=${2:?}; shift 2 ;;
    --model) model=${2:?}; shift 2 ;;
    --scenario) scenario=${2:?}; shift 2 ;;
    --text) text=${2:?}; shift 2 ;;
    --tokens) tokens=${2:?}; shift 2 ;;
    --budgets) budgets=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --threads) threads=${2:?}; shift 2 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ -n "$gates" ] && [ -n "$calib" ] || die "--gates and --calib are required (see --help)"
for f in "$gates" "$calib" "$scenario" "$text"; do [ -e "$f" ] || die "$f: no such file"; done
[ -x "$EI" ] || die "$EI: not built (scripts/build.sh release)"
mkdir -p "$work"
export OMP_NUM_THREADS=$threads
loss() { awk '$1 == "loss" { print $2 }'; }
yaml() { awk -v k="$1" '$1 == k ":" { print $2 }' "$scenario"; }

eager=$("$EI" eval --model "$model" --mode edgeinfinite --gates "$gates" --segment "$(yaml segment)" \
  --sink "$(yaml sink)" --window "$(yaml window)" --ppl "$text" --max-tokens "$tokens" --threads "$threads" 2>/dev/null | loss)
[ -n "$eager" ] || die "the eager evaluation failed"
out=$work/quant.md
{
  echo "| graph | scheme | loss, MSE scales | vs f32 | loss, max-abs scales | vs f32 | file |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  printf '| eager (float) | | %.4f | | | | |\n' "$eager"
} > "$out"
f32=
evalg() { # GRAPH: loss of the graph on the text
  "$EI" eval --graph "$1" --ppl "$text" --max-tokens "$tokens" --threads "$threads" 2>/dev/null | loss
}
compile() { # NAME [ei compile options]
  local name=$1; shift
  "$EI" compile --model "$model" --gates "$gates" --scenario "$scenario" "$@" -o "$work/$name.eig" > "$work/$name.log" 2>&1 ||
    { cat "$work/$name.log" >&2; die "compile $name"; }
}
row() { # NAME DESCRIPTION MAXABS(0/1) [ei compile options]: one row, both scale rules when MAXABS
  local name=$1 desc=$2 both=$3; shift 3
  compile "$name" "$@"
  local l m=
  l=$(evalg "$work/$name.eig")
  [ -n "$l" ] || die "eval $name"
  [ -n "$f32" ] || f32=$l
  if [ "$both" = 1 ]; then
    compile "$name-maxabs" "$@" --max-abs
    m=$(evalg "$work/$name-maxabs.eig")
    [ -n "$m" ] || die "eval $name (max-abs)"
  fi
  local mb
  mb=$(stat -c %s "$work/$name.eig" | awk '{ printf "%.2f", $1 / 1048576 }')
  awk -v n="$name" -v d="$desc" -v l="$l" -v m="$m" -v f="$f32" -v mb="$mb" 'BEGIN {
    ma = m == "" ? "" : sprintf("%.4f", m); mv = m == "" ? "" : sprintf("%+.2f%%", 100 * (m - f) / f)
    printf "| %s | %s | %.4f | %+.2f%% | %s | %s | %s MB |\n", n, d, l, 100 * (l - f) / f, ma, mv, mb }' | tee -a "$out"
}
cal=(--calib "$calib" --calib-samples 2 --calib-tokens 2048)
row f32 "f32" 0
row f16 "f16" 0 --set precision.weights=f16
row w8 "int8 per output channel" 1 --set precision.weights=w8
for g in 32 64 128; do
  row "w4g$g" "int4, groups of $g" 1 --set precision.weights=w4g$g
done
row w8a16 "int8, int16 activations" 1 --set precision.weights=w8 --set precision.activations=a16 "${cal[@]}"
row w8a8 "int8, int8 activations (zero point)" 1 --set precision.weights=w8 --set precision.activations=a8 "${cal[@]}"
row w8a8s "int8, int8 activations (symmetric)" 1 --set precision.weights=w8 --set precision.activations=a8s "${cal[@]}"
row w4g32a16 "int4 g32, int16 activations" 1 --set precision.weights=w4g32 --set precision.activations=a16 "${cal[@]}"
row kv-f16 "f32 weights, f16 KV cache" 0 --set precision.kv_cache=f16
row kv-i8 "f32 weights, int8 KV cache" 0 --set precision.kv_cache=i8 "${cal[@]}"
# budgets: a fraction of the f32 weights; the plan picks a scheme per tensor (ei compile --budget-mb)
wbytes=$(stat -c %s "$work/f32.eig")
for b in ${budgets//,/ }; do
  mb=$(awk -v w="$wbytes" -v b="$b" 'BEGIN { printf "%.3f", w * b / 1048576 }')
  row "plan-$b" "per-tensor plan within $mb MB ($b of the f32 file)" 1 --calib "$calib" --calib-samples 2 \
    --calib-tokens 1024 --candidates f16,w8,w4g32,w4g128 --budget-mb "$mb"
done
echo
echo "eager float loss $eager; table in $out"
