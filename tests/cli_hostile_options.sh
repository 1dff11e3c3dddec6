#!/usr/bin/env bash
# Hostile command lines (docs/reliability.md, "Hostile inputs"):
#  - every numeric option of every command refuses out-of-range, overflowing and non-numeric values
#    (and 0 where the minimum is 1, e.g. --threads 0) with a usage error naming it (exit 2), before
#    touching any file; config keys set with --set likewise;
#  - no command writes over one of its inputs (same inode: another spelling or a hard link too):
#    prepare, export, compile, plot, train (its out_dir files), ei-eval --json / --tsv; the input is
#    left unchanged;
#  - `ei train --resume DIR` writes into DIR, not into the out_dir recorded in the checkpoint, so
#    resuming a copy leaves the original untouched (and unpruned); a skipped corrupt checkpoint is
#    reported once.
set -euo pipefail
EI=${EI_BIN:?EI_BIN not set}
EVAL=${EI_EVAL_BIN:?EI_EVAL_BIN not set}
FIX=${EI_FIXTURES:?EI_FIXTURES not set}
SRC=${EI_SOURCE_DIR:?EI_SOURCE_DIR not set}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
BIN=$FIX/models/stories260K/stories260K.bin
TOK=$FIX/models/stories260K/tok512.bin
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {
  local code=$1 pat=$2
  shift 2
  set +e
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  set -e
  [ "$rc" -eq "$code" ] || fail "$*: exit $rc, expected $code: $(head -c 600 "$TMP/err")"
  grep -Eq -- "$pat" "$TMP/err" || fail "$*: stderr lacks /$pat/: $(head -c 600 "$TMP/err")"
}

# ------------------------------------------------------------------ numeric options
# "command option [more values]": every option gets a huge negative, an overflowing and two
# non-numeric values; the extra values are further ones it must refuse (0 below a minimum of 1).
while read -r cmd opt extra; do
  [ -n "$cmd" ] || continue
  prog=("$EI" "$cmd")
  [ "$cmd" = ei-eval ] && prog=("$EVAL")
  for v in -99999999 99999999999999999999 abc 1x 1e400 $extra; do
    expect 2 "(--$opt|-$opt)( $v)?.*(out of range|invalid value)|invalid value '$v' for --$opt" "${prog[@]}" --"$opt" "$v"
  done
done <<'LIST'
generate threads 0 257
generate max-tokens 2147483648
generate temperature 1e7
generate top-p 1.5
generate seed
generate ctx 16777217
generate segment 0
generate sink
generate window
generate gate-init-bias 31
eval max-samples -1
eval threads 0
eval max-tokens -1
eval ctx -1
eval stride -1
eval segment 0
compile calib-samples 0
compile calib-tokens -1
compile budget-mb -1
make-model dim 0 65537
make-model hidden 0
make-model layers 0 1025
make-model heads 0
make-model kv-heads 0
make-model vocab 0 4194305
make-model seq-len 0
make-model seed -1
plot smooth 1.5
plot width 99 10001
plot height 0
prepare max-tokens -1
prepare min-tokens -1
prepare max-docs -1
prepare val-fraction 1
prepare seed -1
prepare per-cell 0
selfcheck tol 0 2
selfcheck seed -1
tokenize vocab -1
ei-eval threads 0 257
ei-eval max-tasks -1
ei-eval max-new -1 1048577
ei-eval per-cell 0
ei-eval seed -1
LIST
# config keys through --set go through the schema's ranges (the config includes paths from the root)
cd "$SRC"
for kv in train.threads=-1 train.steps=-5 train.lr=abc data.max_tokens=-1 train.micro_batch=0 train.max_bad_steps=0; do
  expect 2 "${kv%%=*}" "$EI" train --config configs/train/stories_lm.yaml --set "$kv" --print-config
done
cd "$TMP"

# ------------------------------------------------------------------ outputs that are inputs
head -c 20000 "$FIX/text/tinystories.txt" > "$TMP/text.txt"
cp "$TMP/text.txt" "$TMP/text.orig"
expect 1 "text.txt: this output is the input .*text.txt" \
  "$EI" prepare --tokenizer "$TOK" --output "$TMP/text.txt" "$TMP/text.txt"
ln "$TMP/text.txt" "$TMP/hardlink.h5"
expect 1 "hardlink.h5: this output is the input" "$EI" prepare --tokenizer "$TOK" -o "$TMP/hardlink.h5" "$TMP/text.txt"
expect 1 "this output is the input" \
  "$EI" prepare --tokenizer "$TOK" -o "$TMP/./text.txt" --val-fraction 0.5 "$TMP/text.txt" --eval-set "$TMP/text.txt"
cp "$TOK" "$TMP/tok.bin"
expect 1 "tok.bin: this output is the input" "$EI" prepare --tokenizer "$TMP/tok.bin" -o "$TMP/tok.bin" "$TMP/text.txt"
cmp -s "$TMP/text.txt" "$TMP/text.orig" || fail "prepare changed its input"
cmp -s "$TMP/tok.bin" "$TOK" || fail "prepare changed its tokenizer"

"$EI" prepare --tokenizer "$TOK" --doc-mode paragraphs --min-tokens 20 --max-tokens 64 --quiet \
  -o "$TMP/d.h5" "$TMP/text.txt" > /dev/null
cat > "$TMP/t.yaml" <<YAML
model:
  path: $BIN
edgeinfinite: {segment: 16, sink: 2, window: 16}
data:
  train: $TMP/d.h5
train: {micro_batch: 1, grad_accum: 2, steps: 2, checkpoint_every: 1, keep_last: 1, threads: 1, out_dir: $TMP/A}
YAML
"$EI" train --config "$TMP/t.yaml" --quiet 2> "$TMP/train.log" || fail "train: $(cat "$TMP/train.log")"
C=$TMP/A/ckpt-2.h5
cp "$C" "$TMP/c.orig"
expect 1 "ckpt-2.h5: this output is the input" "$EI" export "$C" -o "$C"
expect 1 "this output is the input" "$EI" export "$TMP/A" -o "$TMP/A/../A/ckpt-2.h5"
cmp -s "$C" "$TMP/c.orig" || fail "export changed the checkpoint"
cp "$BIN" "$TMP/m.bin"
expect 1 "m.bin: this output is the input" "$EI" compile --model "$TMP/m.bin" --untrained-gates \
  --scenario "$SRC/configs/scenarios/chat.yaml" -o "$TMP/m.bin"
cmp -s "$TMP/m.bin" "$BIN" || fail "compile changed the model"
expect 1 "metrics.jsonl: this output is the input" "$EI" plot "$TMP/A/metrics.jsonl" -o "$TMP/A/metrics.jsonl"
# train: a dataset inside out_dir under a checkpoint's name, or as metrics.jsonl, is refused
mkdir -p "$TMP/B"
cp "$TMP/d.h5" "$TMP/B/ckpt-1.h5"
expect 1 "the input .*ckpt-1.h5 has a checkpoint's name there" "$EI" train --config "$TMP/t.yaml" --quiet \
  --set "data.train=$TMP/B/ckpt-1.h5" --set "train.out_dir=$TMP/B"
cp "$TMP/d.h5" "$TMP/B/metrics.jsonl"
expect 1 "train.out_dir: .*metrics.jsonl: this output is the input" "$EI" train --config "$TMP/t.yaml" --quiet \
  --set "data.train=$TMP/B/metrics.jsonl" --set "train.out_dir=$TMP/B"
cmp -s "$TMP/B/ckpt-1.h5" "$TMP/d.h5" && cmp -s "$TMP/B/metrics.jsonl" "$TMP/d.h5" || fail "train changed its input"
# ei-eval: the report must not replace (--json) or extend (--tsv) the graph or the evaluation set
"$EI" compile --model "$BIN" --untrained-gates --scenario "$SRC/configs/scenarios/chat.yaml" -o "$TMP/g.eig" 2> /dev/null
cp "$TMP/g.eig" "$TMP/g.orig"
expect 1 "g.eig: this output is the input" "$EVAL" --graph "$TMP/g.eig" --passkey --lengths 64 --json "$TMP/g.eig"
expect 1 "g.eig: this output is the input" "$EVAL" --graph "$TMP/g.eig" --passkey --lengths 64 --tsv "$TMP/g.eig"
cmp -s "$TMP/g.eig" "$TMP/g.orig" || fail "ei-eval changed the graph file"

# ------------------------------------------------------------------ --resume writes where it resumes
cp -r "$TMP/A" "$TMP/copy"
find "$TMP/A" -type f -exec md5sum {} + | sort > "$TMP/A.sums"
printf 'not a checkpoint' > "$TMP/copy/ckpt-9.h5"
"$EI" train --resume "$TMP/copy" --set train.steps=4 --quiet 2> "$TMP/resume.log" || fail "resume: $(cat "$TMP/resume.log")"
grep -q "writing there (not to the config's train.out_dir $TMP/A)" "$TMP/resume.log" || fail "no note on the out_dir: $(cat "$TMP/resume.log")"
[ "$(grep -c "skipping checkpoint" "$TMP/resume.log")" -eq 1 ] || fail "the skipped checkpoint is not reported once: $(cat "$TMP/resume.log")"
[ -e "$TMP/copy/ckpt-4.h5" ] || fail "the resumed run did not write into the folder it resumed"
find "$TMP/A" -type f -exec md5sum {} + | sort | cmp -s - "$TMP/A.sums" || fail "resuming a copy changed the original run"
[ ! -e "$TMP/A/ckpt-4.h5" ] || fail "the resumed run wrote into the original folder"
[ "$(grep -c '"step"' "$TMP/copy/metrics.jsonl")" -eq 4 ] || fail "metrics of the resumed copy: $(cat "$TMP/copy/metrics.jsonl")"
echo "cli_hostile_options: ok"
