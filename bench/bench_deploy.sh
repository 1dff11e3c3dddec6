#!/usr/bin/env bash
# Deploy benchmark (issues 11 and 12), side by side in one run, same weights and threads: the f32 CPU
# executor (bench_runner on a .eig compiled from the model) against karpathy/llama2.c run.c built as
# its `make runomp` does (-Ofast -march=native -fopenmp), alternating REPS times; decode of the w8
# and w4g32 graphs against f32, alternating, with the memory read bandwidth that bounds them; then
# decode speed and memory of the EdgeInfinite graphs after prompts of 1K to 32K tokens (one process
# each, so the peak RSS of each length is its own). bench_runner warms up first (the same prompt and
# a few decode steps, untimed: every weight page and graph buffer touched once), as run.c leaves its
# first token out of its rate.
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
for q in w8 w4g32; do
  [ -f "$WORK/m100-$q.eig" ] || "$EI" compile --model "$MODEL" --scenario "$WORK/bench.yaml" --untrained-gates \
    --tokenizer "$TOK_MODEL" --set precision.weights=$q -o "$WORK/m100-$q.eig"
done
[ -x "$WORK/run" ] || gcc -Ofast -march=native -fopenmp "$FIX/anchors/llama2.c/run.c" -lm -o "$WORK/run"

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== decode and prefill, $THREADS threads, alternating, $REPS runs each"
ours=() theirs=() pre=()
for i in $(seq "$REPS"); do
  t=$(OMP_NUM_THREADS=$THREADS "$WORK/run" "$MODEL" -z "$TOK_BIN" -t 0 -n 256 -i "Once upon a time" 2>&1 |
      sed -n 's/.*achieved tok\/s: \([0-9.]*\).*/\1/p')  # the line follows the text without a newline
  theirs+=("$t")
  line=$("$BR" --graph "$WORK/m100.eig" --threads "$THREADS" --prompt 512 --decode 256 --reps 1)
  ours+=("$(echo "$line" | sed -n 's/.*decode 256 tokens \([0-9.]*\) tok\/s.*/\1/p')")
  pre+=("$(echo "$line" | sed -n 's/.*prefill 512 tokens \([0-9.]*\) tok\/s.*/\1/p')")
  echo "run $i: run.c $t tok/s; ours decode ${ours[-1]} tok/s, prefill ${pre[-1]} tok/s (load $(cut -d' ' -f1 /proc/loadavg))"
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mt=$(med "${theirs[@]}"); mo=$(med "${ours[@]}"); mp=$(med "${pre[@]}")
echo "median: run.c $mt tok/s (prompt processed token by token: the same rate); ours decode $mo tok/s ($(awk -v a="$mo" -v b="$mt" 'BEGIN{printf "%.2f", a/b}')x), prefill $mp tok/s ($(awk -v a="$mp" -v b="$mt" 'BEGIN{printf "%.1f", a/b}')x run.c's prompt rate)"

echo "== decode of quantised weights against f32, alternating, $REPS runs each (prompt 512, 128 tokens)"
declare -A dq
for i in $(seq "$REPS"); do
  for q in f32 w8 w4g32; do
    g=$WORK/m100.eig
    [ "$q" = f32 ] || g=$WORK/m100-$q.eig
    v=$("$BR" --graph "$g" --threads "$THREADS" --prompt 512 --decode 128 --reps 1 |
        sed -n 's/.*decode 128 tokens \([0-9.]*\) tok\/s.*/\1/p')
    dq[$q]="${dq[$q]:-} $v"
  done
  echo "run $i: f32 $(echo ${dq[f32]} | awk '{print $NF}'), w8 $(echo ${dq[w8]} | awk '{print $NF}'), w4g32 $(echo ${dq[w4g32]} | awk '{print $NF}') tok/s"
done
bwl=$("$BR" --bandwidth --threads "$THREADS")
echo "$bwl"
bw=$(echo "$bwl" | sed -n 's/.*bandwidth \([0-9.]*\) GB.*/\1/p')
mf=$(med ${dq[f32]})
for q in f32 w8 w4g32; do
  g=$WORK/m100.eig
  [ "$q" = f32 ] || g=$WORK/m100-$q.eig
  m=$(med ${dq[$q]})
  mb=$(stat -c %s "$g")
  awk -v q="$q" -v m="$m" -v f="$mf" -v b="$mb" -v bw="$bw" 'BEGIN {
    printf "%-6s decode %6.2f tok/s (%.2fx f32); file %6.1f MB; weights streamed %5.1f GB/s; bound %5.1f tok/s at %.1f GB/s\n",
           q, m, m / f, b / 1e6, m * b / 1e9, bw * 1e9 / b, bw }'
done

echo "== EdgeInfinite decode after long prompts (one process per length)"
for c in ${CONTEXTS//,/ }; do
  "$BR" --graph "$WORK/m100.eig" --threads "$THREADS" --prompt "$c" --decode 64 --reps 1 |
    sed -n "s/.*prefill $c tokens \([0-9.]*\) tok\/s, decode 64 tokens \([0-9.]*\) tok\/s.*/context $c: prefill \1 tok\/s, decode \2 tok\/s/p; s/^peak RSS/  peak RSS/p"
done
