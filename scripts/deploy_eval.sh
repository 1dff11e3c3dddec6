#!/usr/bin/env bash
# The deploy half of the pipeline for any model: compile one scenario as full-attention, window and
# EdgeInfinite graphs (f32, and EdgeInfinite with quantised weights), run each with ei-eval on an
# evaluation set (and a passkey prompt for time to first token and decode speed), and print one table
# comparing quality, latency, memory and file size.
#
#   scripts/deploy_eval.sh --model M --gates G.safetensors --scenario S.yaml --eval-set E.eis [options]
#
# options:
#   --out DIR            where the .eig files and results go (default runs/deploy)
#   --calib D.h5         calibration / validation data (ei prepare): adds a graph with the per-tensor
#                        plan that fits --budget-mb (ei compile --budget-mb)
#   --budget-mb X        weight budget of that plan (default: 40% of the f32 graph file)
#   --calib-samples N, --calib-tokens N   how much of --calib the sensitivity runs use (2, 1024)
#   --quant SCHEME       weights of the uniformly quantised graph (default w8; none: leave it out)
#   --full-context N     KV-cache capacity of the full-attention graph (default 4608 tokens)
#   --prompt-tokens N    length of the timing prompt (default 4096) and --decode N tokens after it (128)
#   --nnapi-lib LIB      also run the EdgeInfinite f32 graph on --backend nnapi with this library
#                        (on Linux: a conformance library, a correctness check, not NPU speed)
#   --threads N          ei-eval threads (default 2)
#   --max-tasks N        first N items of the evaluation set (default all)
#   --set KEY=VALUE      scenario override for every graph (repeatable)
#
# Environment: EI (the ei binary, default build/ei), EI_EVAL (default: ei-eval beside $EI).
set -euo pipefail
usage() { sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; }
die() { echo "deploy_eval.sh: error: $*" >&2; exit 2; }

model= gates= scenario= evalset= out=runs/deploy calib= budget= quant=w8 full_ctx=4608
ptok=4096 ndec=128 nnapi_lib= threads=2 max_tasks=0 calib_samples=2 calib_tokens=1024
sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --model) model=${2:?}; shift 2 ;;
    --gates) gates=${2:?}; shift 2 ;;
    --scenario) scenario=${2:?}; shift 2 ;;
    --eval-set) evalset=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --calib) calib=${2:?}; shift 2 ;;
    --budget-mb) budget=${2:?}; shift 2 ;;
    --calib-samples) calib_samples=${2:?}; shift 2 ;;
    --calib-tokens) calib_tokens=${2:?}; shift 2 ;;
    --quant) quant=${2:?}; shift 2 ;;
    --full-context) full_ctx=${2:?}; shift 2 ;;
    --prompt-tokens) ptok=${2:?}; shift 2 ;;
    --decode) ndec=${2:?}; shift 2 ;;
    --nnapi-lib) nnapi_lib=${2:?}; shift 2 ;;
    --threads) threads=${2:?}; shift 2 ;;
    --max-tasks) max_tasks=${2:?}; shift 2 ;;
    --set) sets+=(--set "${2:?}"); shift 2 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ -n "$model" ] && [ -n "$gates" ] && [ -n "$scenario" ] && [ -n "$evalset" ] ||
  die "--model, --gates, --scenario and --eval-set are required (see --help)"
for f in "$gates" "$scenario" "$evalset" ${calib:+"$calib"} ${nnapi_lib:+"$nnapi_lib"}; do
  [ -e "$f" ] || die "$f: no such file"
done
[ -e "$model" ] || die "$model: no such file or folder"
EI=${EI:-build/ei}
EI_EVAL=${EI_EVAL:-$(dirname "$EI")/ei-eval}
[ -x "$EI" ] || die "$EI: not built (scripts/build.sh)"
[ -x "$EI_EVAL" ] || die "$EI_EVAL: not built (scripts/build.sh)"

mkdir -p "$out"
tsv=$out/results.tsv
rm -f "$tsv"
log() { printf '\n== %s\n' "$*"; }
compile() { # NAME [ei compile options]
  local name=$1; shift
  log "ei compile: $name"
  "$EI" compile --model "$model" --scenario "$scenario" "${sets[@]}" "$@" -o "$out/$name.eig"
}
evaluate() { # NAME GRAPH [ei-eval options]
  local name=$1 graph=$2; shift 2
  log "ei-eval: $name"
  # The evaluation set gives quality; one passkey prompt of ptok tokens, decoded ndec tokens past its
  # answer line, gives time to first token and decode speed on a long prompt.
  "$EI_EVAL" --graph "$graph" --eval-set "$evalset" --max-tasks "$max_tasks" --passkey --lengths "$ptok" \
    --depths 50 --full-answers --max-new "$ndec" --threads "$threads" --quiet --json "$out/$name.json" \
    --tsv "$tsv" --label "$name" "$@"
}

compile full --set scenario.mode=full --set "scenario.context=$full_ctx"
compile window --set scenario.mode=window
compile edgeinfinite --gates "$gates"
[ "$quant" = none ] || compile "edgeinfinite-$quant" --gates "$gates" --set "precision.weights=$quant"
if [ -n "$calib" ]; then
  if [ -z "$budget" ]; then # 40% of the f32 weights: between w8 (25%) and f16 (50%), so the plan mixes
    budget=$(awk -v b="$(stat -c %s "$out/edgeinfinite.eig")" 'BEGIN { printf "%.3f", 0.4 * b / 1048576 }')
  fi
  # sensitivity: one float run per tensor and candidate scheme, on a short validation slice
  compile "edgeinfinite-plan" --gates "$gates" --calib "$calib" --calib-samples "$calib_samples" \
    --calib-tokens "$calib_tokens" --candidates f16,w8,w4g32 --budget-mb "$budget" --plan-out "$out/plan.yaml"
fi

for g in full window edgeinfinite ${quant:+$( [ "$quant" = none ] || echo "edgeinfinite-$quant")} \
         ${calib:+edgeinfinite-plan}; do
  evaluate "$g" "$out/$g.eig"
done
log "summary ($out/results.tsv; per-item details in $out/*.json)"
awk -F'\t' -v ptok="$ptok" '
  NR == 1 { next }
  { key = $1; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    if ($2 == "passkey") { ttft[key] = $7; dec[key] = $10; pre[key] = $9 }
    else if (!(key in q)) { q[key] = $6; metric[key] = $2 " " $5 }
    if (!(key in rss) || $11 + 0 > rss[key] + 0) rss[key] = $11; size[key] = $12; be[key] = $13 }
  END {
    printf "%-24s %-8s %-14s %12s %12s %11s %10s %9s\n", "graph", "backend", metric[order[1]],
           "TTFT " ptok " t", "prefill t/s", "decode t/s", "peak RSS", "size"
    for (i = 1; i <= n; i++) { k = order[i]
      printf "%-24s %-8s %-14s %9s ms %12s %11s %7s MB %6s MB\n", k, be[k], q[k], ttft[k], pre[k], dec[k],
             rss[k], size[k] } }' "$tsv" | tee "$out/summary.txt"
if [ -n "$nnapi_lib" ]; then
  # The same graph through the NNAPI backend (every op lowered to NNAPI operations, run by the
  # library) on the first item must give the cpu backend's numbers.
  log "nnapi: the EdgeInfinite graph on $(basename "$nnapi_lib"), first item of the evaluation set"
  one() { # BACKEND: "metric value" of the first item
    rm -f "$out/nnapi-check.tsv"
    "$EI_EVAL" --graph "$out/edgeinfinite.eig" --eval-set "$evalset" --max-tasks 1 --threads "$threads" --quiet \
      --backend "$1" --strict --tsv "$out/nnapi-check.tsv" > "$out/nnapi-check-$1.txt" || return 1
    awk -F'\t' 'NR == 2 { print $5, $6 }' "$out/nnapi-check.tsv"
  }
  c=$(one cpu) || die "ei-eval failed (see $out/nnapi-check-cpu.txt)"
  n=$(EI_NNAPI_LIB=$nnapi_lib one nnapi) || die "the nnapi backend failed on $nnapi_lib"
  echo "cpu    $c"
  echo "nnapi  $n"
  awk -v a="${c#* }" -v b="${n#* }" 'BEGIN { d = a - b; if (d < 0) d = -d
    if (d <= 1e-3 * (a < 0 ? -a : a) + 1e-9) print "nnapi and cpu agree"; else { print "nnapi and cpu DIFFER"; exit 1 } }'
  echo "(on Linux the library is a conformance implementation that checks the lowering, not an NPU: its speed means nothing)"
fi
