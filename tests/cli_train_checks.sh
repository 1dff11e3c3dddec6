#!/usr/bin/env bash
# What `ei train`, `ei eval` and `ei generate` check before they run, from the command line:
#  - a dataset tokenised with another tokenizer of the same vocabulary size is refused by train and
#    eval (--allow-tokenizer-mismatch turns it into a warning); the same vocabulary in another
#    format or folder (tok512.model, the HF folder's tokenizer.model) is not a mismatch;
#  - sink + window + segment beyond the model's trained context is a warning naming the numbers, at
#    train, eval, generate and compile (not in full mode, not when it fits);
#  - train.shuffle: false keeps the training order in file order;
#  - a refused resume says "cannot resume" once;
#  - a tokenizer given as --model, and a tokenizer whose size differs from the model's vocabulary,
#    get errors that say so; `ei tokenize` reads CRLF as `ei prepare` does.
set -euo pipefail
EI=${EI_BIN:?EI_BIN not set}
FIX=${EI_FIXTURES:?EI_FIXTURES not set}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
BIN=$FIX/models/stories260K/stories260K.bin
TOK=$FIX/models/stories260K/tok512.bin
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "cli_train_checks: FAIL: $*" >&2; exit 1; }
expect_fail() { # code, expected text, command...
  local code=$1 want=$2; shift 2
  set +e
  "$@" > "$TMP/out" 2> "$TMP/err"
  local rc=$?
  set -e
  [ $rc -eq "$code" ] || fail "'$*' exited $rc, expected $code: $(cat "$TMP/err")"
  grep -q -- "$want" "$TMP/err" || fail "'$*': expected '$want' in: $(cat "$TMP/err")"
}

awk 'BEGIN { RS = ""; ORS = "\n\n" } NR <= 8' "$FIX/text/tinystories.txt" > "$TMP/docs.txt"
prep() { "$EI" prepare --quiet --tokenizer "$1" --doc-mode paragraphs --output "$2" "$TMP/docs.txt" > /dev/null; }

# --- tokenizer identity --------------------------------------------------------------------------
# tok512.bin with two pieces of equal length exchanged: another file and hash, the same 512 pieces
/usr/bin/python3 - "$TOK" "$TMP/other.bin" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
pos, ents = 4, []
while pos < len(b):
    n = struct.unpack_from("<i", b, pos + 4)[0]
    ents.append((pos + 8, n)); pos += 8 + n
(a, n), = [e for e in ents[300:] if e[1] == 3][:1]
(c, _), = [e for e in ents[300:] if e[1] == 3 and b[e[0]:e[0] + 3] != b[a:a + 3]][:1]
b[a:a + 3], b[c:c + 3] = b[c:c + 3], b[a:a + 3]
open(sys.argv[2], "wb").write(b)
PY
prep "$TOK" "$TMP/same.h5"
prep "$FIX/models/stories260K/tok512.model" "$TMP/model.h5"
prep "$TMP/other.bin" "$TMP/other.h5"
for ds in same model; do
  "$EI" eval --data "$TMP/$ds.h5" --model "$BIN" > /dev/null 2> "$TMP/err" || fail "eval $ds.h5: $(cat "$TMP/err")"
  "$EI" eval --data "$TMP/$ds.h5" --model "$FIX/models/stories260K-hf" > /dev/null 2> "$TMP/err" ||
    fail "eval $ds.h5 on the HF folder: $(cat "$TMP/err")"
done
expect_fail 1 "another tokenizer than the model's" "$EI" eval --data "$TMP/other.h5" --model "$BIN"
grep -q "other.bin" "$TMP/err" && grep -q "tok512.bin" "$TMP/err" || fail "mismatch names both tokenizers: $(cat "$TMP/err")"
"$EI" eval --data "$TMP/other.h5" --model "$BIN" --allow-tokenizer-mismatch > /dev/null 2> "$TMP/err" ||
  fail "--allow-tokenizer-mismatch: $(cat "$TMP/err")"
grep -q "warning" "$TMP/err" || fail "no warning with --allow-tokenizer-mismatch"

cfg() { # file, dataset, extra yaml lines...
  local f=$1 ds=$2; shift 2
  { printf 'model:\n  path: %s\ndata:\n  train: %s\ntrain:\n  steps: 1\n  out_dir: %s\n' "$BIN" "$ds" "$TMP/run"
    for l in "$@"; do printf '  %s\n' "$l"; done; } > "$f"
}
cfg "$TMP/other.yaml" "$TMP/other.h5"
expect_fail 1 "another tokenizer than the model's" "$EI" train --quiet --config "$TMP/other.yaml"
"$EI" train --quiet --config "$TMP/other.yaml" --allow-tokenizer-mismatch > /dev/null 2> "$TMP/err" ||
  fail "train --allow-tokenizer-mismatch: $(cat "$TMP/err")"

# --- train.shuffle ---------------------------------------------------------------------------------
# The loss of step 1 is that of the first sample visited, before any update: with shuffle off it is
# sample 0's, which ei eval computes with the same untrained gates.
first=$("$EI" eval --data "$TMP/same.h5" --model "$BIN" --mode edgeinfinite --max-samples 1 2>/dev/null |
  sed -n 's/^loss //p')
step1() { sed -n '1s/.*"loss": *\([0-9.e+-]*\).*/\1/p' "$TMP/run/metrics.jsonl"; }
close() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }'; }
for shuffle in false true; do
  cfg "$TMP/s.yaml" "$TMP/same.h5" "shuffle: $shuffle"
  rm -rf "$TMP/run"
  "$EI" train --quiet --config "$TMP/s.yaml" > /dev/null 2> "$TMP/err" || fail "train shuffle=$shuffle: $(cat "$TMP/err")"
  if [ $shuffle = false ]; then
    close "$(step1)" "$first" || fail "shuffle false: step 1 loss $(step1), sample 0 loss $first"
  else
    close "$(step1)" "$first" && fail "shuffle true (seed 1234) visited sample 0 first: nothing shuffled?"
  fi
done
"$EI" train --schema | grep -q "train.shuffle" || fail "train.shuffle missing from --schema"

# --- a refused resume ------------------------------------------------------------------------------
expect_fail 1 "cannot resume" "$EI" train --quiet --config "$TMP/s.yaml" --resume "$TMP/run" --set edgeinfinite.window=128
[ "$(grep -o "cannot resume" "$TMP/err" | wc -l)" = 1 ] || fail "'cannot resume' not exactly once: $(cat "$TMP/err")"
grep -q "edgeinfinite.window: 256 -> 128" "$TMP/err" || fail "resume error lists the key: $(cat "$TMP/err")"

# --- positions beyond the trained context ----------------------------------------------------------
mkdir "$TMP/m128"
"$EI" make-model --dim 32 --hidden 64 --layers 1 --heads 2 --kv-heads 1 --vocab 512 --seq-len 128 \
  -o "$TMP/m128/model.bin" > /dev/null 2>&1 || fail "make-model"
cp "$TOK" "$TMP/m128/tok512.bin"
M=$TMP/m128/model.bin
want="sink 4 + window 256 + segment 128 = 388 tokens exceed the model's trained context of 128"
"$EI" eval --ppl "$TMP/docs.txt" --model "$M" --mode window > /dev/null 2> "$TMP/err" || fail "eval window"
grep -q "ei eval: warning: $want" "$TMP/err" || fail "eval: no context warning: $(cat "$TMP/err")"
"$EI" eval --data "$TMP/same.h5" --model "$M" --mode edgeinfinite > /dev/null 2> "$TMP/err" || fail "eval data"
grep -q "ei eval: warning: $want" "$TMP/err" || fail "eval --data: no context warning: $(cat "$TMP/err")"
"$EI" eval --ppl "$TMP/docs.txt" --model "$M" --mode full > /dev/null 2> "$TMP/err" || fail "eval full"
grep -q "warning" "$TMP/err" && fail "full mode warned: $(cat "$TMP/err")"
"$EI" eval --ppl "$TMP/docs.txt" --model "$M" --mode window --window 64 --segment 32 > /dev/null 2> "$TMP/err"
grep -q "warning" "$TMP/err" && fail "4 + 64 + 32 fits in 128 but warned: $(cat "$TMP/err")"
"$EI" generate --model "$M" --mode edgeinfinite --max-tokens 3 --temperature 0 > /dev/null 2> "$TMP/err" ||
  fail "generate: $(cat "$TMP/err")"
grep -q "ei generate: warning: $want" "$TMP/err" || fail "generate: no context warning: $(cat "$TMP/err")"
sed "s|$BIN|$M|" "$TMP/s.yaml" > "$TMP/m.yaml"
rm -rf "$TMP/run"
"$EI" train --quiet --config "$TMP/m.yaml" > /dev/null 2> "$TMP/err" || fail "train m128: $(cat "$TMP/err")"
grep -q "ei train: warning: $want" "$TMP/err" || fail "train: no context warning: $(cat "$TMP/err")"

if "$EI" compile --help > /dev/null 2>&1; then
  "$EI" compile --model "$M" --scenario "${EI_SOURCE_DIR:?}/configs/scenarios/stories.yaml" --untrained-gates \
    --set edgeinfinite.window=256 -o "$TMP/m.eig" > /dev/null 2> "$TMP/err" || fail "compile: $(cat "$TMP/err")"
  grep -q "ei compile: warning: sink 4 + window 256 + segment 32 = 292 tokens exceed the model's trained context of 128" \
    "$TMP/err" || fail "compile: no context warning: $(cat "$TMP/err")"
  "$EI" compile --model "$M" --scenario "$EI_SOURCE_DIR/configs/scenarios/stories.yaml" --untrained-gates \
    -o "$TMP/m.eig" > /dev/null 2> "$TMP/err" || fail "compile: $(cat "$TMP/err")"
  grep -q "trained context" "$TMP/err" && fail "compile: 4 + 64 + 32 fits in 128 but warned: $(cat "$TMP/err")"
fi

# --- files in the wrong place ----------------------------------------------------------------------
expect_fail 1 "this is a llama2.c tokenizer.bin, not a model" "$EI" eval --ppl "$TMP/docs.txt" --model "$TOK"
expect_fail 1 "this is a SentencePiece tokenizer.model, not a model" \
  "$EI" generate --model "$FIX/models/stories260K/tok512.model" --max-tokens 1
head -c 1500 "$TOK" > "$TMP/short.bin"
/usr/bin/python3 - "$TOK" "$TMP/short.bin" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
pos = 4
for _ in range(105):
    pos += 8 + struct.unpack_from("<i", b, pos + 4)[0]
open(sys.argv[2], "wb").write(b[:pos])
PY
expect_fail 1 "vocabulary size mismatch: the tokenizer has 105 pieces but the model's vocabulary has 512" \
  "$EI" eval --ppl "$TMP/docs.txt" --model "$BIN" --tokenizer "$TMP/short.bin"

# --- ei tokenize reads text as ei prepare does -----------------------------------------------------
a=$(printf 'One line.\r\nTwo lines.\r\n' | "$EI" tokenize --tokenizer "$TOK" -)
b=$(printf 'One line.\nTwo lines.\n' | "$EI" tokenize --tokenizer "$TOK" -)
[ "$a" = "$b" ] || fail "tokenize keeps CR: '$a' vs '$b'"
echo "cli_train_checks: ok"
