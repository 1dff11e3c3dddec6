#!/usr/bin/env bash
# Memory checking with valgrind (docs/reliability.md, "Valgrind"): `valgrind --leak-check=full
# --error-exitcode=1` on ei prepare, ei train (a few steps, then a resume that reads the checkpoint
# back), ei compile, ei generate and ei-eval with tiny inputs (a random model of dim 16 for
# everything but prepare and the error path); each must end with no leak and no invalid access. One
# failing command (a NaN model) checks an error path too, with --error-exitcode=99 since the command
# itself exits 1. Sanitizer builds skip this test: ASan and valgrind cannot run together (ASan's
# LeakSanitizer covers those builds). Inputs are tiny because valgrind runs code about 30x slower.
set -euo pipefail
EI=${EI_BIN:?EI_BIN not set}
EVAL=${EI_EVAL_BIN:?EI_EVAL_BIN not set}
FIX=${EI_FIXTURES:?EI_FIXTURES not set}
SRC=${EI_SOURCE_DIR:?EI_SOURCE_DIR not set}
if [ "${EI_SANITIZE:-0}" = 1 ]; then
  echo "cli_valgrind: skipped: sanitizer build (ASan and valgrind do not mix)"
  exit 0
fi
command -v valgrind > /dev/null || { echo "FAIL: valgrind is not installed (scripts/install-deps.sh installs it)" >&2; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
BIN=$FIX/models/stories260K/stories260K.bin
TOK=$FIX/models/stories260K/tok512.bin
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# vg NAME CODE VGCODE CMD...: CMD under valgrind --error-exitcode=VGCODE must exit CODE
vg() {
  local name=$1 code=$2 vgcode=$3
  shift 3
  set +e
  local t0=$SECONDS
  valgrind --leak-check=full --error-exitcode="$vgcode" --log-file="$TMP/$name.vg" "$@" > "$TMP/$name.out" 2> "$TMP/$name.err"
  local rc=$?
  set -e
  if [ "$rc" -ne "$code" ]; then
    echo "---- $name: exit $rc, expected $code" >&2
    tail -40 "$TMP/$name.vg" >&2
    tail -5 "$TMP/$name.err" >&2
    fail "$name under valgrind"
  fi
  grep -q "ERROR SUMMARY: 0 errors" "$TMP/$name.vg" || fail "$name: $(grep "ERROR SUMMARY" "$TMP/$name.vg")"
  echo "$name: clean ($((SECONDS - t0)) s)"
}
vg1() { local name=$1; shift; vg "$name" 0 1 "$@"; }

head -c 6000 "$FIX/text/tinystories.txt" > "$TMP/small.txt"
"$EI" make-model --dim 16 --hidden 32 --layers 2 --heads 2 --kv-heads 1 --vocab 512 --seq-len 128 -o "$TMP/tiny.bin" 2> /dev/null
cp "$TOK" "$TMP/tok512.bin" # beside the model: its tokenizer
vg1 prepare "$EI" prepare --tokenizer "$TOK" --doc-mode paragraphs --min-tokens 30 --max-tokens 64 --val-fraction 0.3 \
  --quiet -o "$TMP/d.h5" --eval-set "$TMP/d.eis" --task lm "$TMP/small.txt"
cat > "$TMP/t.yaml" <<YAML
model:
  path: $TMP/tiny.bin
edgeinfinite: {segment: 16, sink: 2, window: 16}
data: {train: $TMP/d.train.h5, val: $TMP/d.val.h5}
train: {micro_batch: 1, grad_accum: 2, steps: 2, checkpoint_every: 1, eval_samples: 1, threads: 1, out_dir: $TMP/run}
YAML
vg1 train "$EI" train --config "$TMP/t.yaml" --quiet
vg1 resume "$EI" train --resume "$TMP/run" --set train.steps=3 --quiet
vg1 compile "$EI" compile --model "$TMP/tiny.bin" --gates "$TMP/run/gates.safetensors" --scenario "$SRC/configs/scenarios/chat.yaml" \
  -o "$TMP/g.eig"
vg1 generate "$EI" generate --model "$TMP/tiny.bin" --mode edgeinfinite --gates "$TMP/run/gates.safetensors" --segment 16 \
  --sink 2 --window 16 --max-tokens 24 --seed 3
vg1 ei_eval "$EVAL" --graph "$TMP/g.eig" --eval-set "$TMP/d.eis" --max-tasks 2 --threads 1 --json "$TMP/r.json" --quiet
cp "$BIN" "$TMP/nan.bin"
printf '\x00\x00\xc0\x7f' | dd of="$TMP/nan.bin" bs=1 seek=$((28 + 4 * 40000)) conv=notrunc status=none
vg error 1 99 "$EI" generate --model "$TMP/nan.bin" --max-tokens 4
grep -q "non-finite" "$TMP/error.err" || fail "the NaN model was not refused: $(cat "$TMP/error.err")"
echo "cli_valgrind: ok (prepare, train, resume, compile, generate, ei-eval, an error path)"
