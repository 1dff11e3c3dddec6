#!/usr/bin/env bash
# CLI test of ei-eval, the on-device evaluation binary, on the stories260K fixture:
#  - evaluation sets from `ei prepare --eval-set`: QMSum as summaries and as QA, QuALITY as multiple
#    choice, TinyStories paragraphs as language modelling, a passkey set; one .eig from `ei compile`;
#  - the table names every task type with its metric, the JSON holds every field with finite
#    numbers (quality, time to first token, prefill / decode tokens/s, peak RSS, file size), the
#    model file size is the file's, --max-tasks limits the items, `--json -` writes JSON to stdout;
#  - greedy decoding is deterministic across runs and thread counts (--print-tokens);
#  - the passkey grid generated on the device runs at a tiny length and prints its grid;
#  - --backend nnapi falls back to cpu with a notice (same tokens), --strict fails clearly;
#  - corrupt / missing inputs exit 1 with a message naming the file; usage errors exit 2.
set -euo pipefail
EI=${EI_BIN:?EI_BIN not set}
EVAL=${EI_EVAL_BIN:?EI_EVAL_BIN not set}
FIX=${EI_FIXTURES:?EI_FIXTURES not set}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
MODEL=$FIX/models/stories260K/stories260K.bin
TOK=$FIX/models/stories260K/tok512.bin
SCEN=${EI_SOURCE_DIR:?EI_SOURCE_DIR not set}/configs/scenarios/stories.yaml
QMSUM=$FIX/longdoc/qmsum_val.jsonl
Q=(--quiet)

# ---- inputs
"$EI" compile --model "$MODEL" --scenario "$SCEN" --untrained-gates -o "$TMP/m.eig" > /dev/null
qm=(--context 'meeting_transcripts[].{speaker}: {content}' --instruction 'general_query_list[].query'
    --answer 'general_query_list[].answer')
"$EI" prepare --tokenizer "$TOK" --max-docs 2 --max-tokens 300 --task summary "${qm[@]}" \
    --eval-set "$TMP/sum.eis" "$QMSUM" > /dev/null 2>&1
"$EI" prepare --tokenizer "$TOK" --max-docs 1 --max-tokens 200 --task qa --context 'meeting_transcripts[].{speaker}: {content}' \
    --instruction 'specific_query_list[].query' --answer 'specific_query_list[].answer' \
    --eval-set "$TMP/qa.eis" "$QMSUM" > /dev/null 2>&1
"$EI" prepare --tokenizer "$TOK" --max-docs 1 --max-tokens 200 --task choice \
    --template-string '{context}\n\nQuestion: {instruction}\nAnswer: {answer}' \
    --context input --instruction 'instructions[]' --answer 'outputs[]' \
    --eval-set "$TMP/mc.eis" "$FIX/longdoc/leval_quality.jsonl" > /dev/null 2>&1
head -c 3000 "$FIX/text/tinystories.txt" > "$TMP/lm.txt"
"$EI" prepare --tokenizer "$TOK" --doc-mode paragraphs --max-docs 3 --eval-set "$TMP/lm.eis" "$TMP/lm.txt" > /dev/null 2>&1
"$EI" prepare --tokenizer "$TOK" --passkey --lengths 128 --depths 0,1 --eval-set "$TMP/pk.eis" > /dev/null 2>&1

# ---- one run per set: table rows, JSON fields
check_json() { # FILE TASK METRIC...
  /usr/bin/python3 - "$@" "$TMP/m.eig" <<'PY'
import json, math, os, sys
path, task, metrics, eig = sys.argv[1], sys.argv[2], sys.argv[3:-1], sys.argv[-1]
j = json.load(open(path))
def finite(v, what):
    assert isinstance(v, (int, float)) and math.isfinite(v), (what, v)
assert j["tool"] == "ei-eval" and j["backend"] == "cpu", j
assert j["model_file_bytes"] == os.path.getsize(eig), (j["model_file_bytes"], os.path.getsize(eig))
assert j["peak_rss_bytes"] > 0 and j["mode"] == "edgeinfinite" and j["tokens_per_call"] == 32, j
assert list(j["tasks"]) == [task], j["tasks"]
t = j["tasks"][task]
assert t["items"] == len(j["items"]) > 0 and t["skipped"] == 0, t
for m in metrics:
    finite(t[m], m)
    assert t[m] >= 0 and (m == "ppl" or t[m] <= 1), (m, t[m])
finite(t["prefill_tokens_per_s"], "prefill")
assert t["peak_rss_bytes"] > 0, t
if task != "lm":
    for k in ("ttft_median_s", "ttft_p90_s"):
        finite(t[k], k)
    assert 0 < t["ttft_median_s"] <= t["ttft_p90_s"], t
    assert t["decode_tokens_per_s"] is None or t["decode_tokens_per_s"] > 0, t
for it in j["items"]:
    assert it["task"] == task and it["prompt_tokens"] > 0, it
    if task == "lm":
        finite(it["ppl"], "ppl"); finite(it["nll"], "nll")
        assert it["scored_tokens"] == it["prompt_tokens"] - 1, it
    else:
        assert it["stop"] in ("eos", "max", "line", "capacity"), it
        assert all(0 <= i < 512 for i in it["generated"]), it
        assert isinstance(it["text"], str) and isinstance(it["reference"], str), it
        finite(it["ttft_s"], "ttft"); finite(it["prefill_s"], "prefill")
        assert it["ttft_s"] >= it["prefill_s"], it
PY
}
run() { # NAME EIS TASK TABLE-REGEX METRIC...
  local name=$1 eis=$2 task=$3 re=$4; shift 4
  "$EVAL" --graph "$TMP/m.eig" --eval-set "$eis" --threads 2 --max-new 24 --json "$TMP/$name.json" "${Q[@]}" \
      > "$TMP/$name.txt" 2> "$TMP/$name.err" || fail "$name: exit $? $(cat "$TMP/$name.err")"
  grep -Eq '^task +items +skip +quality +ttft p50 +ttft p90 +prefill t/s +decode t/s +peak RSS' "$TMP/$name.txt" \
      || fail "$name: no table header: $(cat "$TMP/$name.txt")"
  grep -Eq "^$task +[0-9]+ +0 +$re" "$TMP/$name.txt" || fail "$name: no '$task' row: $(cat "$TMP/$name.txt")"
  check_json "$TMP/$name.json" "$task" "$@" || fail "$name: JSON check"
}
run sum "$TMP/sum.eis" summary 'rouge-l [0-9.]+ ' rouge_l
run qa "$TMP/qa.eis" qa 'exact [0-9.]+ contains [0-9.]+ ' exact contains
run mc "$TMP/mc.eis" choice 'accuracy [0-9.]+ ' accuracy
run lm "$TMP/lm.eis" lm 'ppl [0-9.]+ ' ppl
run pk "$TMP/pk.eis" passkey 'exact [0-9.]+ contains [0-9.]+ ' exact contains
grep -q 'backend cpu' "$TMP/sum.txt" || fail "table: no backend line"
grep -q 'MB' "$TMP/sum.txt" || fail "table: no file size / RSS"
/usr/bin/python3 -c "
import json, sys
j = json.load(open('$TMP/sum.json'))
assert j['tasks']['summary']['decode_tokens_per_s'] > 0, j['tasks']
assert all(len(i['generated']) <= 24 for i in j['items'])
" || fail "summary: decode tokens/s or --max-new"

# ---- --max-tasks, JSON on stdout
"$EVAL" --graph "$TMP/m.eig" --eval-set "$TMP/qa.eis" --max-tasks 1 --max-new 8 --json - "${Q[@]}" \
    > "$TMP/one.json" 2> "$TMP/one.err" || fail "--json -: $(cat "$TMP/one.err")"
/usr/bin/python3 -c "import json; j = json.load(open('$TMP/one.json')); assert len(j['items']) == 1, j" \
    || fail "--max-tasks 1 / --json - : $(head -c 300 "$TMP/one.json")"
grep -q '^qa ' "$TMP/one.err" || fail "--json -: the table should go to stderr"

# ---- determinism across runs and thread counts
for t in 1 3; do
  "$EVAL" --graph "$TMP/m.eig" --eval-set "$TMP/sum.eis" --threads $t --max-new 24 --print-tokens "${Q[@]}" \
      | grep -P '\t' > "$TMP/tok$t.txt"
done
[ -s "$TMP/tok1.txt" ] || fail "--print-tokens printed nothing"
cmp -s "$TMP/tok1.txt" "$TMP/tok3.txt" || fail "tokens differ between 1 and 3 threads"
/usr/bin/python3 - "$TMP/tok1.txt" "$TMP/sum.json" <<'PY' || fail "--print-tokens disagrees with the JSON"
import json, sys
lines = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
items = json.load(open(sys.argv[2]))["items"]
assert len(lines) == len(items)
for (tag, ids, stop), it in zip(lines, items):
    assert tag == it["tag"] and stop == it["stop"], (tag, it["tag"])
    assert [int(x) for x in ids.split()] == it["generated"], tag
PY

# ---- passkey grid generated on the device
"$EVAL" --graph "$TMP/m.eig" --passkey --lengths 256 --depths 0,50,100 --filler "$FIX/text/sherlock_holmes.txt" \
    --max-new 12 --per-cell 2 --seed 7 --json "$TMP/grid.json" "${Q[@]}" > "$TMP/grid.txt" 2> "$TMP/grid.err" \
    || fail "passkey grid: $(cat "$TMP/grid.err")"
grep -Eq '^passkey +6 +0 +exact' "$TMP/grid.txt" || fail "passkey row: $(cat "$TMP/grid.txt")"
grep -Eq '^ +length +0% +50% +100% +mean$' "$TMP/grid.txt" || fail "grid header: $(cat "$TMP/grid.txt")"
grep -Eq '^ +256( +[0-9]\.[0-9]{2}){4}$' "$TMP/grid.txt" || fail "grid row: $(cat "$TMP/grid.txt")"
/usr/bin/python3 - "$TMP/grid.json" <<'PY' || fail "passkey grid JSON"
import json, sys
j = json.load(open(sys.argv[1]))
g = j["passkey_grid"]
assert g["lengths"] == [256] and g["depths"] == [0, 0.5, 1] and g["per_cell"] == 2, g
assert len(g["contains"]) == 1 and len(g["contains"][0]) == 3 and all(0 <= v <= 1 for v in g["contains"][0]), g
assert len(j["items"]) == 6
keys = set()
for it in j["items"]:
    assert it["task"] == "passkey" and it["prompt_tokens"] == 256, it
    assert it["reference"].isdigit() and len(it["reference"]) == 5, it
    keys.add(it["reference"])
assert len(keys) > 1, "keys should differ"
PY
# default filler, default depths, percent and fraction depths agree
"$EVAL" --graph "$TMP/m.eig" --passkey --lengths 200 --depths 0,0.5 --max-new 4 --print-tokens "${Q[@]}" \
    | grep -P '^passkey:' > "$TMP/frac.txt" || fail "fraction depths"
"$EVAL" --graph "$TMP/m.eig" --passkey --lengths 200 --depths 0,50 --max-new 4 --print-tokens "${Q[@]}" \
    | grep -P '^passkey:' > "$TMP/pct.txt" || fail "percent depths"
cmp -s "$TMP/frac.txt" "$TMP/pct.txt" || fail "--depths 0,0.5 and 0,50 differ"
# both sources in one run
"$EVAL" --graph "$TMP/m.eig" --eval-set "$TMP/lm.eis" --passkey --lengths 200 --depths 50 --max-new 4 "${Q[@]}" \
    > "$TMP/both.txt" || fail "--eval-set with --passkey"
grep -q '^lm ' "$TMP/both.txt" && grep -q '^passkey ' "$TMP/both.txt" || fail "both: $(cat "$TMP/both.txt")"

# ---- nnapi: a clear fallback to cpu, or a clear error with --strict
"$EVAL" --graph "$TMP/m.eig" --eval-set "$TMP/sum.eis" --backend nnapi --threads 1 --max-new 24 --print-tokens \
    "${Q[@]}" > "$TMP/nn.txt" 2> "$TMP/nn.err" || fail "--backend nnapi: exit $? $(cat "$TMP/nn.err")"
cmp -s "$TMP/tok1.txt" <(grep -P '\t' "$TMP/nn.txt") || fail "--backend nnapi: tokens differ from cpu"
if grep -q 'backend cpu' "$TMP/nn.txt"; then
  grep -qi 'nnapi' "$TMP/nn.err" || fail "nnapi fell back without a notice"
fi
set +e
"$EVAL" --graph "$TMP/m.eig" --eval-set "$TMP/sum.eis" --backend nnapi --strict --max-new 4 "${Q[@]}" \
    > /dev/null 2> "$TMP/strict.err"
rc=$?
set -e
[ $rc = 0 ] || { [ $rc = 1 ] && grep -qi 'nnapi' "$TMP/strict.err"; } || fail "--strict: exit $rc $(cat "$TMP/strict.err")"

# ---- --tsv rows for comparing runs: a header once, then one row per task type and run
"$EVAL" --graph "$TMP/m.eig" --eval-set "$TMP/lm.eis" --passkey --lengths 200 --depths 50 --max-new 4 "${Q[@]}" \
    --tsv "$TMP/runs.tsv" --label "first run" > /dev/null || fail "--tsv"
"$EVAL" --graph "$TMP/m.eig" --eval-set "$TMP/lm.eis" --max-new 4 "${Q[@]}" --tsv "$TMP/runs.tsv" > /dev/null ||
    fail "--tsv (append)"
/usr/bin/python3 - "$TMP/runs.tsv" "$TMP/lm.json" "$TMP/m.eig" <<'PY' || fail "--tsv rows: $(cat "$TMP/runs.tsv")"
import json, os, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
head = rows[0]
assert head[:6] == ["label", "task", "items", "skip", "metric", "quality"] and len(head) == 14, head
body = [dict(zip(head, r)) for r in rows[1:]]
assert [(r["label"], r["task"]) for r in body] == [("first run", "lm"), ("first run", "passkey"), ("stories", "lm")], body
lm = json.load(open(sys.argv[2]))["tasks"]["lm"]
for r in (body[0], body[2]):
    assert r["metric"] == "ppl" and abs(float(r["quality"]) - lm["ppl"]) <= 5e-5 * lm["ppl"], (r, lm["ppl"])
    assert r["backend"] == "cpu" and r["mode"] == "edgeinfinite", r
assert body[1]["metric"] == "contains" and float(body[1]["decode_tps"]) > 0, body[1]
assert abs(float(body[0]["file_mb"]) - os.path.getsize(sys.argv[3]) / 1048576) < 0.01, body[0]
PY

# ---- --report: the NNAPI support report alone (no library here: a clear message, exit 1)
set +e
EI_NNAPI_LIB=/nonexistent/libneuralnetworks.so "$EVAL" --graph "$TMP/m.eig" --report > "$TMP/rep.txt" 2>&1
rc=$?
set -e
[ $rc = 1 ] && grep -q 'nnapi: unavailable' "$TMP/rep.txt" || fail "--report without a library: exit $rc $(cat "$TMP/rep.txt")"
NN=$(dirname "$EI")/tests/nnapi/libei_fake_nnapi_fl7.so
if [ -f "$NN" ]; then
  "$EVAL" --graph "$TMP/m.eig" --report --nnapi-lib "$NN" > "$TMP/rep.txt" 2>&1 || fail "--report: $(cat "$TMP/rep.txt")"
  for g in prefill decode compress; do
    grep -q "^graph '$g': [0-9]* IR nodes -> [0-9]* NNAPI operations" "$TMP/rep.txt" || fail "--report lacks $g: $(cat "$TMP/rep.txt")"
  done
  [ "$(grep -c 'runtime feature level' "$TMP/rep.txt")" = 1 ] || fail "--report: the library header should print once"
fi

# ---- bad input: exit 1 with a message naming the file
expect1() { # FILE-IN-MESSAGE ARGS...
  local what=$1; shift
  set +e
  "$EVAL" "$@" "${Q[@]}" > /dev/null 2> "$TMP/err"
  local rc=$?
  set -e
  [ $rc = 1 ] || fail "expected exit 1 for: $* (got $rc) $(cat "$TMP/err")"
  grep -q "^ei-eval: error: .*$what" "$TMP/err" || fail "unclear error for: $* : $(cat "$TMP/err")"
}
head -c 200 "$TMP/sum.eis" > "$TMP/trunc.eis"
cp "$TMP/sum.eis" "$TMP/flip.eis"
printf '\x7f' | dd of="$TMP/flip.eis" bs=1 seek=100 conv=notrunc status=none
printf 'NOTANEIS' | dd of="$TMP/magic.eis" bs=1 status=none
cp "$TMP/m.eig" "$TMP/flip.eig"
printf '\xff\xff\xff\xff' | dd of="$TMP/flip.eig" bs=1 seek=200 conv=notrunc status=none
head -c 5000 "$TMP/m.eig" > "$TMP/trunc.eig"
expect1 trunc.eis --graph "$TMP/m.eig" --eval-set "$TMP/trunc.eis"
expect1 flip.eis --graph "$TMP/m.eig" --eval-set "$TMP/flip.eis"
expect1 magic.eis --graph "$TMP/m.eig" --eval-set "$TMP/magic.eis"
expect1 none.eis --graph "$TMP/m.eig" --eval-set "$TMP/none.eis"
expect1 flip.eig --graph "$TMP/flip.eig" --eval-set "$TMP/lm.eis"
expect1 trunc.eig --graph "$TMP/trunc.eig" --eval-set "$TMP/lm.eis"
expect1 none.eig --graph "$TMP/none.eig" --eval-set "$TMP/lm.eis"
expect1 nofiller.txt --graph "$TMP/m.eig" --passkey --lengths 256 --filler "$TMP/nofiller.txt"
expect1 'too short' --graph "$TMP/m.eig" --passkey --lengths 8
# an evaluation set of another vocabulary (ids beyond the model's 512)
/usr/bin/python3 - "$TMP/big.eis" <<'PY'
import struct, sys
def fnv(b):  # FNV-1a 64, as core/ei_io.c's ei_hash_fnv1a
    h = 14695981039346656037
    for c in b: h = ((h ^ c) * 0x100000001b3) & 0xffffffffffffffff
    return h
ident = b"x:y:0"; pad = lambda b: b + b"\0" * (-len(b) % 4)
body = pad(ident) + struct.pack("<5I", 3, 1, 2, 0, 0) + pad(b"t") + struct.pack("<2i", 1, 900)
size = 48 + len(body) + 8
head = b"EIEVSET\0" + struct.pack("<IIQIiiiII", 1, 48, size, 1, 1000, 1, 2, len(ident), 0)
data = head + body
open(sys.argv[1], "wb").write(data + struct.pack("<Q", fnv(data)))
PY
expect1 'vocabulary of 1000' --graph "$TMP/m.eig" --eval-set "$TMP/big.eis"

# ---- usage errors: exit 2
expect2() {
  set +e
  "$EVAL" "$@" > /dev/null 2> "$TMP/err"
  local rc=$?
  set -e
  [ $rc = 2 ] || fail "expected exit 2 for: $* (got $rc) $(cat "$TMP/err")"
  grep -q '^ei-eval: error: ' "$TMP/err" || fail "usage error without a message: $*"
}
expect2
expect2 --eval-set "$TMP/lm.eis"
expect2 --graph "$TMP/m.eig"
expect2 --graph "$TMP/m.eig" --eval-set "$TMP/lm.eis" --backend tpu
expect2 --graph "$TMP/m.eig" --eval-set "$TMP/lm.eis" --threads 0
expect2 --graph "$TMP/m.eig" --eval-set "$TMP/lm.eis" --bogus
expect2 --graph "$TMP/m.eig" --eval-set "$TMP/lm.eis" --lengths 1k
expect2 --graph "$TMP/m.eig" --passkey --lengths 1x
expect2 --graph "$TMP/m.eig" --passkey --depths 50,150
expect2 --graph "$TMP/m.eig" --eval-set "$TMP/lm.eis" extra
expect2 --graph "$TMP/m.eig" --eval-set "$TMP/lm.eis" --label x
expect2 --graph "$TMP/m.eig" --eval-set "$TMP/lm.eis" --nnapi-fallback gpu
"$EVAL" --help > "$TMP/help.txt" || fail "--help exit status"
for o in graph eval-set backend threads json max-tasks passkey lengths depths filler print-tokens strict max-new \
         tsv label report nnapi-lib nnapi-device nnapi-cache nnapi-relax-f16 nnapi-fallback; do
  grep -q -- "--$o" "$TMP/help.txt" || fail "--help lacks --$o"
done
echo "cli_ei_eval: ok"
