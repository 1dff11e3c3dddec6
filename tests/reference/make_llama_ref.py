#!/usr/bin/python3
"""Independent PyTorch reference for the base-model forward pass (tests/test_train_model.c).

Written from the maths of the Llama decoder (RMSNorm, RoPE, grouped-query causal attention, SwiGLU,
final norm, classifier), in float64, sharing no code with the C implementation. Uses only Debian's
python3 with numpy and torch.

Produces, relative to the repository root:
  tests/data/llama_ref.bin        stories260K (llama2.c checkpoint, read here with numpy): logits and
                                  mean cross-entropy for a fixed 64-token sequence.
  tests/data/tiny_qwen2/          a synthetic Hugging Face folder exercising the options stories260K
                                  does not: q/k/v biases, untied classifier, head_dim != dim/heads,
                                  rope_theta 1e6, rms_norm_eps 1e-6, rotate-half RoPE, F32/F16/BF16
                                  tensors, two shards with model.safetensors.index.json.
  tests/data/tiny_qwen2_ref.bin   its logits and loss for a fixed 40-token sequence.

Dump format (little-endian): magic b"EIREFLM1", uint32 version (1), uint32 n_tokens, uint32 vocab,
uint32 reserved (0), int32 tokens[n_tokens], float32 logits[n_tokens][vocab], float64 loss
(mean NLL of tokens[1:] given their prefixes).

Run from the repository root:  /usr/bin/python3 tests/reference/make_llama_ref.py
(the stories260K fixture is read from ../shared/fixtures, or from $EI_FIXTURES).
"""
import json
import os
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)


def rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, theta, interleaved):
    """x: [T, heads, d]; rotates pairs by angle pos * theta^(-2j/d)."""
    d = x.shape[-1]
    j = torch.arange(d // 2, dtype=torch.float64)
    ang = pos[:, None].double() * theta ** (-2.0 * j / d)  # [T, d/2]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = a * c - b * s
        out[..., 1::2] = a * s + b * c
        return out
    a, b = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([a * c - b * s, b * c + a * s], dim=-1)


def forward(W, cfg, tokens):
    T = len(tokens)
    H, Hkv, d = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    eps, theta = cfg["eps"], cfg["theta"]
    pos = torch.arange(T)
    x = W["emb"][torch.tensor(tokens)]
    mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
    for L in W["layers"]:
        xn = rmsnorm(x, L["attn_norm"], eps)
        q = xn @ L["wq"].T + (L["bq"] if "bq" in L else 0)
        k = xn @ L["wk"].T + (L["bk"] if "bk" in L else 0)
        v = xn @ L["wv"].T + (L["bv"] if "bv" in L else 0)
        q = rope(q.view(T, H, d), pos, theta, cfg["interleaved"])
        k = rope(k.view(T, Hkv, d), pos, theta, cfg["interleaved"])
        v = v.view(T, Hkv, d)
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) / np.sqrt(d) + mask
        o = torch.einsum("hts,shd->thd", torch.softmax(att, dim=-1), v).reshape(T, H * d)
        x = x + o @ L["wo"].T
        xn = rmsnorm(x, L["ffn_norm"], eps)
        x = x + (torch.nn.functional.silu(xn @ L["w_gate"].T) * (xn @ L["w_up"].T)) @ L["w_down"].T
    logits = rmsnorm(x, W["final_norm"], eps) @ W["cls"].T
    loss = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(tokens[1:]), reduction="mean")
    return logits, float(loss)


def write_dump(path, tokens, logits, loss):
    with open(path, "wb") as f:
        f.write(b"EIREFLM1")
        f.write(struct.pack("<4I", 1, len(tokens), logits.shape[1], 0))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        f.write(logits.numpy().astype("<f4").tobytes())
        f.write(struct.pack("<d", loss))
    print(f"{path}: {len(tokens)} tokens, vocab {logits.shape[1]}, loss {loss:.6f}")


def load_llama2c(path):
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    data = np.frombuffer(raw[28:], dtype="<f4")
    hd = dim // n_heads
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        t = torch.from_numpy(data[off : off + n].astype(np.float64).reshape(shape))
        off += n
        return t

    emb = take(vocab, dim)
    rms_att = take(n_layers, dim)
    wq = take(n_layers, n_heads * hd, dim)
    wk = take(n_layers, n_kv * hd, dim)
    wv = take(n_layers, n_kv * hd, dim)
    wo = take(n_layers, dim, n_heads * hd)
    rms_ffn = take(n_layers, dim)
    w1 = take(n_layers, hidden, dim)
    w2 = take(n_layers, dim, hidden)
    w3 = take(n_layers, hidden, dim)
    final = take(dim)
    take(seq_len * hd // 2)  # freq_cis_real
    take(seq_len * hd // 2)  # freq_cis_imag
    cls = emb if shared else take(vocab, dim)
    assert off == data.size, "stories260K.bin: unexpected size"
    layers = [
        dict(attn_norm=rms_att[l], wq=wq[l], wk=wk[l], wv=wv[l], wo=wo[l], ffn_norm=rms_ffn[l],
             w_gate=w1[l], w_down=w2[l], w_up=w3[l])
        for l in range(n_layers)
    ]
    cfg = dict(n_heads=n_heads, n_kv_heads=n_kv, head_dim=hd, eps=1e-5, theta=10000.0, interleaved=True)
    return dict(emb=emb, layers=layers, final_norm=final, cls=cls), cfg, vocab


def bf16_round(a):
    """float32 -> bfloat16 bits with round-to-nearest-even."""
    u = a.astype("<f4").view("<u4").astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2")


def save_safetensors(path, tensors):
    """tensors: list of (name, dtype string, numpy array in that dtype's storage)."""
    header, blobs, off = {}, [], 0
    for name, dt, arr in tensors:
        b = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def make_tiny_qwen2(folder):
    rng = np.random.RandomState(7)
    D, F, L, H, Hkv, hd, V = 32, 48, 2, 4, 2, 12, 96
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": D,
        "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H,
        "num_key_value_heads": Hkv, "head_dim": hd, "vocab_size": V, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": [2], "hidden_act": "silu", "torch_dtype": "float32",
    }
    names = []  # (name, shape, scale, offset)

    def add(name, shape, scale, offset=0.0):
        names.append((name, shape, scale, offset))

    add("model.embed_tokens.weight", (V, D), 1.0)
    for l in range(L):
        p = f"model.layers.{l}."
        add(p + "input_layernorm.weight", (D,), 0.2, 1.0)
        add(p + "self_attn.q_proj.weight", (H * hd, D), 0.25)
        add(p + "self_attn.q_proj.bias", (H * hd,), 0.3)
        add(p + "self_attn.k_proj.weight", (Hkv * hd, D), 0.25)
        add(p + "self_attn.k_proj.bias", (Hkv * hd,), 0.3)
        add(p + "self_attn.v_proj.weight", (Hkv * hd, D), 0.25)
        add(p + "self_attn.v_proj.bias", (Hkv * hd,), 0.3)
        add(p + "self_attn.o_proj.weight", (D, H * hd), 0.2)
        add(p + "post_attention_layernorm.weight", (D,), 0.2, 1.0)
        add(p + "mlp.gate_proj.weight", (F, D), 0.25)
        add(p + "mlp.up_proj.weight", (F, D), 0.25)
        add(p + "mlp.down_proj.weight", (D, F), 0.2)
    add("model.norm.weight", (D,), 0.2, 1.0)
    add("lm_head.weight", (V, D), 0.4)

    stored, values = [], {}
    for i, (name, shape, scale, offset) in enumerate(names):
        w = (rng.standard_normal(shape) * scale + offset).astype("<f4")
        kind = ("F32", "F16", "BF16")[i % 3]
        if kind == "F32":
            arr, val = w, w.astype(np.float64)
        elif kind == "F16":
            arr = w.astype("<f2")
            val = arr.astype(np.float64)
        else:
            arr = bf16_round(w)
            val = (arr.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        stored.append((name, kind, arr))
        values[name] = torch.from_numpy(val)

    os.makedirs(folder, exist_ok=True)
    half = len(stored) // 2
    shards = [("model-00001-of-00002.safetensors", stored[:half]),
              ("model-00002-of-00002.safetensors", stored[half:])]
    weight_map = {}
    for fname, part in shards:
        save_safetensors(os.path.join(folder, fname), part)
        for name, _, _ in part:
            weight_map[name] = fname
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=1)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=1)

    W = dict(emb=values["model.embed_tokens.weight"], final_norm=values["model.norm.weight"],
             cls=values["lm_head.weight"], layers=[])
    for l in range(L):
        p = f"model.layers.{l}."
        W["layers"].append(dict(
            attn_norm=values[p + "input_layernorm.weight"], ffn_norm=values[p + "post_attention_layernorm.weight"],
            wq=values[p + "self_attn.q_proj.weight"], bq=values[p + "self_attn.q_proj.bias"],
            wk=values[p + "self_attn.k_proj.weight"], bk=values[p + "self_attn.k_proj.bias"],
            wv=values[p + "self_attn.v_proj.weight"], bv=values[p + "self_attn.v_proj.bias"],
            wo=values[p + "self_attn.o_proj.weight"], w_gate=values[p + "mlp.gate_proj.weight"],
            w_up=values[p + "mlp.up_proj.weight"], w_down=values[p + "mlp.down_proj.weight"]))
    cfg = dict(n_heads=H, n_kv_heads=Hkv, head_dim=hd, eps=1e-6, theta=1e6, interleaved=False)
    return W, cfg, V


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    fixtures = os.environ.get("EI_FIXTURES", os.path.join(root, "..", "shared", "fixtures"))
    out = os.path.join(root, "tests", "data")
    os.makedirs(out, exist_ok=True)

    W, cfg, V = load_llama2c(os.path.join(fixtures, "models", "stories260K", "stories260K.bin"))
    rng = np.random.RandomState(20250522)
    tokens = [1] + [int(t) for t in rng.randint(3, V, size=63)]
    with torch.no_grad():
        logits, loss = forward(W, cfg, tokens)
    write_dump(os.path.join(out, "llama_ref.bin"), tokens, logits, loss)

    W, cfg, V = make_tiny_qwen2(os.path.join(out, "tiny_qwen2"))
    tokens = [1] + [int(t) for t in rng.randint(0, V, size=39)]
    with torch.no_grad():
        logits, loss = forward(W, cfg, tokens)
    write_dump(os.path.join(out, "tiny_qwen2_ref.bin"), tokens, logits, loss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
