#!/usr/bin/python3
"""Independent PyTorch autograd oracle for vttt's sequence layers.

Writes small reference dumps (inputs, parameters, output y and the outer
gradient of L = sum(y * dy) w.r.t. the input and every parameter) for the
TTT-Linear, TTT-MLP and attention layers, as safetensors files that the C
tests read. CI never runs this script; the dumps are committed.

The TTT layer is written in the most direct form of DESIGN.md "The TTT layer"
(not the dual form): for every token j of a mini-batch the inner gradient
grad_j = d l_j / dW at the mini-batch's start state W0 comes from
torch.autograd.grad(create_graph=True), token i's output uses
W_i = W0 - sum_{j<=i} eta_ij grad_j, and the next mini-batch starts from
W_last. The outer gradients are then plain autograd through all of that,
second-order terms included. Everything is computed in float64 from
float32-valued inputs and stored as float32.

Usage (Debian's torch; the pyenv python3 on PATH has none):
  /usr/bin/python3 tools/ttt_oracle.py [--out tests/data]   write the dumps
  /usr/bin/python3 tools/ttt_oracle.py --check              self-test
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile

import torch
import torch.nn.functional as F

DT = torch.float64
LN_EPS = 1e-6
ROPE_THETA = 10000.0
CONV_K = 4

# ---------------------------------------------------------------- config


def make_cfg(kind, B, T, D, H, b=16, share_qk=False, use_gate=False,
             base_lr=1.0):
    f = D // H
    return dict(kind=kind, B=B, T=T, D=D, H=H, f=f, b=b,
                share_qk=bool(share_qk), use_gate=bool(use_gate),
                base_lr=base_lr,
                h1=4 * f if kind == "ttt_mlp" else f)


def param_shapes(cfg):
    """Ordered {reference name: shape} of the layer's parameters."""
    D, H, f, h1, b = cfg["D"], cfg["H"], cfg["f"], cfg["h1"], cfg["b"]
    if cfg["kind"] == "attention":
        return {n: (D, D) for n in
                ("q_proj.weight", "k_proj.weight", "v_proj.weight",
                 "o_proj.weight")}
    s = {"q_proj.weight": (D, D)}
    if not cfg["share_qk"]:
        s["k_proj.weight"] = (D, D)
    s["v_proj.weight"] = (D, D)
    s["o_proj.weight"] = (D, D)
    if cfg["use_gate"]:
        s["g_proj.weight"] = (D, D)
    if cfg["share_qk"]:
        s["conv_q.weight"] = (D, 1, CONV_K)
        s["conv_q.bias"] = (D,)
        s["conv_k.weight"] = (D, 1, CONV_K)
        s["conv_k.bias"] = (D,)
    s["learnable_ttt_lr_weight"] = (H, 1, D)
    s["learnable_ttt_lr_bias"] = (H, 1)
    s["learnable_token_idx"] = (b,)
    s["ttt_norm_weight"] = (H, f)
    s["ttt_norm_bias"] = (H, f)
    s["W1"] = (H, f, h1)
    s["b1"] = (H, 1, h1)
    if cfg["kind"] == "ttt_mlp":
        s["W2"] = (H, h1, f)
        s["b2"] = (H, 1, f)
    s["post_norm.weight"] = (D,)
    s["post_norm.bias"] = (D,)
    return s


def make_values(cfg, seed, clamp_one=False):
    """Random float32 x, dy and parameters at a general point.

    Scales are chosen so that the inner updates move W by a sizeable fraction
    of itself. learnable_token_idx keeps 1/i + delta_i >= 0.02 everywhere,
    except (clamp_one) at i = 6 where it is pushed below 0 so that the
    max(0, .) clamp is exercised."""
    g = torch.Generator().manual_seed(seed)

    def n(shape, std, mean=0.0):
        return (mean + std * torch.randn(shape, generator=g,
                                         dtype=torch.float64)).float()

    D, b = cfg["D"], cfg["b"]
    x = n((cfg["B"], cfg["T"], D), 1.0)
    p = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("proj.weight"):
            p[name] = n(shape, 1.0 / math.sqrt(D))
        elif name.startswith("conv_") and name.endswith("weight"):
            p[name] = n(shape, 0.4)
        elif name == "learnable_ttt_lr_weight":
            p[name] = n(shape, 0.5 / math.sqrt(D))
        elif name == "learnable_ttt_lr_bias":
            p[name] = n(shape, 0.5)
        elif name == "learnable_token_idx":
            d = n(shape, 0.1).double()
            inv = 1.0 / torch.arange(1, b + 1, dtype=torch.float64)
            d = torch.maximum(d, 0.02 - inv)
            if clamp_one and b >= 6:
                d[5] = -inv[5] - 0.05
            p[name] = d.float()
        elif name in ("ttt_norm_weight", "post_norm.weight"):
            p[name] = n(shape, 0.1, 1.0)
        elif name in ("W1", "W2"):
            p[name] = n(shape, 0.1)
        else:  # biases: conv_*.bias, ttt_norm_bias, b1, b2, post_norm.bias
            p[name] = n(shape, 0.1)
    dy = n((cfg["B"], cfg["T"], D), 1.0)
    return x, p, dy

# ---------------------------------------------------------------- layer math


def gelu_tanh(z):
    return F.gelu(z, approximate="tanh")


def layer_norm(z, w, bias):
    """LayerNorm over the last axis, biased variance, eps 1e-6."""
    mu = z.mean(-1, keepdim=True)
    var = ((z - mu) ** 2).mean(-1, keepdim=True)
    return (z - mu) / torch.sqrt(var + LN_EPS) * w + bias


def rotary(xh, pos):
    """xh (B,T,H,f); pos (T,) positions. Rotates pairs (2i, 2i+1) by
    pos * theta^(-2i/f)."""
    f = xh.shape[-1]
    i = torch.arange(f // 2, dtype=DT)
    ang = pos.to(DT)[:, None] * ROPE_THETA ** (-2.0 * i / f)  # (T, f/2)
    c = torch.cos(ang)[None, :, None, :]
    s = torch.sin(ang)[None, :, None, :]
    x0, x1 = xh[..., 0::2], xh[..., 1::2]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).flatten(-2)


def causal_dwconv(xs, w, bias):
    """xs (B,T,D); depthwise causal conv1d, kernel K, with bias."""
    T, D = xs.shape[1], xs.shape[2]
    out = F.conv1d(xs.transpose(1, 2), w, bias, padding=w.shape[-1] - 1,
                   groups=D)
    return out[..., :T].transpose(1, 2)


def inner_model(kind, W, k):
    """f_W(k) for one head; k (n,f) or (f,); W = [W1,b1] or [W1,b1,W2,b2]."""
    z = k @ W[0] + W[1][0]
    if kind == "ttt_mlp":
        z = gelu_tanh(z) @ W[2] + W[3][0]
    return z


def ttt_head(cfg, p, W0, q, k, v, lr, h):
    """One (sequence, head) of TTT. q,k,v (T,f); lr (T,); W0 list of the
    head's initial inner params. Returns the outputs (T,f) and the final
    inner state."""
    kind, T, b = cfg["kind"], q.shape[0], cfg["b"]
    gam, bet = p["ttt_norm_weight"][h], p["ttt_norm_bias"][h]
    outs = []
    for start in range(0, T, b):
        n = min(b, T - start)
        grads = []
        for j in range(start, start + n):
            zj = layer_norm(inner_model(kind, W0, k[j]), gam, bet)
            lj = 0.5 * ((zj - (v[j] - k[j])) ** 2).sum()
            grads.append(torch.autograd.grad(lj, W0, create_graph=True))
        for i in range(n):
            s_i = torch.clamp_min(1.0 / (i + 1) + p["learnable_token_idx"][i],
                                  0.0)
            Wi = [w0 - sum(s_i * lr[start + j] * grads[j][a]
                           for j in range(i + 1))
                  for a, w0 in enumerate(W0)]
            t = start + i
            outs.append(q[t] + layer_norm(inner_model(kind, Wi, q[t]), gam,
                                          bet))
        W0 = Wi  # i = n-1: eta_{last,j}
    return torch.stack(outs), W0


def ttt_layer(cfg, x, p, finals=None):
    """x (B,T,D) -> y (B,T,D). If finals is a list, the final inner state of
    every (sequence, head) is appended to it."""
    B, T, H, f = cfg["B"], cfg["T"], cfg["H"], cfg["f"]
    XV = x @ p["v_proj.weight"].T
    if cfg["share_qk"]:
        xqk = x @ p["q_proj.weight"].T
        XQ = causal_dwconv(xqk, p["conv_q.weight"], p["conv_q.bias"])
        XK = causal_dwconv(xqk, p["conv_k.weight"], p["conv_k.bias"])
    else:
        XQ = x @ p["q_proj.weight"].T
        XK = x @ p["k_proj.weight"].T
    pos = torch.arange(T) % cfg["b"]
    XQ = rotary(XQ.reshape(B, T, H, f), pos)
    XK = rotary(XK.reshape(B, T, H, f), pos)
    XV = XV.reshape(B, T, H, f)
    # lr (B,T,H)
    lr = torch.sigmoid(torch.einsum("btd,hd->bth", x,
                                    p["learnable_ttt_lr_weight"][:, 0, :])
                       + p["learnable_ttt_lr_bias"][:, 0]) \
        * cfg["base_lr"] / f
    names = ["W1", "b1"] + (["W2", "b2"] if cfg["kind"] == "ttt_mlp" else [])
    heads = []
    for bi in range(B):
        hs = []
        for h in range(H):
            W0 = [p[nm][h] for nm in names]
            out, Wf = ttt_head(cfg, p, W0, XQ[bi, :, h], XK[bi, :, h],
                               XV[bi, :, h], lr[bi, :, h], h)
            hs.append(out)
            if finals is not None:
                finals.append(Wf)
        heads.append(torch.cat(hs, -1))  # (T, D)
    o = layer_norm(torch.stack(heads), p["post_norm.weight"],
                   p["post_norm.bias"])
    if cfg["use_gate"]:
        o = o * gelu_tanh(x @ p["g_proj.weight"].T)
    return o @ p["o_proj.weight"].T


def attention_layer(cfg, x, p):
    B, T, H, f = cfg["B"], cfg["T"], cfg["H"], cfg["f"]
    pos = torch.arange(T)
    q = rotary((x @ p["q_proj.weight"].T).reshape(B, T, H, f), pos)
    k = rotary((x @ p["k_proj.weight"].T).reshape(B, T, H, f), pos)
    v = (x @ p["v_proj.weight"].T).reshape(B, T, H, f)
    att = torch.einsum("bihf,bjhf->bhij", q, k) / math.sqrt(f)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    att = att.masked_fill(~mask, float("-inf")).softmax(-1)
    o = torch.einsum("bhij,bjhf->bihf", att, v).reshape(B, T, H * f)
    return o @ p["o_proj.weight"].T


def layer(cfg, x, p):
    if cfg["kind"] == "attention":
        return attention_layer(cfg, x, p)
    return ttt_layer(cfg, x, p)

# ---------------------------------------------------------------- dumps


def run_case(cfg, x32, p32, dy32):
    """Forward + outer gradients in float64. Returns {name: float32 tensor}."""
    x = x32.to(DT).requires_grad_()
    p = {k: v.to(DT).requires_grad_() for k, v in p32.items()}
    y = layer(cfg, x, p)
    names = list(p)
    gr = torch.autograd.grad((y * dy32.to(DT)).sum(),
                             [x] + [p[k] for k in names])
    out = {"x": x32, "dy": dy32, "y": y.detach().float(),
           "grad.x": gr[0].float()}
    out.update(p32)
    for k, g in zip(names, gr[1:]):
        out["grad." + k] = g.float()
    return out


def write_safetensors(path, tensors, metadata):
    """Hand-written safetensors: u64 LE header length, JSON header (padded
    with spaces to a multiple of 8), then raw little-endian data: F32, or
    I32 for integer tensors."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, off = [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype in (torch.int32, torch.int64):
            data, dt = t.to(torch.int32).numpy().astype("<i4").tobytes(), "I32"
        else:
            data, dt = t.to(torch.float32).numpy().astype("<f4").tobytes(), "F32"
        header[name] = {"dtype": dt, "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(hj)))
        fh.write(hj)
        for blob in blobs:
            fh.write(blob)


def read_safetensors(path):
    """Minimal reader for F32 files like the above -> ({name: tensor},
    metadata); other dtypes are refused."""
    import numpy as np
    with open(path, "rb") as fh:
        raw = fh.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base, out = 8 + n, {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError("%s: %s is %s, not F32" % (path, name,
                                                        info["dtype"]))
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw[base + a:base + b], dtype="<f4")
        out[name] = torch.from_numpy(arr.copy()).reshape(info["shape"])
    return out, meta


def metadata(cfg):
    att = cfg["kind"] == "attention"
    return {"kind": cfg["kind"], "B": cfg["B"], "T": cfg["T"],
            "width": cfg["D"], "num_heads": cfg["H"],
            "mini_batch": 0 if att else cfg["b"],
            "base_lr": "%g" % (0 if att else cfg["base_lr"]),
            "share_qk": int(cfg["share_qk"]), "use_gate": int(cfg["use_gate"]),
            "conv_kernel": CONV_K, "rope_theta": "%g" % ROPE_THETA,
            "mlp_mult": 0 if att else cfg["h1"] // cfg["f"]}


CASES = [  # (file suffix, cfg kwargs without kind, clamp_one)
    ("a", dict(B=2, T=37, D=32, H=4, b=16), True),
    ("b", dict(B=1, T=32, D=32, H=2, b=16, share_qk=1, use_gate=1), False),
    ("c", dict(B=2, T=20, D=16, H=2, b=8, share_qk=1, use_gate=1), False),
]


def all_cases():
    seed = 1000
    for kind in ("ttt_linear", "ttt_mlp"):
        for suffix, kw, clamp in CASES:
            seed += 1
            yield "oracle_%s_%s" % (kind, suffix), make_cfg(kind, **kw), \
                seed, clamp
    yield "oracle_attention", make_cfg("attention", B=2, T=19, D=32, H=4), \
        2000, False


def inner_update_ratio(cfg, x32, p32):
    """Diagnostic: |W1_final - W1| / |W1| for sequence 0, head 0, i.e. how
    far the inner steps over the whole sequence move the state."""
    p = {k: v.to(DT).requires_grad_() for k, v in p32.items()}
    finals = []
    ttt_layer(cfg, x32.to(DT), p, finals)
    W1 = p["W1"][0]
    return ((finals[0][0] - W1).norm() / W1.norm()).item()


def generate(outdir):
    os.makedirs(outdir, exist_ok=True)
    for name, cfg, seed, clamp in all_cases():
        x, p, dy = make_values(cfg, seed, clamp)
        tensors = run_case(cfg, x, p, dy)
        meta = metadata(cfg)
        meta["seed"] = seed
        meta["generator"] = "tools/ttt_oracle.py (torch %s, float64)" \
            % torch.__version__
        path = os.path.join(outdir, name + ".safetensors")
        write_safetensors(path, tensors, meta)
        extra = ""
        if cfg["kind"] != "attention":
            extra = " inner |dW1|/|W1|=%.3f" % inner_update_ratio(cfg, x, p)
        print("%s: %d bytes, |y|=%.3f |grad.x|=%.3f%s" % (
            path, os.path.getsize(path), tensors["y"].norm(),
            tensors["grad.x"].norm(), extra))

# ---------------------------------------------------------------- self-test


def check_gradients():
    """torch.autograd.gradcheck of y(x, params) on tiny float64 cases that
    cover both inner models, share_qk/use_gate, a trailing partial
    mini-batch and attention. Returns True when all pass."""
    tiny = [
        make_cfg("ttt_linear", B=2, T=5, D=8, H=2, b=2),
        make_cfg("ttt_mlp", B=1, T=5, D=8, H=2, b=2),
        make_cfg("ttt_linear", B=1, T=7, D=8, H=2, b=3, share_qk=1,
                 use_gate=1),
        make_cfg("ttt_mlp", B=1, T=7, D=8, H=2, b=3, share_qk=1, use_gate=1),
        make_cfg("attention", B=2, T=5, D=8, H=2),
    ]
    ok = True
    for i, cfg in enumerate(tiny):
        x32, p32, _ = make_values(cfg, 77 + i)
        names = list(p32)
        leaves = [x32.to(DT).requires_grad_()] + \
            [p32[k].to(DT).requires_grad_() for k in names]

        def fn(*args, cfg=cfg, names=names):
            return layer(cfg, args[0], dict(zip(names, args[1:])))
        good = torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-5,
                                        rtol=1e-4, raise_exception=False)
        print("gradcheck %-10s share_qk=%d use_gate=%d T=%d b=%d: %s" % (
            cfg["kind"], cfg["share_qk"], cfg["use_gate"], cfg["T"], cfg["b"],
            "ok" if good else "FAILED"))
        ok = ok and good
    return ok


def check_roundtrip():
    """Write a dump to a temp dir, read it back, compare bit for bit."""
    cfg = make_cfg("ttt_linear", B=1, T=5, D=8, H=2, b=2, share_qk=1)
    x, p, dy = make_values(cfg, 5)
    tensors = run_case(cfg, x, p, dy)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.safetensors")
        write_safetensors(path, tensors, metadata(cfg))
        back, meta = read_safetensors(path)
    good = set(back) == set(tensors) and all(
        torch.equal(back[k], tensors[k]) for k in tensors) \
        and meta["kind"] == "ttt_linear" and meta["share_qk"] == "1"
    print("safetensors round trip: %s" % ("ok" if good else "FAILED"))
    return good


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data"))
    ap.add_argument("--check", action="store_true",
                    help="gradcheck the oracle itself; write nothing")
    args = ap.parse_args()
    if args.check:
        ok = check_gradients() & check_roundtrip()
        print("all checks passed" if ok else "CHECK FAILED")
        return 0 if ok else 1
    generate(os.path.normpath(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
