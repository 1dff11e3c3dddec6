#!/usr/bin/env bash
# Time to first token and peak memory against prompt length (issue 14): the `summarize` scenario
# (N = L = 128, sink 4, window 1024) on the 100M-parameter random Llama (dim 768, 12 layers, 12
# heads, 4 KV heads, hidden 2048, vocab 32000), compiled as the EdgeInfinite graph (untrained gates:
# the cost does not depend on their values) and as full attention with a cache of the prompt + 256 slots.
# Each (graph, length) runs in its own ei-eval process (a passkey prompt of exactly that many
# tokens, one token generated), so each peak RSS is its own. Writes a table and a PNG plot.
#
#   bench/bench_ttft.sh [WORK_DIR]    (default /tmp/ei-bench; LENGTHS=1k,2k,... THREADS=2 REPS=1
#                                     SUMMARY_ONLY=1 knobs)
# Needs build/ei and build/ei-eval (scripts/build.sh release), gnuplot and the fixtures.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
FIX=${EI_FIXTURES:-../shared/fixtures}
WORK=${1:-/tmp/ei-bench}
THREADS=${THREADS:-2}
REPS=${REPS:-1}
LENGTHS=${LENGTHS:-1k,2k,4k,8k,16k,32k}
EI=${EI:-build/ei}
EVAL=${EI_EVAL:-$(dirname "$EI")/ei-eval}
PNG=${PNG:-docs/img/ttft.png}
mkdir -p "$WORK"
MODEL=$WORK/m100.bin
[ -f "$MODEL" ] || "$EI" make-model -o "$MODEL" --seq-len 2048
TOK=$FIX/tokenizers/llama2/tokenizer.model
S=configs/scenarios/summarize.yaml
[ -f "$WORK/ttft-ei.eig" ] || "$EI" compile --model "$MODEL" --scenario "$S" --untrained-gates --tokenizer "$TOK" \
  -o "$WORK/ttft-ei.eig"
# Full attention gets a cache sized for each prompt (its length + 256 slots), as a user would
# compile it: a fixed 32K cache would make short prompts pay for 32K slots.
tokens_of() { local L=$1 n=${1%k}; [ "$L" != "$n" ] && n=$((n * 1024)); echo "$n"; }
for L in ${LENGTHS//,/ }; do
  n=$(tokens_of "$L")
  [ -f "$WORK/ttft-full-$L.eig" ] || "$EI" compile --model "$MODEL" --scenario "$S" --set scenario.mode=full \
    --set "scenario.context=$((n + 256))" --tokenizer "$TOK" -o "$WORK/ttft-full-$L.eig"
done
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $THREADS threads"
tsv=$WORK/ttft.tsv
# SUMMARY_ONLY=1: no runs, only the table and the plot of an earlier run's $WORK/ttft.tsv (e.g. one
# stopped before its last, longest full-attention run).
[ -n "${SUMMARY_ONLY:-}" ] || rm -f "$tsv"
[ -n "${SUMMARY_ONLY:-}" ] || for L in ${LENGTHS//,/ }; do
  for g in ei full; do
    for r in $(seq "$REPS"); do
      gf=$WORK/ttft-ei.eig
      [ "$g" = full ] && gf=$WORK/ttft-full-$L.eig
      "$EVAL" --graph "$gf" --passkey --lengths "$L" --depths 50 --max-new 1 --threads "$THREADS" \
        --quiet --tsv "$tsv" --label "$g $L" > /dev/null
      tail -1 "$tsv" | awk -F'\t' -v g="$g" -v L="$L" '{printf "%-5s %5s: TTFT %10.1f ms, prefill %8.1f tok/s, peak RSS %8.1f MB\n", g, L, $7, $9, $11}'
    done
  done
done

# medians per (graph, length): label "g L" -> lengths in tokens
awk -F'\t' 'NR > 1 { split($1, a, " "); L = a[2]; n = L + 0; if (L ~ /k$/) n *= 1024
    key = a[1] " " n; v[key] = v[key] " " $7; rss[key] = $11; lens[n] = 1 }
  END { for (n in lens) print n }' "$tsv" | sort -n > "$WORK/ttft.lengths"
med() { tr ' ' '\n' | { grep . || true; } | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
{
  printf '%s\t%s\t%s\t%s\t%s\n' tokens ei_ttft_ms full_ttft_ms ei_rss_mb full_rss_mb
  while read -r n; do
    row=$n
    for g in ei full; do
      row="$row	$(awk -F'\t' -v g="$g" -v n="$n" 'NR > 1 { split($1, a, " "); L = a[2]; m = L + 0; if (L ~ /k$/) m *= 1024
        if (a[1] == g && m == n) printf " %s", $7 }' "$tsv" | med)"
    done
    for g in ei full; do
      row="$row	$(awk -F'\t' -v g="$g" -v n="$n" 'NR > 1 { split($1, a, " "); L = a[2]; m = L + 0; if (L ~ /k$/) m *= 1024
        if (a[1] == g && m == n) r = $11 } END { print r }' "$tsv")"
    done
    echo "$row"
  done < "$WORK/ttft.lengths"
} > "$WORK/ttft.dat"
echo
echo "| prompt tokens | EdgeInfinite TTFT | full attention TTFT | full / EdgeInfinite | EdgeInfinite peak RSS | full peak RSS |"
echo "|---:|---:|---:|---:|---:|---:|"
awk -F'\t' 'NR > 1 { if ($3 + 0 > 0) printf "| %d | %.2f s | %.2f s | %.1fx | %.0f MB | %.0f MB |\n", $1, $2 / 1e3, $3 / 1e3, $3 / $2, $4, $5
                     else printf "| %d | %.2f s | not run | | %.0f MB | |\n", $1, $2 / 1e3, $4 }' "$WORK/ttft.dat"

if command -v gnuplot > /dev/null; then
  mkdir -p "$(dirname "$PNG")"
  gnuplot <<GP
set terminal pngcairo size 1000,420 font ",10" noenhanced
set output "$PNG"
set multiplot layout 1,2 title "summarize scenario, 100M random Llama, $THREADS threads (bench/bench_ttft.sh)"
set key top left
set grid
set xlabel "prompt tokens"
set ylabel "time to first token (s)"
plot "$WORK/ttft.dat" using 1:(\$2/1000) skip 1 with linespoints title "EdgeInfinite", \
     "$WORK/ttft.dat" using 1:(\$3 > 0 ? \$3/1000 : 1/0) skip 1 with linespoints title "full attention"
set ylabel "peak RSS (MB)"
plot "$WORK/ttft.dat" using 1:4 skip 1 with linespoints title "EdgeInfinite", \
     "$WORK/ttft.dat" using 1:(\$5 > 0 ? \$5 : 1/0) skip 1 with linespoints title "full attention"
unset multiplot
GP
  echo "plot: $PNG"
fi
