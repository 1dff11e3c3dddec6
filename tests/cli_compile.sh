#!/usr/bin/env bash
# ei compile and ei inspect end to end on the stories260K fixture: the shipped scenarios compile
# (f32 and f16), inspect shows the scenario and the graphs, and bad scenarios or arguments fail
# with a message naming the file, line and key (never a crash, never a half-written file).
set -euo pipefail
: "${EI_BIN:?}" "${EI_FIXTURES:?}" "${EI_SOURCE_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
MODEL=$EI_FIXTURES/models/stories260K/stories260K.bin
cd "$EI_SOURCE_DIR"
for s in stories chat summarize; do
  "$EI_BIN" compile --model "$MODEL" --scenario configs/scenarios/$s.yaml --untrained-gates -o "$tmp/$s.eig" \
    2> "$tmp/err" || { cat "$tmp/err"; fail "compile $s"; }
  "$EI_BIN" inspect "$tmp/$s.eig" > "$tmp/$s.txt" || fail "inspect $s"
  for g in prefill decode compress base_prefill base_decode; do
    grep -q "graph '$g'" "$tmp/$s.txt" || fail "$s: graph $g missing from inspect"
  done
  grep -q "name = $s" "$tmp/$s.txt" || fail "$s: scenario name missing"
done
# f16 weights: about half the constant bytes
"$EI_BIN" compile --model "$MODEL" --scenario configs/scenarios/stories.yaml --untrained-gates \
  --set precision.weights=f16 -o "$tmp/f16.eig" 2>/dev/null || fail "compile f16"
a=$(stat -c %s "$tmp/stories.eig"); b=$(stat -c %s "$tmp/f16.eig")
[ "$b" -lt $(( a * 7 / 10 )) ] || fail "f16 file not smaller: $b vs $a bytes"  # graphs and vocabulary are ~0.4 MB of it
# window and full attention scenarios need no gates
"$EI_BIN" compile --model "$MODEL" --scenario configs/scenarios/stories.yaml --set scenario.mode=window \
  -o "$tmp/w.eig" 2>/dev/null || fail "window"
"$EI_BIN" compile --model "$MODEL" --scenario configs/scenarios/stories.yaml --set scenario.mode=full \
  --set scenario.context=256 -o "$tmp/full.eig" 2>/dev/null || fail "full"
"$EI_BIN" inspect "$tmp/full.eig" | grep -q "graph 'compress'" && fail "full mode has a compress graph"
expect_fail() { # message-pattern, then the command
  local pat=$1; shift
  if "$@" > /dev/null 2> "$tmp/err"; then fail "accepted: $*"; fi
  grep -q -- "$pat" "$tmp/err" || fail "unclear error for $*: $(cat "$tmp/err")"
}
printf 'scenario:\n  name: x\n  tokens_per_cal: 4\n' > "$tmp/bad1.yaml"
expect_fail "bad1.yaml:3" "$EI_BIN" compile --model "$MODEL" --scenario "$tmp/bad1.yaml" --untrained-gates -o "$tmp/x.eig"
printf 'scenario:\n  tokens_per_call: 0\n' > "$tmp/bad2.yaml"
expect_fail "tokens_per_call" "$EI_BIN" compile --model "$MODEL" --scenario "$tmp/bad2.yaml" --untrained-gates -o "$tmp/x.eig"
printf 'scenario:\n  tokens_per_call: 64\nedgeinfinite:\n  segment: 32\n' > "$tmp/bad3.yaml"
expect_fail "exceeds the segment" "$EI_BIN" compile --model "$MODEL" --scenario "$tmp/bad3.yaml" --untrained-gates -o "$tmp/x.eig"
printf 'scenario:\n  mode: sideways\n' > "$tmp/bad4.yaml"
expect_fail "bad4.yaml:2" "$EI_BIN" compile --model "$MODEL" --scenario "$tmp/bad4.yaml" --untrained-gates -o "$tmp/x.eig"
expect_fail "needs --gates" "$EI_BIN" compile --model "$MODEL" --scenario configs/scenarios/stories.yaml -o "$tmp/x.eig"
expect_fail "none.yaml: cannot open" "$EI_BIN" compile --model "$MODEL" --scenario "$tmp/none.yaml" --untrained-gates -o "$tmp/x.eig"
[ -e "$tmp/x.eig" ] && fail "a failed compile left $tmp/x.eig"
# a gate file trained with head gates cannot be compiled as token gates
"$EI_BIN" compile --help > /dev/null || fail "--help"
echo "ok"
