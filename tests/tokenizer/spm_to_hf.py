#!/usr/bin/env python3
"""Converts a SentencePiece BPE tokenizer.model into a Hugging Face tokenizer.json the way
transformers' LlamaConverter does for Llama 2 (legacy layout: Prepend + Replace normaliser, no
pre-tokenizer, BPE with byte fallback, merges from SentencePieceExtractor ordered by piece score,
Replace/ByteFallback/Fuse/Strip decoder). Pure Python: the protobuf is read by hand.

With --metaspace, writes the newer layout instead (no normaliser; Metaspace pre-tokenizer with
prepend_scheme "first" and split false, as the non-legacy Llama conversion does).

Used to make the test tokenizers from the stories260K fixture, from the repository root:
  python3 tests/tokenizer/spm_to_hf.py ../shared/fixtures/models/stories260K/tok512.model \
      > tests/tokenizer/tok512_hf/tokenizer.json
  python3 tests/tokenizer/spm_to_hf.py --metaspace ../shared/fixtures/models/stories260K/tok512.model \
      > tests/tokenizer/tok512_hf_metaspace/tokenizer.json
"""
import json
import struct
import sys


def varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def fields(b):
    i = 0
    while i < len(b):
        k, i = varint(b, i)
        f, w = k >> 3, k & 7
        if w == 0:
            v, i = varint(b, i)
        elif w == 1:
            v, i = b[i:i + 8], i + 8
        elif w == 5:
            v, i = b[i:i + 4], i + 4
        elif w == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("bad wire type")
        yield f, v


args = [a for a in sys.argv[1:] if a != "--metaspace"]
metaspace = "--metaspace" in sys.argv[1:]
pieces = []  # (piece, score, type)
for f, v in fields(open(args[0], "rb").read()):
    if f != 1:
        continue
    piece, score, typ = "", 0.0, 1
    for g, x in fields(v):
        if g == 1:
            piece = x.decode("utf-8")
        elif g == 2:
            score = struct.unpack("<f", x)[0]
        elif g == 3:
            typ = x
    pieces.append((piece, score, typ))

vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
merges = []
for piece, score, _ in pieces:
    local = []
    for k in range(1, len(piece)):
        left, right = piece[:k], piece[k:]
        if left in vocab and right in vocab:
            local.append((left, right, score))
    local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
    merges.extend(local)
merges.sort(key=lambda x: x[2], reverse=True)

added = [{"id": i, "content": p, "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": False, "special": True}
         for i, (p, _, t) in enumerate(pieces) if t in (2, 3)]
tok = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": added,
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": None,
    "post_processor": None,
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
              "vocab": vocab, "merges": [l + " " + r for l, r, _ in merges]},
}
if metaspace:
    tok["normalizer"] = None
    tok["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True,
                            "prepend_scheme": "first", "split": False}
json.dump(tok, sys.stdout, ensure_ascii=False, indent=1)
sys.stdout.write("\n")
