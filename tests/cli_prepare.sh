#!/usr/bin/env bash
# `ei prepare` from the command line: help, JSONL and text datasets with the documented HDF5 layout,
# a YAML config, passkey evaluation sets, and bad input giving a clear error and a non-zero exit.
set -euo pipefail
: "${EI_BIN:?EI_BIN must point to the ei binary}" "${EI_FIXTURES:?EI_FIXTURES must point to the fixtures}"
tok="$EI_FIXTURES/models/stories260K/tok512.bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "cli_prepare: FAIL: $*" >&2; exit 1; }
pass=0
ok() { pass=$((pass + 1)); }

"$EI_BIN" prepare --help >"$work/help" || fail "--help exited non-zero"
grep -q -- "--passkey" "$work/help" && grep -q -- "--template-string" "$work/help" || fail "--help misses options"
ok

"$EI_BIN" prepare --quiet --tokenizer "$tok" --output "$work/q.h5" --max-docs 3 --max-tokens 2048 \
  --context 'meeting_transcripts[].{speaker}: {content}' \
  --instruction 'general_query_list[].query' --answer 'general_query_list[].answer' \
  "$EI_FIXTURES/longdoc/qmsum_val.jsonl" >"$work/out" || fail "qmsum prepare failed"
grep -q "3 samples" "$work/out" || fail "qmsum statistics: $(cat "$work/out")"
[ -f "$work/q.h5" ] || fail "no q.h5"
ls "$work" | grep -q tmp && fail "temporary file left behind"
if command -v h5dump >/dev/null; then
  h5dump -H "$work/q.h5" >"$work/layout"
  for d in tokens loss_mask offsets doc_ids; do
    grep -q "DATASET \"$d\"" "$work/layout" || fail "h5dump: no /$d"
  done
  grep -q 'GROUP "meta"' "$work/layout" || fail "h5dump: no /meta"
  h5dump -a /meta/template "$work/q.h5" | grep -q '"plain"' || fail "template attribute"
  h5dump -a /meta/n_samples "$work/q.h5" | grep -q ': 3' || fail "n_samples attribute"
fi
ok

printf 'prepare:\n  template_string: "Q: {instruction}\\nContext: {context}\\nA: {answer}"\n  max_tokens: 1024\n  val_fraction: 0.2\n' >"$work/p.yaml"
"$EI_BIN" prepare --quiet --config "$work/p.yaml" --tokenizer "$tok" --output "$work/l.h5" --max-docs 5 \
  --context input --instruction 'instructions[]' --answer 'outputs[]' \
  "$EI_FIXTURES/longdoc/leval_quality.jsonl" >"$work/out" || fail "config prepare failed"
[ -f "$work/l.train.h5" ] && [ -f "$work/l.val.h5" ] || fail "split files missing"
if command -v h5dump >/dev/null; then
  h5dump -a /meta/template_string "$work/l.train.h5" | grep -q 'Q: {instruction}' || fail "template_string from config"
  h5dump -a /meta/max_tokens "$work/l.val.h5" | grep -q ': 1024' || fail "max_tokens from config"
fi
ok

"$EI_BIN" prepare --quiet --tokenizer "$tok" --output "$work/t.h5" --doc-mode paragraphs --max-docs 50 \
  "$EI_FIXTURES/text/sherlock_holmes.txt" >"$work/out" || fail "text prepare failed"
grep -q "50 samples" "$work/out" || fail "text statistics: $(cat "$work/out")"
ok

"$EI_BIN" prepare --quiet --tokenizer "$tok" --passkey --lengths 256,512 --depths 0,0.5,1 \
  --filler "$EI_FIXTURES/text/tinystories.txt" --eval-set "$work/pk.eis" >"$work/out" || fail "passkey failed"
[ "$(head -c 7 "$work/pk.eis")" = "EIEVSET" ] || fail "passkey eval set magic"
grep -q "6 samples" "$work/out" || fail "passkey statistics: $(cat "$work/out")"
ok

printf '{"c": "x", "q": "y", "a": "z"}\n{"c": "x", "q": \n' >"$work/bad.jsonl"
set +e
"$EI_BIN" prepare --quiet --tokenizer "$tok" --output "$work/b.h5" --context c --instruction q --answer a \
  "$work/bad.jsonl" 2>"$work/err" >/dev/null
rc=$?
set -e
[ $rc -ne 0 ] || fail "malformed JSON accepted"
grep -q "bad.jsonl:2: malformed JSON" "$work/err" || fail "error message: $(cat "$work/err")"
[ -f "$work/b.h5" ] && fail "output written despite the error"
"$EI_BIN" prepare --quiet --tokenizer "$tok" --output "$work/b.h5" --context c --instruction q --answer a \
  --skip-bad "$work/bad.jsonl" >/dev/null 2>&1 || fail "--skip-bad did not skip"
ok

set +e
"$EI_BIN" prepare --output "$work/x.h5" "$work/bad.jsonl" 2>/dev/null
rc=$?
set -e
[ $rc -eq 2 ] || fail "missing --tokenizer should exit 2, got $rc"
ok

# One long text split into train and validation by pieces (--piece-docs), reported as split
"$EI_BIN" prepare --quiet --tokenizer "$tok" --val-fraction 0.1 --max-tokens 4096 --piece-docs -o "$work/book.h5" \
  "$EI_FIXTURES/text/tinystories.txt" >"$work/out" || fail "--piece-docs prepare failed"
[ -f "$work/book.train.h5" ] && [ -f "$work/book.val.h5" ] || fail "--piece-docs: split files missing"
grep -q "val    hdf5: 3 documents, 3 samples" "$work/out" || fail "--piece-docs statistics: $(cat "$work/out")"
grep -q "0 truncated, 3 pieces of split documents" "$work/out" || fail "pieces reported as truncated: $(cat "$work/out")"
set +e
"$EI_BIN" prepare --quiet --tokenizer "$tok" --val-fraction 0.1 --max-tokens 4096 -o "$work/book.h5" \
  "$EI_FIXTURES/text/tinystories.txt" >/dev/null 2>"$work/err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q -- "--piece-docs" "$work/err" || fail "one document: the error should point to --piece-docs: $(cat "$work/err")"
ok

# QuALITY's flat multiple-choice layout: the answer is the option the gold label names, and \n in a
# selector is a newline as in --template-string
cat >"$work/flat.jsonl" <<'JSONL'
{"article": "Tom had a red ball.", "question1": "What colour was the ball?", "question1option1": "blue", "question1option2": "red", "question1option3": "green", "question1option4": "black", "question1_gold_label": 2}
{"article": "The sun rose at six.", "question1": "When did the sun rise?", "question1option1": "at six", "question1option2": "at noon", "question1option3": "at nine", "question1option4": "never", "question1_gold_label": 1}
JSONL
"$EI_BIN" prepare --quiet --tokenizer "$tok" -o "$work/flat.h5" --template-string '{context}\n{instruction}\nAnswer: {answer}' \
  --context article --instruction '{question1}\n(1) {question1option1}\n(2) {question1option2}' \
  --answer 'question1option{question1_gold_label}' "$work/flat.jsonl" >"$work/out" || fail "QuALITY flat prepare failed"
grep -q "2 samples" "$work/out" || fail "QuALITY flat statistics: $(cat "$work/out")"
if command -v h5dump >/dev/null; then
  # sample 0: BOS + prompt (mask 0) + " red" + EOS (mask 1)
  ids=$(h5dump -d /tokens -y -w 0 "$work/flat.h5" | awk '/DATA \{/ { f = 1; next } f && /\}/ { f = 0 } f' | tr -d ' \n' | tr ',' ' ')
  want=$("$EI_BIN" tokenize --tokenizer "$tok" --bos "$(printf 'Tom had a red ball.\nWhat colour was the ball?\n(1) blue\n(2) red\nAnswer: red')")
  case " $ids " in *" $want 2 "*) ;; *) fail "QuALITY flat sample: '$ids' does not hold '$want 2'" ;; esac
fi
set +e
"$EI_BIN" prepare --quiet --tokenizer "$tok" -o "$work/flat.h5" --context article --instruction question1 \
  --answer 'question1option{question1_label}' "$work/flat.jsonl" >/dev/null 2>"$work/err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "missing field 'question1_label'" "$work/err" || fail "selector naming no field: $(cat "$work/err")"
ok

# chatml on a tokenizer without <|im_start|> as a special token: a warning
"$EI_BIN" prepare --quiet --tokenizer "$tok" -o "$work/chatml.h5" --template chatml --context article \
  --instruction question1 --answer question1option1 "$work/flat.jsonl" >/dev/null 2>"$work/err" || fail "chatml prepare"
grep -q "warning: template 'chatml': <|im_start|>" "$work/err" || fail "no chatml warning: $(cat "$work/err")"
"$EI_BIN" prepare --quiet --tokenizer "$tok" -o "$work/plain.h5" --context article \
  --instruction question1 --answer question1option1 "$work/flat.jsonl" >/dev/null 2>"$work/err" || fail "plain prepare"
grep -q "warning" "$work/err" && fail "plain template warned: $(cat "$work/err")"
ok

# -o and --output everywhere a file is written, as the help says
"$EI_BIN" prepare --help >"$work/help"
grep -q -- "-o, --output OUT.h5" "$work/help" || fail "prepare --help does not show -o, --output"
for cmd in export plot make-model; do
  "$EI_BIN" $cmd --help >"$work/help"
  grep -q -- "-o, --output" "$work/help" || fail "$cmd --help does not show -o, --output"
  grep -q -- "--o " "$work/help" && fail "$cmd --help shows --o"
done
ok

echo "cli_prepare: $pass passed, 0 failed"
