#!/usr/bin/python3
"""Independent PyTorch oracle for vttt's language model (ttt/model*.c).

Writes small model directories in the reference layout of
test-time-training/ttt-lm-pytorch (config.json with the TTTConfig keys,
model.safetensors with the TTTForCausalLM state-dict names, float32) and,
beside each, a reference dump: input tokens, logits, per-position losses,
the mean loss, and the gradient of the loss for a few parameters. The C test
tests/test_model.c loads the directories with vttt's loader and compares.

The model is written from DESIGN.md ("The TTT layer", last paragraphs), not
from vttt's C code: embedding (+ the in-frame position embedding of video
models) -> blocks -> RMSNorm -> LM head (tied to the embedding unless
tie_word_embeddings is false), where a block is
  [pre_conv: h += conv(RMSNorm(h))] -> h += Seq(RMSNorm(h)) -> h += SwiGLU(RMSNorm(h))
and the loss is the mean cross-entropy of the token `shift` positions ahead
(shift 1 for text, tokens_per_frame for video). The sequence layers come from
tools/ttt_oracle.py (per-token inner gradients by autograd, float64).

Usage (Debian's torch; the pyenv python3 on PATH has none):
  /usr/bin/python3 tools/model_oracle.py [--out tests/data/model_ref]
  /usr/bin/python3 tools/model_oracle.py --check-dir DIR --tokens FILE \
      [--vttt build/vttt]
The second form loads a model directory that vttt wrote (or a training run
directory: its newest checkpoint), builds this model from its config.json and
model.safetensors, runs it on the token ids in FILE (whitespace-separated, one
sequence) and prints the max abs difference between its per-position NLLs and
those of `vttt lm score --model DIR --tokens FILE`.
"""

import argparse
import json
import math
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ttt_oracle as lo  # noqa: E402  (the layer oracle)

DT = torch.float64
RMS_EPS = 1e-6

# Tiny models: V vocab, D width, I SwiGLU width, L layers, H heads, b TTT
# mini-batch; B x T tokens. T is not a multiple of b (partial mini-batch).
BASE = dict(V=64, D=32, I=48, L=2, H=4, b=8, B=2, T=21)
CASES = [  # name, overrides
    ("ttt_linear_transformer", dict(kind="ttt_linear")),
    ("ttt_mlp_mamba", dict(kind="ttt_mlp", backbone="mamba", head_in_file=True,
                           base_lr=0.5)),
    ("ttt_linear_mamba_untied", dict(kind="ttt_linear", backbone="mamba",
                                     tied=False)),
    ("ttt_mlp_video", dict(kind="ttt_mlp", tokens_per_frame=8, T=24)),
    ("attention_transformer", dict(kind="attention", T=19)),
]
GRADS = [  # gradients dumped when the tensor exists
    "model.embed_tokens.weight", "model.frame_pos_embed.weight",
    "model.norm.weight", "lm_head.weight",
    "model.layers.0.seq_modeling_block.q_proj.weight",
    "model.layers.0.seq_modeling_block.W1",
    "model.layers.1.seq_modeling_block.learnable_ttt_lr_weight",
    "model.layers.1.seq_modeling_block.conv_q.weight",
    "model.layers.0.conv.conv.weight", "model.layers.1.conv.norm.weight",
    "model.layers.1.seq_norm.weight", "model.layers.0.ffn_norm.weight",
    "model.layers.1.mlp.down_proj.weight",
]


def make_case(name, over):
    c = dict(BASE, kind="ttt_linear", backbone="transformer", tied=True,
             head_in_file=False, base_lr=1.0, tokens_per_frame=0)
    c.update(over)
    c["name"] = name
    c["mamba"] = c["backbone"] == "mamba"
    c.update(share_qk=c["mamba"], use_gate=c["mamba"], pre_conv=c["mamba"])
    return c


def config_json(c):
    """The reference TTTConfig keys as save_pretrained writes them, plus
    vttt's own keys where the case needs them."""
    cfg = {
        "architectures": ["TTTForCausalLM"], "model_type": "ttt",
        "torch_dtype": "float32", "vocab_size": c["V"], "hidden_size": c["D"],
        "intermediate_size": c["I"], "num_hidden_layers": c["L"],
        "num_attention_heads": c["H"], "hidden_act": "silu",
        "max_position_embeddings": 64, "initializer_range": 0.02,
        "rms_norm_eps": RMS_EPS, "use_cache": False, "pad_token_id": None,
        "bos_token_id": 1, "eos_token_id": 2, "pretraining_tp": 1,
        "tie_word_embeddings": c["tied"], "rope_theta": lo.ROPE_THETA,
        "use_gate": c["use_gate"], "share_qk": c["share_qk"],
        "ttt_layer_type": "mlp" if c["kind"] == "ttt_mlp" else "linear",
        "ttt_base_lr": c["base_lr"], "mini_batch_size": c["b"],
        "pre_conv": c["pre_conv"], "conv_kernel": lo.CONV_K,
        "scan_checkpoint_group_size": 0,
    }
    if c["kind"] == "attention":
        cfg["seq_modeling_block"] = "attention"
    if c["tokens_per_frame"]:
        cfg["tokens_per_frame"] = c["tokens_per_frame"]
    return cfg


def layer_cfg(c):
    return lo.make_cfg(c["kind"], c["B"], c["T"], c["D"], c["H"], b=c["b"],
                       share_qk=c["share_qk"], use_gate=c["use_gate"],
                       base_lr=c["base_lr"])


def make_params(c, seed):
    """Float32 parameters at a general point (not the near-zero init), in
    the reference names. The sequence layers take tools/ttt_oracle.py's
    values; layer 0 of TTT models has one clamped token scale."""
    g = torch.Generator().manual_seed(seed)

    def n(shape, std, mean=0.0):
        return (mean + std * torch.randn(shape, generator=g, dtype=DT)).float()

    V, D, I, K = c["V"], c["D"], c["I"], lo.CONV_K
    P = {"model.embed_tokens.weight": n((V, D), 0.3)}
    if c["tokens_per_frame"]:
        P["model.frame_pos_embed.weight"] = n((c["tokens_per_frame"], D), 0.5)
    for i in range(c["L"]):
        pre = "model.layers.%d." % i
        _, lp, _ = lo.make_values(layer_cfg(c), seed * 10 + i,
                                  clamp_one=(i == 0))
        for k, v in lp.items():
            P[pre + "seq_modeling_block." + k] = v
        P[pre + "mlp.gate_proj.weight"] = n((I, D), 1.0 / math.sqrt(D))
        P[pre + "mlp.up_proj.weight"] = n((I, D), 1.0 / math.sqrt(D))
        P[pre + "mlp.down_proj.weight"] = n((D, I), 1.0 / math.sqrt(I))
        if c["pre_conv"]:
            P[pre + "conv.norm.weight"] = n((D,), 0.1, 1.0)
            P[pre + "conv.conv.weight"] = n((D, 1, K), 0.4)
            P[pre + "conv.conv.bias"] = n((D,), 0.1)
        P[pre + "seq_norm.weight"] = n((D,), 0.1, 1.0)
        P[pre + "ffn_norm.weight"] = n((D,), 0.1, 1.0)
    P["model.norm.weight"] = n((D,), 0.1, 1.0)
    if not c["tied"]:
        P["lm_head.weight"] = n((V, D), 1.0 / math.sqrt(D))
    return P


def rms_norm(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + RMS_EPS) * w


def model_logits(c, P, tokens):
    """tokens (B,T) int64 -> logits (B,T,V), everything in float64."""
    T = tokens.shape[1]
    h = P["model.embed_tokens.weight"][tokens]
    if c["tokens_per_frame"]:
        h = h + P["model.frame_pos_embed.weight"][torch.arange(T) %
                                                  c["tokens_per_frame"]]
    lcfg = layer_cfg(c)
    for i in range(c["L"]):
        pre = "model.layers.%d." % i
        if c["pre_conv"]:
            u = rms_norm(h, P[pre + "conv.norm.weight"])
            h = h + lo.causal_dwconv(u, P[pre + "conv.conv.weight"],
                                     P[pre + "conv.conv.bias"])
        sp = pre + "seq_modeling_block."
        lp = {k[len(sp):]: v for k, v in P.items() if k.startswith(sp)}
        h = h + lo.layer(lcfg, rms_norm(h, P[pre + "seq_norm.weight"]), lp)
        x = rms_norm(h, P[pre + "ffn_norm.weight"])
        a = F.silu(x @ P[pre + "mlp.gate_proj.weight"].T) * \
            (x @ P[pre + "mlp.up_proj.weight"].T)
        h = h + a @ P[pre + "mlp.down_proj.weight"].T
    h = rms_norm(h, P["model.norm.weight"])
    head = P["model.embed_tokens.weight"] if c["tied"] else P["lm_head.weight"]
    return h @ head.T


def losses_of(c, logits, tokens):
    """Per-position NLL (B,T) of the token `shift` ahead (0 where there is
    none) and their mean over the counted positions."""
    shift = c["tokens_per_frame"] or 1
    B, T, V = logits.shape
    nll = torch.zeros(B, T, dtype=DT)
    nll[:, :T - shift] = F.cross_entropy(
        logits[:, :T - shift].reshape(-1, V), tokens[:, shift:].reshape(-1),
        reduction="none").reshape(B, T - shift)
    return nll, nll[:, :T - shift].mean()


def run_case(c, seed, outdir):
    P32 = make_params(c, seed)
    g = torch.Generator().manual_seed(seed + 7)
    tokens = torch.randint(0, c["V"], (c["B"], c["T"]), generator=g)
    P = {k: v.to(DT).requires_grad_() for k, v in P32.items()}
    logits = model_logits(c, P, tokens)
    nll, loss = losses_of(c, logits, tokens)
    names = [k for k in GRADS if k in P]
    grads = torch.autograd.grad(loss, [P[k] for k in names])

    mdir = os.path.join(outdir, c["name"])
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(mdir, "config.json"), "w") as fh:
        json.dump(config_json(c), fh, indent=2)
        fh.write("\n")
    files = dict(P32)
    if c["head_in_file"]:  # tied, but written out as some exporters do
        files["lm_head.weight"] = P32["model.embed_tokens.weight"].clone()
    lo.write_safetensors(os.path.join(mdir, "model.safetensors"), files, {"format": "pt"})

    ref = {"tokens": tokens.to(torch.int32), "logits": logits.detach(),
           "losses": nll.detach(), "loss": loss.detach().reshape(1)}
    for k, gr in zip(names, grads):
        ref["grad." + k] = gr
    meta = {"B": c["B"], "T": c["T"], "seed": seed,
            "generator": "tools/model_oracle.py (torch %s, float64)"
            % torch.__version__}
    rpath = os.path.join(outdir, c["name"] + ".safetensors")
    lo.write_safetensors(rpath, ref, meta)
    print("%s: loss %.6f, |logits| %.3f, %d gradients, %d + %d bytes" % (
        c["name"], loss.item(), logits.abs().max().item(), len(names),
        os.path.getsize(os.path.join(mdir, "model.safetensors")),
        os.path.getsize(rpath)))


def case_of_config(cfg, T):
    """The case dict of a vttt-written config.json, for one sequence of T
    tokens. Refuses settings this oracle does not model."""
    kind = cfg.get("seq_modeling_block", "ttt")
    if kind == "ttt":
        kind = "ttt_mlp" if cfg["ttt_layer_type"] == "mlp" else "ttt_linear"
    if cfg.get("rope_theta", lo.ROPE_THETA) != lo.ROPE_THETA or \
            cfg.get("rms_norm_eps", RMS_EPS) != RMS_EPS or \
            cfg.get("conv_kernel", lo.CONV_K) != lo.CONV_K or \
            cfg.get("hidden_act", "silu") != "silu":
        raise ValueError("config differs from the oracle's constants")
    c = dict(V=cfg["vocab_size"], D=cfg["hidden_size"],
             I=cfg["intermediate_size"], L=cfg["num_hidden_layers"],
             H=cfg["num_attention_heads"], b=cfg["mini_batch_size"], B=1,
             T=T, kind=kind, tied=cfg.get("tie_word_embeddings", True),
             base_lr=cfg["ttt_base_lr"],
             tokens_per_frame=cfg.get("tokens_per_frame") or 0,
             share_qk=cfg.get("share_qk", False),
             use_gate=cfg.get("use_gate", False),
             pre_conv=cfg.get("pre_conv", False))
    return c


def vttt_nll(vttt, mdir, tokens_file, T):
    """Per-position NLLs (T,) from `vttt lm score` (0 where none)."""
    out = subprocess.run([vttt, "lm", "score", "--model", mdir, "--tokens",
                          tokens_file, "--threads", "1"], check=True,
                         capture_output=True, text=True).stdout
    nll = torch.zeros(T, dtype=DT)
    n = 0
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[0].isdigit():
            nll[int(f[0]) - 1] = float(f[2])
            n += 1
    return nll, n


def check_dir(args):
    """--check-dir: this model on a vttt checkpoint against vttt lm score."""
    mdir = args.check_dir
    if not os.path.exists(os.path.join(mdir, "config.json")):
        mdir = os.path.join(mdir, "latest")  # a training run directory
    with open(os.path.join(mdir, "config.json")) as fh:
        cfg = json.load(fh)
    with open(args.tokens) as fh:
        ids = [int(t) for t in fh.read().split()]
    c = case_of_config(cfg, len(ids))
    # requires_grad: the TTT inner steps are taken by autograd
    P = {k: v.to(DT).requires_grad_() for k, v in
         lo.read_safetensors(os.path.join(mdir, "model.safetensors"))[0].items()}
    tokens = torch.tensor([ids])
    nll, loss = losses_of(c, model_logits(c, P, tokens), tokens)
    nll, loss = nll.detach(), loss.detach()
    ref, n = vttt_nll(args.vttt, mdir, args.tokens, len(ids))
    shift = c["tokens_per_frame"] or 1
    if n != len(ids) - shift:
        print("vttt scored %d positions, expected %d" % (n, len(ids) - shift))
        return 1
    diff = (nll[0] - ref).abs().max().item()
    print("%s: %s %s, %d tensors, %d tokens, oracle mean NLL %.6f, "
          "vttt %.6f, max |dNLL| %.3e" % (
              mdir, c["kind"], "mamba" if c["pre_conv"] else "transformer",
              len(P), len(ids), loss.item(), ref[:len(ids) - shift].mean(),
              diff))
    return 0 if diff < args.tol else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
        "model_ref"))
    ap.add_argument("--check-dir", help="a vttt model or run directory")
    ap.add_argument("--tokens", help="token ids for --check-dir")
    ap.add_argument("--vttt", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "build", "vttt"))
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="max |dNLL| --check-dir accepts")
    args = ap.parse_args()
    if args.check_dir:
        if not args.tokens:
            ap.error("--check-dir needs --tokens")
        return check_dir(args)
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    for i, (name, over) in enumerate(CASES):
        run_case(make_case(name, over), 3000 + i, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
