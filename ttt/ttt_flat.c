/*
 * The inner loop of ttt/cuda/ttt_cuda.h (state init, prefill, decode step,
 * backward with checkpoints) on host memory, built from the CPU kernels of
 * ttt_inner.c / ttt_inner_bwd.c. It is the CPU instance of the device
 * layer's inner loop (layer_dev_cpu.c): with it, layer_dev.c runs end to
 * end on the CPU backend and is checked against the CPU layer, and the
 * CUDA launchers have a second implementation of their exact interface
 * (buffer layouts, checkpoint indexing, mid-mini-batch starts) to be
 * compared with.
 *
 * Each call allocates its CPU scratch (ttt_scratch per thread) and frees
 * it before returning; the workspace argument is not used.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "layer_dev.h"
#include "ops.h"
#include "par.h"
#include "ttt_inner.h"

static ttt_dims dims_of(const ttt_cuda_shape *s) {
    ttt_dims d = {s->f, s->h1, s->b, s->mlp, ttt_cuda_state_numel(s)};
    return d;
}

static int shape_ok(const ttt_cuda_shape *s, const ttt_cuda_params *p, const char *what) {
    if (s && p && s->B > 0 && s->T >= 0 && s->H > 0 && s->f > 0 && s->b > 0 && s->b <= 1024 &&
        (s->mlp ? p->W2 && p->b2 : s->h1 == s->f) && p->W1 && p->b1 && p->ln_w && p->ln_b && p->token_idx)
        return 1;
    vttt_log(NULL, VTTT_LOG_ERROR, "%s: bad shape or parameters", what);
    return 0;
}

/* Per-thread CPU scratch of one call: the mini-batch buffers, the token
 * gradient and W_i (2 numel), the discarded outputs of a recompute (b, D),
 * and the backward's states (group numel) and head partials. */
typedef struct {
    int n;
    ttt_scratch **ws;
    float **mem;
} flat_work;

static void work_free(flat_work *w) {
    for (int i = 0; i < w->n; i++) {
        if (w->ws) ttt_scratch_free(&w->ws[i]);
        if (w->mem) free(w->mem[i]);
    }
    free(w->ws);
    free(w->mem);
    memset(w, 0, sizeof *w);
}

static int work_new(flat_work *w, const ttt_dims *d, size_t floats) {
    w->n = omp_get_max_threads();
    w->ws = calloc((size_t)w->n, sizeof *w->ws);
    w->mem = calloc((size_t)w->n, sizeof *w->mem);
    for (int i = 0; w->ws && w->mem && i < w->n; i++)
        if (!(w->ws[i] = ttt_scratch_new(d)) || !(w->mem[i] = malloc((floats ? floats : 1) * sizeof(float)))) break;
    if (w->ws && w->mem && w->ws[w->n - 1] && w->mem[w->n - 1]) return VTTT_OK;
    work_free(w);
    vttt_log(NULL, VTTT_LOG_ERROR, "CPU inner loop: out of memory for scratch");
    return VTTT_ENOMEM;
}

static void scales(const ttt_cuda_shape *s, const float *token_idx, float *out) {
    for (int i = 0; i < s->b; i++) {
        float v = 1.0f / (float)(i + 1) + token_idx[i];
        out[i] = v > 0.0f ? v : 0.0f;
    }
}

int ttt_flat_state_init(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, float *W,
                        float *A) {
    if (!shape_ok(s, p, "ttt_flat_state_init") || !W) return VTTT_EINVAL;
    ttt_dims d = dims_of(s);
    size_t n1 = (size_t)d.f * d.h1;
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int h = bh % s->H;
        float *st = W + (size_t)bh * d.numel;
        memcpy(ttt_W1(&d, st), p->W1 + h * n1, n1 * sizeof(float));
        memcpy(ttt_b1(&d, st), p->b1 + (size_t)h * d.h1, (size_t)d.h1 * sizeof(float));
        if (d.mlp) {
            memcpy(ttt_W2(&d, st), p->W2 + h * n1, n1 * sizeof(float));
            memcpy(ttt_b2(&d, st), p->b2 + (size_t)h * d.f, (size_t)d.f * sizeof(float));
        }
    }
    if (A) memset(A, 0, (size_t)s->B * s->H * d.numel * sizeof(float));
    return VTTT_OK;
}

/* The mini-batch view of tokens [t, t+n) of (sequence bi, head h). */
static ttt_mb mb_at(const ttt_cuda_shape *s, const ttt_cuda_params *p, const ttt_cuda_io *io, float *Z, int bi, int h,
                    int t, const float *sc, float *lrv) {
    int D = s->H * s->f, n = s->T - t < s->b ? s->T - t : s->b;
    size_t r = ((size_t)bi * s->T + t) * D + (size_t)h * s->f;
    for (int j = 0; j < n; j++) lrv[j] = io->lr[((size_t)bi * s->T + t + j) * s->H + h];
    ttt_mb mb = {.n = n, .ld = D, .q = io->XQ + r, .k = io->XK + r, .v = io->XV + r, .s = sc, .lr = lrv,
                 .ln_w = p->ln_w + (size_t)h * s->f, .ln_b = p->ln_b + (size_t)h * s->f, .out = Z ? Z + r : NULL};
    return mb;
}

/* One token at mini-batch index i (as ttt_seq.c token_step): A += lr grad,
 * output at W - s_i A, commit at the mini-batch's end. tmp: 2 numel. */
static void token_step(const ttt_dims *d, ttt_scratch *ws, const ttt_mb *mb, int i, float *W, float *A, float *tmp) {
    float *grad = tmp, *Wi = tmp + d->numel;
    ttt_token_grad(d, ws, W, mb->k, mb->v, mb->ln_w, mb->ln_b, grad);
    float lr = mb->lr[0], sc = mb->s[i];
    for (size_t e = 0; e < d->numel; e++) {
        A[e] += lr * grad[e];
        Wi[e] = W[e] - sc * A[e];
    }
    ttt_token_apply(d, ws, Wi, mb->q, mb->ln_w, mb->ln_b, mb->out);
    if (i == d->b - 1) {
        memcpy(W, Wi, d->numel * sizeof(float));
        memset(A, 0, d->numel * sizeof(float));
    }
}

/* One (sequence, head) of a prefill (ttt_head_run on flat buffers). */
static void prefill_head(const ttt_cuda_shape *s, const ttt_cuda_params *p, const ttt_cuda_io *io, int64_t pos,
                         int bh, float *W, float *A, float *ckpt, int group, ttt_scratch *ws, float *tmp) {
    ttt_dims d = dims_of(s);
    int bi = bh / s->H, h = bh % s->H, b = s->b, t = 0, m = 0;
    float sc[1024], lrv[1024];
    scales(s, p->token_idx, sc);
    float *Wh = W + (size_t)bh * d.numel, *Ah = A ? A + (size_t)bh * d.numel : NULL;
    for (; t < s->T && (pos + t) % b != 0; t++) {
        ttt_mb mb = mb_at(s, p, io, io->Z, bi, h, t, sc, lrv);
        token_step(&d, ws, &mb, (int)((pos + t) % b), Wh, Ah, tmp);
    }
    int n_groups = ttt_cuda_num_groups(s->T - t, b, group);
    for (; t < s->T; t += b, m++) {
        ttt_mb mb = mb_at(s, p, io, io->Z, bi, h, t, sc, lrv);
        if (ckpt && m % group == 0)
            memcpy(ckpt + ((size_t)bh * n_groups + m / group) * d.numel, Wh, d.numel * sizeof(float));
        ttt_dual_forward(&d, ws, &mb, Wh, Ah, mb.n == b);
    }
}

int ttt_flat_prefill(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, const ttt_cuda_io *io,
                     int64_t pos, float *W, float *A, float *ckpt, int group, void *ws, size_t ws_bytes) {
    if (!shape_ok(s, p, "ttt_flat_prefill")) return VTTT_EINVAL;
    int lead = (int)((s->b - pos % s->b) % s->b);
    if (pos < 0 || !io || !io->XQ || !io->XK || !io->XV || !io->lr || !io->Z || !W || (lead > 0 && s->T > 0 && !A) ||
        (ckpt && group <= 0)) {
        vttt_log(NULL, VTTT_LOG_ERROR, "ttt_flat_prefill: bad arguments (pos=%lld, group %d)", (long long)pos, group);
        return VTTT_EINVAL;
    }
    ttt_dims d = dims_of(s);
    flat_work w;
    int err = work_new(&w, &d, 2 * d.numel);
    if (err) return err;
    int blas = ttt_blas_serial_begin();
    double work = (double)s->B * s->H * s->T * d.numel * VTTT_COST_TTT;
#pragma omp parallel for schedule(dynamic, 1) num_threads(w.n) if (VTTT_PAR(work))
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int tid = omp_get_thread_num();
        prefill_head(s, p, io, pos, bh, W, A, ckpt, group, w.ws[tid], w.mem[tid]);
    }
    ttt_blas_serial_end(blas);
    work_free(&w);
    return VTTT_OK;
}

int ttt_flat_decode(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, const ttt_cuda_io *io,
                    int64_t pos, float *W, float *A) {
    if (!shape_ok(s, p, "ttt_flat_decode")) return VTTT_EINVAL;
    if (s->T != 1 || pos < 0 || !io || !io->XQ || !io->XK || !io->XV || !io->lr || !io->Z || !W || !A) {
        vttt_log(NULL, VTTT_LOG_ERROR, "ttt_flat_decode: needs T == 1 (got %d), pos >= 0, q, k, v, lr, Z, W, A",
                 s->T);
        return VTTT_EINVAL;
    }
    return ttt_flat_prefill(be, s, p, io, pos, W, A, NULL, 0, NULL, 0); /* one token: one token_step per head */
}

/* Gradients of one (sequence, head) into hg = [dW (numel) | ds (b) |
 * dln (2f)] (ttt_backward.c head_backward). mem: states (group, numel),
 * then the discarded recompute outputs (b, D). */
static void backward_head(const ttt_cuda_shape *s, const ttt_cuda_params *p, const ttt_cuda_io *io,
                          const float *ckpt, int group, const float *dZ, float *dXQ, float *dXK, float *dXV,
                          float *dlr, int bh, float *hg, ttt_scratch *ws, float *mem) {
    ttt_dims d = dims_of(s);
    int bi = bh / s->H, h = bh % s->H, b = s->b, D = s->H * s->f, T = s->T, nmb = (T + b - 1) / b;
    int n_groups = ttt_cuda_num_groups(T, b, group);
    float sc[1024], lrv[1024], dlrv[1024];
    scales(s, p->token_idx, sc);
    float *states = mem, *zout = mem + (size_t)group * d.numel;
    float *dW = hg, *ds = dW + d.numel, *dln = ds + b;
    memset(hg, 0, (d.numel + b + 2 * (size_t)d.f) * sizeof(float));
    for (int g = n_groups - 1; g >= 0; g--) {
        int m0 = g * group, m1 = m0 + group < nmb ? m0 + group : nmb;
        memcpy(states, ckpt + ((size_t)bh * n_groups + g) * d.numel, d.numel * sizeof(float));
        for (int m = m0; m + 1 < m1; m++) {
            float *next = states + (size_t)(m - m0 + 1) * d.numel;
            memcpy(next, next - d.numel, d.numel * sizeof(float));
            ttt_mb mb = mb_at(s, p, io, NULL, bi, h, m * b, sc, lrv);
            mb.out = zout; /* rows of stride D, discarded */
            ttt_dual_forward(&d, ws, &mb, next, NULL, 1);
        }
        for (int m = m1 - 1; m >= m0; m--) {
            int t = m * b;
            ttt_mb mb = mb_at(s, p, io, NULL, bi, h, t, sc, lrv);
            size_t r = ((size_t)bi * T + t) * D + (size_t)h * s->f, rh = ((size_t)bi * T + t) * s->H + h;
            memset(dlrv, 0, (size_t)mb.n * sizeof(float));
            ttt_dual_backward(&d, ws, &mb, states + (size_t)(m - m0) * d.numel, dZ + r, dW, dXQ + r, dXK + r,
                              dXV + r, ds, dlrv, dln, dln + d.f);
            for (int j = 0; j < mb.n; j++) dlr[rh + (size_t)j * s->H] += dlrv[j];
        }
    }
}

/* Adds the per-(sequence, head) partials hg (B*H, per) into g, in order. */
static void reduce(const ttt_cuda_shape *s, const ttt_cuda_params *p, const float *hg, size_t per,
                   const ttt_cuda_grads *g) {
    ttt_dims d = dims_of(s);
    size_t n1 = (size_t)d.f * d.h1;
    for (int bh = 0; bh < s->B * s->H; bh++) {
        size_t h = (size_t)(bh % s->H);
        const float *dW = hg + (size_t)bh * per, *ds = dW + d.numel, *dln = ds + d.b;
        float *dst[4] = {g->W1 ? g->W1 + h * n1 : NULL, g->b1 ? g->b1 + h * d.h1 : NULL,
                         d.mlp && g->W2 ? g->W2 + h * n1 : NULL, d.mlp && g->b2 ? g->b2 + h * d.f : NULL};
        const float *src[4] = {dW, dW + n1, dW + n1 + d.h1, dW + 2 * n1 + d.h1};
        size_t len[4] = {n1, (size_t)d.h1, n1, (size_t)d.f};
        for (int k = 0; k < 4; k++)
            for (size_t i = 0; dst[k] && i < len[k]; i++) dst[k][i] += src[k][i];
        for (int i = 0; i < d.f; i++) {
            if (g->ln_w) g->ln_w[h * d.f + i] += dln[i];
            if (g->ln_b) g->ln_b[h * d.f + i] += dln[d.f + i];
        }
        for (int i = 0; g->token_idx && i < d.b; i++)
            if (1.0f / (float)(i + 1) + p->token_idx[i] > 0.0f) g->token_idx[i] += ds[i];
    }
}

int ttt_flat_backward(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                      const ttt_cuda_io *io, const float *ckpt, int group, const float *dZ, float *dXQ, float *dXK,
                      float *dXV, float *dlr, const ttt_cuda_grads *g, void *ws, size_t ws_bytes) {
    if (!shape_ok(s, p, "ttt_flat_backward")) return VTTT_EINVAL;
    if (group <= 0 || !io || !io->XQ || !io->XK || !io->XV || !io->lr || !ckpt || !dZ || !dXQ || !dXK || !dXV ||
        !dlr || !g) {
        vttt_log(NULL, VTTT_LOG_ERROR, "ttt_flat_backward: bad arguments (group %d)", group);
        return VTTT_EINVAL;
    }
    if (s->T == 0) return VTTT_OK;
    ttt_dims d = dims_of(s);
    size_t per = d.numel + d.b + 2 * (size_t)d.f;
    float *hg = malloc((size_t)s->B * s->H * per * sizeof(float));
    flat_work w;
    int err = hg ? work_new(&w, &d, (size_t)group * d.numel + (size_t)s->b * s->H * s->f) : VTTT_ENOMEM;
    if (err) {
        free(hg);
        return err;
    }
    int blas = ttt_blas_serial_begin();
    double work = (double)s->B * s->H * s->T * d.numel * VTTT_COST_TTT;
#pragma omp parallel for schedule(dynamic, 1) num_threads(w.n) if (VTTT_PAR(work))
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int tid = omp_get_thread_num();
        backward_head(s, p, io, ckpt, group, dZ, dXQ, dXK, dXV, dlr, bh, hg + (size_t)bh * per, w.ws[tid],
                      w.mem[tid]);
    }
    ttt_blas_serial_end(blas);
    reduce(s, p, hg, per, g);
    work_free(&w);
    free(hg);
    return VTTT_OK;
}
