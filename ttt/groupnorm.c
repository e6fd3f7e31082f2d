/* GroupNorm over NCHW activations (torch.nn.GroupNorm): each image's C
 * channels form G groups of C/G channels, normalised together over their
 * (C/G)*HW values with the biased variance, then scaled and shifted per
 * channel. In NCHW the values of a group are contiguous. w and b may be
 * NULL (no affine: weight 1, bias 0). Statistics are summed in double. */
#include "ops.h"

/* mean (N, G), rstd (N, G); out, inp (N, C, HW); w, b (C). */
void ttt_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int N, int C, int HW, int G, float eps) {
    int cg = C / G;
    size_t len = (size_t)cg * HW;
    long groups = (long)N * G;
#pragma omp parallel for schedule(static) if (groups * (long)len > 32768)
    for (long ng = 0; ng < groups; ng++) {
        const float *x = inp + ng * len;
        float *y = out + ng * len;
        double s = 0.0;
        for (size_t i = 0; i < len; i++) s += x[i];
        double m = s / (double)len, v = 0.0;
        for (size_t i = 0; i < len; i++) v += ((double)x[i] - m) * ((double)x[i] - m);
        float fm = (float)m, r = (float)(1.0 / sqrt(v / (double)len + (double)eps));
        if (mean) mean[ng] = fm;
        if (rstd) rstd[ng] = r;
        int c0 = (int)(ng % G) * cg;
        for (int j = 0; j < cg; j++) {
            float sc = r * (w ? w[c0 + j] : 1.0f), sh = (b ? b[c0 + j] : 0.0f) - fm * sc;
            const float *xc = x + (size_t)j * HW;
            float *yc = y + (size_t)j * HW;
            for (int p = 0; p < HW; p++) yc[p] = xc[p] * sc + sh;
        }
    }
}

/* dinp = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) over the
 * group, with dxhat = dout * w[c]; dw[c] += sum dout * xhat, db[c] += sum
 * dout over images and pixels. */
static void groupnorm_dinp(float *dinp, const float *dout, const float *inp, const float *w, const float *mean,
                           const float *rstd, int N, int C, int HW, int G) {
    int cg = C / G;
    size_t len = (size_t)cg * HW;
    long groups = (long)N * G;
#pragma omp parallel for schedule(static) if (groups * (long)len > 32768)
    for (long ng = 0; ng < groups; ng++) {
        const float *x = inp + ng * len, *g = dout + ng * len;
        float *dx = dinp + ng * len;
        float m = mean[ng], r = rstd[ng];
        int c0 = (int)(ng % G) * cg;
        double sd = 0.0, sdx = 0.0;
        for (int j = 0; j < cg; j++) {
            float wc = w ? w[c0 + j] : 1.0f;
            for (int p = 0; p < HW; p++) {
                size_t i = (size_t)j * HW + p;
                float d = g[i] * wc;
                sd += d;
                sdx += d * (x[i] - m) * r;
            }
        }
        float md = (float)(sd / (double)len), mdx = (float)(sdx / (double)len);
        for (int j = 0; j < cg; j++) {
            float wc = w ? w[c0 + j] : 1.0f;
            for (int p = 0; p < HW; p++) {
                size_t i = (size_t)j * HW + p;
                dx[i] += r * (g[i] * wc - md - (x[i] - m) * r * mdx);
            }
        }
    }
}

void ttt_groupnorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *mean, const float *rstd, int N, int C, int HW, int G) {
    if (dinp) groupnorm_dinp(dinp, dout, inp, w, mean, rstd, N, C, HW, G);
    if (!dw && !db) return;
    int cg = C / G;
#pragma omp parallel for schedule(static) if ((long)N * C * HW > 32768)
    for (int c = 0; c < C; c++) {
        double sw = 0.0, sb = 0.0;
        for (int n = 0; n < N; n++) {
            long ng = (long)n * G + c / cg;
            const float *x = inp + ((size_t)n * C + c) * HW, *g = dout + ((size_t)n * C + c) * HW;
            float m = mean[ng], r = rstd[ng];
            float aw = 0.0f, ab = 0.0f;
            for (int p = 0; p < HW; p++) {
                aw += g[p] * (x[p] - m) * r;
                ab += g[p];
            }
            sw += aw;
            sb += ab;
        }
        if (dw) dw[c] += (float)sw;
        if (db) db[c] += (float)sb;
    }
}
