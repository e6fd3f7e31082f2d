#!/usr/bin/python3
"""Reference dumps for the 2D image ops of ttt/ops.h (conv2d, groupnorm,
upsample2x): forward outputs and every gradient, computed by torch autograd
in float64 from float32 inputs, with torch.nn.functional.conv2d,
group_norm and interpolate(mode="nearest").

Each op gets one safetensors file in tests/data/ (oracle_conv2d,
oracle_groupnorm, oracle_upsample2x). A case "cK" stores its inputs, a
random upstream gradient "cK.dout" (the loss is sum(out * dout)), the
output "cK.out" and the gradients "cK.dinp", "cK.dw", "cK.db"; its shape
parameters are the metadata value "cK" (space-separated integers, in the
order of the C function's arguments). tests/test_conv_ops.c reads them.

Usage: /usr/bin/python3 tools/conv_oracle.py [--out tests/data] [--check]
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ttt_oracle import write_safetensors  # noqa: E402

# N C H W OC KH KW stride pad bias
CONV_CASES = [
    (2, 3, 7, 6, 4, 3, 3, 1, 1, 1),
    (1, 2, 9, 8, 3, 4, 4, 2, 1, 1),
    (3, 5, 5, 5, 2, 1, 1, 1, 0, 1),
    (2, 4, 8, 7, 3, 3, 3, 2, 0, 0),
    (1, 3, 6, 9, 2, 1, 3, 2, 1, 1),
    (2, 3, 7, 5, 4, 1, 1, 2, 0, 1),
    (4, 6, 11, 10, 5, 4, 4, 2, 1, 1),
    (2, 3, 6, 7, 2, 4, 4, 1, 1, 1),
    (1, 4, 6, 5, 3, 3, 3, 1, 0, 1),
]
# N C H W G  (HW = H*W; eps 1e-5)
GN_CASES = [(2, 6, 5, 4, 3), (3, 4, 7, 1, 1), (1, 4, 3, 3, 4), (2, 8, 6, 6, 2)]
GN_EPS = 1e-5
# N C H W
UP_CASES = [(2, 3, 3, 5), (1, 1, 1, 1), (3, 2, 4, 7)]


def rnd(g, *shape, scale=1.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float32) * scale)


def grads(out, dout, leaves):
    loss = (out * dout.double()).sum()
    return torch.autograd.grad(loss, leaves)


def conv_cases(g):
    tensors, meta = {}, {}
    for i, (N, C, H, W, OC, KH, KW, s, p, bias) in enumerate(CONV_CASES):
        k = "c%d" % i
        x, w = rnd(g, N, C, H, W), rnd(g, OC, C, KH, KW, scale=0.5)
        b = rnd(g, OC, scale=0.3)
        OH, OW = (H + 2 * p - KH) // s + 1, (W + 2 * p - KW) // s + 1
        dout = rnd(g, N, OC, OH, OW)
        xd, wd, bd = (t.double().requires_grad_() for t in (x, w, b))
        out = F.conv2d(xd, wd, bd if bias else None, stride=s, padding=p)
        assert out.shape == (N, OC, OH, OW)
        dx, dw, db = grads(out, dout, [xd, wd, bd]) if bias else grads(out, dout, [xd, wd]) + (None,)
        tensors.update({k + ".inp": x, k + ".w": w, k + ".dout": dout, k + ".out": out,
                        k + ".dinp": dx, k + ".dw": dw})
        if bias:
            tensors.update({k + ".b": b, k + ".db": db})
        meta[k] = " ".join(str(v) for v in (N, C, H, W, OC, KH, KW, s, p, bias))
    return tensors, meta


def gn_cases(g):
    tensors, meta = {}, {}
    for i, (N, C, H, W, G) in enumerate(GN_CASES):
        k = "c%d" % i
        x = rnd(g, N, C, H, W) * 2.0 + 0.7
        w, b = 1.0 + rnd(g, C, scale=0.3), rnd(g, C, scale=0.3)
        dout = rnd(g, N, C, H, W)
        xd, wd, bd = (t.double().requires_grad_() for t in (x, w, b))
        out = F.group_norm(xd, G, wd, bd, eps=GN_EPS)
        dx, dw, db = grads(out, dout, [xd, wd, bd])
        xv = xd.detach().reshape(N, G, -1)
        mean = xv.mean(-1)
        rstd = 1.0 / torch.sqrt(xv.var(-1, unbiased=False) + GN_EPS)
        tensors.update({k + ".inp": x, k + ".w": w, k + ".b": b, k + ".dout": dout, k + ".out": out,
                        k + ".mean": mean, k + ".rstd": rstd, k + ".dinp": dx, k + ".dw": dw, k + ".db": db})
        meta[k] = "%d %d %d %d" % (N, C, H * W, G)
    meta["eps"] = repr(GN_EPS)
    return tensors, meta


def up_cases(g):
    tensors, meta = {}, {}
    for i, (N, C, H, W) in enumerate(UP_CASES):
        k = "c%d" % i
        x = rnd(g, N, C, H, W)
        dout = rnd(g, N, C, 2 * H, 2 * W)
        xd = x.double().requires_grad_()
        out = F.interpolate(xd, scale_factor=2, mode="nearest")
        (dx,) = grads(out, dout, [xd])
        tensors.update({k + ".inp": x, k + ".dout": dout, k + ".out": out, k + ".dinp": dx})
        meta[k] = "%d %d %d %d" % (N, C, H, W)
    return tensors, meta


def check():
    """gradcheck of the float64 functions the dumps use."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    ok = torch.autograd.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), (x, w, b))
    gw = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    ok &= torch.autograd.gradcheck(lambda x, w: F.group_norm(x, 3, w, None, 1e-5), (x, gw))
    ok &= torch.autograd.gradcheck(lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), (x,))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data"))
    ap.add_argument("--check", action="store_true", help="gradcheck the torch functions; write nothing")
    args = ap.parse_args()
    if args.check:
        ok = check()
        print("all checks passed" if ok else "CHECK FAILED")
        return 0 if ok else 1
    g = torch.Generator().manual_seed(20261130)
    for name, fn in (("conv2d", conv_cases), ("groupnorm", gn_cases), ("upsample2x", up_cases)):
        tensors, meta = fn(g)
        path = os.path.join(os.path.normpath(args.out), "oracle_%s.safetensors" % name)
        write_safetensors(path, tensors, meta)
        print("wrote %s (%d tensors, %d bytes)" % (path, len(tensors), os.path.getsize(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
