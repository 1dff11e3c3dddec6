#!/usr/bin/env bash
# `ei eval --ppl` streams a document of more than a million tokens with flat memory, eagerly and
# through a compiled graph (--graph): the text is read and tokenised in pieces (cli/cmd_eval.c), so
# the peak RSS the command reports for 1M+ tokens stays within 3 MB of that for 300k tokens (keeping the ids alone would add 4 MB);
# the streamed token count equals `ei tokenize` of the whole file, --max-tokens cuts the stream
# exactly, and the eager and graph losses agree (the graph path is the device one).
# A tiny random model keeps a million tokens to seconds. Sanitizer builds run 40k tokens and skip
# the memory comparison (ASan's quarantine and shadow memory are not the program's).
set -euo pipefail
EI=${EI_BIN:?EI_BIN not set}
FIX=${EI_FIXTURES:?EI_FIXTURES not set}
SRC=${EI_SOURCE_DIR:?EI_SOURCE_DIR not set}
export OMP_NUM_THREADS=1
TOK=$FIX/models/stories260K/tok512.bin
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
SAN=${EI_SANITIZE:-0}
LONG_BYTES=2100000 SHORT_BYTES=600000 CUT=50000 # ~1.07M and ~300k tokens with tok512
[ "$SAN" = 1 ] && LONG_BYTES=80000 SHORT_BYTES=30000 CUT=20000

"$EI" make-model --dim 16 --hidden 32 --layers 1 --heads 2 --kv-heads 1 --vocab 512 --seq-len 256 \
  -o "$TMP/tiny.bin" 2> /dev/null
"$EI" compile --model "$TMP/tiny.bin" --untrained-gates --tokenizer "$TOK" --scenario "$SRC/configs/scenarios/chat.yaml" \
  --set edgeinfinite.segment=224 --set edgeinfinite.sink=16 --set edgeinfinite.window=16 \
  --set scenario.tokens_per_call=32 -o "$TMP/tiny.eig" 2> /dev/null
: > "$TMP/long.txt"
while [ "$(stat -c %s "$TMP/long.txt")" -lt "$LONG_BYTES" ]; do cat "$FIX/text/tinystories.txt" >> "$TMP/long.txt"; done
head -c "$LONG_BYTES" "$TMP/long.txt" > "$TMP/l.txt" && mv "$TMP/l.txt" "$TMP/long.txt"
head -c "$SHORT_BYTES" "$TMP/long.txt" > "$TMP/short.txt"
want=$(( $("$EI" tokenize --tokenizer "$TOK" --bos - < "$TMP/long.txt" | wc -w) - 1 ))
[ "$SAN" = 1 ] || [ "$want" -gt 1000000 ] || fail "the long text has only $want tokens"

EAGER=(--model "$TMP/tiny.bin" --tokenizer "$TOK" --mode edgeinfinite --segment 224 --sink 16 --window 16)
GRAPH=(--graph "$TMP/tiny.eig" --threads 1)
# run NAME ARGS...: eval --json into NAME.json, stderr into NAME.err (runs in the background)
run() { local n=$1; shift; "$EI" eval --json "$@" > "$TMP/$n.json" 2> "$TMP/$n.err" || echo "$n" >> "$TMP/failed"; }
run eager_long "${EAGER[@]}" --ppl "$TMP/long.txt" &
run graph_long "${GRAPH[@]}" --ppl "$TMP/long.txt" &
wait
run eager_short "${EAGER[@]}" --ppl "$TMP/short.txt" &
run graph_short "${GRAPH[@]}" --ppl "$TMP/short.txt" &
run eager_cut "${EAGER[@]}" --ppl "$TMP/long.txt" --max-tokens "$CUT" &
wait
[ ! -e "$TMP/failed" ] || fail "eval failed: $(for n in $(cat "$TMP/failed"); do cat "$TMP/$n.err"; done)"
python3 - "$TMP" "$want" "$SAN" "$CUT" <<'PY'
import json, re, sys
tmp, want, san, cut = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
r = {}
for n in ("eager_long", "graph_long", "eager_short", "graph_short", "eager_cut"):
    j = json.load(open("%s/%s.json" % (tmp, n)))
    m = re.search(r"peak RSS ([0-9.]+) MB", open("%s/%s.err" % (tmp, n)).read())
    assert m, n + ": no peak RSS report"
    r[n] = (j, float(m.group(1)))
for n in ("eager_long", "graph_long"):
    assert r[n][0]["tokens"] == want, (n, r[n][0]["tokens"], want)
assert r["eager_cut"][0]["tokens"] == cut - 1, r["eager_cut"][0]
# the graph computes what the eager model computes (to float tolerance over a million tokens)
assert abs(r["eager_long"][0]["loss"] - r["graph_long"][0]["loss"]) < 1e-3, (r["eager_long"][0], r["graph_long"][0])
for kind in ("eager", "graph"):
    long_mb, short_mb = r[kind + "_long"][1], r[kind + "_short"][1]
    print("%s: %d tokens, peak RSS %.1f MB (%.1f MB for the short text)" % (kind, want, long_mb, short_mb))
    if not san:
        assert long_mb - short_mb < 3.0, "%s: memory grows with the document: %.1f MB vs %.1f MB" % (kind, long_mb, short_mb)
PY
echo "cli_eval_stream: ok"
