#!/usr/bin/python3
"""Independent PyTorch reference for EdgeInfinite attention (DESIGN.md section 3).

Loads the stories260K llama2.c checkpoint with numpy, runs a whole document segment by segment with
the sink / window caches and the compressive memory written directly from the formulas (plain Python
lists of per-token keys and values, no fixed-shape tricks), and lets torch autograd differentiate the
mean NLL with respect to the gate parameters through every segment (full BPTT). Everything is float64.

Usage (from the repository root):
    /usr/bin/python3 tests/reference/make_ei_ref.py ../shared/fixtures/models/stories260K/stories260K.bin \
        tests/data/ei_ref.bin

Dump format (little endian):
    char magic[8] = "EIREF\\0\\0\\1"; int32 n_cases
    per case:
      int32 gate_kind (0 token, 1 head), memory_rule (0 linear, 1 delta), L, S, W, n_tokens, n_gate
      int32 ids[n_tokens], int32 targets[n_tokens], int32 mask[n_tokens]
      float32 gates[n_gate]          (the gate parameters used, see layout below)
      float64 loss                   (sum of NLL over masked targets / number of masked targets)
      float64 grad[n_gate]           (d loss / d gates)
Gate layout, layer after layer: token gate w_l [H, D] (row h is w_h) then b_l [H]; head gate beta_l [H].
Position t predicts targets[t]; ids are the processed tokens of the document.
"""
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
EPS_MEM = 1e-6


def load_llama2c(path):
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    f = np.frombuffer(raw[28:], dtype="<f4")
    hd = dim // n_heads
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        a = f[off:off + n].reshape(shape)
        off += n
        return torch.tensor(a.astype(np.float64))

    w = {}
    w["emb"] = take(vocab, dim)
    w["rms_att"] = take(n_layers, dim)
    w["wq"] = take(n_layers, n_heads * hd, dim)
    w["wk"] = take(n_layers, n_kv * hd, dim)
    w["wv"] = take(n_layers, n_kv * hd, dim)
    w["wo"] = take(n_layers, dim, n_heads * hd)
    w["rms_ffn"] = take(n_layers, dim)
    w["w1"] = take(n_layers, hidden, dim)
    w["w2"] = take(n_layers, dim, hidden)
    w["w3"] = take(n_layers, hidden, dim)
    w["rms_final"] = take(dim)
    off += seq_len * hd // 2 * 2  # freq_cis_real, freq_cis_imag (unused)
    w["cls"] = w["emb"] if shared else take(vocab, dim)
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, H=n_heads, Hkv=n_kv, vocab=vocab,
               seq_len=seq_len, d=hd, eps=1e-5, theta=10000.0)
    return cfg, w


def rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, theta):
    """x [..., n, heads, d], interleaved pairs (x[2i], x[2i+1]); pos [n] (float)."""
    d = x.shape[-1]
    i = torch.arange(0, d, 2, dtype=torch.float64)
    freq = 1.0 / theta ** (i / d)
    ang = pos[:, None] * freq[None, :]  # [n, d/2]
    c = torch.cos(ang)[:, None, :]
    s = torch.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def sigma(x):
    return torch.nn.functional.elu(x) + 1.0


class LayerState:
    def __init__(self, Hkv, d):
        self.sink = []    # list of (k [Hkv, d], v [Hkv, d]) pre-RoPE, oldest first
        self.window = []  # same, oldest first, at most W entries
        self.M = torch.zeros(Hkv, d, d)
        self.z = torch.zeros(Hkv, d)
        self.compressed = 0


def segment_forward(cfg, w, gates, case, ids, states):
    """Runs one segment of n tokens; updates states in place; returns logits [n, V]."""
    D, H, Hkv, d = cfg["dim"], cfg["H"], cfg["Hkv"], cfg["d"]
    S, W = case["S"], case["W"]
    rep = H // Hkv
    n = len(ids)
    x = w["emb"][torch.tensor(ids)]
    for l in range(cfg["n_layers"]):
        st = states[l]
        xn = rmsnorm(x, w["rms_att"][l], cfg["eps"])
        q = (xn @ w["wq"][l].T).reshape(n, H, d)
        k = (xn @ w["wk"][l].T).reshape(n, Hkv, d)
        v = (xn @ w["wv"][l].T).reshape(n, Hkv, d)
        # keys: filled sink slots, filled (right-aligned) window slots, segment
        keys, vals, kpos = [], [], []
        for i, (kk, vv) in enumerate(st.sink):
            keys.append(kk); vals.append(vv); kpos.append(i)
        wf = len(st.window)
        for j, (kk, vv) in enumerate(st.window):
            keys.append(kk); vals.append(vv); kpos.append(S + (W - wf) + j)
        for t in range(n):
            keys.append(k[t]); vals.append(v[t]); kpos.append(S + W + t)
        K = torch.stack(keys)  # [T, Hkv, d]
        V = torch.stack(vals)
        T = K.shape[0]
        ncache = T - n
        Kr = rope(K, torch.tensor(kpos, dtype=torch.float64), cfg["theta"])
        qr = rope(q, torch.tensor([S + W + t for t in range(n)], dtype=torch.float64), cfg["theta"])
        a_loc = torch.empty(n, H, d)
        allowed = torch.zeros(n, T, dtype=torch.bool)
        for t in range(n):
            allowed[t, :ncache + t + 1] = True
        for h in range(H):
            g = h // rep
            sc = (qr[:, h, :] @ Kr[:, g, :].T) / np.sqrt(d)
            sc = sc.masked_fill(~allowed, float("-inf"))
            a_loc[:, h, :] = torch.softmax(sc, -1) @ V[:, g, :]
        if st.compressed > 0:
            sq = sigma(q)
            a_mem = torch.empty(n, H, d)
            for h in range(H):
                g = h // rep
                num = sq[:, h, :] @ st.M[g]
                den = sq[:, h, :] @ st.z[g] + EPS_MEM
                a_mem[:, h, :] = num / den[:, None]
            gp = gates[l]
            if case["gate"] == 0:
                gate = torch.sigmoid(xn @ gp["w"].T + gp["b"])  # [n, H]
            else:
                gate = torch.sigmoid(gp["beta"])[None, :].expand(n, H)
            a = gate[:, :, None] * a_mem + (1.0 - gate[:, :, None]) * a_loc
        else:
            a = a_loc
        x = x + a.reshape(n, H * d) @ w["wo"][l].T
        xn2 = rmsnorm(x, w["rms_ffn"][l], cfg["eps"])
        hdn = torch.nn.functional.silu(xn2 @ w["w1"][l].T) * (xn2 @ w["w3"][l].T)
        x = x + hdn @ w["w2"][l].T
        # cache update
        out = []
        for t in range(n):
            if len(st.sink) < S:
                st.sink.append((k[t], v[t]))
            else:
                st.window.append((k[t], v[t]))
                if len(st.window) > W:
                    out.append(st.window.pop(0))
        if out:
            ko = torch.stack([o[0] for o in out])  # [c, Hkv, d]
            vo = torch.stack([o[1] for o in out])
            sk = sigma(ko)
            Mn, zn = [], []
            for g in range(Hkv):
                if case["rule"] == 0:
                    upd = vo[:, g, :]
                else:
                    ret = (sk[:, g, :] @ st.M[g]) / (sk[:, g, :] @ st.z[g] + EPS_MEM)[:, None]
                    upd = vo[:, g, :] - ret
                Mn.append(st.M[g] + sk[:, g, :].T @ upd)
                zn.append(st.z[g] + sk[:, g, :].sum(0))
            st.M = torch.stack(Mn)
            st.z = torch.stack(zn)
            st.compressed += len(out)
    x = rmsnorm(x, w["rms_final"], cfg["eps"])
    return x @ w["cls"].T


def text_tokens(model_path, n):
    """Real text as token ids: the first TinyStories, greedy longest match over the model's own
    vocabulary (tok512.bin beside the model), byte fallback for unknown characters. Any realistic
    id sequence will do here; it only has to be the same in C, which reads it from the dump."""
    import os
    d = os.path.dirname(os.path.abspath(model_path))
    raw = open(os.path.join(d, "tok512.bin"), "rb").read()
    off, pieces = 4, {}
    for i in range(512):
        _, ln = struct.unpack("<fi", raw[off:off + 8])
        off += 8
        pieces.setdefault(raw[off:off + ln], i)
        off += ln
    text = open(os.path.join(d, "..", "..", "text", "tinystories.txt"), "rb").read()
    text = b" " + text.replace(b"\n\n", b"\n")
    ids, i = [1], 0
    while len(ids) < n and i < len(text):
        for ln in range(min(16, len(text) - i), 0, -1):
            if text[i:i + ln] in pieces and ln > 0:
                ids.append(pieces[text[i:i + ln]])
                i += ln
                break
        else:
            ids.append(3 + text[i])
            i += 1
    return np.array(ids, dtype=np.int64)


def run_case(cfg, w, case, rng, model_path):
    D, H, L = cfg["dim"], cfg["H"], case["L"]
    n_layers = cfg["n_layers"]
    if case["gate"] == 0:
        flat = np.concatenate([np.concatenate([rng.normal(0, 0.3, H * D), rng.normal(0, 1.0, H)])
                               for _ in range(n_layers)]).astype(np.float32)
        per = H * D + H
    else:
        flat = rng.normal(0, 1.5, H * n_layers).astype(np.float32)
        per = H
    gflat = torch.tensor(flat.astype(np.float64), requires_grad=True)
    gates = []
    for l in range(n_layers):
        blk = gflat[l * per:(l + 1) * per]
        if case["gate"] == 0:
            gates.append({"w": blk[:H * D].reshape(H, D), "b": blk[H * D:]})
        else:
            gates.append({"beta": blk})
    n = case["n"]
    seq = text_tokens(model_path, n + 1 + case["skip"])[case["skip"]:]
    seq[0] = 1
    ids = seq[:n].astype(np.int32)
    targets = seq[1:].astype(np.int32)
    mask = np.ones(n, dtype=np.int32)
    mask[rng.choice(n, n // 8, replace=False)] = 0
    states = [LayerState(cfg["Hkv"], cfg["d"]) for _ in range(n_layers)]
    nll = torch.zeros(())
    for s0 in range(0, n, L):
        seg = ids[s0:s0 + L].tolist()
        logits = segment_forward(cfg, w, gates, case, seg, states)
        lp = torch.log_softmax(logits, -1)
        tg = torch.tensor(targets[s0:s0 + L].astype(np.int64))
        mk = torch.tensor(mask[s0:s0 + L].astype(np.float64))
        nll = nll - (lp[torch.arange(len(seg)), tg] * mk).sum()
    loss = nll / float(mask.sum())
    loss.backward()
    grad = gflat.grad.numpy().copy()
    print(f"case gate={case['gate']} rule={case['rule']} L={L} S={case['S']} W={case['W']} n={n}: "
          f"loss {loss.item():.10f} |grad| {np.abs(grad).max():.3e}", file=sys.stderr)
    return ids, targets, mask, flat, float(loss.item()), grad


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cfg, w = load_llama2c(sys.argv[1])
    rng = np.random.default_rng(20250503)
    cases = [
        dict(gate=0, rule=0, L=16, S=4, W=24, n=5 * 16 + 10, skip=0),  # 6 segments, last one short
        dict(gate=1, rule=1, L=16, S=2, W=8, n=6 * 16, skip=100),      # window shorter than a segment
        dict(gate=0, rule=1, L=12, S=0, W=0, n=6 * 12, skip=200),      # Infini-attention
    ]
    with open(sys.argv[2], "wb") as f:
        f.write(b"EIREF\0\0\1")
        f.write(struct.pack("<i", len(cases)))
        for c in cases:
            ids, targets, mask, flat, loss, grad = run_case(cfg, w, c, rng, sys.argv[1])
            f.write(struct.pack("<7i", c["gate"], c["rule"], c["L"], c["S"], c["W"], c["n"], len(flat)))
            f.write(ids.astype("<i4").tobytes())
            f.write(targets.astype("<i4").tobytes())
            f.write(mask.astype("<i4").tobytes())
            f.write(flat.astype("<f4").tobytes())
            f.write(struct.pack("<d", loss))
            f.write(grad.astype("<f8").tobytes())


if __name__ == "__main__":
    main()
