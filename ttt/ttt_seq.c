/*
 * The TTT sequence drivers: the per-head inner loop over a run of tokens
 * (ttt_head_run), prefill/decode over a vttt_state, and the full-sequence
 * forward (dual form, optionally keeping training activations).
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>


#include "ops.h"
#include "par.h"
#include "ttt_inner.h"

/* Long prefills are processed in chunks of this many tokens, so their
 * buffers do not grow with the sequence. */
#define TTT_PREFILL_CHUNK 2048

static void free_buffers(struct ttt_cache *c) {
    float **bufs[] = {&c->x, &c->XQ, &c->XK, &c->XV, &c->xqk, &c->Z, &c->normed, &c->gpre, &c->tmp, &c->lr,
                      &c->mean, &c->rstd};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        free(*bufs[i]);
        *bufs[i] = NULL;
    }
    c->cap = 0;
}

void ttt_cache_free(struct ttt_cache **cp) {
    if (!cp || !*cp) return;
    struct ttt_cache *c = *cp;
    for (int i = 0; i < c->nthreads; i++) ttt_scratch_free(&c->ws[i]);
    free(c->ws);
    free(c->tok);
    free_buffers(c);
    free(c->ckpt);
    free(c->bwd);
    free(c->conv0);
    free(c);
    *cp = NULL;
}

static int cache_new(vttt_layer *l) {
    ttt_dims d = ttt_dims_of(l);
    struct ttt_cache *c = calloc(1, sizeof *c);
    if (!c) return VTTT_ENOMEM;
    l->tc = c;
    c->nthreads = omp_get_max_threads();
    c->ws = calloc((size_t)c->nthreads, sizeof *c->ws);
    c->tok = malloc((size_t)c->nthreads * 2 * d.numel * sizeof(float));
    if (!c->ws || !c->tok) return VTTT_ENOMEM;
    for (int i = 0; i < c->nthreads; i++)
        if (!(c->ws[i] = ttt_scratch_new(&d))) return VTTT_ENOMEM;
    return VTTT_OK;
}

int ttt_cache_reserve(vttt_layer *l, int B, int T, int train) {
    if (!l->tc) {
        int err = cache_new(l);
        if (err) {
            ttt_cache_free(&l->tc);
            vttt_log(&l->log, VTTT_LOG_ERROR, "TTT layer: out of memory for scratch buffers");
            return err;
        }
    }
    struct ttt_cache *c = l->tc;
    size_t ND = (size_t)B * T * l->D, NH = (size_t)B * T * l->H, N = (size_t)B * T;
    c->train = 0;
    if (ND > c->cap) {
        free_buffers(c);
        float **bufs[] = {&c->x, &c->XQ, &c->XK, &c->XV, &c->xqk, &c->Z, &c->normed, &c->gpre, &c->tmp,
                          &c->lr, &c->mean, &c->rstd};
        size_t sizes[] = {ND, ND, ND, ND, ND, ND, ND, ND, 2 * ND, NH, N, N};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
            if (!(*bufs[i] = malloc(sizes[i] * sizeof(float)))) {
                free_buffers(c);
                vttt_log(&l->log, VTTT_LOG_ERROR, "TTT layer: out of memory for B=%d T=%d", B, T);
                return VTTT_ENOMEM;
            }
        }
        c->cap = ND;
    }
    c->B = B;
    c->T = T;
    if (train) {
        ttt_dims d = ttt_dims_of(l);
        int nmb = (T + l->b - 1) / l->b;
        int g = l->cfg.ckpt_group;
        if (g <= 0) { /* about sqrt(#mini-batches): checkpoints + one group's states */
            g = 1;
            while ((int64_t)g * g < nmb) g++;
        }
        c->group = g;
        if (l->cfg.share_qk) { /* the window's conv state: zeros unless a carried forward sets it */
            size_t nc = (size_t)B * (l->cfg.conv_kernel - 1) * l->D;
            if (nc > c->conv0_cap) {
                free(c->conv0);
                c->conv0_cap = 0;
                if (!(c->conv0 = malloc(nc * sizeof(float)))) {
                    vttt_log(&l->log, VTTT_LOG_ERROR, "TTT layer: out of memory for the conv state");
                    return VTTT_ENOMEM;
                }
                c->conv0_cap = nc;
            }
            memset(c->conv0, 0, nc * sizeof(float));
        }
        c->n_groups = (nmb + g - 1) / g;
        size_t need = (size_t)B * l->H * c->n_groups * d.numel;
        if (need > c->ckpt_cap) {
            free(c->ckpt);
            if (!(c->ckpt = malloc(need * sizeof(float)))) {
                c->ckpt_cap = 0;
                vttt_log(&l->log, VTTT_LOG_ERROR, "TTT layer: out of memory for %zu checkpoint floats", need);
                return VTTT_ENOMEM;
            }
            c->ckpt_cap = need;
        }
    }
    return VTTT_OK;
}

/* One token at mini-batch index i (0-based) for decode: adds its gradient
 * to A, evaluates the output at W_i = W - s_i A, commits at the end. */
static void token_step(const vttt_layer *l, const ttt_dims *d, int tid, const ttt_mb *mb, int i, float *W, float *A) {
    struct ttt_cache *c = l->tc;
    ttt_scratch *ws = c->ws[tid];
    float *grad = c->tok + (size_t)tid * 2 * d->numel, *Wi = grad + d->numel;
    ttt_token_grad(d, ws, W, mb->k, mb->v, mb->ln_w, mb->ln_b, grad);
    float lr = mb->lr[0], s = mb->s[i];
    for (size_t e = 0; e < d->numel; e++) {
        A[e] += lr * grad[e];
        Wi[e] = W[e] - s * A[e];
    }
    ttt_token_apply(d, ws, Wi, mb->q, mb->ln_w, mb->ln_b, mb->out);
    if (i == d->b - 1) {
        memcpy(W, Wi, d->numel * sizeof(float));
        memset(A, 0, d->numel * sizeof(float));
    }
}

void ttt_head_run(const vttt_layer *l, int tid, int bi, int h, int T, int64_t pos, float *W, float *A, float *ckpt,
                  int group) {
    struct ttt_cache *c = l->tc;
    ttt_dims d = ttt_dims_of(l);
    int D = l->D, H = l->H, f = l->f, b = l->b;
    float s[1024], lrv[1024];
    ttt_token_scales(l, s, b);
    size_t row0 = (size_t)bi * T;
    ttt_mb mb = {.ld = D, .ln_w = l->p.ln_w + h * f, .ln_b = l->p.ln_b + h * f};
    int t = 0, m = 0;
    for (; t < T && (pos + t) % b != 0; t++) { /* finish a mini-batch started earlier */
        size_t r = (row0 + t) * D + (size_t)h * f;
        mb.n = 1;
        mb.q = c->XQ + r, mb.k = c->XK + r, mb.v = c->XV + r, mb.out = c->Z + r;
        mb.lr = c->lr + (row0 + t) * H + h;
        mb.s = s;
        token_step(l, &d, tid, &mb, (int)((pos + t) % b), W, A);
    }
    for (; t < T; t += b, m++) {
        int n = T - t < b ? T - t : b;
        size_t r = (row0 + t) * D + (size_t)h * f;
        for (int j = 0; j < n; j++) lrv[j] = c->lr[(row0 + t + j) * H + h];
        mb.n = n;
        mb.q = c->XQ + r, mb.k = c->XK + r, mb.v = c->XV + r, mb.out = c->Z + r;
        mb.lr = lrv;
        mb.s = s;
        if (ckpt && m % group == 0) memcpy(ckpt + (size_t)(m / group) * d.numel, W, d.numel * sizeof(float));
        ttt_dual_forward(&d, c->ws[tid], &mb, W, A, n == b);
    }
}

/* Runs the inner loop of every (sequence, head) in parallel over the
 * buffers of the cache; W, A are (B,H,numel) (A may be NULL in training). */
static void inner_all(const vttt_layer *l, int B, int T, int64_t pos, float *W, float *A, float *ckpt) {
    ttt_dims d = ttt_dims_of(l);
    int H = l->H, nthr = l->tc->nthreads;
    int blas_threads = ttt_blas_serial_begin();
    double work = (double)B * H * T * d.numel * VTTT_COST_TTT;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) if (VTTT_PAR(work))
    for (int bh = 0; bh < B * H; bh++) {
        float *a = A ? A + (size_t)bh * d.numel : NULL;
        float *ck = ckpt ? ckpt + (size_t)bh * l->tc->n_groups * d.numel : NULL;
        ttt_head_run(l, omp_get_thread_num(), bh / H, bh % H, T, pos, W + (size_t)bh * d.numel, a, ck,
                     ckpt ? l->tc->group : 0);
    }
    ttt_blas_serial_end(blas_threads);
}

/* Prefill of one chunk (T <= buffers' capacity) over the state. */
static int prefill_chunk(vttt_layer *l, vttt_state *st, float *y, const float *x, int T) {
    int B = st->B, err;
    if ((err = ttt_cache_reserve(l, B, T, 0))) return err;
    struct ttt_cache *c = l->tc;
    ttt_outer_in_forward(l, x, B, T, st->pos, st->conv_state, c->XQ, c->XK, c->XV, c->lr, c->xqk);
    if (l->cfg.share_qk) ttt_conv1d_state_update(st->conv_state, c->xqk, B, T, l->D, l->cfg.conv_kernel);
    inner_all(l, B, T, st->pos, st->W0, st->A, NULL);
    ttt_outer_out_forward(l, y, x, c->Z, B, T, c->mean, c->rstd, NULL, NULL, c->tmp);
    st->pos += T;
    return VTTT_OK;
}

int ttt_prefill(vttt_layer *l, vttt_state *st, float *y, const float *x, int T) {
    int perr = ttt_position_check(&l->log, "prefill", st->pos, T);
    if (perr) return perr;
    size_t rowlen = (size_t)st->B * l->D;
    for (int t = 0; t < T; t += TTT_PREFILL_CHUNK) {
        int n = T - t < TTT_PREFILL_CHUNK ? T - t : TTT_PREFILL_CHUNK;
        /* x, y are (B,T,D): a chunk of every sequence is strided, so
         * chunk through a contiguous copy when B > 1 */
        if (st->B == 1 || n == T) {
            int err = prefill_chunk(l, st, y + (size_t)t * l->D, x + (size_t)t * l->D, n);
            if (err) return err;
            continue;
        }
        float *xc = malloc(2 * (size_t)n * rowlen * sizeof(float));
        if (!xc) return VTTT_ENOMEM;
        float *yc = xc + (size_t)n * rowlen;
        for (int bi = 0; bi < st->B; bi++)
            memcpy(xc + (size_t)bi * n * l->D, x + ((size_t)bi * T + t) * l->D, (size_t)n * l->D * sizeof(float));
        int err = prefill_chunk(l, st, yc, xc, n);
        for (int bi = 0; err == 0 && bi < st->B; bi++)
            memcpy(y + ((size_t)bi * T + t) * l->D, yc + (size_t)bi * n * l->D, (size_t)n * l->D * sizeof(float));
        free(xc);
        if (err) return err;
    }
    return VTTT_OK;
}

int ttt_forward(vttt_layer *l, float *y, const float *x, int B, int T, int train) {
    if (!train) { /* inference: a fresh state, prefilled */
        vttt_state *st;
        int err = vttt_state_init(&st, l, B, 0);
        if (err) return err;
        err = ttt_prefill(l, st, y, x, T);
        vttt_state_free(&st);
        return err;
    }
    int err = ttt_cache_reserve(l, B, T, 1);
    if (err) return err;
    struct ttt_cache *c = l->tc;
    ttt_dims d = ttt_dims_of(l);
    size_t ND = (size_t)B * T * l->D;
    float *W = malloc((size_t)B * l->H * d.numel * sizeof(float));
    if (!W) return VTTT_ENOMEM;
    for (int bh = 0; bh < B * l->H; bh++) ttt_state_from_params(l, bh % l->H, W + (size_t)bh * d.numel);
    memcpy(c->x, x, ND * sizeof(float));
    ttt_outer_in_forward(l, x, B, T, 0, NULL, c->XQ, c->XK, c->XV, c->lr, c->xqk);
    inner_all(l, B, T, 0, W, NULL, c->ckpt);
    free(W);
    ttt_outer_out_forward(l, y, x, c->Z, B, T, c->mean, c->rstd, c->normed, c->gpre, c->tmp);
    c->train = 1;
    return VTTT_OK;
}
