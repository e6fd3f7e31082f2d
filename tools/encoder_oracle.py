#!/usr/bin/python3
"""Independent PyTorch oracle for the frame tokenizer (encoder/).

Builds the tokenizer of encoder/encoder_model.c from its equations with
torch.nn.functional (conv2d, group_norm, silu, interpolate nearest) and FSQ
(Mentzer et al. 2023) written out, in float64 from float32 values:

  layer: a = silu(group_norm(x)) if normed else x; u = upsample2x(a) if up;
         y = conv2d(u, W, b, stride, padding k // 2)
  FSQ per channel with L levels: hl = (L - 1)(1 + 1e-3) / 2,
         off = 0.5 for even L else 0, shift = atanh(off / hl),
         b = tanh(z + shift) hl - off, q = round(b) / floor(L/2) with the
         straight-through gradient (the "st" case), or q = b / floor(L/2)
         (the "bypass" case: the C test hook fsq_bypass);
         code = sum_i (round(b_i) + floor(L_i/2)) * prod_{j<i} L_j
  loss = mean((y + 0.5 - img)^2), img = frames / 255

It writes a tiny tokenizer directory tests/data/encoder_oracle/
(config.json, model.safetensors: random weights from a seed) and
tests/data/encoder_oracle.safetensors with the input frames and, per case,
the reconstruction y, z, q, codes, the loss and the gradients of the loss
w.r.t. the image ("dx": both the network's input and the target) and every
parameter ("CASE.grad.NAME"). tests/test_encoder.c loads the directory with
vttt_encoder_load and matches everything with named tolerances. CI never
runs this script; the files are committed.

Usage: /usr/bin/python3 tools/encoder_oracle.py [--out tests/data]
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ttt_oracle import write_safetensors  # noqa: E402

DT = torch.float64
GN_EPS = 1e-5
FSQ_EPS = 1e-3
CFG = {"image_size": 16, "channels": 4, "num_groups": 2, "levels": [3, 4]}
N_FRAMES = 2


def layers(cfg):
    """(name, cin, cout, k, stride, norm, up) in the order of
    encoder_model.c's table."""
    c, d = cfg["channels"], len(cfg["levels"])
    w0, w1, w2, w3 = c, c, 2 * c, 2 * c
    return [
        ("encoder.conv_in", 3, w0, 3, 1, False, False),
        ("encoder.down.0", w0, w1, 3, 2, True, False),
        ("encoder.down.1", w1, w2, 3, 2, True, False),
        ("encoder.down.2", w2, w3, 3, 2, True, False),
        ("encoder.mid", w3, w3, 3, 1, True, False),
        ("encoder.conv_out", w3, d, 1, 1, True, False),
        ("decoder.conv_in", d, w3, 1, 1, False, False),
        ("decoder.mid", w3, w3, 3, 1, True, False),
        ("decoder.up.0", w3, w2, 3, 1, True, True),
        ("decoder.up.1", w2, w1, 3, 1, True, True),
        ("decoder.up.2", w1, w0, 3, 1, True, True),
        ("decoder.conv_out", w0, 3, 3, 1, True, False),
    ]


def make_params(cfg, seed):
    """float32-valued weights: convs uniform(+-1/sqrt(fan_in)), GroupNorm
    weight 1 + N(0, 0.1^2) and bias N(0, 0.1^2) (a general point)."""
    g = torch.Generator().manual_seed(seed)
    p = {}
    for name, cin, cout, k, _, norm, _ in layers(cfg):
        if norm:
            p[name + ".norm.weight"] = 1 + 0.1 * torch.randn(cin, generator=g)
            p[name + ".norm.bias"] = 0.1 * torch.randn(cin, generator=g)
        bound = 1 / math.sqrt(cin * k * k)
        p[name + ".conv.weight"] = (torch.rand(cout, cin, k, k, generator=g) * 2 - 1) * bound
        p[name + ".conv.bias"] = (torch.rand(cout, generator=g) * 2 - 1) * bound
    return {n: t.float() for n, t in p.items()}


def layer(x, spec, p):
    name, _, _, k, stride, norm, up = spec
    if norm:
        x = F.silu(F.group_norm(x, CFG["num_groups"], p[name + ".norm.weight"],
                                p[name + ".norm.bias"], eps=GN_EPS))
    if up:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
    return F.conv2d(x, p[name + ".conv.weight"], p[name + ".conv.bias"],
                    stride=stride, padding=k // 2)


def fsq(z, levels, bypass):
    """z (N, d, G, G) -> q, codes (N, G, G)."""
    qs, code, base = [], torch.zeros(z.shape[0], *z.shape[2:], dtype=torch.int64), 1
    for i, L in enumerate(levels):
        hl = (L - 1) * (1 + FSQ_EPS) / 2
        off = 0.5 if L % 2 == 0 else 0.0
        shift = math.atanh(off / hl)
        hw = L // 2
        b = torch.tanh(z[:, i] + shift) * hl - off
        r = torch.round(b)
        q = b if bypass else b + (r - b).detach()
        qs.append(q / hw)
        code = code + (r.detach().to(torch.int64) + hw) * base
        base *= L
    return torch.stack(qs, 1), code


def run(frames, p32, bypass):
    p = {n: t.to(DT).requires_grad_(True) for n, t in p32.items()}
    img = (frames.to(torch.float32) * (1.0 / 255.0)).to(DT).requires_grad_(True)
    specs = layers(CFG)
    x = img - 0.5
    for s in specs[:6]:
        x = layer(x, s, p)
    z = x
    q, codes = fsq(z, CFG["levels"], bypass)
    x = q
    for s in specs[6:]:
        x = layer(x, s, p)
    y = x
    loss = ((y + 0.5 - img) ** 2).mean()
    names = list(p)
    grads = torch.autograd.grad(loss, [img] + [p[n] for n in names])
    out = {"y": y, "z": z, "q": q, "codes": codes.to(DT), "loss": loss.reshape(1), "dx": grads[0]}
    for n, g in zip(names, grads[1:]):
        out["grad." + n] = g
    return out


def generate(outdir):
    p32 = make_params(CFG, 7)
    d = os.path.join(outdir, "encoder_oracle")
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), p32, {"format": "pt"})
    cfg = {"model_type": "vttt_fsq_tokenizer", "image_size": CFG["image_size"],
           "channels": CFG["channels"], "num_groups": CFG["num_groups"],
           "num_levels": len(CFG["levels"]), "levels": CFG["levels"]}
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
        fh.write("\n")
    g = torch.Generator().manual_seed(11)
    S = CFG["image_size"]
    # frames (N, S, S, 3) uint8 as in a frame shard; stored as float
    frames_nhwc = torch.randint(0, 256, (N_FRAMES, S, S, 3), generator=g)
    frames = frames_nhwc.permute(0, 3, 1, 2).contiguous()
    dump = {"frames": frames_nhwc.to(torch.float32)}
    for case, bypass in (("st", False), ("bypass", True)):
        for k, v in run(frames, p32, bypass).items():
            dump[case + "." + k] = v.detach().to(torch.float32)
    write_safetensors(os.path.join(outdir, "encoder_oracle.safetensors"), dump,
                      {"levels": ",".join(map(str, CFG["levels"])), "frames": N_FRAMES})
    print("wrote", d, "and", os.path.join(outdir, "encoder_oracle.safetensors"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data"))
    a = ap.parse_args()
    generate(os.path.normpath(a.out))


if __name__ == "__main__":
    main()
