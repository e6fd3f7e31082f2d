/*
 * The causal softmax-attention baseline layer (VTTT_LAYER_ATTENTION):
 * q, k, v = x Wq^T, x Wk^T, x Wv^T; rotary on q and k at absolute
 * positions; causal softmax attention per head (scale 1/sqrt(f)); heads
 * concatenated; y = (.) Wo^T. Training keeps the activations in an
 * attn_cache; generation appends post-rotary k, v to the state's KV cache.
 * The attention itself is the tiled kernel of attention_kernels.c
 * (forward) and attention_backward.c.
 */
#include <stdlib.h>
#include <string.h>

#include "attention_internal.h"
#include "layer.h"
#include "ops.h"
#include "par.h"

/* Activations of the last forward, reused across calls while they fit. */
struct attn_cache {
    int B, T;        /* shape of the last forward */
    int train;       /* the last forward kept what backward needs */
    size_t cap_act, cap_x, cap_lse; /* floats allocated */
    float *act;      /* (4, B, T, D): q, k (post-rotary), v, o (before o_proj) */
    float *x;        /* (B, T, D) copy of the input (train) */
    float *lse;      /* (B, H, T) per-row logsumexp of the scores */
};

void ttt_attn_cache_free(struct attn_cache **c) {
    if (!c || !*c) return;
    free((*c)->act);
    free((*c)->x);
    free((*c)->lse);
    free(*c);
    *c = NULL;
}

/* Makes *p hold at least n floats; old contents are dropped. */
static int reserve(float **p, size_t *cap, size_t n) {
    if (n <= *cap) return VTTT_OK;
    free(*p);
    *p = malloc(n * sizeof(float));
    *cap = *p ? n : 0;
    return *p ? VTTT_OK : VTTT_ENOMEM;
}

static int cache_prepare(struct vttt_layer *l, int B, int T, int train) {
    if (!l->ac && !(l->ac = calloc(1, sizeof *l->ac))) return VTTT_ENOMEM;
    struct attn_cache *c = l->ac;
    size_t n = (size_t)B * T * l->D;
    c->train = 0;
    int err = reserve(&c->act, &c->cap_act, 4 * n);
    if (!err) err = reserve(&c->lse, &c->cap_lse, (size_t)B * l->H * T);
    if (!err && train) err = reserve(&c->x, &c->cap_x, n);
    return err;
}

/* Rows below which a projection is split over OpenMP threads by output
 * columns with OpenBLAS held serial: for decode-sized products OpenBLAS's
 * own (pthreads) workers would otherwise contend with the OpenMP threads of
 * the attention kernel for the cores at every token. */
enum { FEW_ROWS = 64, COL_BLOCK = 64 };

/* out (N, D) = inp (N, D) . w (D, D)^T. */
static void attn_linear(float *out, const float *inp, const float *w, int N, int D) {
    if (N >= FEW_ROWS) {
        ttt_linear_forward(out, inp, w, NULL, N, D, D);
        return;
    }
    int nb = ttt_blas_serial_begin(), nblk = (D + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if (VTTT_PAR(2.0 * N * D * D))
    for (int j = 0; j < nblk; j++) {
        int j0 = j * COL_BLOCK, nc = D - j0 < COL_BLOCK ? D - j0 : COL_BLOCK;
        ttt_sgemm(0, 1, N, nc, D, 1.0f, inp, D, w + (size_t)j0 * D, D, 0.0f, out + j0, D);
    }
    ttt_blas_serial_end(nb);
}

/* q, k, v (B, T, D) from x (B, T, D); q and k rotated for positions
 * pos0 .. pos0+T-1. */
static void attn_project(const struct vttt_layer *l, float *q, float *k, float *v, const float *x, int B, int T,
                         int64_t pos0) {
    int N = B * T, D = l->D;
    attn_linear(q, x, l->p.wq, N, D);
    attn_linear(k, x, l->p.wk, N, D);
    attn_linear(v, x, l->p.wv, N, D);
    ttt_rotary_forward(q, q, B, T, l->H, l->f, pos0, 0, l->cfg.rope_theta);
    ttt_rotary_forward(k, k, B, T, l->H, l->f, pos0, 0, l->cfg.rope_theta);
}

int ttt_attn_forward(struct vttt_layer *l, float *y, const float *x, int B, int T, int train) {
    int err = cache_prepare(l, B, T, train);
    if (err) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "attention forward: cannot allocate activations for B=%d, T=%d", B, T);
        return err;
    }
    struct attn_cache *c = l->ac;
    size_t n = (size_t)B * T * l->D;
    float *q = c->act, *k = q + n, *v = k + n, *o = v + n;
    attn_project(l, q, k, v, x, B, T, 0);
    if ((err = ttt_flash_forward(o, c->lse, q, k, v, B, T, T, 0, l->H, l->f))) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "attention forward: out of memory for scratch");
        return err;
    }
    attn_linear(y, o, l->p.wo, B * T, l->D);
    if (train) memcpy(c->x, x, n * sizeof(float));
    c->B = B;
    c->T = T;
    c->train = train;
    return VTTT_OK;
}

/* dx (B,T,D) += d(rotated projection) back through the rotary and the
 * projection w; the projection's weight gradient goes to dw. tmp: (B,T,D). */
static void project_backward(const struct vttt_layer *l, float *dx, float *dw, float *tmp, const float *dproj,
                             const float *w, int rotated) {
    const struct attn_cache *c = l->ac;
    int N = c->B * c->T, D = l->D;
    if (rotated) {
        memset(tmp, 0, (size_t)N * D * sizeof(float));
        ttt_rotary_backward(tmp, dproj, c->B, c->T, l->H, l->f, 0, 0, l->cfg.rope_theta);
        dproj = tmp;
    }
    ttt_linear_backward(dx, dw, NULL, dproj, c->x, w, N, D, D);
}

int ttt_attn_backward(struct vttt_layer *l, float *dx, const float *dy) {
    struct attn_cache *c = l->ac;
    if (!c || !c->train) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "attention backward: no training forward to differentiate; "
                                          "call vttt_layer_forward with train=1 first");
        return VTTT_EINVAL;
    }
    size_t n = (size_t)c->B * c->T * l->D;
    int N = c->B * c->T, D = l->D;
    const float *q = c->act, *k = q + n, *v = k + n, *o = v + n;
    float *buf = calloc(4 * n, sizeof(float));
    if (!buf) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "attention backward: cannot allocate %zu bytes", 4 * n * sizeof(float));
        return VTTT_ENOMEM;
    }
    float *dout = buf, *dq = buf + n, *dk = dq + n, *dv = dk + n;
    ttt_linear_backward(dout, l->g.wo, NULL, dy, o, l->p.wo, N, D, D);
    int err = ttt_flash_backward(dq, dk, dv, dout, q, k, v, o, c->lse, c->B, c->T, l->H, l->f);
    if (err) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "attention backward: out of memory for scratch");
        free(buf);
        return err;
    }
    memset(dx, 0, n * sizeof(float));
    project_backward(l, dx, l->g.wq, dout, dq, l->p.wq, 1);
    project_backward(l, dx, l->g.wk, dout, dk, l->p.wk, 1);
    project_backward(l, dx, l->g.wv, dout, dv, l->p.wv, 0);
    free(buf);
    return VTTT_OK;
}

/* Appends T tokens to the KV cache and attends from them to every cached
 * token. Scratch for q, k, v is allocated per call so that states of
 * different sequences can be advanced from different threads. */
int ttt_attn_prefill(struct vttt_layer *l, struct vttt_state *s, float *y, const float *x, int T) {
    if (!s->k_cache || !s->v_cache || s->max_T <= 0) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "attention prefill: the state has no KV cache; "
                                          "create it with vttt_state_init for this attention layer");
        return VTTT_EINVAL;
    }
    if (s->pos + T > s->max_T) {
        vttt_log(&l->log, VTTT_LOG_ERROR,
                 "attention prefill: %lld cached + %d new tokens exceed the KV cache of %d tokens; "
                 "create the state with a larger max_T or reset it",
                 (long long)s->pos, T, s->max_T);
        return VTTT_EINVAL;
    }
    int B = s->B, D = l->D;
    size_t n = (size_t)B * T * D, row = (size_t)T * D;
    float *buf = malloc(3 * n * sizeof(float));
    if (!buf) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "attention prefill: cannot allocate %zu bytes", 3 * n * sizeof(float));
        return VTTT_ENOMEM;
    }
    float *q = buf, *k = buf + n, *v = k + n, *o = k;
    attn_project(l, q, k, v, x, B, T, s->pos);
    for (int b = 0; b < B; b++) {
        size_t at = ((size_t)b * s->max_T + (size_t)s->pos) * D;
        memcpy(s->k_cache + at, k + b * row, row * sizeof(float));
        memcpy(s->v_cache + at, v + b * row, row * sizeof(float));
    }
    int err = ttt_flash_forward(o, NULL, q, s->k_cache, s->v_cache, B, T, s->max_T, s->pos, l->H, l->f);
    if (err) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "attention prefill: out of memory for scratch");
        free(buf);
        return err;
    }
    attn_linear(y, o, l->p.wo, B * T, D);
    free(buf);
    s->pos += T;
    return VTTT_OK;
}

int ttt_attn_decode(struct vttt_layer *l, struct vttt_state *s, float *y, const float *x) {
    return ttt_attn_prefill(l, s, y, x, 1);
}
