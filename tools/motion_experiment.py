#!/usr/bin/env python3
"""How much does motion alone buy over repeating the last frame? (docs/video_motion.md)

No model: for each held-out clip of tools/video_corpus.sh, estimate the motion
between frames t-1 and t and extrapolate it k frames: shift frame t by k times
that motion, and compare with repeating frame t, at k = 1..4 (PSNR, dB).
Two estimators: one global half-pixel shift per frame (kept only where it
lowers the error by 30%), and a 4x4 field of per-region half-pixel shifts
(each kept only where it lowers its region's error by 10%), as the DELTA
tokenizer's motion tokens carry. "oracle" uses the motion of t -> t+1 itself
(what an encoder that sees the frame can choose).

usage: tools/motion_experiment.py CORPUS [SIZE]     needs numpy and ffmpeg
"""
import subprocess
import sys

import numpy as np

CORPUS = sys.argv[1]
S = int(sys.argv[2]) if len(sys.argv) > 2 else 64
R = 4  # pixels
CLIPS = ["cockatoo", "bikes", "carphone_pristine", "photo_pan_eveningglow", "photo_zoom_fallenleaf",
         "photo_cuts_container_coldripple"]


def load(name):
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", f"{CORPUS}/heldout/{name}.mp4", "-vf",
                          f"scale={S}:{S}:flags=bicubic", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, S, S, 3).astype(np.float32)


def psnr(a, b):
    m = ((a - b) ** 2).mean()
    return 10 * np.log10(255 ** 2 / max(m, 1e-10))


def shift(img, dx, dy):
    """out(y, x) = img(y - dy, x - dx), bilinear, edges clamped."""
    ys = np.clip(np.arange(S) - dy, 0, S - 1)
    xs = np.clip(np.arange(S) - dx, 0, S - 1)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, S - 1)
    x1 = np.minimum(x0 + 1, S - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    a, b, c, d = img[y0][:, x0], img[y0][:, x1], img[y1][:, x0], img[y1][:, x1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


CANDS = [(dx / 2, dy / 2) for dy in range(-2 * R, 2 * R + 1) for dx in range(-2 * R, 2 * R + 1)]


def field(prev, cur, bs, gain):
    """Per-region (bs x bs) best shift, kept where it lowers the region's error by 1 - gain."""
    nb = S // bs
    errs = np.zeros((len(CANDS), nb, nb))
    for i, (dx, dy) in enumerate(CANDS):
        d = ((shift(prev, dx, dy) - cur) ** 2).sum(-1)
        errs[i] = d.reshape(nb, bs, nb, bs).sum((1, 3))
    i0 = CANDS.index((0.0, 0.0))
    best = errs.argmin(0)
    mv = np.zeros((nb, nb, 2))
    for by in range(nb):
        for bx in range(nb):
            b = best[by, bx]
            if errs[b, by, bx] < gain * errs[i0, by, bx]:
                mv[by, bx] = CANDS[b]
    return mv


def warp(img, mv, k):
    nb = mv.shape[0]
    bs = S // nb
    out = np.empty_like(img)
    for by in range(nb):
        for bx in range(nb):
            w = shift(img, mv[by, bx, 0] * k, mv[by, bx, 1] * k)
            out[by * bs:(by + 1) * bs, bx * bs:(bx + 1) * bs] = w[by * bs:(by + 1) * bs, bx * bs:(bx + 1) * bs]
    return out


def main():
    for label, bs, gain in (("global", S, 0.7), ("4x4 field", S // 4, 0.9)):
        tot = {k: [[], []] for k in range(1, 5)}
        orc = []
        for name in CLIPS:
            F = load(name)
            M = [field(F[t - 1], F[t], bs, gain) for t in range(1, len(F))]
            r = {k: [[], []] for k in range(1, 5)}
            o = []
            for t in range(1, len(F) - 4):
                for k in range(1, 5):
                    r[k][0].append(psnr(F[t + k], F[t]))
                    r[k][1].append(psnr(F[t + k], warp(F[t], M[t - 1], k)))
                o.append(psnr(F[t + 1], warp(F[t], M[t], 1)))
            print(f"{label:10s} {name[:24]:25s}",
                  " ".join(f"k{k} {np.mean(r[k][1]) - np.mean(r[k][0]):+.2f}" for k in range(1, 5)),
                  f"oracle k1 {np.mean(o) - np.mean(r[1][0]):+.2f}", flush=True)
            for k in range(1, 5):
                tot[k][0] += r[k][0]
                tot[k][1] += r[k][1]
            orc += o
        print(f"{label:10s} pooled (dB over repeating; repeat at k=1..4:",
              " ".join(f"{np.mean(tot[k][0]):.2f}" for k in range(1, 5)) + ")",
              " ".join(f"k{k} {np.mean(tot[k][1]) - np.mean(tot[k][0]):+.2f}" for k in range(1, 5)),
              f"oracle k1 {np.mean(orc) - np.mean(tot[1][0]):+.2f}", flush=True)


if __name__ == "__main__":
    main()
