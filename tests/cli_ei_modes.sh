#!/usr/bin/env bash
# CLI test of the EdgeInfinite modes of `ei eval` and `ei generate` on stories260K:
#  - a document no longer than the routing threshold (S + W + L) scores exactly as --mode full;
#  - on a long document, edgeinfinite with gates loaded from a file that closes them (beta = -40)
#    scores as window mode (to 1e-5), and open gates (beta = +2) change the loss;
#  - generation in edgeinfinite mode continues past the model's 512-token context;
#  - bad options give clear errors.
set -euo pipefail
EI=${EI_BIN:?EI_BIN not set}
FIX=${EI_FIXTURES:?EI_FIXTURES not set}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
BIN=$FIX/models/stories260K/stories260K.bin
TXT=$FIX/text/tinystories.txt
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
loss() { "$EI" eval --ppl "$TXT" --model "$BIN" "$@" 2>/dev/null | sed -n 's/^loss //p'; }
close() { /usr/bin/python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if abs(a-b)<=1e-5*abs(b) else 1)" "$1" "$2"; }

# routing: 300 tokens <= 4 + 256 + 128
full=$(loss --max-tokens 300 --mode full)
for m in window edgeinfinite; do
  [ "$(loss --max-tokens 300 --mode $m)" = "$full" ] || fail "$m mode on a short document differs from full"
done

# gate files written independently (safetensors by hand): head gates, 5 layers x 8 heads
/usr/bin/python3 - "$TMP" <<'PY'
import json, struct, sys
for name, beta in (("closed", -40.0), ("open", 2.0)):
    header, data = {}, b""
    for l in range(5):
        header[f"model.layers.{l}.self_attn.memory_gate.beta"] = {"dtype": "F32", "shape": [8],
                                               "data_offsets": [len(data), len(data) + 32]}
        data += struct.pack("<8f", *([beta] * 8))
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(f"{sys.argv[1]}/{name}.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + data)
PY
win=$(loss --max-tokens 2048 --mode window)
shut=$(loss --max-tokens 2048 --mode edgeinfinite --gate head --gates "$TMP/closed.safetensors")
open=$(loss --max-tokens 2048 --mode edgeinfinite --gate head --gates "$TMP/open.safetensors")
[ -n "$win" ] && [ -n "$shut" ] && [ -n "$open" ] || fail "eval printed no loss"
close "$shut" "$win" || fail "closed gates ($shut) should score as window mode ($win)"
close "$open" "$win" && fail "open gates ($open) should change the loss ($win)"

# generation past the trained context, memory absorbing what leaves the window
"$EI" generate --model "$BIN" --temperature 0 --max-tokens 700 --mode edgeinfinite --window 64 --segment 32 \
    > "$TMP/gen.txt" 2> "$TMP/gen.err"
grep -q "generated: 700 tokens" "$TMP/gen.err" || fail "edgeinfinite generation stopped early: $(cat "$TMP/gen.err")"
"$EI" generate --model "$BIN" --temperature 0 --max-tokens 40 --mode window > "$TMP/w.txt" 2>/dev/null
"$EI" generate --model "$BIN" --temperature 0 --max-tokens 40 > "$TMP/f.txt" 2>/dev/null
cmp -s "$TMP/w.txt" "$TMP/f.txt" || fail "a short (routed) generation differs from full mode"

# errors
if "$EI" eval --ppl "$TXT" --model "$BIN" --mode edgeinfinite --gate banana > /dev/null 2> "$TMP/err"; then fail "bad --gate accepted"; fi
grep -q -- "--gate" "$TMP/err" || fail "bad --gate: unclear error: $(cat "$TMP/err")"
if "$EI" eval --ppl "$TXT" --model "$BIN" --mode window --gates "$TMP/open.safetensors" > /dev/null 2> "$TMP/err"; then
  fail "--gates accepted in window mode"; fi
if "$EI" eval --ppl "$TXT" --model "$BIN" --mode edgeinfinite --gates "$TMP/open.safetensors" > /dev/null 2> "$TMP/err"; then
  fail "head gates accepted for a token-gate model"; fi
grep -q "open.safetensors" "$TMP/err" || fail "gate kind mismatch: unclear error: $(cat "$TMP/err")"
if "$EI" generate --model "$BIN" --mode edgeinfinite --segment 0 > /dev/null 2> "$TMP/err"; then fail "--segment 0 accepted"; fi
grep -q "segment" "$TMP/err" || fail "--segment 0: unclear error"
"$EI" eval --help | grep -q -- "--memory-rule" || fail "eval --help lacks the EdgeInfinite options"
echo "cli_ei_modes: ok"
