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

echo "cli_prepare: $pass passed, 0 failed"
