/*
 * Backward of a TTT layer over the whole sequence of the last train
 * forward. The inner loop is walked backwards group by group: each group's
 * start state comes from the forward's checkpoints, the states inside the
 * group are recomputed (dual form), then the mini-batches are
 * differentiated in reverse. Memory holds n_groups + group states per
 * (sequence, head), about 2 sqrt(T / b), never one per token.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "par.h"
#include "ttt_inner.h"

/* Per (sequence, head) outputs that are reduced into the layer's gradients
 * after the parallel loop. */
typedef struct {
    float *dW;    /* (numel) gradient of the learned initial state */
    float *ds;    /* (b) gradient of the token scales s_i */
    float *dln;   /* (2f) inner LayerNorm weight, bias */
} head_grads;

/* The gradients of one (sequence, head); states: (group, numel) scratch. */
static void head_backward(vttt_layer *l, int tid, int bi, int h, const float *dZ, float *dXQ, float *dXK, float *dXV,
                          float *dlr, head_grads *hg, float *states) {
    struct ttt_cache *c = l->tc;
    ttt_dims d = ttt_dims_of(l);
    int T = c->T, D = l->D, H = l->H, f = l->f, b = l->b, G = c->group;
    int nmb = (T + b - 1) / b;
    const float *ck = c->ckpt + (size_t)(bi * H + h) * c->n_groups * d.numel;
    float s[1024], lrv[1024], dlrv[1024];
    ttt_token_scales(l, s, b);
    ttt_mb mb = {.ld = D, .ln_w = l->p.ln_w + h * f, .ln_b = l->p.ln_b + h * f, .s = s, .lr = lrv};
    memset(hg->dW, 0, d.numel * sizeof(float));
    for (int g = c->n_groups - 1; g >= 0; g--) {
        int m0 = g * G, m1 = m0 + G < nmb ? m0 + G : nmb;
        memcpy(states, ck + (size_t)g * d.numel, d.numel * sizeof(float));
        for (int m = m0; m < m1; m++) {
            int t = m * b, n = T - t < b ? T - t : b;
            size_t r = ((size_t)bi * T + t) * D + (size_t)h * f;
            for (int j = 0; j < n; j++) lrv[j] = c->lr[((size_t)bi * T + t + j) * H + h];
            mb.n = n;
            mb.q = c->XQ + r, mb.k = c->XK + r, mb.v = c->XV + r, mb.out = c->Z + r;
            if (m + 1 < m1) { /* recompute the next state (rewrites the same Z rows) */
                float *next = states + (size_t)(m - m0 + 1) * d.numel;
                memcpy(next, states + (size_t)(m - m0) * d.numel, d.numel * sizeof(float));
                ttt_dual_forward(&d, c->ws[tid], &mb, next, NULL, 1);
            }
        }
        for (int m = m1 - 1; m >= m0; m--) {
            int t = m * b, n = T - t < b ? T - t : b;
            size_t r = ((size_t)bi * T + t) * D + (size_t)h * f;
            size_t rh = ((size_t)bi * T + t) * H + h;
            for (int j = 0; j < n; j++) lrv[j] = c->lr[rh + (size_t)j * H], dlrv[j] = 0.0f;
            mb.n = n;
            mb.q = c->XQ + r, mb.k = c->XK + r, mb.v = c->XV + r, mb.out = NULL;
            ttt_dual_backward(&d, c->ws[tid], &mb, states + (size_t)(m - m0) * d.numel, dZ + r, hg->dW, dXQ + r,
                              dXK + r, dXV + r, hg->ds, dlrv, hg->dln, hg->dln + f);
            for (int j = 0; j < n; j++) dlr[rh + (size_t)j * H] += dlrv[j];
        }
    }
}

/* Adds the per-(sequence, head) gradients into the layer's. */
static void reduce_heads(vttt_layer *l, int B, const head_grads *hg) {
    ttt_dims d = ttt_dims_of(l);
    int H = l->H, f = l->f, b = l->b;
    size_t n1 = (size_t)f * d.h1;
    for (int bh = 0; bh < B * H; bh++) {
        int h = bh % H;
        const head_grads *g = &hg[bh];
        for (size_t i = 0; i < n1; i++) l->g.W1[h * n1 + i] += ttt_W1(&d, g->dW)[i];
        for (int i = 0; i < d.h1; i++) l->g.b1[h * d.h1 + i] += ttt_b1(&d, g->dW)[i];
        if (d.mlp) {
            for (size_t i = 0; i < n1; i++) l->g.W2[h * n1 + i] += ttt_W2(&d, g->dW)[i];
            for (int i = 0; i < f; i++) l->g.b2[h * f + i] += ttt_b2(&d, g->dW)[i];
        }
        for (int i = 0; i < f; i++) {
            l->g.ln_w[h * f + i] += g->dln[i];
            l->g.ln_b[h * f + i] += g->dln[f + i];
        }
        /* s_i = max(0, 1/i + delta_i): the gradient passes where positive */
        for (int i = 0; i < b; i++)
            if (1.0f / (float)(i + 1) + l->p.token_idx[i] > 0.0f) l->g.token_idx[i] += g->ds[i];
    }
}

int ttt_backward(vttt_layer *l, float *dx, const float *dy) {
    struct ttt_cache *c = l->tc;
    if (!c || !c->train) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "TTT backward: no training forward to differentiate (call "
                                          "vttt_layer_forward with train=1 first)");
        return VTTT_EINVAL;
    }
    int B = c->B, T = c->T, H = l->H, D = l->D;
    ttt_dims d = ttt_dims_of(l);
    size_t ND = (size_t)B * T * D, NH = (size_t)B * T * H;
    size_t per_head = d.numel + l->b + 2 * l->f;
    size_t states = (size_t)c->group * d.numel;
    size_t zeroed = 4 * ND + NH + (size_t)B * H * per_head;
    size_t need = zeroed + (size_t)c->nthreads * states;
    if (need > c->bwd_cap) { /* kept across steps: no page faults per step */
        free(c->bwd);
        c->bwd_cap = 0;
        if (!(c->bwd = malloc(need * sizeof(float)))) {
            vttt_log(&l->log, VTTT_LOG_ERROR, "TTT backward: out of memory (B=%d, T=%d)", B, T);
            return VTTT_ENOMEM;
        }
        c->bwd_cap = need;
    }
    head_grads *hg = calloc((size_t)B * H, sizeof *hg);
    if (!hg) return VTTT_ENOMEM;
    float *mem = c->bwd;
    memset(mem, 0, zeroed * sizeof(float));
    float *dZ = mem, *dXQ = dZ + ND, *dXK = dXQ + ND, *dXV = dXK + ND, *dlr = dXV + ND, *ph = dlr + NH;
    float *st = ph + (size_t)B * H * per_head;
    for (int bh = 0; bh < B * H; bh++) {
        hg[bh].dW = ph + (size_t)bh * per_head;
        hg[bh].ds = hg[bh].dW + d.numel;
        hg[bh].dln = hg[bh].ds + l->b;
    }
    memset(dx, 0, ND * sizeof(float));
    ttt_outer_out_backward(l, dZ, dx, dy, c->x, c->Z, c->mean, c->rstd, c->normed, c->gpre, c->tmp, B, T);
    int blas_threads = ttt_blas_serial_begin();
    double work = (double)B * H * T * d.numel * 3 * VTTT_COST_TTT; /* recompute + backward */
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->nthreads) if (VTTT_PAR(work))
    for (int bh = 0; bh < B * H; bh++) {
        int tid = omp_get_thread_num();
        head_backward(l, tid, bh / H, bh % H, dZ, dXQ, dXK, dXV, dlr, &hg[bh], st + (size_t)tid * states);
    }
    ttt_blas_serial_end(blas_threads);
    reduce_heads(l, B, hg);
    /* c->tmp (2,B,T,D) is free again after ttt_outer_out_backward */
    ttt_outer_in_backward(l, dx, c->x, c->xqk, c->conv0, dXQ, dXK, dXV, dlr, c->lr, c->tmp, B, T);
    free(hg);
    return VTTT_OK;
}
