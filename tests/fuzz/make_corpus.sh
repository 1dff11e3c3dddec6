#!/usr/bin/env bash
# Regenerates the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/) from tiny valid
# inputs: a 2-layer dim-8 llama2.c model (`ei make-model`), a 32-piece tokenizer.bin, a dataset,
# checkpoint and gate files from a 2-step `ei train`, `.eig` files from `ei compile`, an `.eis`
# from `ei prepare`, the small fixtures and configs of the repository, and hand-written JSON, YAML
# and selector inputs. The structured HDF5 targets get descriptions (h5_common.h) encoded by the
# python below. Seeds stay a few KB each (the compiled .eig files are the exception: ~40-90 KB).
#
#   tests/fuzz/make_corpus.sh [EI_BINARY]      (default: build/ei)
#
# The committed corpus is the output of this script plus what fuzzing added (scripts/fuzz.sh
# merges new coverage back only when asked: FUZZ_MERGE=1). Not run by CI.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
EI=${1:-$root/build/ei}
FIX=${EI_FIXTURES:-$root/../shared/fixtures}
out=$root/tests/fuzz/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

seed() { # target name source-file
    mkdir -p "$out/$1"
    cp "$3" "$out/$1/$2"
}
text_seed() { # target name text (printf format)
    mkdir -p "$out/$1"
    printf "$3" > "$out/$1/$2"
}

# ---- a tiny model family
python3 - <<'EOF'
import struct
pieces = ["<unk>", "\n<s>\n", "\n</s>\n", " ", "e", "t", "a", "o", "n", "s", "h", "r", " t", "he", " the", "in",
          " a", "er", "on", "re", "at", "en", "nd", " s", "ou", "ed", "is", "<0x0A>", "<0x21>", "it", "an", " w"]
out = struct.pack("<i", 8)
for i, p in enumerate(pieces):
    b = p.encode()
    out += struct.pack("<fi", -float(i), len(b)) + b
open("tok32.bin", "wb").write(out)
EOF
"$EI" make-model --dim 8 --hidden 16 --layers 2 --heads 2 --kv-heads 1 --vocab 32 --seq-len 16 -o m2.bin >/dev/null
"$EI" make-model --dim 8 --hidden 16 --layers 2 --heads 2 --kv-heads 1 --vocab 32 --seq-len 16 --untied -o m2u.bin >/dev/null
"$EI" make-model --dim 8 --hidden 16 --layers 1 --heads 2 --kv-heads 1 --vocab 32 --seq-len 16 -o m1.bin >/dev/null
"$EI" make-model --dim 8 --hidden 16 --layers 2 --heads 2 --kv-heads 1 --vocab 32 --seq-len 16 --layout hf -o hf >/dev/null
seed llama2c tied-2layer.bin m2.bin
seed llama2c untied-2layer.bin m2u.bin
seed llama2c tied-1layer.bin m1.bin
seed tokbin tok32.bin tok32.bin
seed tokbin tok512.bin "$FIX/models/stories260K/tok512.bin"
seed spm tok512.model "$FIX/models/stories260K/tok512.model"
seed safetensors tiny-llama.safetensors hf/model.safetensors
seed hf_config tiny-llama.json hf/config.json
seed hf_config tiny-qwen2.json "$root/tests/data/tiny_qwen2/config.json"
seed hf_config stories260K.json "$FIX/models/stories260K-hf/config.json"
seed hf_index tiny-qwen2.index.json "$root/tests/data/tiny_qwen2/model.safetensors.index.json"

# ---- data, training, export
head -c 3000 "$FIX/text/tinystories.txt" > small.txt
"$EI" prepare --tokenizer tok32.bin -o ds.h5 --doc-mode paragraphs --max-tokens 48 small.txt >/dev/null 2>&1
cat > train.yaml <<'EOF'
model:
  path: m2.bin
  tokenizer: tok32.bin
edgeinfinite:
  segment: 4
  sink: 2
  window: 4
data:
  train: ds.h5
train:
  steps: 2
  out_dir: run
  checkpoint_every: 1
  threads: 1
EOF
"$EI" train --config train.yaml >/dev/null 2>&1
"$EI" export run -o gates-token.safetensors >/dev/null 2>&1
"$EI" export run --merged merged >/dev/null 2>&1
"$EI" train --config train.yaml --set edgeinfinite.gate=head --set train.out_dir=runh >/dev/null 2>&1
"$EI" export runh -o gates-head.safetensors >/dev/null 2>&1
seed safetensors gates-token.safetensors gates-token.safetensors
seed safetensors gates-head.safetensors gates-head.safetensors
seed merged_json edgeinfinite.json merged/edgeinfinite.json
seed yaml_train tiny-train.yaml train.yaml
seed yaml_train stories_lm.yaml "$root/configs/train/stories_lm.yaml"
seed yaml_train stories_passkey.yaml "$root/configs/train/stories_passkey.yaml"
printf 'model:\n  path: m.bin\ndata:\n  train: t.h5\ntrain:\n  betas: [0.9, 0.95]\n\0train.lr=1e-3\nedgeinfinite.gate=head\n' \
    > "$out/yaml_train/with-overrides"
printf 'base: &b {segment: 8, sink: 2}\nmodel: {path: m.bin}\ndata: {train: t.h5}\nedgeinfinite: *b\n' \
    > "$out/yaml_train/anchor"
for s in "$root"/configs/scenarios/*.yaml; do seed yaml_scenario "$(basename "$s")" "$s"; done
printf 'scenario: {name: q, mode: window}\nprecision:\n  weights: w8\n  plan:\n    - {layers: 0-3, class: down, scheme: w4g32}\n    - layers: 4\n      scheme: f16\n\0scenario.tokens_per_call=8\n' \
    > "$out/yaml_scenario/plan"

# ---- .eig and .eis
for mode in full edgeinfinite; do
    cat > "s_$mode.yaml" <<EOF
scenario:
  name: tiny
  mode: $mode
  tokens_per_call: 1
  max_new_tokens: 8
  context: 8
edgeinfinite:
  segment: 2
  sink: 1
  window: 2
EOF
    extra=()
    [ "$mode" = edgeinfinite ] && extra=(--gates gates-token.safetensors)
    "$EI" compile --model m1.bin --tokenizer tok32.bin --scenario "s_$mode.yaml" "${extra[@]}" -o "t_$mode.eig" >/dev/null 2>&1 ||
        "$EI" compile --model m1.bin --tokenizer tok32.bin --scenario "s_$mode.yaml" --untrained-gates -o "t_$mode.eig" >/dev/null
    seed eig "tiny-$mode.eig" "t_$mode.eig"
done
printf '{"q": "who is it", "a": "the cat", "ctx": ["a cat sat", "on the mat"]}\n{"q": "where", "a": "on the mat", "ctx": ["the end"]}\n' > qa.jsonl
"$EI" prepare --tokenizer tok32.bin --eval-set qa.eis --context 'ctx[]' --instruction q --answer a qa.jsonl >/dev/null 2>&1
"$EI" prepare --tokenizer tok32.bin --eval-set lm.eis --max-tokens 16 small.txt >/dev/null 2>&1
seed eis qa.eis qa.eis
seed eis lm.eis lm.eis

# ---- tokenizer.json
seed tokenizer_json tok512-hf.json "$root/tests/tokenizer/tok512_hf/tokenizer.json"
seed tokenizer_json tok512-hf-metaspace.json "$root/tests/tokenizer/tok512_hf_metaspace/tokenizer.json"
text_seed tokenizer_json bytelevel-tiny.json '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"\\u0120":3,"\\u0120a":4,"<|endoftext|>":5},"merges":["a b","\\u0120 a"],"byte_fallback":false},"added_tokens":[{"id":5,"content":"<|endoftext|>","special":true}],"normalizer":{"type":"NFC"},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\\\d{1,3}"},"behavior":"Isolated"},{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}]},"decoder":{"type":"ByteLevel"}}'
printf '{"model":{"type":"BPE","vocab":{"<s>":0,"</s>":1,"a":2},"merges":[]},"added_tokens":[]}\0{"bos_token":{"content":"<s>"},"eos_token":"</s>"}' \
    > "$out/tokenizer_json/with-config"

# ---- encoders: byte 0 picks the tokenizer (fuzz_encode_*.c), the rest is text
mkdir -p "$out/encode_sp" "$out/encode_hf"
for k in 0 1 2 3; do
    { printf "\\x0$k"; head -c 400 "$FIX/text/tinystories.txt"; } > "$out/encode_sp/stories-$k"
    { printf "\\x0$k"; printf 'Hello <|im_start|>user\n数学 I'"'"'m 12345  tabs\there <s></s> caf\xc3\xa9 \xf0\x9f\x98\x80\xff'; } > "$out/encode_hf/mixed-$k"
done

# ---- selectors and prepare (docs/datasets.md examples)
mkdir -p "$out/selector"
printf 'meeting_transcripts[].{speaker}: {content}\n{"meeting_transcripts":[{"speaker":"A","content":"hi"},{"speaker":"B","content":"yo"}]}' > "$out/selector/qmsum"
printf 'general_query_list[].answer\n{"general_query_list":[{"query":"q","answer":"a"}]}' > "$out/selector/array"
printf 'question1option{question1_gold_label}\n{"question1_gold_label":2,"question1option2":"yes"}' > "$out/selector/built-path"
printf 'options[{gold}]\n{"gold":1,"options":["x","y"]}' > "$out/selector/built-index"
printf '{title}\\n{{literal}} {body.text}\n{"title":"T","body":{"text":"B"}}' > "$out/selector/format"
printf 'a[2].b\n{"a":[0,1,{"b":1.5e300}]}' > "$out/selector/number"
mkdir -p "$out/prepare_jsonl"
printf '\x01meeting_transcripts[].{speaker}: {content}\ngeneral_query_list[].query\ngeneral_query_list[].answer\n\n{"meeting_transcripts":[{"speaker":"A","content":"the cat sat"}],"general_query_list":[{"query":"who","answer":"a cat"},{"query":"where","answer":"mat"}]}\n\nnot json\n' > "$out/prepare_jsonl/qmsum"
printf '\x48input\ninstructions[]\noutputs[]\n{context}\\n\\nQuestion: {instruction}\\nAnswer: {answer}\n{"input":"a long story about the cat","instructions":["q1","q2"],"outputs":["a1","a2"]}\n' > "$out/prepare_jsonl/quality"
printf '\x59text\n\n\n\n{"text":"once upon a time there was a cat"}\n{"text":"the end"}\n' > "$out/prepare_jsonl/lm"

# ---- structured HDF5 descriptions (h5_common.h; the byte order mirrors fuzz_*_h5.c)
python3 - "$out" <<'EOF'
import os, struct, sys
out = sys.argv[1]

class W:
    def __init__(self): self.b = bytearray()
    def u8(self, v): self.b += bytes([v & 0xFF])
    def below(self, v, n):  # fz_below: 1 byte for n <= 256, 2 for n <= 65536, else 4
        if n <= 1: return
        if n <= 256: self.u8(v)
        elif n <= 65536: self.b += struct.pack("<H", v)
        else: self.b += struct.pack("<I", v)
    def u32(self, v): self.b += struct.pack("<I", v & 0xFFFFFFFF)
    def u64(self, v): self.b += struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)
    def take(self, data): self.b += struct.pack("<H", len(data)) + data

MODES, RIGHT = 10, 1

def dataset(lens, vocab=32, meta_attrs=True):
    w = W()
    n_tok = sum(lens)
    # tokens
    w.below(RIGHT, MODES); w.below(n_tok, 513); w.u8(0); w.below(0, 1 << 20)
    for i in range(n_tok): w.u8(0); w.below(i % vocab, 600)
    # loss_mask
    w.below(RIGHT, MODES); w.below(n_tok, 513); w.u8(0); w.below(0, 1 << 20)
    for i in range(n_tok): w.u8(1); w.u8(0 if i == 0 else 1)
    # offsets: running sums
    w.below(RIGHT, MODES); w.below(len(lens) + 1, 513); w.u8(0); w.below(0, 1 << 20); w.u8(0)
    for i, l in enumerate([0] + lens):
        if i: w.below(l, 8)
    # doc_ids
    w.below(RIGHT, MODES); w.below(len(lens), 513); w.u8(0); w.below(0, 1 << 20)
    for i in range(len(lens)): w.u64(i)
    # /meta group with format_version, then attributes
    w.below(3, 4)
    attrs = [("vocab_size", vocab), ("tokenizer", b"sentencepiece:tok512.model:0123456789abcdef")] if meta_attrs else []
    w.below(len(attrs), 9)
    names = ["format_version", "vocab_size", "tokenizer", "tokenizer_vocab_hash", "n_samples", "n_tokens",
             "template", "kind", "split", "bos_id"]
    for name, v in attrs:
        w.below(names.index(name), len(names)); w.below(RIGHT, MODES)
        if isinstance(v, bytes): w.u8(1); w.take(v)
        else: w.u8(0); w.u8(0); w.below(v, 1024)
    # iterator: seed, shuffle, batch size 2, world 1 (so no rank byte), start epoch and index
    w.u64(7); w.u8(1); w.below(1, 8); w.below(0, 3); w.below(0, 3); w.below(0, 16)
    return bytes(w.b)

os.makedirs(f"{out}/dataset_h5", exist_ok=True)
open(f"{out}/dataset_h5/three-samples", "wb").write(dataset([3, 5, 2]))
open(f"{out}/dataset_h5/one-sample-no-meta", "wb").write(dataset([4], meta_attrs=False))

def checkpoint(n=6, rng=4, cfg=b"model:\n  path: m.bin\ndata:\n  train: t.h5\n", good_sum=True):
    w = W()
    for k in range(3):  # params, adam_m, adam_v: mode byte < 160 = RIGHT
        w.u8(0); w.below(n, 257)
        for i in range(n * 4): w.u8((i * 37 + k) & 0x3F)
    w.u8(0); w.below(rng, 81)
    for i in range(rng * 8): w.u8(i + 1)
    w.below(3, 41)  # sparse extent 2^3 (unused by RIGHT modes)
    w.u8(0); w.take(cfg)  # /config scalar string
    for i in range(7):  # attributes, RIGHT, plausible values
        w.u8(0)
        if i: w.below(1 if i < 2 else 0, 100)
        w.u8(0)
    w.take(b"m.bin"); w.u8(0)
    w.u8(0 if good_sum else 200)
    if not good_sum: w.u64(12345)
    w.u8(0)  # checksum attribute RIGHT
    w.u8(1)  # expect the file's parameter count
    return bytes(w.b)

os.makedirs(f"{out}/checkpoint_h5", exist_ok=True)
open(f"{out}/checkpoint_h5/valid", "wb").write(checkpoint())
open(f"{out}/checkpoint_h5/bad-checksum", "wb").write(checkpoint(good_sum=False))
EOF
echo "corpus written to $out"; du -sh "$out"
