/*
 * The primal form: the readable reference of the TTT layer. Every token's
 * inner weights W_i = W0 - sum_{j<=i} eta_ij grad l_j(W0) are materialised
 * from the stored per-token gradients of its mini-batch. Slow by design
 * (O(b * state) memory and work per token); tests compare the dual form
 * and decode against it.
 */
#include <stdlib.h>
#include <string.h>

#include "ttt_inner.h"

/* One (sequence, head): grads (b, numel) and Wi (numel) are scratch. */
static void primal_head(const vttt_layer *l, ttt_scratch *ws, int bi, int h, int T, float *W, float *grads, float *Wi) {
    struct ttt_cache *c = l->tc;
    ttt_dims d = ttt_dims_of(l);
    int D = l->D, H = l->H, f = l->f, b = l->b;
    const float *ln_w = l->p.ln_w + h * f, *ln_b = l->p.ln_b + h * f;
    float s[1024];
    ttt_token_scales(l, s, b);
    ttt_state_from_params(l, h, W);
    for (int t0 = 0; t0 < T; t0 += b) {
        int n = T - t0 < b ? T - t0 : b;
        for (int j = 0; j < n; j++) {
            size_t r = ((size_t)bi * T + t0 + j) * D + (size_t)h * f;
            ttt_token_grad(&d, ws, W, c->XK + r, c->XV + r, ln_w, ln_b, grads + (size_t)j * d.numel);
        }
        for (int i = 0; i < n; i++) {
            memcpy(Wi, W, d.numel * sizeof(float));
            for (int j = 0; j <= i; j++) {
                float eta = s[i] * c->lr[((size_t)bi * T + t0 + j) * H + h];
                const float *g = grads + (size_t)j * d.numel;
                for (size_t e = 0; e < d.numel; e++) Wi[e] -= eta * g[e];
            }
            size_t r = ((size_t)bi * T + t0 + i) * D + (size_t)h * f;
            ttt_token_apply(&d, ws, Wi, c->XQ + r, ln_w, ln_b, c->Z + r);
        }
        memcpy(W, Wi, d.numel * sizeof(float)); /* W_n: the next mini-batch's W0 */
    }
}

int ttt_forward_primal(vttt_layer *l, float *y, const float *x, int B, int T) {
    int err = ttt_cache_reserve(l, B, T, 0);
    if (err) return err;
    struct ttt_cache *c = l->tc;
    ttt_dims d = ttt_dims_of(l);
    float *mem = malloc(((size_t)l->b + 2) * d.numel * sizeof(float));
    if (!mem) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "primal form: out of memory");
        return VTTT_ENOMEM;
    }
    ttt_outer_in_forward(l, x, B, T, 0, NULL, c->XQ, c->XK, c->XV, c->lr, c->xqk);
    for (int bh = 0; bh < B * l->H; bh++)
        primal_head(l, c->ws[0], bh / l->H, bh % l->H, T, mem, mem + d.numel, mem + (l->b + 1) * d.numel);
    free(mem);
    ttt_outer_out_forward(l, y, x, c->Z, B, T, c->mean, c->rstd, NULL, NULL, c->tmp);
    return VTTT_OK;
}
