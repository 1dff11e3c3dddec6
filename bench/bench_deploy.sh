#!/usr/bin/env bash
# Deploy benchmark (issue 11), side by side in one run, same weights and threads: the f32 CPU
# executor (bench_runner on a .eig compiled from the model) against karpathy/llama2.c run.c built as
# its `make runomp` does (-Ofast -march=native -fopenmp), alternating REPS times; then decode speed
# and memory of the EdgeInfinite graphs after prompts of 1K to 32K tokens (one process each, so
# the peak RSS of each length is its own).
#
#   bench/bench_deploy.sh [WORK_DIR]      (default /tmp/ei-bench; REPS=5 THREADS=2 CONTEXTS=... knobs)
# Needs build/ei and build/bench_runner (scripts/build.sh release) and the fixtures.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
FIX=${EI_FIXTURES:-../shared/fixtures}
WORK=${1:-/tmp/ei-bench}
REPS=${REPS:-5}
THREADS=${THREADS:-2}
CONTEXTS=${CONTEXTS:-1024,4096,16384,32768}
EI=${EI:-build/ei}
BR=${BR:-build/bench_runner}
TOK_BIN=$FIX/tokenizers/llama2/tokenizer.bin
TOK_MODEL=$FIX/tokenizers/llama2/tokenizer.model
mkdir -p "$WORK"
MODEL=$WORK/m100.bin
[ -f "$MODEL" ] || "$EI" make-model -o "$MODEL" --seq-len 2048
cat > "$WORK/bench.yaml" <<YAML
scenario:
  name: bench
  mode: edgeinfinite
  tokens_per_call: 128
  max_new_tokens: 256
edgeinfinite:
  segment: 128
  sink: 4
  window: 256
YAML
[ -f "$WORK/m100.eig" ] || "$EI" compile --model "$MODEL" --scenario "$WORK/bench.yaml" --untrained-gates \
  --tokenizer "$TOK_MODEL" -o "$WORK/m100.eig"
[ -x "$WORK/run" ] || gcc -Ofast -march=native -fopenmp "$FIX/anchors/llama2.c/run.c" -lm -o "$WORK/run"

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== decode and prefill, $THREADS threads, alternating, $REPS runs each"
ours=() theirs=() pre=()
for i in $(seq "$REPS"); do
  t=$(OMP_NUM_THREADS=$THREADS "$WORK/run" "$MODEL" -z "$TOK_BIN" -t 0 -n 256 -i "Once upon a time" 2>&1 |
      awk '/achieved tok\/s/ {print $3}')
  theirs+=("$t")
  line=$("$BR" --graph "$WORK/m100.eig" --threads "$THREADS" --prompt 512 --decode 256 --reps 1)
  ours+=("$(echo "$line" | sed -n 's/.*decode 256 tokens \([0-9.]*\) tok\/s.*/\1/p')")
  pre+=("$(echo "$line" | sed -n 's/.*prefill 512 tokens \([0-9.]*\) tok\/s.*/\1/p')")
  echo "run $i: run.c $t tok/s; ours decode ${ours[-1]} tok/s, prefill ${pre[-1]} tok/s (load $(cut -d' ' -f1 /proc/loadavg))"
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mt=$(med "${theirs[@]}"); mo=$(med "${ours[@]}"); mp=$(med "${pre[@]}")
echo "median: run.c $mt tok/s (prompt processed token by token: the same rate); ours decode $mo tok/s ($(awk -v a="$mo" -v b="$mt" 'BEGIN{printf "%.2f", a/b}')x), prefill $mp tok/s ($(awk -v a="$mp" -v b="$mt" 'BEGIN{printf "%.1f", a/b}')x run.c's prompt rate)"

echo "== EdgeInfinite decode after long prompts (one process per length)"
for c in ${CONTEXTS//,/ }; do
  "$BR" --graph "$WORK/m100.eig" --threads "$THREADS" --prompt "$c" --decode 64 --reps 1 |
    sed -n "s/.*prefill $c tokens \([0-9.]*\) tok\/s, decode 64 tokens \([0-9.]*\) tok\/s.*/context $c: prefill \1 tok\/s, decode \2 tok\/s/p; s/^peak RSS/  peak RSS/p"
done
