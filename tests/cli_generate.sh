#!/usr/bin/env bash
# CLI smoke test of `ei generate` and `ei eval` on the stories260K fixtures:
#  - greedy generation from BOS prints exactly the story documented in stories260K.md (llama2.c's
#    own expected output), from the llama2.c file and from the Hugging Face folder, with identical ids;
#  - sampling is reproducible for a fixed seed;
#  - eval prints tokens/loss/ppl, JSON with --json, and rejects unknown modes and missing files.
set -euo pipefail
EI=${EI_BIN:?EI_BIN not set}
FIX=${EI_FIXTURES:?EI_FIXTURES not set}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
BIN=$FIX/models/stories260K/stories260K.bin
HF=$FIX/models/stories260K-hf
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The expected story: the code block after llama2.c's `./run ... -t 0.0` command in the model card.
sed -n '/^\$ \.\/run stories260K\/stories260K\.bin -z stories260K\/tok512\.bin -t 0\.0$/,/^```$/p' \
    "$FIX/models/stories260K/stories260K.md" | sed '1d;$d' > "$TMP/expected.txt"
[ "$(wc -l < "$TMP/expected.txt")" -ge 4 ] || fail "could not extract the expected story"

"$EI" generate --model "$BIN" --temperature 0 > "$TMP/bin.txt" 2> "$TMP/bin.err"
diff "$TMP/expected.txt" "$TMP/bin.txt" || fail "llama2.c greedy output differs from stories260K.md"
grep -q "tok/s" "$TMP/bin.err" || fail "no tokens/s report"
"$EI" generate --model "$HF" --temperature 0 > "$TMP/hf.txt" 2>/dev/null
diff "$TMP/expected.txt" "$TMP/hf.txt" || fail "HF greedy output differs from stories260K.md"

"$EI" generate --model "$BIN" --temperature 0 --ids > "$TMP/bin.ids" 2>/dev/null
"$EI" generate --model "$HF" --temperature 0 --ids > "$TMP/hf.ids" 2>/dev/null
cmp -s "$TMP/bin.ids" "$TMP/hf.ids" || fail "llama2.c and HF greedy token ids differ"
[ "$(wc -w < "$TMP/bin.ids")" -eq 257 ] || fail "expected BOS + 256 generated ids, got $(wc -w < "$TMP/bin.ids")"

"$EI" generate --model "$BIN" --prompt "Once upon a time" --max-tokens 40 --temperature 1 --top-p 0.9 --seed 42 > "$TMP/s1.txt" 2>/dev/null
"$EI" generate --model "$BIN" --prompt "Once upon a time" --max-tokens 40 --temperature 1 --top-p 0.9 --seed 42 > "$TMP/s2.txt" 2>/dev/null
cmp -s "$TMP/s1.txt" "$TMP/s2.txt" || fail "same seed, different samples"
grep -q "^Once upon a time" "$TMP/s1.txt" || fail "prompt not echoed"

"$EI" generate --help | grep -q -- "--top-p" || fail "generate --help"
if "$EI" generate --model "$TMP/none.bin" --temperature 0 > /dev/null 2> "$TMP/err"; then fail "missing model accepted"; fi
grep -q "no such file" "$TMP/err" || fail "missing model: unclear error: $(cat "$TMP/err")"

# eval: line format and JSON
head -c 3000 "$FIX/text/tinystories.txt" > "$TMP/small.txt"
"$EI" eval --ppl "$TMP/small.txt" --model "$BIN" --paragraphs > "$TMP/ppl.txt" 2>/dev/null
grep -Eq '^tokens [0-9]+$' "$TMP/ppl.txt" || fail "eval: no tokens line"
grep -Eq '^loss [0-9.]+$' "$TMP/ppl.txt" || fail "eval: no loss line"
grep -Eq '^ppl [0-9.]+$' "$TMP/ppl.txt" || fail "eval: no ppl line"
"$EI" eval --ppl "$TMP/small.txt" --model "$HF" --paragraphs --json > "$TMP/ppl.json" 2>/dev/null
/usr/bin/python3 - "$TMP/ppl.txt" "$TMP/ppl.json" <<'PY'
import json, math, sys
lines = dict(l.split() for l in open(sys.argv[1]))
j = json.load(open(sys.argv[2]))
assert int(lines["tokens"]) == j["tokens"], (lines, j)
assert abs(float(lines["loss"]) - j["loss"]) < 1e-5, (lines, j)
assert abs(math.exp(j["loss"]) - j["ppl"]) < 1e-3 * j["ppl"], j
assert 1.0 < j["ppl"] < 20.0, j
PY
"$EI" eval --ppl "$TMP/small.txt" --model "$BIN" --max-tokens 50 > "$TMP/p50.txt" 2>/dev/null
grep -q '^tokens 49$' "$TMP/p50.txt" || fail "--max-tokens 50 should score 49 tokens: $(cat "$TMP/p50.txt")"
if "$EI" eval --ppl "$TMP/small.txt" --model "$BIN" --mode bogus > /dev/null 2> "$TMP/err"; then fail "bad mode accepted"; fi
grep -q -- "--mode.*bogus" "$TMP/err" || fail "bad mode: unclear error: $(cat "$TMP/err")"
if "$EI" eval --ppl "$TMP/none.txt" --model "$BIN" > /dev/null 2> "$TMP/err"; then fail "missing text accepted"; fi
grep -q "none.txt" "$TMP/err" || fail "missing text: unclear error"
echo "cli_generate: ok"
