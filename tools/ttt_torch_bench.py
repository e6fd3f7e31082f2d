#!/usr/bin/python3
"""The TTT layer written straightforwardly in PyTorch, for side-by-side
throughput with `vttt bench cuda` on the same GPU.

The layer is DESIGN.md "The TTT layer" in the dual form, mini-batch by
mini-batch with plain torch ops (heads and sequences batched, a Python loop
over the mini-batches): projections, rotary on positions mod b, the
learning-rate gate, the inner model (TTT-Linear or TTT-MLP) with its
LayerNorm + L2 loss gradient written out (as the reference implementation
does), the E/P matrices, the commit, post-norm and o_proj. Training steps
use autograd through all of it (second-order terms included).

It prints, per kind and context, at the 125m layer shape (D=768, H=12,
head dim 64, mini-batch 16): prefill tokens/s and training-step
(forward + backward) tokens/s of the whole layer, and the same two for the
inner loop alone (XQ/XK/XV/lr given), which is what `vttt bench cuda`
times. fp32 (TF32 off) by default, like the vttt kernels.

  /usr/bin/python3 tools/ttt_torch_bench.py [--contexts 2048,4096,...]
        [--kinds ttt_linear,ttt_mlp] [--batch B] [--reps N] [--no-train]
  /usr/bin/python3 tools/ttt_torch_bench.py --check
        checks this file's layer against tools/ttt_oracle.py (the direct,
        per-token form, float64) on small cases; runs on the CPU.
"""

import argparse
import math
import os
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("ttt_torch_bench.py needs PyTorch, which this Python (%s) does not "
          "have; run it where torch with CUDA is installed" % sys.executable)
    sys.exit(0)

LN_EPS = 1e-6
ROPE_THETA = 10000.0

# ---------------------------------------------------------------- layer


def gelu_tanh(z):
    return F.gelu(z, approximate="tanh")


def gelu_tanh_d1(z):
    """d/dz gelu_tanh(z)."""
    k0, k1 = math.sqrt(2.0 / math.pi), 0.044715
    u = k0 * (z + k1 * z ** 3)
    t = torch.tanh(u)
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k0 * (1 + 3 * k1 * z * z)


def layer_norm(z, w, b):
    mu = z.mean(-1, keepdim=True)
    var = ((z - mu) ** 2).mean(-1, keepdim=True)
    return (z - mu) / torch.sqrt(var + LN_EPS) * w + b


def ln_l2_grad(z, target, w, b):
    """d/dz of 0.5 |LN(z) - target|^2, row-wise over the last axis."""
    f = z.shape[-1]
    mu = z.mean(-1, keepdim=True)
    var = ((z - mu) ** 2).mean(-1, keepdim=True)
    r = 1.0 / torch.sqrt(var + LN_EPS)
    xh = (z - mu) * r
    gx = w * (w * xh + b - target)
    return r / f * (f * gx - gx.sum(-1, keepdim=True)
                    - xh * (gx * xh).sum(-1, keepdim=True))


def rotary(x, b):
    """x (B,T,H,f); rotates pairs (2i, 2i+1) by (t mod b) theta^(-2i/f)."""
    T, f = x.shape[1], x.shape[-1]
    pos = (torch.arange(T, device=x.device) % b).to(x.dtype)
    inv = ROPE_THETA ** (-2.0 * torch.arange(f // 2, device=x.device,
                                             dtype=x.dtype) / f)
    ang = pos[:, None] * inv
    c, s = torch.cos(ang)[None, :, None], torch.sin(ang)[None, :, None]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).flatten(-2)


def outer_in(cfg, p, x):
    """x (B,T,D) -> XQ, XK, XV (B,H,T,f), lr (B,H,T)."""
    B, T, D = x.shape
    H, f, b = cfg["H"], cfg["f"], cfg["b"]
    XQ = rotary((x @ p["q_proj.weight"].T).view(B, T, H, f), b)
    XK = rotary((x @ p["k_proj.weight"].T).view(B, T, H, f), b)
    XV = (x @ p["v_proj.weight"].T).view(B, T, H, f)
    lr = torch.sigmoid(x @ p["learnable_ttt_lr_weight"][:, 0, :].T
                       + p["learnable_ttt_lr_bias"][:, 0]) \
        * cfg["base_lr"] / f
    return (XQ.transpose(1, 2), XK.transpose(1, 2), XV.transpose(1, 2),
            lr.transpose(1, 2))


def inner(cfg, p, XQ, XK, XV, lr):
    """The dual form over all mini-batches; (B,H,T,f) -> Z (B,H,T,f)."""
    B, H, T, f = XQ.shape
    b, mlp = cfg["b"], cfg["kind"] == "ttt_mlp"
    lnw, lnb = p["ttt_norm_weight"][:, None], p["ttt_norm_bias"][:, None]
    s_all = torch.clamp_min(1.0 / torch.arange(1, b + 1, device=XQ.device,
                                               dtype=XQ.dtype)
                            + p["learnable_token_idx"], 0.0)
    W1 = p["W1"].expand(B, -1, -1, -1)
    b1 = p["b1"].expand(B, -1, -1, -1)
    if mlp:
        W2 = p["W2"].expand(B, -1, -1, -1)
        b2 = p["b2"].expand(B, -1, -1, -1)
    outs = []
    for t in range(0, T, b):
        n = min(b, T - t)
        K, Q, V = XK[:, :, t:t + n], XQ[:, :, t:t + n], XV[:, :, t:t + n]
        E = torch.tril(s_all[:n, None] * lr[:, :, None, t:t + n])  # (B,H,n,n)
        Z1 = K @ W1 + b1
        if mlp:
            X2 = gelu_tanh(Z1)
            Gf = ln_l2_grad(X2 @ W2 + b2, V - K, lnw, lnb)
            G1 = (Gf @ W2.transpose(-1, -2)) * gelu_tanh_d1(Z1)
        else:
            G1 = ln_l2_grad(Z1, V - K, lnw, lnb)
        P1 = E * (Q @ K.transpose(-1, -2) + 1)
        Zf = Q @ W1 + b1 - P1 @ G1
        if mlp:
            X2b = gelu_tanh(Zf)
            P2 = E * (X2b @ X2.transpose(-1, -2) + 1)
            Zf = X2b @ W2 + b2 - P2 @ Gf
        outs.append(Q + layer_norm(Zf, lnw, lnb))
        if n == b:  # commit with eta of the last token
            e = E[:, :, -1, :, None]  # (B,H,n,1)
            W1 = W1 - K.transpose(-1, -2) @ (e * G1)
            b1 = b1 - (e * G1).sum(-2, keepdim=True)
            if mlp:
                W2 = W2 - X2.transpose(-1, -2) @ (e * Gf)
                b2 = b2 - (e * Gf).sum(-2, keepdim=True)
    return torch.cat(outs, 2)


def layer(cfg, p, x):
    B, T, D = x.shape
    Z = inner(cfg, p, *outer_in(cfg, p, x))
    o = layer_norm(Z.transpose(1, 2).reshape(B, T, D), p["post_norm.weight"],
                   p["post_norm.bias"])
    return o @ p["o_proj.weight"].T


def make_cfg(kind, D=768, H=12, b=16, base_lr=1.0):
    f = D // H
    return dict(kind=kind, D=D, H=H, f=f, b=b, base_lr=base_lr,
                h1=4 * f if kind == "ttt_mlp" else f)


def make_params(cfg, device, dtype, seed=0):
    """Reference-style initialisation: normal(0, 0.02) matrices, zero biases
    and token offsets, unit norms."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    D, H, f, h1, b = cfg["D"], cfg["H"], cfg["f"], cfg["h1"], cfg["b"]
    shapes = {"q_proj.weight": (D, D), "k_proj.weight": (D, D),
              "v_proj.weight": (D, D), "o_proj.weight": (D, D),
              "learnable_ttt_lr_weight": (H, 1, D),
              "learnable_ttt_lr_bias": (H, 1), "learnable_token_idx": (b,),
              "ttt_norm_weight": (H, f), "ttt_norm_bias": (H, f),
              "W1": (H, f, h1), "b1": (H, 1, h1),
              "post_norm.weight": (D,), "post_norm.bias": (D,)}
    if cfg["kind"] == "ttt_mlp":
        shapes.update({"W2": (H, h1, f), "b2": (H, 1, f)})
    p = {}
    for name, shape in shapes.items():
        if name.endswith("weight") and "norm" not in name or name in ("W1", "W2"):
            t = 0.02 * torch.randn(shape, generator=g)
        elif "norm_weight" in name or name == "post_norm.weight":
            t = torch.ones(shape)
        else:
            t = torch.zeros(shape)
        p[name] = t.to(device=device, dtype=dtype).requires_grad_()
    return p

# ---------------------------------------------------------------- check


def check():
    """This layer against tools/ttt_oracle.py's direct form, float64."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ttt_oracle as O
    ok = True
    for kind in ("ttt_linear", "ttt_mlp"):
        for B, T, D, H, b in ((2, 37, 32, 4, 16), (1, 21, 16, 2, 8)):
            ocfg = O.make_cfg(kind, B=B, T=T, D=D, H=H, b=b)
            x32, p32, dy32 = O.make_values(ocfg, 5, clamp_one=True)
            want = O.run_case(ocfg, x32, p32, dy32)
            cfg = make_cfg(kind, D=D, H=H, b=b)
            x = x32.double().requires_grad_()
            p = {k: v.double().requires_grad_() for k, v in p32.items()}
            y = layer(cfg, p, x)
            gx, gW1 = torch.autograd.grad((y * dy32.double()).sum(),
                                          [x, p["W1"]])
            errs = [(y.float() - want["y"]).abs().max() / want["y"].abs().max(),
                    (gx.float() - want["grad.x"]).abs().max()
                    / want["grad.x"].abs().max(),
                    (gW1.float() - want["grad.W1"]).abs().max()
                    / want["grad.W1"].abs().max()]
            good = all(e < 1e-5 for e in errs)
            ok = ok and good
            print("%-10s B=%d T=%d D=%d H=%d b=%d: rel. err. y %.1e, grad x "
                  "%.1e, grad W1 %.1e: %s" % (kind, B, T, D, H, b, *errs,
                                             "ok" if good else "FAILED"))
    print("all checks passed" if ok else "CHECK FAILED")
    return 0 if ok else 1

# ---------------------------------------------------------------- bench


def best_time(fn, reps, device):
    """Best wall time in s of reps runs after one warm-up."""
    best = float("inf")
    for r in range(reps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if r > 0:
            best = min(best, time.perf_counter() - t0)
    return best


def bench_one(cfg, B, T, reps, train, device, dtype):
    """tokens/s: layer prefill, layer train step, inner prefill, inner train."""
    p = make_params(cfg, device, dtype)
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn((B, T, cfg["D"]), generator=g).to(device, dtype)
    dy = torch.randn((B, T, cfg["D"]), generator=g).to(device, dtype)
    with torch.no_grad():
        ins = [t.contiguous() for t in outer_in(cfg, p, x)]
    dZ = torch.randn(ins[0].shape, generator=g).to(device, dtype)
    res = {}

    def prefill():
        with torch.no_grad():
            layer(cfg, p, x)

    def inner_prefill():
        with torch.no_grad():
            inner(cfg, p, *ins)

    def step():
        (layer(cfg, p, x) * dy).sum().backward()

    def inner_step():
        leaves = [t.detach().requires_grad_() for t in ins]
        (inner(cfg, p, *leaves) * dZ).sum().backward()

    runs = [("prefill", prefill), ("inner_prefill", inner_prefill)]
    if train:
        runs += [("train", step), ("inner_train", inner_step)]
    for name, fn in runs:
        try:
            res[name] = B * T / best_time(fn, reps, device)
        except RuntimeError as e:  # e.g. CUDA out of memory
            res[name] = float("nan")
            print("  %s at T=%d failed: %s" % (name, T, str(e).split("\n")[0]))
            if device.type == "cuda":
                torch.cuda.empty_cache()
        for q in p.values():
            q.grad = None
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contexts", default="2048,4096,8192,16384,32768,65536")
    ap.add_argument("--kinds", default="ttt_linear,ttt_mlp")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--check", action="store_true",
                    help="check the layer against tools/ttt_oracle.py; CPU")
    a = ap.parse_args()
    if a.check:
        return check()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device (torch %s sees none): nothing to benchmark; "
              "--device cpu runs on the CPU" % torch.__version__)
        return 0
    device, dtype = torch.device(a.device), torch.float32
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        print("device: %s, torch %s" % (torch.cuda.get_device_name(device),
                                        torch.__version__))
    print("layer: D=768, H=12, head dim 64, mini-batch 16, B=%d, fp32; "
          "tokens/s, best of %d" % (a.batch, a.reps))
    print("%-10s %6s | %10s %10s | %12s %12s" % (
        "layer", "T", "prefill/s", "train/s", "inner pf/s", "inner tr/s"))
    for kind in a.kinds.split(","):
        cfg = make_cfg(kind)
        for T in [int(t) for t in a.contexts.split(",") if t]:
            r = bench_one(cfg, a.batch, T, a.reps, not a.no_train, device,
                          dtype)
            print("%-10s %6d | %10.0f %10.0f | %12.0f %12.0f" % (
                kind, T, r["prefill"], r.get("train", float("nan")),
                r["inner_prefill"], r.get("inner_train", float("nan"))))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
