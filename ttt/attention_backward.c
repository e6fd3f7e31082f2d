/*
 * Causal softmax attention backward on the CPU, FlashAttention-2 style: the
 * probabilities of each (query tile, key tile) pair are recomputed from the
 * forward's per-row logsumexp, so nothing of size T x T is stored.
 * dV += P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO O)), dQ += dS K scale,
 * dK += dS^T Q scale.
 */
/* The softmax loops vectorise only when float compares may be if-converted:
 * the build passes -fno-trapping-math for that. */

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attention_internal.h"
#include "ops.h"
#include "par.h"
#include "ttt.h"

enum { BR = ATTN_BR, BC = ATTN_BC };

typedef struct {
    const float *q, *k, *v, *dout; /* (B,T,D) */
    const float *lse, *delta;      /* (B,H,T) */
    int T, H, f, D;
    float scale;
} bwd_args;

/* Recomputes one (query tile, key tile) pair of head h of batch b:
 * P (nr, BC) the attention probabilities, zero where key > query, and
 * dS (nr, BC) = P * (dO V^T - delta), the gradient of the scaled scores. */
static void bwd_tile(const bwd_args *a, int b, int h, int i0, int nr, int j0, int nc, float *P, float *dS) {
    const int D = a->D, f = a->f;
    size_t base = (size_t)b * a->T * D + (size_t)h * f;
    const float *lse = a->lse + ((size_t)b * a->H + h) * a->T + i0;
    const float *delta = a->delta + ((size_t)b * a->H + h) * a->T + i0;
    ttt_sgemm(0, 1, nr, nc, f, a->scale, a->q + base + (size_t)i0 * D, D, a->k + base + (size_t)j0 * D, D, 0.0f, P,
              BC);
    ttt_sgemm(0, 1, nr, nc, f, 1.0f, a->dout + base + (size_t)i0 * D, D, a->v + base + (size_t)j0 * D, D, 0.0f,
              dS, BC);
    for (int r = 0; r < nr; r++) {
        float *p = P + (size_t)r * BC, *ds = dS + (size_t)r * BC;
        int nv = attn_visible(i0 + r, j0, nc);
        for (int c = 0; c < nv; c++) {
            p[c] = ttt_expf(p[c] - lse[r]);
            ds[c] = p[c] * (ds[c] - delta[r]);
        }
        for (int c = nv; c < nc; c++) p[c] = ds[c] = 0.0f;
    }
}

/* dq rows of one query tile += sum over visible key tiles of dS K scale. */
static void bwd_dq_tile(const bwd_args *a, float *dq, int b, int h, int i0, int nr, float *P, float *dS) {
    size_t base = (size_t)b * a->T * a->D + (size_t)h * a->f;
    for (int j0 = 0; j0 < i0 + nr; j0 += BC) {
        int nc = i0 + nr - j0 < BC ? i0 + nr - j0 : BC;
        bwd_tile(a, b, h, i0, nr, j0, nc, P, dS);
        ttt_sgemm(0, 0, nr, a->f, nc, a->scale, dS, BC, a->k + base + (size_t)j0 * a->D, a->D, 1.0f,
                  dq + base + (size_t)i0 * a->D, a->D);
    }
}

/* dk, dv rows of one key tile += sums over the query tiles that see it:
 * dV += P^T dO, dK += dS^T Q scale. */
static void bwd_dkv_tile(const bwd_args *a, float *dk, float *dv, int b, int h, int j0, int nc, float *P,
                         float *dS) {
    const int D = a->D, f = a->f;
    size_t base = (size_t)b * a->T * D + (size_t)h * f;
    for (int i0 = j0 / BR * BR; i0 < a->T; i0 += BR) {
        int nr = a->T - i0 < BR ? a->T - i0 : BR;
        bwd_tile(a, b, h, i0, nr, j0, nc, P, dS);
        ttt_sgemm(1, 0, nc, f, nr, 1.0f, P, BC, a->dout + base + (size_t)i0 * D, D, 1.0f, dv + base + (size_t)j0 * D,
                  D);
        ttt_sgemm(1, 0, nc, f, nr, a->scale, dS, BC, a->q + base + (size_t)i0 * D, D, 1.0f,
                  dk + base + (size_t)j0 * D, D);
    }
}

/* delta (B,H,T) = rowsum(dO * O) per head. */
static void bwd_delta(float *delta, const float *dout, const float *o, int B, int T, int H, int f) {
    long rows = (long)B * T;
#pragma omp parallel for schedule(static) if (VTTT_PAR((double)rows * H * f * 2 * VTTT_COST_COPY))
    for (long n = 0; n < rows; n++) {
        int b = (int)(n / T), t = (int)(n % T);
        for (int h = 0; h < H; h++) {
            const float *x = dout + (size_t)n * H * f + (size_t)h * f, *y = o + (size_t)n * H * f + (size_t)h * f;
            double s = 0.0;
            for (int d = 0; d < f; d++) s += (double)x[d] * y[d];
            delta[((size_t)b * H + h) * T + t] = (float)s;
        }
    }
}

/* Two passes so that every task owns the rows it writes: one over query
 * tiles for dq, one over key tiles for dk and dv (each recomputes P). */
int ttt_flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                       const float *v, const float *o, const float *lse, int B, int T, int H, int f) {
    int nth = omp_get_max_threads(), nt = (T + BR - 1) / BR, nkt = (T + BC - 1) / BC;
    size_t per_thread = 2 * (size_t)BR * BC;
    float *scratch = malloc((size_t)nth * per_thread * sizeof(float));
    float *delta = malloc((size_t)B * H * T * sizeof(float));
    if (!scratch || !delta) {
        free(scratch);
        free(delta);
        return VTTT_ENOMEM;
    }
    bwd_delta(delta, dout, o, B, T, H, f);
    bwd_args a = {q, k, v, dout, lse, delta, T, H, f, H * f, 1.0f / sqrtf((float)f)};
    long bh = (long)B * H;
    int nb = ttt_blas_serial_begin();
    double work = (double)bh * T * T * f * 2 * VTTT_COST_ATTN; /* half the pairs, ~4x the forward */
#pragma omp parallel num_threads(nth) if (VTTT_PAR(work))
    {
        float *P = scratch + (size_t)omp_get_thread_num() * per_thread, *dS = P + (size_t)BR * BC;
        /* Longest tasks first: late query tiles, early key tiles. */
#pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < bh * nt; t++) {
            int qt = nt - 1 - (int)(t / bh), i0 = qt * BR;
            bwd_dq_tile(&a, dq, (int)(t % bh) / H, (int)(t % bh) % H, i0, T - i0 < BR ? T - i0 : BR, P, dS);
        }
#pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < bh * nkt; t++) {
            int j0 = (int)(t / bh) * BC;
            bwd_dkv_tile(&a, dk, dv, (int)(t % bh) / H, (int)(t % bh) % H, j0, T - j0 < BC ? T - j0 : BC, P, dS);
        }
    }
    ttt_blas_serial_end(nb);
    free(delta);
    free(scratch);
    return VTTT_OK;
}
