#!/usr/bin/python3
"""Independent reference values for vttt_image_ssim / vttt_image_psnr
(encoder/image_metrics.c), written with numpy only.

The test images are made from integer arithmetic that tests/test_image.c
repeats exactly (see make_pair), so only the scores need to be stored:
one line per case, "w h amp ssim psnr", in tests/data/image_oracle.txt.

SSIM here is computed differently from the C code on purpose: the 2-D
Gaussian window (outer product of the 1-D taps) is applied directly to
every valid window with numpy's sliding_window_view, instead of two
separable passes.

Usage: /usr/bin/python3 tools/image_oracle.py [--out tests/data/image_oracle.txt]
"""
import argparse

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MASK = (1 << 64) - 1
CASES = [(64, 64, 2), (64, 64, 8), (64, 64, 40), (37, 23, 16), (11, 11, 8), (8, 5, 20), (64, 48, 128),
         (3, 1, 60)]


def make_pair(w, h, amp, seed):
    """Image a: a smooth deterministic pattern; b: a plus uniform integer
    noise in [-amp, amp] from a 64-bit LCG, clamped to 0..255."""
    a = np.zeros((h, w, 3), dtype=np.int64)
    b = np.zeros((h, w, 3), dtype=np.int64)
    x = seed & MASK
    for r in range(h):
        for c in range(w):
            for ch in range(3):
                v = (r * 7 + c * 3 + ch * 50 + ((r * c) >> 3)) & 255
                x = (x * 6364136223846793005 + 1442695040888963407) & MASK
                n = int(x >> 33) % (2 * amp + 1) - amp
                a[r, c, ch] = v
                b[r, c, ch] = min(255, max(0, v + n))
    return a.astype(np.uint8), b.astype(np.uint8)


def ssim(a, b):
    win = min(11, a.shape[0], a.shape[1])
    t = np.arange(win) - (win - 1) / 2.0
    g = np.exp(-t * t / (2 * 1.5 * 1.5))
    g /= g.sum()
    g2 = np.outer(g, g)
    wts = np.array([0.299, 0.587, 0.114])
    x = a.astype(np.float64) @ wts
    y = b.astype(np.float64) @ wts

    def filt(z):
        return np.einsum("ijkl,kl->ij", sliding_window_view(z, (win, win)), g2)

    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx * mx, filt(y * y) - my * my, filt(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else min(100.0, 10 * np.log10(255.0 ** 2 / mse))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/image_oracle.txt")
    args = ap.parse_args()
    lines = ["# w h amp ssim psnr  (tools/image_oracle.py; images from make_pair, seed = w*1000+h*10+amp)"]
    for w, h, amp in CASES:
        a, b = make_pair(w, h, amp, w * 1000 + h * 10 + amp)
        lines.append("%d %d %d %.12f %.12f" % (w, h, amp, ssim(a, b), psnr(a, b)))
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
