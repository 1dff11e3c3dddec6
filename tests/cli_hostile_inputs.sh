#!/usr/bin/env bash
# Hostile files through the CLI, each with its defined outcome (docs/reliability.md, "Hostile
# inputs"): a clear error naming the file and the problem, exit status 1, no crash, nothing written.
#  - NaN / inf in model weights (llama2.c and Hugging Face) and in a gate file: refused at load,
#    naming the tensor, by generate (default sampler and greedy), eval, train and compile;
#    finite weights that overflow to non-finite logits: eval and generate fail, never a result;
#  - headers claiming 4 GiB in 1 KiB files (llama2.c, safetensors, .eig, .eis): refused without
#    allocating (checked under a 1 GB address-space limit outside sanitizer builds);
#  - one-token and empty documents in prepare and eval;
#  - a Hugging Face config.json with fewer layers than its weights; a tokenizer.json with an id of
#    5e7; a pre-tokenizer regex that hits PCRE2's match limit; JSON nested 2000 deep (tokenizer.json
#    and a JSONL line); a JSONL file of blank lines;
#  - whole-file checksums (seals): scripts/seal_check.py agrees with the writer, a flipped byte or
#    a truncation is refused before libhdf5 parses anything, a file without a seal is read with a
#    note, and h5dump still reads sealed files.
set -euo pipefail
EI=${EI_BIN:?EI_BIN not set}
EVAL=${EI_EVAL_BIN:?EI_EVAL_BIN not set}
FIX=${EI_FIXTURES:?EI_FIXTURES not set}
SRC=${EI_SOURCE_DIR:?EI_SOURCE_DIR not set}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
BIN=$FIX/models/stories260K/stories260K.bin
HF=$FIX/models/stories260K-hf
TOK=$FIX/models/stories260K/tok512.bin
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect CODE REGEX CMD...: CMD exits with CODE and its stderr matches REGEX (grep -E).
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
# A 1 GB address-space limit, so a file that claims 4 GiB cannot be "handled" by allocating it
# (ASan reserves terabytes of shadow memory: no limit in sanitizer builds).
limited() { if [ "${EI_SANITIZE:-0}" = 1 ]; then "$@"; else (ulimit -v 1000000; "$@"); fi; }

# ------------------------------------------------------------------ non-finite weights and gates
python3 - "$BIN" "$TMP" <<'PY'
import json, shutil, struct, sys
src, tmp = sys.argv[1], sys.argv[2]
dim, hidden, layers, heads, kv, vocab, seq = struct.unpack("<7i", open(src, "rb").read(28))
def patch(path, index, value):
    with open(path, "r+b") as f:
        f.seek(28 + 4 * index)
        f.write(struct.pack("<f", value))
# wq of layer 2: after the embedding, rms_att of every layer, wq of layers 0 and 1; element 70
wq2 = vocab * dim + layers * dim + 2 * dim * dim
shutil.copy(src, tmp + "/nan.bin"); patch(tmp + "/nan.bin", wq2 + 70, float("nan"))
shutil.copy(src, tmp + "/inf.bin"); patch(tmp + "/inf.bin", 5 * dim + 3, float("-inf"))
# rms_final: after every per-layer tensor; huge but finite, so logits overflow to inf
kvd = kv * (dim // heads)
final = vocab * dim + layers * (2 * dim + 2 * dim * dim + 2 * kvd * dim + 3 * hidden * dim)
shutil.copy(src, tmp + "/big.bin")
for i in range(dim): patch(tmp + "/big.bin", final + i, 3e38)
# a gate file (token gates: weight [H, D] and bias [H] per layer), one NaN in layer 3's bias
def gates(path, bad):
    hdr, blob = {"__metadata__": {"format": "edgeinfinite-gates", "n_layers": str(layers), "gate": "token"}}, b""
    for l in range(layers):
        for name, n in (("weight", heads * dim), ("bias", heads)):
            vals = [0.0] * n
            if bad and l == 3 and name == "bias": vals[2] = float("nan")
            shape = [heads, dim] if name == "weight" else [heads]
            hdr["model.layers.%d.self_attn.memory_gate.%s" % (l, name)] = {
                "dtype": "F32", "shape": shape, "data_offsets": [len(blob), len(blob) + 4 * n]}
            blob += struct.pack("<%df" % n, *vals)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + blob)
gates(tmp + "/gates_ok.safetensors", False)
gates(tmp + "/gates_nan.safetensors", True)
PY
NAN_Q="nan.bin: tensor 'q' of layer 2 holds a non-finite value \(NaN\) at element 70 \(row 1, column 6\)"
expect 1 "$NAN_Q" "$EI" generate --model "$TMP/nan.bin" --tokenizer "$TOK" --max-tokens 8
expect 1 "$NAN_Q" "$EI" generate --model "$TMP/nan.bin" --tokenizer "$TOK" --max-tokens 8 --temperature 0
head -c 2000 "$FIX/text/tinystories.txt" > "$TMP/small.txt"
expect 1 "$NAN_Q" "$EI" eval --model "$TMP/nan.bin" --tokenizer "$TOK" --ppl "$TMP/small.txt"
expect 1 "tensor 'embedding' holds a non-finite value \(-inf\) at element 323 \(row 5, column 3\)" \
  "$EI" eval --model "$TMP/inf.bin" --tokenizer "$TOK" --ppl "$TMP/small.txt"
expect 1 "$NAN_Q" "$EI" compile --model "$TMP/nan.bin" --untrained-gates --tokenizer "$TOK" \
  --scenario "$SRC/configs/scenarios/chat.yaml" -o "$TMP/nan.eig"
[ ! -e "$TMP/nan.eig" ] || fail "compile wrote a graph file of a NaN model"
"$EI" prepare --tokenizer "$TOK" --doc-mode paragraphs --max-docs 8 --quiet -o "$TMP/d.h5" \
  "$FIX/text/tinystories.txt" > /dev/null
printf 'model:\n  path: %s\ndata:\n  train: %s\ntrain:\n  steps: 2\n  out_dir: %s/run\n' \
  "$TMP/nan.bin" "$TMP/d.h5" "$TMP" > "$TMP/train.yaml"
expect 1 "$NAN_Q" "$EI" train --config "$TMP/train.yaml" --quiet
[ ! -e "$TMP/run/gates.safetensors" ] || fail "train wrote gates for a NaN model"
# huge finite weights: non-finite logits are an error, never an index or a "loss nan" result
expect 1 "loss is not finite" "$EI" eval --model "$TMP/big.bin" --tokenizer "$TOK" --ppl "$TMP/small.txt"
expect 1 "logit [0-9]+ is not finite" "$EI" generate --model "$TMP/big.bin" --tokenizer "$TOK" --max-tokens 4
# ... and on the device: a language-modelling item of ei-eval reports an error, not a NaN perplexity
"$EI" compile --model "$TMP/big.bin" --untrained-gates --tokenizer "$TOK" --scenario "$SRC/configs/scenarios/chat.yaml" \
  -o "$TMP/big.eig" 2> /dev/null
"$EI" prepare --tokenizer "$TOK" --task lm --quiet --eval-set "$TMP/lm.eis" "$TMP/small.txt" > /dev/null
expect 1 "loss is not finite" "$EVAL" --graph "$TMP/big.eig" --eval-set "$TMP/lm.eis" --quiet
# Hugging Face: a NaN inside model.safetensors, named as the file names it
cp -r "$HF" "$TMP/hf_nan"
python3 - "$TMP/hf_nan/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
t = json.loads(b[8:8 + n])["model.layers.1.mlp.down_proj.weight"]
assert t["dtype"] == "F32"
at = 8 + n + t["data_offsets"][0] + 4 * 9
b[at:at + 4] = struct.pack("<f", float("nan"))
open(p, "wb").write(b)
PY
expect 1 "tensor model.layers.1.mlp.down_proj.weight holds a non-finite value \(NaN\) at element 9" \
  "$EI" generate --model "$TMP/hf_nan" --max-tokens 4
# gates: the finite file works, the NaN one is refused by every command that loads gates
"$EI" generate --model "$BIN" --mode edgeinfinite --gates "$TMP/gates_ok.safetensors" --max-tokens 4 \
  > /dev/null 2> "$TMP/err" || fail "a finite gate file was refused: $(cat "$TMP/err")"
NAN_G="gates_nan.safetensors: tensor model.layers.3.self_attn.memory_gate.bias holds a non-finite value \(NaN\) at element 2"
expect 1 "$NAN_G" "$EI" generate --model "$BIN" --mode edgeinfinite --gates "$TMP/gates_nan.safetensors"
expect 1 "$NAN_G" "$EI" eval --model "$BIN" --mode edgeinfinite --gates "$TMP/gates_nan.safetensors" \
  --ppl "$TMP/small.txt"
expect 1 "$NAN_G" "$EI" compile --model "$BIN" --gates "$TMP/gates_nan.safetensors" \
  --scenario "$SRC/configs/scenarios/chat.yaml" -o "$TMP/g.eig"

# ------------------------------------------------------------------ headers claiming 4 GiB
python3 - "$TMP" "$HF" <<'PY'
import json, os, shutil, struct, sys
tmp, hf = sys.argv[1], sys.argv[2]
def fnv(b):
    h = 14695981039346656037
    for x in b: h = ((h ^ x) * 1099511628211) & (2**64 - 1)
    return h
K = 1024
# llama2.c: a 7B header on 1 KiB
open(tmp + "/huge.bin", "wb").write(struct.pack("<7i", 4096, 11008, 32, 32, 32, 32000, 2048).ljust(K, b"\0"))
# safetensors: a header length of 4 GiB; and a valid header whose tensor claims 4 GiB of data
for name, body in (("hf_hdr", struct.pack("<Q", 1 << 32).ljust(K, b" ")), ("hf_data", None)):
    os.makedirs(tmp + "/" + name)
    shutil.copy(hf + "/config.json", tmp + "/" + name)
    if body is None:
        h = json.dumps({"model.embed_tokens.weight": {"dtype": "F32", "shape": [1 << 20, 1 << 10],
                                                      "data_offsets": [0, 1 << 32]}}).encode()
        body = (struct.pack("<Q", len(h)) + h).ljust(K, b" ")
    open(tmp + "/" + name + "/model.safetensors", "wb").write(body)
# .eig: a consistent header (its checksum right) whose metadata block claims 4 GiB
e = bytearray(K)
e[0:8] = b"EIGRAPH\0"
struct.pack_into("<IIQQQQQ", e, 8, 1, 128, K, 128, 1 << 32, 1 << 33, 1 << 32)
struct.pack_into("<Q", e, 120, fnv(e[:120]))
open(tmp + "/huge.eig", "wb").write(e)
# .eis: a consistent file (checksum right) claiming 2^32 - 1 items and a 1 GiB tokenizer name
for name, items, toklen in (("huge_items.eis", 0xFFFFFFFF, 0), ("huge_name.eis", 1, 0x3FFFFFFF)):
    s = bytearray(K)
    s[0:8] = b"EIEVSET\0"
    struct.pack_into("<IIQIIiiI", s, 8, 1, 48, K, items, 512, 1, 2, toklen)
    struct.pack_into("<Q", s, K - 8, fnv(s[:K - 8]))
    open(tmp + "/" + name, "wb").write(s)
PY
expect 1 "huge.bin: file is 1024 bytes but a llama2.c v0 checkpoint with dim 4096" limited "$EI" generate --model "$TMP/huge.bin"
expect 1 "invalid header length 4294967296 \(file is 1024 bytes\)" limited "$EI" generate --model "$TMP/hf_hdr"
expect 1 "extends past the end of the file" limited "$EI" generate --model "$TMP/hf_data"
expect 1 "huge.eig: .*(metadata|past|beyond|outside)" limited "$EI" inspect "$TMP/huge.eig"
expect 1 "huge.eig" limited "$EI" generate --graph "$TMP/huge.eig"
expect 1 "huge_items.eis: header counts exceed the file size" limited "$EVAL" --graph "$TMP/huge.eig" --eval-set "$TMP/huge_items.eis"
expect 1 "huge_name.eis: tokenizer identity runs past the end of the file" limited "$EVAL" --graph "$TMP/huge.eig" --eval-set "$TMP/huge_name.eis"

# ------------------------------------------------------------------ configs and tokenizers
cp -r "$HF" "$TMP/hf_short"
python3 - "$TMP/hf_short/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["num_hidden_layers"] = 3; json.dump(c, open(sys.argv[1], "w"))
PY
expect 1 "config.json says num_hidden_layers = 3, but the weights hold [0-9]+ tensors of layers up to 4: model\.layers\.[34]\." \
  "$EI" generate --model "$TMP/hf_short"
TJ=$SRC/tests/tokenizer/tok512_hf/tokenizer.json
python3 - "$TJ" "$TMP" <<'PY'
import json, sys
t = json.load(open(sys.argv[1])); tmp = sys.argv[2]
big = json.loads(json.dumps(t)); big["added_tokens"] = [{"id": 50000000, "content": "<x>", "special": True}]
json.dump(big, open(tmp + "/bigid.json", "w"))
bad = json.loads(json.dumps(t))
bad["normalizer"] = None
bad["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated"}
json.dump(bad, open(tmp + "/backtrack.json", "w"))
open(tmp + "/deep.json", "w").write("[" * 2000 + "]" * 2000)
open(tmp + "/deep.jsonl", "w").write('{"text": "fine"}\n{"text": ' + "[" * 2000 + "]" * 2000 + "}\n")
open(tmp + "/blank.jsonl", "w").write("\n   \n\t\n\n")
PY
expect 1 "bigid.json: added_tokens id 50000000 is not below the number of vocabulary entries \(513\)" \
  limited "$EI" tokenize --tokenizer "$TMP/bigid.json" hello
expect 1 "backtrack.json: pre-tokenizer regex 1 failed .*match limit exceeded \(PCRE2 error -47\)" \
  "$EI" tokenize --tokenizer "$TMP/backtrack.json" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"
expect 1 "deep.json: JSON nested deeper than 1000 levels" "$EI" tokenize --tokenizer "$TMP/deep.json" hello
expect 1 "deep.jsonl:2: JSON nested deeper than 1000 levels" \
  "$EI" prepare --tokenizer "$TOK" --context text -o "$TMP/deep.h5" "$TMP/deep.jsonl"
expect 1 "blank.h5: no samples to write \(0 documents" \
  "$EI" prepare --tokenizer "$TOK" --context text -o "$TMP/blank.h5" "$TMP/blank.jsonl"
[ ! -e "$TMP/blank.h5" ] || fail "a dataset without samples was written"

# a one-token document (one piece, with BOS and EOS around it) is scored; an empty text is not
printf 'a' > "$TMP/one.txt"
[ "$("$EI" tokenize --tokenizer "$TOK" a)" -ge 0 ] 2> /dev/null || fail "'a' is not one token"
"$EI" prepare --tokenizer "$TOK" --quiet -o "$TMP/one.h5" "$TMP/one.txt" > "$TMP/one.stats"
n=$(sed -n 's/.* 1 samples, \([0-9]*\) tokens.*/\1/p' "$TMP/one.stats")
[ -n "$n" ] && [ "$n" -le 3 ] || fail "one-token document: $(cat "$TMP/one.stats")"
"$EI" eval --model "$BIN" --data "$TMP/one.h5" > "$TMP/one.out" 2> /dev/null || fail "eval of a one-token dataset"
grep -q "^tokens $((n - 1))$" "$TMP/one.out" || fail "one-token dataset of $n tokens: $(cat "$TMP/one.out")"
: > "$TMP/empty.txt"
expect 1 "nothing to score" "$EI" eval --model "$BIN" --ppl "$TMP/empty.txt"
expect 1 "no samples to write \(0 documents; dropped: 1 empty" "$EI" prepare --tokenizer "$TOK" -o "$TMP/e.h5" "$TMP/empty.txt"

# ------------------------------------------------------------------ seals (whole-file checksums)
python3 "$SRC/scripts/seal_check.py" "$TMP/d.h5" > "$TMP/seal.txt" || fail "seal_check.py: $(cat "$TMP/seal.txt")"
grep -q "ok (ei-dataset" "$TMP/seal.txt" || fail "seal_check.py: $(cat "$TMP/seal.txt")"
if command -v h5dump > /dev/null; then
  h5dump -H "$TMP/d.h5" | grep -q 'DATASET "tokens"' || fail "h5dump cannot read a sealed dataset"
fi
"$EI" eval --model "$BIN" --data "$TMP/d.h5" > /dev/null 2>&1 || fail "eval of a sealed dataset"
size=$(stat -c %s "$TMP/d.h5")
python3 - "$TMP/d.h5" "$TMP/flip.h5" "$((size / 2))" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[int(sys.argv[3])] ^= 0x04; open(sys.argv[2], "wb").write(b)
PY
expect 1 "flip.h5: whole-file checksum mismatch" "$EI" eval --model "$BIN" --data "$TMP/flip.h5"
python3 "$SRC/scripts/seal_check.py" "$TMP/flip.h5" > /dev/null && fail "seal_check.py accepted a flipped byte"
head -c $((size - 100)) "$TMP/d.h5" > "$TMP/cut.h5"
expect 1 "cut.h5: truncated" "$EI" eval --model "$BIN" --data "$TMP/cut.h5"
cp "$TMP/d.h5" "$TMP/foreign.h5"
printf '\0\0\0\0\0\0\0\0' | dd of="$TMP/foreign.h5" conv=notrunc status=none
expect 0 "foreign.h5 carries no ei checksum .* parsed by libhdf5 unverified" \
  "$EI" eval --model "$BIN" --data "$TMP/foreign.h5"
echo "cli_hostile_inputs: ok"
