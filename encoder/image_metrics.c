/* Image quality measures shared by the video stages: PSNR and SSIM over
 * (H, W, 3) uint8 RGB images (see encoder.h). Everything is computed in
 * double precision; bad arguments (NULL, w or h <= 0) and failed
 * allocations give NaN, which no comparison mistakes for a score. */
#include <math.h>
#include <stdlib.h>

#include "encoder.h"

#define PSNR_MAX_DB 100.0   /* identical images; also the cap for tiny errors */

/* PSNR = 10 log10(255^2 / MSE), MSE over all h*w*3 values. Capped at
 * 100 dB, the value of identical images, so a one-level error in a very
 * large image never scores above a perfect copy. */
double vttt_image_psnr(const uint8_t *a, const uint8_t *b, int w, int h) {
    if (!a || !b || w <= 0 || h <= 0) return NAN;
    size_t n = (size_t)w * (size_t)h * 3;
    double sse = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        sse += d * d;
    }
    if (sse == 0.0) return PSNR_MAX_DB;
    double psnr = 10.0 * log10(255.0 * 255.0 * (double)n / sse);
    return psnr < PSNR_MAX_DB ? psnr : PSNR_MAX_DB;
}

/* ---- SSIM --------------------------------------------------------------- */

#define SSIM_WIN 11
#define SSIM_SIGMA 1.5
#define SSIM_C1 ((0.01 * 255.0) * (0.01 * 255.0))
#define SSIM_C2 ((0.03 * 255.0) * (0.03 * 255.0))

/* BT.601 luma of an (h, w, 3) image into y (h*w), unrounded. */
static void luma(double *y, const uint8_t *rgb, size_t npix) {
    for (size_t i = 0; i < npix; i++)
        y[i] = 0.299 * rgb[3 * i] + 0.587 * rgb[3 * i + 1] + 0.114 * rgb[3 * i + 2];
}

/* The 1-D Gaussian of k taps (sigma 1.5, centred, summing to 1). The 2-D
 * window is its outer product. */
static void gauss_taps(double *g, int k) {
    double sum = 0.0, c = (k - 1) / 2.0;
    for (int i = 0; i < k; i++) {
        double d = i - c;
        g[i] = exp(-d * d / (2.0 * SSIM_SIGMA * SSIM_SIGMA));
        sum += g[i];
    }
    for (int i = 0; i < k; i++) g[i] /= sum;
}

/* Valid-mode separable filtering of the five moment images (x, y, x^2, y^2,
 * xy) with the k-tap window: first along rows into tmp (5, h, ow), then
 * along columns, accumulating the SSIM of each of the oh*ow windows. */
static double ssim_mean(const double *x, const double *y, int w, int h, int k, double *tmp) {
    double g[SSIM_WIN];
    gauss_taps(g, k);
    int ow = w - k + 1, oh = h - k + 1;
    size_t plane = (size_t)h * ow;
    for (int r = 0; r < h; r++)
        for (int c = 0; c < ow; c++) {
            double m[5] = {0, 0, 0, 0, 0};
            for (int t = 0; t < k; t++) {
                double a = x[(size_t)r * w + c + t], b = y[(size_t)r * w + c + t];
                m[0] += g[t] * a, m[1] += g[t] * b, m[2] += g[t] * a * a, m[3] += g[t] * b * b;
                m[4] += g[t] * a * b;
            }
            for (int q = 0; q < 5; q++) tmp[q * plane + (size_t)r * ow + c] = m[q];
        }
    double total = 0.0;
    for (int r = 0; r < oh; r++)
        for (int c = 0; c < ow; c++) {
            double m[5] = {0, 0, 0, 0, 0};
            for (int t = 0; t < k; t++)
                for (int q = 0; q < 5; q++) m[q] += g[t] * tmp[q * plane + (size_t)(r + t) * ow + c];
            double mx = m[0], my = m[1];
            double vx = m[2] - mx * mx, vy = m[3] - my * my, cxy = m[4] - mx * my;
            total += ((2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2)) /
                     ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2));
        }
    return total / ((double)oh * ow);
}

/* SSIM (Wang et al. 2004) on the BT.601 luma with L = 255, the biased
 * (window-weighted) variances, and the mean over all valid 11×11 windows.
 * An image narrower or shorter than 11 uses one window of min(w, h) taps
 * per side (the same Gaussian, truncated and renormalised). */
double vttt_image_ssim(const uint8_t *a, const uint8_t *b, int w, int h) {
    if (!a || !b || w <= 0 || h <= 0) return NAN;
    int k = SSIM_WIN;
    if (w < k) k = w;
    if (h < k) k = h;
    size_t npix = (size_t)w * (size_t)h;
    double *x = malloc(npix * sizeof *x), *y = malloc(npix * sizeof *y);
    double *tmp = malloc(5 * (size_t)h * (size_t)(w - k + 1) * sizeof *tmp);
    double s = NAN;
    if (x && y && tmp) {
        luma(x, a, npix);
        luma(y, b, npix);
        s = ssim_mean(x, y, w, h, k, tmp);
    }
    free(x);
    free(y);
    free(tmp);
    return s;
}
