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
# --tensors: every constant once with its stored type; w4g32 weights are i4 in groups of 32
"$EI_BIN" compile --model "$MODEL" --scenario configs/scenarios/stories.yaml --untrained-gates \
  --set precision.weights=w4g32 -o "$tmp/w4.eig" 2>/dev/null || fail "compile w4g32"
"$EI_BIN" inspect --tensors "$tmp/w4.eig" > "$tmp/w4.txt" || fail "inspect --tensors"
grep -Eq '^  w\.q\.0\.w4g32 +\[64,64\] +i4 groups of 32 axis 1 +2048 ' "$tmp/w4.txt" || fail "--tensors: q of layer 0: $(grep 'w.q.0' "$tmp/w4.txt")"
grep -Eq '^  w\.down\.0\.w8 +\[64,172\] +i8 per-channel axis 0 +11008 ' "$tmp/w4.txt" || fail "--tensors: down falls back to w8"
[ "$(grep -c '^  w\.q\.0\.w4g32 ' "$tmp/w4.txt")" = 1 ] || fail "--tensors lists a shared constant twice"
# the tied classifier takes w4g32 (its own copy of the table); the gathered embedding stays i8
grep -Eq '^  w\.classifier\.-1\.w4g32 +\[512,64\] +i4 groups of 32 axis 1 ' "$tmp/w4.txt" ||
  fail "--tensors: tied classifier not w4g32: $(grep -E 'w.(embedding|classifier)' "$tmp/w4.txt")"
grep -Eq '^  w\.embedding\.-1\.w8\.table +\[512,64\] +i8 ' "$tmp/w4.txt" || fail "--tensors: embedding table not i8"
# one scheme for both uses: one copy
"$EI_BIN" inspect --tensors "$tmp/f16.eig" > "$tmp/f16.txt" || fail "inspect --tensors f16"
[ "$(grep -c '^  w\.embedding\.' "$tmp/f16.txt")" = 1 ] || fail "f16: tied table stored twice: $(grep 'w.embedding' "$tmp/f16.txt")"
# --nnapi: the support report on the conformance library (when built), a clear error without one
NN=$(dirname "$EI_BIN")/tests/nnapi/libei_fake_nnapi_fl7.so
if [ -f "$NN" ]; then
  "$EI_BIN" inspect "$tmp/stories.eig" --nnapi --nnapi-lib "$NN" > "$tmp/nn.txt" || fail "inspect --nnapi: $(cat "$tmp/nn.txt")"
  grep -q "^graph 'decode': [0-9]* IR nodes -> [0-9]* NNAPI operations" "$tmp/nn.txt" || fail "inspect --nnapi: $(cat "$tmp/nn.txt")"
  grep -q "NNAPI operations in all would not run on the device" "$tmp/nn.txt" || fail "inspect --nnapi: no total"
  # int4 weights: refused for NNAPI, naming the tensor; with --nnapi-fallback f16 they run in float16
  "$EI_BIN" inspect "$tmp/w4.eig" --nnapi --nnapi-lib "$NN" > "$tmp/nn4.txt" && fail "int4 report should fail"
  grep -q "w.q.0.w4g32' is i4" "$tmp/nn4.txt" || fail "int4 refusal: $(head -5 "$tmp/nn4.txt")"
  "$EI_BIN" inspect "$tmp/w4.eig" --nnapi --nnapi-lib "$NN" --nnapi-fallback f16 > "$tmp/nn4.txt" ||
    fail "--nnapi-fallback f16: $(cat "$tmp/nn4.txt")"
  grep -q "int16 / int4 tensors run as float16" "$tmp/nn4.txt" || fail "f16 fallback not reported"
fi
EI_NNAPI_LIB=/nonexistent.so "$EI_BIN" inspect "$tmp/stories.eig" --nnapi > "$tmp/nn.txt" 2>&1 && fail "--nnapi without a library"
grep -q "nnapi: unavailable" "$tmp/nn.txt" || fail "--nnapi without a library: $(tail -3 "$tmp/nn.txt")"
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
