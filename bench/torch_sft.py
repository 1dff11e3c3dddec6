#!/usr/bin/python3
"""PyTorch baseline of EdgeInfinite S-SFT, for the training-speed comparison with `ei train`
(bench/bench_train.py runs both; results in docs/benchmarks.md, "Training (S-SFT) vs PyTorch").

The same computation as the C code (DESIGN.md sections 3 and 4, docs/edgeinfinite.md), written the
way a PyTorch user would: the model is read directly from the llama2.c .bin file or the Hugging Face
folder (config.json + model.safetensors) with numpy, no transformers library; every weight is frozen
(requires_grad False) and only the gate block is a parameter. Float32, CPU.

  - segments of L tokens from the document start; sink S (the first S tokens of the document),
    window W (the most recent W tokens before the segment); the caches hold pre-RoPE K, V; the
    caches and the memory change only when a segment is complete (a commit), so an unfinished last
    segment changes nothing (model/segment.h);
  - compact RoPE positions: the occupied sink and window slots and the segment's tokens are numbered
    contiguously (so the keys of a segment are at 0 .. T-1 and its queries at T-n .. T-1);
    `design` positions (DESIGN 3.1) are available too;
  - memory per layer and KV head: A_mem = s(Q) M / (s(Q) . z + 1e-6), s = ELU + 1, pre-RoPE Q;
    linear rule M += s(K)^T V, z += sum s(K) (or the delta rule), over the tokens pushed out of
    the window at a commit (never the sink); the memory is read only once something is in it;
  - token gate g = sigmoid(x w_h + b_h) on the normed attention input (or the head gate
    sigmoid(beta_h)); A = A_loc + g (A_mem - A_loc);
  - loss: mean NLL over the counted positions of the whole document (position t reads token t and
    predicts token t + 1, counted when loss_mask[t + 1] is set: train/trainer.h);
  - full BPTT: one autograd graph over all segments of the document, gradients flow through M, z
    and the sink / window caches to earlier segments. Plain autograd keeps every segment's
    activations (memory grows with the document); --recompute wraps each segment in
    torch.utils.checkpoint (keep the segment's input state, recompute in backward), the scheme
    the C code uses;
  - AdamW (torch.optim.AdamW, as train/optim.c) on the gates only, global-norm clipping
    (clip_grad_norm_, the same max_norm / (norm + 1e-6) factor), warmup + cosine or constant
    learning rate as train/optim.c.

Before timing, --check-loss (or --ei, which runs `ei eval --data ... --mode edgeinfinite` on the
same first sample with the same untrained gates) compares the forward loss of sample 0 and stops
with exit status 4 when the relative difference exceeds --tol. Then --steps optimizer steps, one
document each (samples in file order, wrapping around; bench_train.py gives it a one-document
dataset so that C and PyTorch train on the same tokens), each timed as forward + backward +
clip + update. Output: one JSON object on stdout (per-step loss, grad norm and times, tokens per
second, peak RSS from getrusage, FLOPs by the formula of flop_count below). An allocation failure
(for example under a memory limit set by the runner) prints {"oom": true, ...} and exits with 3.

    /usr/bin/python3 bench/torch_sft.py --model /tmp/ei-bench-train/bench.bin \
        --data /tmp/ei-bench-train/docs2048.h5 --threads 2 --steps 2 --ei build-bench/ei
"""
import argparse
import json
import math
import os
import resource
import struct
import subprocess
import sys
import time

EPS_MEM = 1e-6


# ---------------------------------------------------------------------------------------------
# FLOP count (also used by bench_train.py, which imports this module without importing torch)
# ---------------------------------------------------------------------------------------------

def seg_plans(n, L, S, W):
    """The segment rule (model/segment.c) for a whole document of n positions: one dict per
    segment with its length n_t, sink / window fill sf, wf when it starts, whether the memory is
    non-empty, and the number c of tokens compressed at its commit (0 for an unfinished segment)."""
    plans = []
    pos = 0
    while pos < n:
        m = min(L, n - pos)
        sf = min(S, pos)
        rest = pos - sf
        wf = min(W, rest)
        mem = rest - wf > 0
        c = 0
        if m == L:
            take = min(S - sf, L)
            c = max(0, wf + (L - take) - W)
        plans.append(dict(pos=pos, n=m, sf=sf, wf=wf, mem=mem, c=c))
        pos += m
    return plans


def flop_count(cfg, n, L, S, W, gate="token", rule="linear", kept=0, last_start=None):
    """Matrix-product FLOPs (2 per multiply-add) of one document of n positions, from the model
    shapes, counting only unmasked work: attention of a query t of a segment over the
    sf + wf + t + 1 keys it sees. Per segment (n_t tokens, per layer, then the classifier):
        proj   = 2 n_t D (H d + 2 Hkv d) + 2 n_t (H d) D + 3 * 2 n_t D F
        attn   = 4 H d A,  A = sum_t (sf + wf + t + 1)          (Q K^T and P V)
        gate   = 2 n_t D H             (token gate, when the memory is non-empty)
        mem    = 2 n_t H d (d + 1)     (retrieval, when non-empty) + 2 c Hkv d d (update;
                 delta rule: twice, plus the retrieval of the compressed keys)
        cls    = 2 n_t D V
    forward     = sum over layers (proj + attn + gate + mem) + cls
    state_only  = forward - cls - the last layer after its K, V projections (q, attention, o, MLP,
                  gate, retrieval): the forward sweep of BPTT by recomputation
    backward    = input gradients of every frozen product (same FLOPs as the forward product, no
                  weight gradients) + the gate's weight gradient + 2x attention (dP = dO V^T,
                  dV = P^T dO, dQ = dS K, dK = dS^T Q) + 2x memory ops + cls; counted for every
                  segment and layer, as the C code's backward sweep runs them (a smarter
                  autograd can skip the segments and layer-0 products no gate influences).
    kept: segments whose activations `ei train` kept from the forward sweep (a prefix, within
    train.activation_memory_mb): they run their training forward in the forward sweep and need no
    state-only pass; last_start: the first segment of the last training graph (a chunk of
    train.chunk_segments segments; None: the last segment), which needs none either. gemm: the
    FLOPs of `ei train`'s GEMM ops (`linear`, `linear_cross_entropy`: projections, token gate,
    classifier) over the whole step, for the GEMM part's rate against their profiled time. Returns a dict of totals; c_total = state_only (the segments after the kept
    ones, all but the last) + forward + backward (what `ei train` does), torch_total = forward + backward (plain autograd), and
    torch_recompute_total = 2 forward + backward (torch.utils.checkpoint per segment)."""
    D, F, N, H, Hkv, V = cfg["dim"], cfg["hidden"], cfg["n_layers"], cfg["H"], cfg["Hkv"], cfg["vocab"]
    d = cfg["d"]
    tot = dict(forward=0.0, state_only=0.0, backward=0.0, gemm=0.0)
    plans = seg_plans(n, L, S, W)
    for i, p in enumerate(plans):
        nt = p["n"]
        cache = p["sf"] + p["wf"]
        A = nt * cache + nt * (nt + 1) / 2
        q_proj = 2.0 * nt * D * H * d
        kv_proj = 2.0 * nt * D * 2 * Hkv * d
        o_proj = 2.0 * nt * H * d * D
        mlp = 3 * 2.0 * nt * D * F
        attn = 4.0 * H * d * A
        g = 2.0 * nt * D * H if (p["mem"] and gate == "token") else 0.0
        retr = 2.0 * nt * H * d * (d + 1) if p["mem"] else 0.0
        upd = 2.0 * p["c"] * Hkv * d * d
        if rule == "delta" and p["mem"]:
            upd += 2.0 * p["c"] * Hkv * d * (d + 1)
        cls = 2.0 * nt * D * V
        layer = q_proj + kv_proj + o_proj + mlp + attn + g + retr + upd
        fwd = N * layer + cls
        tot["forward"] += fwd
        last = len(plans) - 1 if last_start is None else last_start
        # gemm: the products `ei train` runs as its `linear` and `linear_cross_entropy` ops (frozen
        # projections, token gate, classifier), forward + backward (input gradients; the gate's
        # weight gradient too; layer 0's Q/K/V have no input gradient to compute)
        proj = q_proj + kv_proj + o_proj + mlp
        tot["gemm"] += N * (proj + g) + cls + N * (proj + 2 * g) - (q_proj + kv_proj) + cls
        if kept <= i < last:  # kept segments and the last graph need no state-only pass
            tot["state_only"] += fwd - cls - (q_proj + o_proj + mlp + attn + g + retr)
            tot["gemm"] += N * (proj + g) - (q_proj + o_proj + mlp + g)
        bwd_layer = q_proj + kv_proj + o_proj + mlp + 2 * attn + 2 * g + 2 * retr + 2 * upd
        tot["backward"] += N * bwd_layer + cls
    tot["c_total"] = tot["state_only"] + tot["forward"] + tot["backward"]
    tot["torch_total"] = tot["forward"] + tot["backward"]
    tot["torch_recompute_total"] = 2 * tot["forward"] + tot["backward"]
    tot["segments"] = len(plans)
    tot["kept"] = kept
    return tot


# ---------------------------------------------------------------------------------------------
# Model loading (numpy, no copies of float32 weights)
# ---------------------------------------------------------------------------------------------

def model_config_only(path):
    """The shapes of a model (for flop_count) without reading its weights."""
    if os.path.isdir(path):
        c = json.load(open(os.path.join(path, "config.json")))
        H = c["num_attention_heads"]
        return dict(dim=c["hidden_size"], hidden=c["intermediate_size"], n_layers=c["num_hidden_layers"], H=H,
                    Hkv=c.get("num_key_value_heads") or H, vocab=c["vocab_size"],
                    d=c.get("head_dim") or c["hidden_size"] // H)
    with open(path, "rb") as f:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", f.read(28))
    return dict(dim=dim, hidden=hidden, n_layers=n_layers, H=n_heads, Hkv=n_kv, vocab=abs(vocab), d=dim // n_heads)


def load_llama2c(path, np):
    with open(path, "rb") as f:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", f.read(28))
    shared = vocab > 0
    vocab = abs(vocab)
    flat = np.fromfile(path, dtype="<f4", offset=28)
    hd = dim // n_heads
    off = 0

    def take(*shape):
        nonlocal off
        k = int(np.prod(shape))
        a = flat[off:off + k].reshape(shape)
        off += k
        return a

    w = {"emb": take(vocab, dim), "rms_att": take(n_layers, dim), "wq": take(n_layers, n_heads * hd, dim),
         "wk": take(n_layers, n_kv * hd, dim), "wv": take(n_layers, n_kv * hd, dim),
         "wo": take(n_layers, dim, n_heads * hd), "rms_ffn": take(n_layers, dim), "w1": take(n_layers, hidden, dim),
         "w2": take(n_layers, dim, hidden), "w3": take(n_layers, hidden, dim), "rms_final": take(dim)}
    off += seq_len * hd  # freq_cis_real, freq_cis_imag (unused)
    w["cls"] = w["emb"] if shared else take(vocab, dim)
    if off > flat.size:
        raise ValueError(f"{path}: file too short for its header")
    layers = [{k: w[k][l] for k in ("rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3")}
              for l in range(n_layers)]
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, H=n_heads, Hkv=n_kv, vocab=vocab, d=hd, eps=1e-5,
               theta=10000.0, rope="interleaved", qkv_bias=False)
    return cfg, dict(emb=w["emb"], cls=w["cls"], rms_final=w["rms_final"], layers=layers)


def load_safetensors(path, np):
    raw = np.fromfile(path, dtype=np.uint8)
    hlen = struct.unpack("<Q", raw[:8].tobytes())[0]
    header = json.loads(raw[8:8 + hlen].tobytes())
    base = 8 + hlen
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        buf = raw[base + b:base + e]
        dt = t["dtype"]
        if dt == "F32":
            a = buf.view("<f4")
        elif dt == "F16":
            a = buf.view("<f2").astype(np.float32)
        elif dt == "BF16":
            a = (buf.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F64":
            a = buf.view("<f8").astype(np.float32)
        else:
            raise ValueError(f"{path}: {name}: dtype {dt} not supported")
        out[name] = a.reshape(t["shape"])
    return out


def load_hf(folder, np):
    c = json.load(open(os.path.join(folder, "config.json")))
    idx = os.path.join(folder, "model.safetensors.index.json")
    t = {}
    if os.path.exists(idx):
        for shard in sorted(set(json.load(open(idx))["weight_map"].values())):
            t.update(load_safetensors(os.path.join(folder, shard), np))
    else:
        t = load_safetensors(os.path.join(folder, "model.safetensors"), np)
    H = c["num_attention_heads"]
    cfg = dict(dim=c["hidden_size"], hidden=c["intermediate_size"], n_layers=c["num_hidden_layers"], H=H,
               Hkv=c.get("num_key_value_heads") or H, vocab=c["vocab_size"],
               d=c.get("head_dim") or c["hidden_size"] // H, eps=float(c.get("rms_norm_eps", 1e-6)),
               theta=float(c.get("rope_theta", 10000.0)), rope="half",
               qkv_bias=bool(c.get("attention_bias", False)) or c.get("model_type") == "qwen2")
    layers = []
    for l in range(cfg["n_layers"]):
        p = f"model.layers.{l}."
        ly = {"rms_att": t[p + "input_layernorm.weight"], "wq": t[p + "self_attn.q_proj.weight"],
              "wk": t[p + "self_attn.k_proj.weight"], "wv": t[p + "self_attn.v_proj.weight"],
              "wo": t[p + "self_attn.o_proj.weight"], "rms_ffn": t[p + "post_attention_layernorm.weight"],
              "w1": t[p + "mlp.gate_proj.weight"], "w2": t[p + "mlp.down_proj.weight"],
              "w3": t[p + "mlp.up_proj.weight"]}
        for k in ("q", "k", "v"):
            name = p + f"self_attn.{k}_proj.bias"
            if name in t:
                ly["b" + k] = t[name]
        layers.append(ly)
    emb = t["model.embed_tokens.weight"]
    cls = t.get("lm_head.weight", emb)
    return cfg, dict(emb=emb, cls=cls, rms_final=t["model.norm.weight"], layers=layers)


# ---------------------------------------------------------------------------------------------
# The EdgeInfinite model
# ---------------------------------------------------------------------------------------------

class EdgeInfinite:
    def __init__(self, torch, cfg, w, L, S, W, gate, rule, positions):
        self.torch, self.F = torch, torch.nn.functional
        self.cfg, self.L, self.S, self.W = cfg, L, S, W
        self.gate, self.rule, self.positions = gate, rule, positions
        T = lambda a: torch.from_numpy(a)  # noqa: E731 (shares the numpy buffer)
        self.emb, self.cls, self.rms_final = T(w["emb"]), T(w["cls"]), T(w["rms_final"])
        self.layers = [{k: T(v) for k, v in ly.items()} for ly in w["layers"]]
        d = cfg["d"]
        maxpos = S + W + L
        # RoPE table over every position a segment can use, angles in float64
        inv = 1.0 / cfg["theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
        ang = torch.arange(maxpos, dtype=torch.float64)[:, None] * inv[None, :]
        self.cos = torch.cos(ang).float()[:, None, :]  # [pos, 1, d/2]
        self.sin = torch.sin(ang).float()[:, None, :]
        D, H = cfg["dim"], cfg["H"]
        self.per_layer = H * D + H if gate == "token" else H
        self.n_gate = cfg["n_layers"] * self.per_layer
        self._masks = {}

    def gates_init(self, bias):
        g = self.torch.zeros(self.n_gate)
        H, D = self.cfg["H"], self.cfg["dim"]
        for l in range(self.cfg["n_layers"]):
            if self.gate == "token":
                g[l * self.per_layer + H * D:(l + 1) * self.per_layer] = bias
            else:
                g[l * self.per_layer:(l + 1) * self.per_layer] = bias
        return g

    def rope(self, x, pos):
        """x [T, heads, d]; pos: LongTensor [T]."""
        c, s = self.cos[pos], self.sin[pos]
        if self.cfg["rope"] == "interleaved":
            a, b = x[..., 0::2], x[..., 1::2]
            return self.torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)
        h = x.shape[-1] // 2
        a, b = x[..., :h], x[..., h:]
        return self.torch.cat((a * c - b * s, b * c + a * s), dim=-1)

    def mask(self, n, T):
        key = (n, T)
        if key not in self._masks:
            torch = self.torch
            t = torch.arange(n)[:, None]
            j = torch.arange(T)[None, :]
            self._masks[key] = torch.zeros(n, T).masked_fill(j > T - n + t, float("-inf"))
        return self._masks[key]

    def rmsnorm(self, x, w):
        return x * self.torch.rsqrt((x * x).mean(-1, keepdim=True) + self.cfg["eps"]) * w

    def empty_state(self):
        torch = self.torch
        Hkv, d = self.cfg["Hkv"], self.cfg["d"]
        st = []
        for _ in range(self.cfg["n_layers"]):
            e = torch.zeros(0, Hkv, d)
            st.append([e, e, e, e, torch.zeros(Hkv, d, d), torch.zeros(Hkv, d)])  # sink k, v, window k, v, M, z
        return st

    def segment(self, gates, state, ids, tgt, msk, plan):
        """One segment: returns (summed NLL of its counted positions, the next state)."""
        torch, F, cfg = self.torch, self.F, self.cfg
        H, Hkv, d, D = cfg["H"], cfg["Hkv"], cfg["d"], cfg["dim"]
        rep = H // Hkv
        n = ids.shape[0]
        S, W, L = self.S, self.W, self.L
        sf, wf, mem = plan["sf"], plan["wf"], plan["mem"]
        commit = n == L
        # RoPE positions of the keys [filled sink | filled window | segment] and of the queries
        T = sf + wf + n
        if self.positions == "compact":
            kpos = torch.arange(T)
        else:
            kpos = torch.cat((torch.arange(sf), torch.arange(S + W - wf, S + W), torch.arange(S + W, S + W + n)))
        qpos = kpos[T - n:]
        x = F.embedding(ids, self.emb)
        new_state = []
        for l, ly in enumerate(self.layers):
            sk, sv, wk, wv, M, z = state[l]
            xn = self.rmsnorm(x, ly["rms_att"])
            q = F.linear(xn, ly["wq"], ly.get("bq")).view(n, H, d)
            k = F.linear(xn, ly["wk"], ly.get("bk")).view(n, Hkv, d)
            v = F.linear(xn, ly["wv"], ly.get("bv")).view(n, Hkv, d)
            K = torch.cat((sk, wk, k)) if T > n else k
            Vv = torch.cat((sv, wv, v)) if T > n else v
            kr = self.rope(K, kpos).permute(1, 0, 2)               # [Hkv, T, d]
            qr = self.rope(q, qpos).permute(1, 0, 2).reshape(Hkv, rep * n, d)  # query head h = g rep + r
            sc = torch.matmul(qr, kr.transpose(1, 2)) * (1.0 / math.sqrt(d))
            sc = sc.view(Hkv, rep, n, T) + self.mask(n, T)
            p = torch.softmax(sc, dim=-1).view(Hkv, rep * n, T)
            a = torch.matmul(p, Vv.permute(1, 0, 2)).view(H, n, d).permute(1, 0, 2)  # [n, H, d]
            if mem:
                sq = (F.elu(q) + 1.0).view(n, Hkv, rep, d).permute(1, 0, 2, 3).reshape(Hkv, n * rep, d)
                num = torch.matmul(sq, M)
                den = torch.matmul(sq, z.unsqueeze(-1)) + EPS_MEM
                amem = (num / den).view(Hkv, n, rep, d).permute(1, 0, 2, 3).reshape(n, H, d)
                gb = gates[l * self.per_layer:(l + 1) * self.per_layer]
                if self.gate == "token":
                    g = torch.sigmoid(F.linear(xn, gb[:H * D].view(H, D), gb[H * D:])).unsqueeze(-1)
                else:
                    g = torch.sigmoid(gb).view(1, H, 1)
                a = a + g * (amem - a)
            x = x + F.linear(a.reshape(n, H * d), ly["wo"])
            xn2 = self.rmsnorm(x, ly["rms_ffn"])
            x = x + F.linear(F.silu(F.linear(xn2, ly["w1"])) * F.linear(xn2, ly["w3"]), ly["w2"])
            if commit:  # the caches and the memory change at a commit only
                take = min(S - sf, L)
                sk, sv = torch.cat((sk, k[:take])), torch.cat((sv, v[:take]))
                wk, wv = torch.cat((wk, k[take:])), torch.cat((wv, v[take:]))
                c = max(0, wk.shape[0] - W)
                if c > 0:
                    ko, vo = wk[:c].permute(1, 0, 2), wv[:c].permute(1, 0, 2)  # [Hkv, c, d]
                    wk, wv = wk[c:], wv[c:]
                    s = F.elu(ko) + 1.0
                    if self.rule == "delta" and mem:
                        ret = torch.matmul(s, M) / (torch.matmul(s, z.unsqueeze(-1)) + EPS_MEM)
                        vo = vo - ret
                    M = M + torch.matmul(s.transpose(1, 2), vo)
                    z = z + s.sum(1)
            new_state.append([sk, sv, wk, wv, M, z])
        if tgt is None:
            return None, new_state
        logits = F.linear(self.rmsnorm(x, self.rms_final), self.cls)
        nll = F.cross_entropy(logits, tgt, reduction="none")
        return (nll * msk).sum(), new_state

    def doc_loss(self, gates, ids, tgt, msk, recompute=False):
        """Mean NLL of one document (ids, targets, mask as float), full BPTT."""
        torch = self.torch
        n = ids.shape[0]
        count = float(msk.sum())
        state = self.empty_state()
        nll = torch.zeros(())
        plans = seg_plans(n, self.L, self.S, self.W)
        for p in plans:
            a, b = p["pos"], p["pos"] + p["n"]
            if recompute:
                nl = len(state)

                def fn(g, *flat, _a=a, _b=b, _p=p):
                    st = [list(flat[6 * i:6 * i + 6]) for i in range(nl)]
                    s, ns = self.segment(g, st, ids[_a:_b], tgt[_a:_b], msk[_a:_b], _p)
                    return (s, *[t for ly in ns for t in ly])

                out = torch.utils.checkpoint.checkpoint(fn, gates, *[t for ly in state for t in ly],
                                                        use_reentrant=False)
                s = out[0]
                state = [list(out[1 + 6 * i:7 + 6 * i]) for i in range(nl)]
            else:
                s, state = self.segment(gates, state, ids[a:b], tgt[a:b], msk[a:b], p)
            nll = nll + s
        return nll / max(count, 1.0), count, len(plans)


# ---------------------------------------------------------------------------------------------
# Data, optimiser schedule, gate files
# ---------------------------------------------------------------------------------------------

def load_samples(path, np, max_tokens, limit):
    import h5py
    with h5py.File(path, "r") as f:
        off = f["offsets"][:]
        toks, mask = f["tokens"], f["loss_mask"]
        out = []
        for i in range(min(len(off) - 1, limit)):
            a, b = int(off[i]), int(off[i + 1])
            if max_tokens > 0:
                b = min(b, a + max_tokens)
            t = toks[a:b].astype(np.int64)
            m = mask[a:b].astype(np.float32)
            out.append((t[:-1], t[1:], m[1:] * (t[1:] >= 0)))
    return out


def lr_at(a, step):
    """train/optim.c ei_lr_at."""
    if step < a.warmup_steps:
        return a.lr * (step + 1) / a.warmup_steps
    if a.schedule == "constant":
        return a.lr
    span = a.total_steps - a.warmup_steps
    p = min(1.0, (step - a.warmup_steps) / span) if span > 0 else 1.0
    return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def read_c_gates(path, np, model, cfg):
    """The flat gate block of an `ei train` gates.safetensors, in this script's layout."""
    t = load_safetensors(path, np)
    parts = []
    for l in range(cfg["n_layers"]):
        p = f"model.layers.{l}.self_attn.memory_gate."
        if model.gate == "token":
            parts += [t[p + "weight"].reshape(-1), t[p + "bias"].reshape(-1)]
        else:
            parts.append(t[p + "beta"].reshape(-1))
    return np.concatenate(parts)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def ei_eval_loss(ei, model, data, a):
    cmd = [ei, "eval", "--data", data, "--max-samples", "1", "--model", model, "--mode", "edgeinfinite",
           "--segment", str(a.segment), "--sink", str(a.sink), "--window", str(a.window), "--gate", a.gate,
           "--memory-rule", a.memory_rule, "--gate-init-bias", repr(a.gate_init_bias), "--positions", a.positions,
           "--json"]
    if a.max_tokens > 0:
        cmd += ["--max-tokens", str(a.max_tokens)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout)["loss"], cmd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="llama2.c .bin file or Hugging Face folder")
    ap.add_argument("--data", required=True, help="HDF5 dataset from `ei prepare`")
    ap.add_argument("--max-tokens", type=int, default=0, help="cut each sample to N tokens (0: whole)")
    ap.add_argument("--segment", type=int, default=128)
    ap.add_argument("--sink", type=int, default=4)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--gate", choices=("token", "head"), default="token")
    ap.add_argument("--memory-rule", choices=("linear", "delta"), default="linear")
    ap.add_argument("--positions", choices=("compact", "design"), default="compact")
    ap.add_argument("--gate-init-bias", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (the OpenMP team)")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="OPENBLAS_NUM_THREADS (default 1, as the C code: with 2 OpenMP and 2 OpenBLAS threads "
                         "the two spinning pools fight over 2 cores and a step is several times slower)")
    ap.add_argument("--steps", type=int, default=2, help="optimizer steps, one document each (0: check only)")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.999))
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--clip-norm", type=float, default=1.0)
    ap.add_argument("--warmup-steps", type=int, default=0)
    ap.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--total-steps", type=int, default=0, help="schedule length (0: --steps)")
    ap.add_argument("--recompute", action="store_true",
                    help="torch.utils.checkpoint per segment (BPTT by recomputation, as the C code)")
    ap.add_argument("--check-loss", type=float, default=None,
                    help="C loss of sample 0 (ei eval --data D --max-samples 1 --mode edgeinfinite)")
    ap.add_argument("--ei", default=None, help="ei binary: run that ei eval here to get --check-loss")
    ap.add_argument("--tol", type=float, default=1e-5, help="largest relative loss difference accepted")
    ap.add_argument("--compare-gates", default=None,
                    help="gates.safetensors written by `ei train` after the same steps on the same data")
    a = ap.parse_args()
    if a.total_steps <= 0:
        a.total_steps = a.steps

    # OpenBLAS (Debian's torch calls it for matmul) reads its thread count when it is loaded.
    os.environ["OPENBLAS_NUM_THREADS"] = str(a.blas_threads)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import numpy as np
    import torch
    import torch.utils.checkpoint  # noqa: F401 (--recompute)
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    res = dict(tool="torch_sft", torch=torch.__version__, threads=a.threads, blas_threads=a.blas_threads, model=a.model, data=a.data,
               segment=a.segment, sink=a.sink, window=a.window, gate=a.gate, memory_rule=a.memory_rule,
               positions=a.positions, recompute=a.recompute, steps=a.steps)
    try:
        t0 = time.perf_counter()
        cfg, w = load_hf(a.model, np) if os.path.isdir(a.model) else load_llama2c(a.model, np)
        model = EdgeInfinite(torch, cfg, w, a.segment, a.sink, a.window, a.gate, a.memory_rule, a.positions)
        samples = load_samples(a.data, np, a.max_tokens, max(1, a.steps))
        res.update(layout=cfg["rope"], load_s=time.perf_counter() - t0, n_gate=model.n_gate,
                   rss_after_load_mb=peak_rss_mb())
        T = lambda s: (torch.from_numpy(s[0]), torch.from_numpy(s[1]), torch.from_numpy(s[2]))  # noqa: E731
        gates = model.gates_init(a.gate_init_bias)

        # correctness gate before any timing: same forward loss as the C code
        if a.check_loss is not None or a.ei:
            ref = a.check_loss
            if ref is None:
                ref, _ = ei_eval_loss(a.ei, a.model, a.data, a)
            t0 = time.perf_counter()
            ids, tgt, msk = T(samples[0])
            loss, count, nseg = model.doc_loss(gates, ids, tgt, msk)
            loss = float(loss)
            rel = abs(loss - ref) / max(abs(ref), 1e-30)
            res["check"] = dict(c_loss=ref, torch_loss=loss, rel_diff=rel, tol=a.tol, ok=rel <= a.tol,
                                tokens=int(count), segments=nseg, forward_s=time.perf_counter() - t0)
            print(f"torch_sft: check: sample 0, {nseg} segments: C loss {ref:.7f}, PyTorch {loss:.7f}, "
                  f"relative difference {rel:.2e} (tolerance {a.tol:g})", file=sys.stderr)
            if rel > a.tol:
                res["error"] = "loss differs from the C code's beyond the tolerance"
                print(json.dumps(res))
                sys.exit(4)

        params = torch.nn.Parameter(gates.clone())
        opt = torch.optim.AdamW([params], lr=a.lr, betas=tuple(a.betas), eps=a.eps, weight_decay=a.weight_decay)
        steps = []
        for step in range(a.steps):
            s = samples[step % len(samples)]
            ids, tgt, msk = T(s)
            for grp in opt.param_groups:
                grp["lr"] = lr_at(a, step)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=False)
            with torch.enable_grad():
                loss, count, nseg = model.doc_loss(params, ids, tgt, msk, recompute=a.recompute)
                t1 = time.perf_counter()
                loss.backward()
            t2 = time.perf_counter()
            gnorm = float(torch.nn.utils.clip_grad_norm_([params], a.clip_norm if a.clip_norm > 0 else float("inf")))
            lv = float(loss)
            if math.isfinite(lv) and math.isfinite(gnorm):
                opt.step()
            t3 = time.perf_counter()
            del loss
            ntok = int(ids.shape[0]) + 1  # tokens of the sample, as ei train counts them
            steps.append(dict(step=step + 1, loss=lv, grad_norm=gnorm, tokens=ntok, segments=nseg,
                              forward_s=t1 - t0, backward_s=t2 - t1, update_s=t3 - t2, step_s=t3 - t0,
                              tokens_per_s=ntok / (t3 - t0), peak_rss_mb=peak_rss_mb()))
            print(f"torch_sft: step {step + 1}: loss {lv:.6f}, grad norm {gnorm:.6f}, {t3 - t0:.2f} s "
                  f"(forward {t1 - t0:.2f}, backward {t2 - t1:.2f}), {ntok / (t3 - t0):.1f} tok/s, "
                  f"peak RSS {peak_rss_mb():.0f} MB", file=sys.stderr)
        res["steps_detail"] = steps
        if steps:
            tt = sum(s["step_s"] for s in steps)
            res["tokens_per_s"] = sum(s["tokens"] for s in steps) / tt
            fc = flop_count(cfg, steps[0]["tokens"] - 1, a.segment, a.sink, a.window, a.gate, a.memory_rule)
            key = "torch_recompute_total" if a.recompute else "torch_total"
            res["flops_per_step"] = fc[key]
            res["gflops_per_s"] = sum(fc[key] for _ in steps) / tt / 1e9
        if a.compare_gates:
            cg = read_c_gates(a.compare_gates, np, model, cfg)
            pg = params.detach().numpy()
            diff = np.abs(cg - pg)
            moved_c, moved_t = cg - gates.numpy(), pg - gates.numpy()
            agree = float(np.mean(np.sign(moved_c) == np.sign(moved_t)))
            res["gates_vs_c"] = dict(max_abs_diff=float(diff.max()),
                                     rel_l2_of_update=float(np.linalg.norm(moved_c - moved_t) /
                                                            max(np.linalg.norm(moved_c), 1e-30)),
                                     update_sign_agreement=agree)
        res["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(res))
    except (MemoryError, RuntimeError) as e:
        msg = str(e)
        if isinstance(e, MemoryError) or "alloc" in msg.lower() or "memory" in msg.lower():
            res.update(oom=True, error=msg[:300], peak_rss_mb=peak_rss_mb())
            print(json.dumps(res))
            print(f"torch_sft: out of memory: {msg[:300]}", file=sys.stderr)
            sys.exit(3)
        raise


if __name__ == "__main__":
    main()
