/*
 * The TTT inner loop, forward: the dual form of one mini-batch (matrix
 * products only, DESIGN.md "The TTT layer" step 5), and the per-token
 * gradient and evaluation used by the primal form and by decode.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "ttt_inner.h"

ttt_dims ttt_dims_of(const vttt_layer *l) {
    ttt_dims d;
    d.f = l->f;
    d.h1 = l->h1;
    d.b = l->b;
    d.mlp = l->cfg.kind == VTTT_LAYER_TTT_MLP;
    d.numel = (size_t)d.f * d.h1 + d.h1 + (d.mlp ? (size_t)d.h1 * d.f + d.f : 0);
    return d;
}

void ttt_state_from_params(const vttt_layer *l, int h, float *s) {
    ttt_dims d = ttt_dims_of(l);
    size_t n1 = (size_t)d.f * d.h1;
    memcpy(ttt_W1(&d, s), l->p.W1 + h * n1, n1 * sizeof(float));
    memcpy(ttt_b1(&d, s), l->p.b1 + (size_t)h * d.h1, d.h1 * sizeof(float));
    if (d.mlp) {
        memcpy(ttt_W2(&d, s), l->p.W2 + h * n1, n1 * sizeof(float));
        memcpy(ttt_b2(&d, s), l->p.b2 + (size_t)h * d.f, d.f * sizeof(float));
    }
}

void ttt_token_scales(const vttt_layer *l, float *s, int n) {
    for (int i = 0; i < n; i++) {
        float v = 1.0f / (float)(i + 1) + l->p.token_idx[i];
        s[i] = v > 0.0f ? v : 0.0f;
    }
}

ttt_scratch *ttt_scratch_new(const ttt_dims *d) {
    size_t b = d->b, f = d->f, h = d->h1;
    size_t sizes[] = {2 * b * f, 2 * b * h, b * h, b * f, b * f, b * h, b * b, b * b, b * b,
                      b * h, b * f, 2 * b * h, 2 * b * h, b * h, b * h, b * b, b * b, 4 * h + 4 * f,
                      b * f, b * f, b * f, b * f, b * h, b * h, b * h, b * h, b * b, b * b, b * b};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += (sizes[i] + 15) & ~(size_t)15;
    ttt_scratch *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    if (posix_memalign((void **)&ws->mem, 64, total * sizeof(float))) {
        free(ws);
        return NULL;
    }
    memset(ws->mem, 0, total * sizeof(float));
    float **slots[] = {&ws->KQ, &ws->Zall, &ws->X2, &ws->Z2, &ws->Gf, &ws->G1, &ws->E, &ws->P1, &ws->P2,
                       &ws->X2b, &ws->Zf, &ws->tmpA, &ws->tmpB, &ws->tmpC, &ws->tmpD, &ws->bb, &ws->bb2, &ws->vec,
                       &ws->dZf, &ws->dGf, &ws->dK, &ws->dQ, &ws->dG1, &ws->dX2, &ws->dX2b, &ws->dZ1,
                       &ws->dE, &ws->S, &ws->dP};
    float *p = ws->mem;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *slots[i] = p;
        p += (sizes[i] + 15) & ~(size_t)15;
    }
    return ws;
}

void ttt_scratch_free(ttt_scratch **ws) {
    if (!ws || !*ws) return;
    free((*ws)->mem);
    free(*ws);
    *ws = NULL;
}

void ttt_ln_row(const float *z, const float *w, const float *b, int f, float *y, float *xhat, float *rstd) {
    float mu = 0.0f, var = 0.0f;
    for (int i = 0; i < f; i++) mu += z[i];
    mu /= (float)f;
    for (int i = 0; i < f; i++) var += (z[i] - mu) * (z[i] - mu);
    var /= (float)f;
    float r = 1.0f / sqrtf(var + TTT_LN_EPS);
    for (int i = 0; i < f; i++) {
        float xh = (z[i] - mu) * r;
        if (xhat) xhat[i] = xh;
        if (y) y[i] = xh * w[i] + b[i];
    }
    if (rstd) *rstd = r;
}

void ttt_lnl2_grad_row(const float *z, const float *t, const float *w, const float *b, int f, float *G) {
    float r;
    ttt_ln_row(z, w, b, f, NULL, G, &r); /* G holds x_hat for now */
    float sg = 0.0f, sgx = 0.0f;
    for (int i = 0; i < f; i++) {
        float gx = w[i] * (w[i] * G[i] + b[i] - t[i]);
        sg += gx;
        sgx += gx * G[i];
    }
    sg /= (float)f;
    sgx /= (float)f;
    for (int i = 0; i < f; i++) {
        float xh = G[i];
        float gx = w[i] * (w[i] * xh + b[i] - t[i]);
        G[i] = (gx - sg - xh * sgx) * r;
    }
}

/* gelu over n floats, serially: the inner loop already runs one head per
 * thread, so the OpenMP-parallel op would only add fork/join overhead. */
static void gelu_serial(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ttt_gelu(in[i]);
}

/* E (n,n): E[i][j] = s_i lr_j for j <= i, else 0. */
static void eta_matrix(float *E, const float *s, const float *lr, int n) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) E[i * n + j] = j <= i ? s[i] * lr[j] : 0.0f;
}

/* P (n,n) = E * (A B^T + 1) where A (n,in), B (n,in); lower triangle. */
static void dual_scores(float *P, const float *E, const float *A, const float *B, int n, int in) {
    ttt_sgemm(0, 1, n, n, in, 1.0f, A, in, B, in, 0.0f, P, n);
    for (int i = 0; i < n * n; i++) P[i] = E[i] * (P[i] + 1.0f);
}

/* W (in,out) -= X^T diag(c) G; bias (out) -= c^T G (sign -1), or += with
 * sign +1. X (n,in), G (n,out); cG (n,out) is scratch. */
static void dual_update(float *W, float *bias, const float *X, const float *G, const float *c, int n, int in,
                        int out, float sign, float *cG) {
    for (int j = 0; j < n; j++)
        for (int o = 0; o < out; o++) cG[j * out + o] = c[j] * G[j * out + o];
    ttt_sgemm(1, 0, in, out, n, sign, X, in, cG, out, 1.0f, W, out);
    for (int j = 0; j < n; j++)
        for (int o = 0; o < out; o++) bias[o] += sign * cG[j * out + o];
}

/* Forward of the inner model on the mini-batch's keys at W0 and the
 * gradient of the loss at its output(s): fills KQ, Zall, Gf and, for
 * TTT-MLP, X2, Z2, G1. Shared with the backward, which recomputes. */
void ttt_dual_keys(const ttt_dims *d, ttt_scratch *ws, const ttt_mb *mb, const float *W) {
    int n = mb->n, f = d->f, h1 = d->h1;
    for (int i = 0; i < n; i++) {
        memcpy(ws->KQ + (size_t)i * f, mb->k + (size_t)i * mb->ld, f * sizeof(float));
        memcpy(ws->KQ + (size_t)(n + i) * f, mb->q + (size_t)i * mb->ld, f * sizeof(float));
    }
    const float *W1 = ttt_W1(d, (float *)W), *b1 = ttt_b1(d, (float *)W);
    for (int i = 0; i < 2 * n; i++) memcpy(ws->Zall + (size_t)i * h1, b1, h1 * sizeof(float));
    ttt_sgemm(0, 0, 2 * n, h1, f, 1.0f, ws->KQ, f, W1, h1, 1.0f, ws->Zall, h1);
    float *tgt = ws->vec;
    const float *Zout = ws->Zall;
    if (d->mlp) {
        const float *W2 = ttt_W2(d, (float *)W), *b2 = ttt_b2(d, (float *)W);
        gelu_serial(ws->X2, ws->Zall, (size_t)n * h1);
        for (int i = 0; i < n; i++) memcpy(ws->Z2 + (size_t)i * f, b2, f * sizeof(float));
        ttt_sgemm(0, 0, n, f, h1, 1.0f, ws->X2, h1, W2, f, 1.0f, ws->Z2, f);
        Zout = ws->Z2;
    }
    for (int i = 0; i < n; i++) {
        const float *k = mb->k + (size_t)i * mb->ld, *v = mb->v + (size_t)i * mb->ld;
        for (int c = 0; c < f; c++) tgt[c] = v[c] - k[c];
        ttt_lnl2_grad_row(Zout + (size_t)i * (d->mlp ? f : h1), tgt, mb->ln_w, mb->ln_b, f, ws->Gf + (size_t)i * f);
    }
    if (d->mlp) {
        const float *W2 = ttt_W2(d, (float *)W);
        ttt_sgemm(0, 1, n, h1, f, 1.0f, ws->Gf, f, W2, f, 0.0f, ws->G1, h1);
        for (size_t i = 0; i < (size_t)n * h1; i++) ws->G1[i] *= ttt_gelu_d1(ws->Zall[i]);
    }
}

/* The query side: Zf (n,f) = pre-LN output of the inner model at each
 * token's own W_i, computed with matrix products only. Needs
 * ttt_dual_keys first; fills E, P1 (and X2b, P2 for TTT-MLP). */
void ttt_dual_queries(const ttt_dims *d, ttt_scratch *ws, const ttt_mb *mb, const float *W) {
    int n = mb->n, f = d->f, h1 = d->h1;
    const float *Q = ws->KQ + (size_t)n * f, *K = ws->KQ;
    float *Zb1 = ws->Zall + (size_t)n * h1; /* Q W1 + b1, then - P1 G1 */
    const float *G1 = d->mlp ? ws->G1 : ws->Gf;
    eta_matrix(ws->E, mb->s, mb->lr, n);
    dual_scores(ws->P1, ws->E, Q, K, n, f);
    ttt_sgemm(0, 0, n, h1, n, -1.0f, ws->P1, n, G1, h1, 1.0f, Zb1, h1);
    if (!d->mlp) {
        memcpy(ws->Zf, Zb1, (size_t)n * f * sizeof(float));
        return;
    }
    const float *W2 = ttt_W2(d, (float *)W), *b2 = ttt_b2(d, (float *)W);
    gelu_serial(ws->X2b, Zb1, (size_t)n * h1);
    for (int i = 0; i < n; i++) memcpy(ws->Zf + (size_t)i * f, b2, f * sizeof(float));
    ttt_sgemm(0, 0, n, f, h1, 1.0f, ws->X2b, h1, W2, f, 1.0f, ws->Zf, f);
    dual_scores(ws->P2, ws->E, ws->X2b, ws->X2, n, h1);
    ttt_sgemm(0, 0, n, f, n, -1.0f, ws->P2, n, ws->Gf, f, 1.0f, ws->Zf, f);
}

/* Applies the mini-batch's gradient sum to a state: st += sign * sum_j
 * c_j grad_j(W0) (c = eta of the last token to commit, lr to accumulate). */
static void dual_apply(const ttt_dims *d, ttt_scratch *ws, const ttt_mb *mb, float *st, const float *c, float sign) {
    int n = mb->n, f = d->f, h1 = d->h1;
    dual_update(ttt_W1(d, st), ttt_b1(d, st), ws->KQ, d->mlp ? ws->G1 : ws->Gf, c, n, f, h1, sign, ws->tmpC);
    if (d->mlp) dual_update(ttt_W2(d, st), ttt_b2(d, st), ws->X2, ws->Gf, c, n, h1, f, sign, ws->tmpC);
}

void ttt_dual_forward(const ttt_dims *d, ttt_scratch *ws, const ttt_mb *mb, float *W, float *A, int commit) {
    int n = mb->n, f = d->f;
    ttt_dual_keys(d, ws, mb, W);
    ttt_dual_queries(d, ws, mb, W);
    for (int i = 0; i < n; i++) {
        float *o = mb->out + (size_t)i * mb->ld;
        const float *q = mb->q + (size_t)i * mb->ld;
        ttt_ln_row(ws->Zf + (size_t)i * f, mb->ln_w, mb->ln_b, f, o, NULL, NULL);
        for (int c = 0; c < f; c++) o[c] += q[c];
    }
    if (commit) {
        float *e = ws->vec;
        for (int j = 0; j < n; j++) e[j] = ws->E[(n - 1) * n + j];
        dual_apply(d, ws, mb, W, e, -1.0f);
    } else if (A) {
        dual_apply(d, ws, mb, A, mb->lr, 1.0f);
    }
}

/* ---- per token (primal form and decode) ------------------------------- */

void ttt_token_grad(const ttt_dims *d, ttt_scratch *ws, const float *W, const float *k, const float *v,
                    const float *ln_w, const float *ln_b, float *grad) {
    int f = d->f, h1 = d->h1;
    float *z1 = ws->vec, *x2 = z1 + h1, *z2 = x2 + h1, *tgt = z2 + f, *g2 = tgt + f, *g1 = g2 + f;
    const float *W1 = ttt_W1(d, (float *)W), *b1 = ttt_b1(d, (float *)W);
    memcpy(z1, b1, h1 * sizeof(float));
    ttt_sgemm(0, 0, 1, h1, f, 1.0f, k, f, W1, h1, 1.0f, z1, h1);
    for (int c = 0; c < f; c++) tgt[c] = v[c] - k[c];
    if (d->mlp) {
        const float *W2 = ttt_W2(d, (float *)W), *b2 = ttt_b2(d, (float *)W);
        gelu_serial(x2, z1, h1);
        memcpy(z2, b2, f * sizeof(float));
        ttt_sgemm(0, 0, 1, f, h1, 1.0f, x2, h1, W2, f, 1.0f, z2, f);
        ttt_lnl2_grad_row(z2, tgt, ln_w, ln_b, f, g2);
        ttt_sgemm(0, 1, 1, h1, f, 1.0f, g2, f, W2, f, 0.0f, g1, h1);
        for (int c = 0; c < h1; c++) g1[c] *= ttt_gelu_d1(z1[c]);
        float *gW2 = ttt_W2(d, grad);
        for (int a = 0; a < h1; a++)
            for (int c = 0; c < f; c++) gW2[a * f + c] = x2[a] * g2[c];
        memcpy(ttt_b2(d, grad), g2, f * sizeof(float));
    } else {
        ttt_lnl2_grad_row(z1, tgt, ln_w, ln_b, f, g1);
    }
    float *gW1 = ttt_W1(d, grad);
    for (int a = 0; a < f; a++)
        for (int c = 0; c < h1; c++) gW1[a * h1 + c] = k[a] * g1[c];
    memcpy(ttt_b1(d, grad), g1, h1 * sizeof(float));
}

void ttt_token_apply(const ttt_dims *d, ttt_scratch *ws, const float *W, const float *q, const float *ln_w,
                     const float *ln_b, float *out) {
    int f = d->f, h1 = d->h1;
    float *z1 = ws->vec, *x2 = z1 + h1, *z2 = x2 + h1;
    const float *W1 = ttt_W1(d, (float *)W), *b1 = ttt_b1(d, (float *)W);
    memcpy(z1, b1, h1 * sizeof(float));
    ttt_sgemm(0, 0, 1, h1, f, 1.0f, q, f, W1, h1, 1.0f, z1, h1);
    const float *z = z1;
    if (d->mlp) {
        const float *W2 = ttt_W2(d, (float *)W), *b2 = ttt_b2(d, (float *)W);
        gelu_serial(x2, z1, h1);
        memcpy(z2, b2, f * sizeof(float));
        ttt_sgemm(0, 0, 1, f, h1, 1.0f, x2, h1, W2, f, 1.0f, z2, f);
        z = z2;
    }
    ttt_ln_row(z, ln_w, ln_b, f, out, NULL, NULL);
    for (int c = 0; c < f; c++) out[c] += q[c];
}
