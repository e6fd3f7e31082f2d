/* GroupNorm over NCHW activations (torch.nn.GroupNorm): each image's C
 * channels form G groups of C/G channels, normalised together over their
 * (C/G)*HW values with the biased variance, then scaled and shifted per
 * channel. In NCHW the values of a group are contiguous. w and b may be
 * NULL (no affine: weight 1, bias 0).
 *
 * Sums over one channel's HW values are fp32 SIMD reductions (several
 * partial sums, so they vectorise without -ffast-math); the per-channel
 * results are added in double. */
#include "ops.h"

/* Values below which one thread does the whole op: it is memory bound and
 * takes well under a millisecond there, less than an OpenMP barrier costs
 * when the cores are shared with other work. */
#define GN_PAR_MIN (1L << 20)

/* sum x[p], sum (x[p] - m)^2 over one channel's HW values. */
static float chan_sum(const float *x, int HW) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int p = 0; p < HW; p++) s += x[p];
    return s;
}

static float chan_sqdev(const float *x, int HW, float m) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int p = 0; p < HW; p++) s += (x[p] - m) * (x[p] - m);
    return s;
}

/* mean (N, G), rstd (N, G); out, inp (N, C, HW); w, b (C). Two passes over
 * each group (mean, then squared deviations), then the output. */
void ttt_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int N, int C, int HW, int G, float eps) {
    int cg = C / G;
    size_t len = (size_t)cg * HW;
    long groups = (long)N * G;
#pragma omp parallel for schedule(static) if (groups * (long)len > GN_PAR_MIN)
    for (long ng = 0; ng < groups; ng++) {
        const float *x = inp + ng * len;
        float *y = out + ng * len;
        double s = 0.0, v = 0.0;
        for (int j = 0; j < cg; j++) s += chan_sum(x + (size_t)j * HW, HW);
        float m = (float)(s / (double)len);
        for (int j = 0; j < cg; j++) v += chan_sqdev(x + (size_t)j * HW, HW, m);
        float r = (float)(1.0 / sqrt(v / (double)len + (double)eps));
        if (mean) mean[ng] = m;
        if (rstd) rstd[ng] = r;
        int c0 = (int)(ng % G) * cg;
        for (int j = 0; j < cg; j++) {
            float sc = r * (w ? w[c0 + j] : 1.0f), sh = (b ? b[c0 + j] : 0.0f) - m * sc;
            const float *xc = x + (size_t)j * HW;
            float *yc = y + (size_t)j * HW;
#pragma omp simd
            for (int p = 0; p < HW; p++) yc[p] = xc[p] * sc + sh;
        }
    }
}

/* For one (image, group): per channel A = sum dout and B = sum dout * xhat
 * (xhat = (x - m) r), which give dw[c] += B, db[c] += A, and the two means
 * the input gradient needs; then dinp = r (dxhat - mean(dxhat) - xhat
 * mean(dxhat xhat)) with dxhat = dout w[c]. */
static void groupnorm_backward_group(float *dinp, float *dw, float *db, const float *g, const float *x,
                                     const float *w, float m, float r, int c0, int cg, int HW) {
    double sd = 0.0, sdx = 0.0;
    for (int j = 0; j < cg; j++) {
        const float *gc = g + (size_t)j * HW, *xc = x + (size_t)j * HW;
        float a = 0.0f, bx = 0.0f;
#pragma omp simd reduction(+ : a, bx)
        for (int p = 0; p < HW; p++) {
            a += gc[p];
            bx += gc[p] * (xc[p] - m);
        }
        bx *= r;
        float wc = w ? w[c0 + j] : 1.0f;
        sd += (double)wc * a;
        sdx += (double)wc * bx;
        if (dw) dw[c0 + j] += bx;
        if (db) db[c0 + j] += a;
    }
    if (!dinp) return;
    size_t len = (size_t)cg * HW;
    float md = (float)(sd / (double)len), mdx = (float)(sdx / (double)len);
    for (int j = 0; j < cg; j++) {
        const float *gc = g + (size_t)j * HW, *xc = x + (size_t)j * HW;
        float *dx = dinp + (size_t)j * HW, wc = w ? w[c0 + j] : 1.0f;
#pragma omp simd
        for (int p = 0; p < HW; p++) dx[p] += r * (gc[p] * wc - md - (xc[p] - m) * r * mdx);
    }
}

/* Threads own groups (all images of a group), so each dw[c], db[c] has one
 * writer and the sums over images keep their order. */
void ttt_groupnorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *mean, const float *rstd, int N, int C, int HW, int G) {
    if (!dinp && !dw && !db) return;
    int cg = C / G;
    size_t len = (size_t)cg * HW;
#pragma omp parallel for schedule(static) if ((long)N * C * HW > GN_PAR_MIN)
    for (int gi = 0; gi < G; gi++)
        for (int n = 0; n < N; n++) {
            size_t ng = (size_t)n * G + gi;
            groupnorm_backward_group(dinp ? dinp + ng * len : NULL, dw, db, dout + ng * len, inp + ng * len, w,
                                     mean[ng], rstd[ng], gi * cg, cg, HW);
        }
}
