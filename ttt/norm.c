/* RMSNorm and LayerNorm over the last dimension C of (N, C) rows. Both use
 * the biased variance (mean over C). Parameter gradients are summed over
 * rows by threads that each own a block of channels, so there is no race
 * and no scratch allocation. */
#include <math.h>

#include "ops.h"
#include "par.h"

#define NORM_CBLOCK 64 /* channels per thread task in parameter gradients */
#define NORM_PAR(N, C) VTTT_PAR((double)(N) * (C) * VTTT_COST_ROW)

/* out (N,C) = inp * rstd * w, rstd (N) = 1/sqrt(mean(inp^2) + eps); rstd may be NULL. */
void ttt_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
#pragma omp parallel for if (NORM_PAR(N, C))
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double ss = 0.0;
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float r = 1.0f / sqrtf((float)(ss / C) + eps);
        for (int i = 0; i < C; i++) o[i] = x[i] * r * w[i];
        if (rstd) rstd[n] = r;
    }
}

/* dx = r * (dout*w) - r^3/C * x * sum(dout*w*x); dw += sum_n dout * x * r. */
void ttt_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                          const float *rstd, int N, int C) {
    if (dinp) {
#pragma omp parallel for if (NORM_PAR(N, C))
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float r = rstd[n];
            double dot = 0.0;
            for (int i = 0; i < C; i++) dot += (double)dy[i] * w[i] * x[i];
            float k = (float)(dot / C) * r * r * r;
            for (int i = 0; i < C; i++) dx[i] += r * dy[i] * w[i] - k * x[i];
        }
    }
    if (dw) {
#pragma omp parallel for if (NORM_PAR(N, C))
        for (int c0 = 0; c0 < C; c0 += NORM_CBLOCK) {
            int c1 = c0 + NORM_CBLOCK < C ? c0 + NORM_CBLOCK : C;
            for (int n = 0; n < N; n++) {
                const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
                for (int i = c0; i < c1; i++) dw[i] += dy[i] * x[i] * rstd[n];
            }
        }
    }
}

/* out (N,C) = (inp - mean) * rstd * w + b; mean, rstd (N) may be NULL. */
void ttt_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                           const float *b, int N, int C, float eps) {
#pragma omp parallel for if (NORM_PAR(N, C))
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double s = 0.0;
        for (int i = 0; i < C; i++) s += x[i];
        float m = (float)(s / C);
        double v = 0.0;
        for (int i = 0; i < C; i++) v += (double)(x[i] - m) * (x[i] - m);
        float r = 1.0f / sqrtf((float)(v / C) + eps);
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * r * w[i] + b[i];
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = r;
    }
}

/* With xhat = (x - mean) * rstd and g = dout * w:
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); dw += dout * xhat; db += dout.
 * mean and rstd are the forward's and must not be NULL here. */
void ttt_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *mean, const float *rstd, int N, int C) {
    if (dinp) {
#pragma omp parallel for if (NORM_PAR(N, C))
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float m = mean[n], r = rstd[n];
            double sg = 0.0, sgx = 0.0;
            for (int i = 0; i < C; i++) {
                float g = dy[i] * w[i];
                sg += g;
                sgx += (double)g * (x[i] - m) * r;
            }
            float mg = (float)(sg / C), mgx = (float)(sgx / C);
            for (int i = 0; i < C; i++) dx[i] += r * (dy[i] * w[i] - mg - (x[i] - m) * r * mgx);
        }
    }
    if (!dw && !db) return;
#pragma omp parallel for if (NORM_PAR(N, C))
    for (int c0 = 0; c0 < C; c0 += NORM_CBLOCK) {
        int c1 = c0 + NORM_CBLOCK < C ? c0 + NORM_CBLOCK : C;
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            for (int i = c0; i < c1; i++) {
                if (dw) dw[i] += dy[i] * (x[i] - mean[n]) * rstd[n];
                if (db) db[i] += dy[i];
            }
        }
    }
}
