/*
 * The checking harness of the fused CUDA TTT kernels (ttt/cuda/ttt_cuda.h):
 * one layer through the CPU reference and through the GPU kernels on the
 * same inputs, with the relative error of every output. Used by
 * tests/test_ttt_cuda.c (with tolerances) and by `vttt bench cuda` (before
 * timing). Built in every configuration; without CUDA the first GPU call
 * returns VTTT_ENODEV and so does the harness.
 *
 * The CPU side is the library's own: the layer's training forward (XQ, XK,
 * XV, lr from ttt_outer_in_forward, Z and checkpoints from ttt_head_run),
 * its backward (for the inner parameters' gradients), and for the
 * activations' gradients a plain loop of ttt_dual_backward over stored
 * states (the layer's backward rotates dXQ/dXK back in place and keeps
 * nothing of them); that loop is itself checked against the layer's
 * backward (res->harness).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cuda/ttt_cuda.h"
#include "layer_dev.h"
#include "ttt_inner.h"

/* ---- buffers ------------------------------------------------------------------ */

#define POOL_MAX 64

/* Device and host allocations of one check, freed together. The first
 * error sticks: later calls do nothing and return NULL. */
typedef struct {
    const vttt_backend *be;
    const ttt_dev_ops *ops; /* the kernels under test */
    void *dev[POOL_MAX], *host[POOL_MAX];
    int ndev, nhost, err;
} pool;

static float *host_new(pool *p, size_t n) {
    if (p->err) return NULL;
    float *h = p->nhost < POOL_MAX ? calloc(n ? n : 1, sizeof(float)) : NULL;
    if (!h) {
        p->err = VTTT_ENOMEM;
        return NULL;
    }
    return p->host[p->nhost++] = h;
}

/* n floats on the device, copied from h (zeros when h is NULL). */
static float *dev_new(pool *p, const float *h, size_t n) {
    if (p->err) return NULL;
    void *d = NULL;
    if (p->ndev >= POOL_MAX || (p->err = p->be->alloc(p->be->ctx, &d, n * sizeof(float)))) {
        if (!p->err) p->err = VTTT_ENOMEM;
        return NULL;
    }
    p->dev[p->ndev++] = d;
    float *zeros = h ? NULL : calloc(n ? n : 1, sizeof(float));
    if (!h && !zeros) p->err = VTTT_ENOMEM;
    else p->err = p->be->to_device(p->be->ctx, d, h ? h : zeros, n * sizeof(float));
    if (zeros) p->be->sync(p->be->ctx); /* pageable copies are staged, but be sure before freeing */
    free(zeros);
    return p->err ? NULL : d;
}

/* Waits for the device and copies n floats back into a new host buffer. */
static float *fetch(pool *p, const float *d, size_t n) {
    float *h = host_new(p, n);
    if (h && !(p->err = p->be->sync(p->be->ctx))) p->err = p->be->to_host(p->be->ctx, h, d, n * sizeof(float));
    return p->err ? NULL : h;
}

static void pool_free(pool *p) {
    for (int i = 0; i < p->ndev; i++) p->be->free(p->be->ctx, p->dev[i]);
    for (int i = 0; i < p->nhost; i++) free(p->host[i]);
    p->ndev = p->nhost = 0;
}

/* ---- errors ------------------------------------------------------------------------ */

/* Running max |a - b| and max |b| over several arrays; NaN/Inf in a gives
 * an infinite error. */
typedef struct {
    double diff, ref;
} err_acc;

static void err_add(err_acc *e, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!isfinite(d)) d = INFINITY;
        if (d > e->diff) e->diff = d;
        if (fabs((double)b[i]) > e->ref) e->ref = fabs((double)b[i]);
    }
}

static double err_val(const err_acc *e) { return e->diff == 0.0 ? 0.0 : e->diff / (e->ref > 1e-30 ? e->ref : 1e-30); }

static double rel_err(const float *a, const float *b, size_t n) {
    err_acc e = {0, 0};
    err_add(&e, a, b, n);
    return err_val(&e);
}

/* ---- the inner parameters and their gradients ------------------------------------------ */

/* The seven inner tensors in ttt_cuda_params order: W1, b1, W2, b2, ln_w,
 * ln_b, token_idx (W2, b2 empty for TTT-Linear). */
enum { N_INNER = 7 };
static void inner_sizes(const vttt_layer *l, size_t n[N_INNER]) {
    ttt_dims d = ttt_dims_of(l);
    size_t H = l->H, f = d.f, h1 = d.h1;
    size_t v[N_INNER] = {H * f * h1, H * h1, d.mlp ? H * h1 * f : 0, d.mlp ? H * f : 0, H * f, H * f, (size_t)d.b};
    memcpy(n, v, sizeof v);
}

static void inner_ptrs(vttt_layer_params *p, float *out[N_INNER]) {
    float *v[N_INNER] = {p->W1, p->b1, p->W2, p->b2, p->ln_w, p->ln_b, p->token_idx};
    memcpy(out, v, sizeof v);
}

/* The reference gradients of one check: one host buffer per tensor. */
typedef struct {
    float *t[N_INNER];
    size_t n[N_INNER];
} inner_set;

static int inner_set_new(pool *p, const vttt_layer *l, inner_set *s) {
    inner_sizes(l, s->n);
    for (int i = 0; i < N_INNER; i++) s->t[i] = host_new(p, s->n[i]);
    return p->err;
}

/* ---- the CPU reference ---------------------------------------------------------------- */

/* Adds one (sequence, head)'s gradients of its initial state dW (numel),
 * token scales ds (b) and LayerNorm dln (2f) into g, as reduce_heads. */
static void add_head_grads(const vttt_layer *l, int h, const float *dW, const float *ds, const float *dln,
                           inner_set *g) {
    ttt_dims d = ttt_dims_of(l);
    size_t n1 = (size_t)d.f * d.h1;
    const float *src[4] = {dW, dW + n1, dW + n1 + d.h1, dW + 2 * n1 + d.h1};
    size_t len[4] = {n1, (size_t)d.h1, d.mlp ? n1 : 0, d.mlp ? (size_t)d.f : 0};
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < len[t]; i++) g->t[t][(size_t)h * len[t] + i] += src[t][i];
    for (int i = 0; i < d.f; i++) {
        g->t[4][(size_t)h * d.f + i] += dln[i];
        g->t[5][(size_t)h * d.f + i] += dln[d.f + i];
    }
    for (int i = 0; i < d.b; i++)
        if (1.0f / (float)(i + 1) + l->p.token_idx[i] > 0.0f) g->t[6][i] += ds[i];
}

/* The mini-batch view of tokens [t, t+n) of (sequence bi, head h) in the
 * layer cache's (B,T,D) buffers; lrv (n) receives the learning rates. */
static ttt_mb cache_mb(const vttt_layer *l, int bi, int h, int t, float *s, float *lrv, float *out) {
    const struct ttt_cache *c = l->tc;
    int T = c->T, n = T - t < l->b ? T - t : l->b;
    size_t r = ((size_t)bi * T + t) * l->D + (size_t)h * l->f;
    for (int j = 0; j < n; j++) lrv[j] = c->lr[((size_t)bi * T + t + j) * l->H + h];
    ttt_mb mb = {.n = n, .ld = l->D, .q = c->XQ + r, .k = c->XK + r, .v = c->XV + r, .s = s, .lr = lrv,
                 .ln_w = l->p.ln_w + (size_t)h * l->f, .ln_b = l->p.ln_b + (size_t)h * l->f, .out = out ? out + r : NULL};
    return mb;
}

/* Work memory of the reference backward of one (sequence, head). */
typedef struct {
    ttt_scratch *ws;
    float *states;  /* (nmb + 1, numel) */
    float *hg;      /* dW (numel), ds (b), dln (2f) */
    float *zout;    /* (B,T,D) the forward's outputs, discarded */
} ref_work;

/* One (sequence, head): states for every mini-batch from the learned
 * initial state, then ttt_dual_backward in reverse. Accumulates dXQ,
 * dXK, dXV (B,T,D), dlr (B,T,H) and g; the final state goes to Wend. */
static void ref_head(vttt_layer *l, ref_work *w, int bi, int h, const float *dZ, float *dXQ, float *dXK, float *dXV,
                     float *dlr, inner_set *g, float *Wend) {
    ttt_dims d = ttt_dims_of(l);
    int T = l->tc->T, b = l->b, H = l->H, nmb = (T + b - 1) / b;
    float s[1024], lrv[1024], dlrv[1024];
    ttt_token_scales(l, s, b);
    ttt_state_from_params(l, h, w->states);
    for (int m = 0; m < nmb; m++) {
        float *next = w->states + (size_t)(m + 1) * d.numel;
        memcpy(next, next - d.numel, d.numel * sizeof(float));
        ttt_mb mb = cache_mb(l, bi, h, m * b, s, lrv, w->zout);
        ttt_dual_forward(&d, w->ws, &mb, next, NULL, mb.n == b);
    }
    memcpy(Wend, w->states + (size_t)nmb * d.numel, d.numel * sizeof(float));
    float *dW = w->hg, *ds = dW + d.numel, *dln = ds + b;
    memset(w->hg, 0, (d.numel + b + 2 * (size_t)d.f) * sizeof(float));
    for (int m = nmb - 1; m >= 0; m--) {
        ttt_mb mb = cache_mb(l, bi, h, m * b, s, lrv, NULL);
        size_t r = ((size_t)bi * T + m * b) * l->D + (size_t)h * l->f, rh = ((size_t)bi * T + m * b) * H + h;
        memset(dlrv, 0, sizeof dlrv);
        ttt_dual_backward(&d, w->ws, &mb, w->states + (size_t)m * d.numel, dZ + r, dW, dXQ + r, dXK + r, dXV + r, ds,
                          dlrv, dln, dln + d.f);
        for (int j = 0; j < mb.n; j++) dlr[rh + (size_t)j * H] += dlrv[j];
    }
    add_head_grads(l, h, dW, ds, dln, g);
}

/* The reference backward over every (sequence, head) of the layer's last
 * training forward. Wend (B*H, numel): final states. */
static int ref_backward(vttt_layer *l, pool *p, const float *dZ, float *dXQ, float *dXK, float *dXV, float *dlr,
                        inner_set *g, float *Wend) {
    ttt_dims d = ttt_dims_of(l);
    const struct ttt_cache *c = l->tc;
    int nmb = (c->T + l->b - 1) / l->b;
    ref_work w = {ttt_scratch_new(&d), host_new(p, (size_t)(nmb + 1) * d.numel),
                  host_new(p, d.numel + l->b + 2 * (size_t)d.f), host_new(p, (size_t)c->B * c->T * l->D)};
    if (!w.ws && !p->err) p->err = VTTT_ENOMEM;
    for (int bh = 0; !p->err && bh < c->B * l->H; bh++)
        ref_head(l, &w, bh / l->H, bh % l->H, dZ, dXQ, dXK, dXV, dlr, g, Wend + (size_t)bh * d.numel);
    ttt_scratch_free(&w.ws);
    return p->err;
}

/* ---- the GPU side ------------------------------------------------------------------------- */

static ttt_cuda_shape shape_of(const vttt_layer *l, int B, int T) {
    ttt_dims d = ttt_dims_of(l);
    ttt_cuda_shape s = {B, T, l->H, d.f, d.h1, d.b, d.mlp};
    return s;
}

/* The inner parameters uploaded; dev[i] in inner_ptrs order. */
static void upload_params(pool *p, vttt_layer *l, ttt_cuda_params *cp) {
    float *src[N_INNER], *dev[N_INNER] = {0};
    size_t n[N_INNER];
    inner_ptrs(&l->p, src);
    inner_sizes(l, n);
    for (int i = 0; i < N_INNER; i++)
        if (n[i]) dev[i] = dev_new(p, src[i], n[i]);
    ttt_cuda_params v = {dev[0], dev[1], dev[2], dev[3], dev[4], dev[5], dev[6]};
    *cp = v;
}

/* The activations of the layer's cache on the device (Z zeroed). */
static void upload_io(pool *p, const vttt_layer *l, int B, int T, ttt_cuda_io *io) {
    const struct ttt_cache *c = l->tc;
    size_t ND = (size_t)B * T * l->D;
    io->XQ = dev_new(p, c->XQ, ND);
    io->XK = dev_new(p, c->XK, ND);
    io->XV = dev_new(p, c->XV, ND);
    io->lr = dev_new(p, c->lr, (size_t)B * T * l->H);
    io->Z = dev_new(p, NULL, ND);
}

/* ---- the three checks --------------------------------------------------------------------- */

/* Training forward on both sides: Z and checkpoints. Leaves the GPU's
 * activations, checkpoints and final state in io, *ckpt, *W. */
static int check_forward(vttt_layer *l, pool *p, const ttt_cuda_params *cp, int B, int T, ttt_cuda_io *io,
                         float **ckpt, float **W, ttt_cuda_check *res) {
    const struct ttt_cache *c = l->tc;
    ttt_cuda_shape s = shape_of(l, B, T);
    size_t numel = ttt_cuda_state_numel(&s), nck = (size_t)B * l->H * c->n_groups * numel;
    upload_io(p, l, B, T, io);
    *W = dev_new(p, NULL, (size_t)B * l->H * numel);
    *ckpt = dev_new(p, NULL, nck);
    float *ws = dev_new(p, NULL, ttt_cuda_fwd_workspace(&s) / sizeof(float));
    if (p->err) return p->err;
    if ((p->err = p->ops->state_init(p->be, &s, cp, *W, NULL))) return p->err;
    p->err = p->ops->prefill(p->be, &s, cp, io, 0, *W, NULL, *ckpt, c->group, ws, ttt_cuda_fwd_workspace(&s));
    float *Zg = p->err ? NULL : fetch(p, io->Z, (size_t)B * T * l->D), *ckg = Zg ? fetch(p, *ckpt, nck) : NULL;
    if (!ckg) return p->err;
    res->z = rel_err(Zg, c->Z, (size_t)B * T * l->D);
    res->ckpt = rel_err(ckg, c->ckpt, nck);
    return VTTT_OK;
}

/* Backward on both sides for L = sum(y * dy); also the final state. */
static int check_backward(vttt_layer *l, pool *p, const ttt_cuda_params *cp, const float *dy, int B, int T,
                          const ttt_cuda_io *io, const float *ckpt, const float *Wg, ttt_cuda_check *res) {
    struct ttt_cache *c = l->tc;
    ttt_cuda_shape s = shape_of(l, B, T);
    size_t ND = (size_t)B * T * l->D, NH = (size_t)B * T * l->H, numel = ttt_cuda_state_numel(&s);
    float *dZ = host_new(p, ND), *dx = host_new(p, ND), *Wend = host_new(p, (size_t)B * l->H * numel);
    float *r[4] = {host_new(p, ND), host_new(p, ND), host_new(p, ND), host_new(p, NH)}; /* dXQ, dXK, dXV, dlr */
    inner_set ref;
    if (inner_set_new(p, l, &ref) || !r[3] || !Wend) return p->err;
    ttt_outer_out_backward(l, dZ, dx, dy, c->x, c->Z, c->mean, c->rstd, c->normed, c->gpre, c->tmp, B, T);
    vttt_layer_zero_grads(l);
    if ((p->err = vttt_layer_backward(l, dx, dy))) return p->err;
    if (ref_backward(l, p, dZ, r[0], r[1], r[2], r[3], &ref, Wend)) return p->err;
    float *gp[N_INNER];
    inner_ptrs(&l->g, gp);
    res->harness = 0.0;
    for (int i = 0; i < N_INNER; i++)
        if (ref.n[i]) res->harness = fmax(res->harness, rel_err(ref.t[i], gp[i], ref.n[i]));
    float *W = fetch(p, Wg, (size_t)B * l->H * numel);
    if (!W) return p->err;
    res->state = rel_err(W, Wend, (size_t)B * l->H * numel);
    /* the GPU */
    float *dZd = dev_new(p, dZ, ND), *dd[4] = {dev_new(p, NULL, ND), dev_new(p, NULL, ND), dev_new(p, NULL, ND),
                                                 dev_new(p, NULL, NH)};
    float *gd[N_INNER] = {0};
    for (int i = 0; i < N_INNER; i++)
        if (ref.n[i]) gd[i] = dev_new(p, NULL, ref.n[i]);
    size_t wsb = ttt_cuda_bwd_workspace(&s, c->group);
    float *ws = dev_new(p, NULL, wsb / sizeof(float));
    if (p->err) return p->err;
    ttt_cuda_grads g = {gd[0], gd[1], gd[2], gd[3], gd[4], gd[5], gd[6]};
    p->err = p->ops->backward(p->be, &s, cp, io, ckpt, c->group, dZd, dd[0], dd[1], dd[2], dd[3], &g, ws, wsb);
    double *out[4] = {&res->dxq, &res->dxk, &res->dxv, &res->dlr};
    for (int i = 0; i < 4 && !p->err; i++) {
        float *h = fetch(p, dd[i], i < 3 ? ND : NH);
        if (h) *out[i] = rel_err(h, r[i], i < 3 ? ND : NH);
    }
    res->dparams = 0.0;
    for (int i = 0; i < N_INNER && !p->err; i++) {
        float *h = ref.n[i] ? fetch(p, gd[i], ref.n[i]) : NULL;
        if (h) res->dparams = fmax(res->dparams, rel_err(h, ref.t[i], ref.n[i]));
    }
    return p->err;
}

/* Copies tokens [t0, t0+n) of every sequence of the (B,T,w) array src into
 * the (B,n,w) array dst. */
static void gather(float *dst, const float *src, int B, int T, int w, int t0, int n) {
    for (int bi = 0; bi < B; bi++)
        memcpy(dst + (size_t)bi * n * w, src + ((size_t)bi * T + t0) * w, (size_t)n * w * sizeof(float));
}

/* The activations of tokens [t0, t0+n) (from all, (B,T,...) copies of the
 * training cache) on the CPU side: the layer's cache, resized to (B,n). */
static int cpu_chunk_load(vttt_layer *l, float *const all[4], int B, int T, int t0, int n) {
    int err = ttt_cache_reserve(l, B, n, 0);
    if (err) return err;
    struct ttt_cache *c = l->tc;
    float *dst[4] = {c->XQ, c->XK, c->XV, c->lr};
    for (int i = 0; i < 4; i++) gather(dst[i], all[i], B, T, i < 3 ? l->D : l->H, t0, n);
    return VTTT_OK;
}

/* Waits for the device and copies n floats back into h. */
static int fetch_into(pool *p, float *h, const float *d, size_t n) {
    if (!p->err && !(p->err = p->be->sync(p->be->ctx))) p->err = p->be->to_host(p->be->ctx, h, d, n * sizeof(float));
    return p->err;
}

/* One chunk of check_decode: tokens [t0, t0+n) (in the layer cache, see
 * cpu_chunk_load) through ttt_head_run and through the GPU (a decode step
 * for n == 1 inside the decoded part, else a prefill). */
static int decode_chunk(vttt_layer *l, pool *p, const ttt_cuda_params *cp, int B, int t0, int n, int decode,
                        float *W, float *A, float *Wd, float *Ad, float *const chunk[5], float *ws) {
    struct ttt_cache *c = l->tc;
    ttt_cuda_shape s = shape_of(l, B, n);
    size_t numel = ttt_cuda_state_numel(&s), ND = (size_t)B * n * l->D;
    const float *src[4] = {c->XQ, c->XK, c->XV, c->lr};
    for (int i = 0; i < 4 && !p->err; i++)
        p->err = p->be->to_device(p->be->ctx, chunk[i], src[i], (i < 3 ? ND : (size_t)B * n * l->H) * sizeof(float));
    if (p->err) return p->err;
    for (int bh = 0; bh < B * l->H; bh++)
        ttt_head_run(l, 0, bh / l->H, bh % l->H, n, t0, W + (size_t)bh * numel, A + (size_t)bh * numel, NULL, 0);
    ttt_cuda_io io = {chunk[0], chunk[1], chunk[2], chunk[3], chunk[4]};
    if (decode) p->err = p->ops->decode(p->be, &s, cp, &io, t0, Wd, Ad);
    else p->err = p->ops->prefill(p->be, &s, cp, &io, t0, Wd, Ad, NULL, 0, ws, ttt_cuda_fwd_workspace(&s));
    return p->err;
}

/* Decode over tokens [0, n_decode), then a prefill of the rest from the
 * state so reached, on both sides; compares every output and the final
 * W, A. all: host copies of XQ, XK, XV (B,T,D), lr (B,T,H). */
static int check_decode(vttt_layer *l, pool *p, const ttt_cuda_params *cp, int B, int T, int n_decode,
                        float *const all[4], ttt_cuda_check *res) {
    ttt_cuda_shape s = shape_of(l, B, T);
    size_t numel = ttt_cuda_state_numel(&s), NS = (size_t)B * l->H * numel, ND = (size_t)B * T * l->D;
    float *W = host_new(p, NS), *A = host_new(p, NS), *Zh = host_new(p, ND), *Wh = host_new(p, NS);
    float *Wd = dev_new(p, NULL, NS), *Ad = dev_new(p, NULL, NS);
    float *chunk[5] = {dev_new(p, NULL, ND), dev_new(p, NULL, ND), dev_new(p, NULL, ND),
                       dev_new(p, NULL, (size_t)B * T * l->H), dev_new(p, NULL, ND)}; /* q, k, v, lr, Z */
    float *ws = dev_new(p, NULL, ttt_cuda_fwd_workspace(&s) / sizeof(float));
    if (p->err || (p->err = p->ops->state_init(p->be, &s, cp, Wd, Ad))) return p->err;
    for (int bh = 0; bh < B * l->H; bh++) ttt_state_from_params(l, bh % l->H, W + (size_t)bh * numel);
    err_acc ez = {0, 0}, est = {0, 0};
    for (int t0 = 0, n; t0 < T && !p->err; t0 += n) {
        n = t0 < n_decode ? 1 : T - t0;
        if ((p->err = cpu_chunk_load(l, all, B, T, t0, n))) break;
        if (decode_chunk(l, p, cp, B, t0, n, t0 < n_decode, W, A, Wd, Ad, chunk, ws)) break;
        if (!fetch_into(p, Zh, chunk[4], (size_t)B * n * l->D)) err_add(&ez, Zh, l->tc->Z, (size_t)B * n * l->D);
    }
    if (!fetch_into(p, Wh, Wd, NS)) err_add(&est, Wh, W, NS);
    if (!fetch_into(p, Wh, Ad, NS)) err_add(&est, Wh, A, NS);
    res->decode = err_val(&ez);
    res->decode_state = err_val(&est);
    return p->err;
}

/* The fused kernels as linked (CUDA, or the ENODEV stubs of a build
 * without it). */
static const ttt_dev_ops linked_kernels = {
    .state_init = ttt_cuda_state_init,
    .prefill = ttt_cuda_prefill,
    .decode = ttt_cuda_decode,
    .backward = ttt_cuda_backward,
};

int ttt_cuda_check_layer(vttt_layer *l, const vttt_backend *be, const float *x, const float *dy, int B, int T,
                         int n_decode, ttt_cuda_check *res) {
    return ttt_cuda_check_layer_ops(l, be, &linked_kernels, x, dy, B, T, n_decode, res);
}

int ttt_cuda_check_layer_ops(vttt_layer *l, const vttt_backend *be, const ttt_dev_ops *ops, const float *x,
                             const float *dy, int B, int T, int n_decode, ttt_cuda_check *res) {
    if (!l || !be || !ops || !x || !dy || !res || B <= 0 || T <= 0 || n_decode < 0 || n_decode > T ||
        l->cfg.kind == VTTT_LAYER_ATTENTION) {
        vttt_log(l ? &l->log : NULL, VTTT_LOG_ERROR,
                 "CUDA TTT check: needs a TTT layer, a backend, x and dy, B, T >= 1 and 0 <= n_decode <= T "
                 "(got B=%d T=%d n_decode=%d)", B, T, n_decode);
        return VTTT_EINVAL;
    }
    double *all_res[] = {&res->z, &res->ckpt, &res->state, &res->decode, &res->decode_state, &res->dxq,
                         &res->dxk, &res->dxv, &res->dlr, &res->dparams, &res->harness};
    for (size_t i = 0; i < sizeof all_res / sizeof all_res[0]; i++) *all_res[i] = NAN;
    pool p = {.be = be, .ops = ops};
    size_t ND = (size_t)B * T * l->D, NH = (size_t)B * T * l->H;
    float *y = host_new(&p, ND);
    if (y) p.err = vttt_layer_forward(l, y, x, B, T, VTTT_FORM_DUAL, 1);
    float *all[4] = {host_new(&p, ND), host_new(&p, ND), host_new(&p, ND), host_new(&p, NH)};
    if (!p.err) {
        const float *src[4] = {l->tc->XQ, l->tc->XK, l->tc->XV, l->tc->lr};
        for (int i = 0; i < 4; i++) memcpy(all[i], src[i], (i < 3 ? ND : NH) * sizeof(float));
    }
    ttt_cuda_params cp;
    ttt_cuda_io io;
    float *ckpt = NULL, *W = NULL;
    upload_params(&p, l, &cp);
    if (!p.err) check_forward(l, &p, &cp, B, T, &io, &ckpt, &W, res);
    if (!p.err) check_backward(l, &p, &cp, dy, B, T, &io, ckpt, W, res);
    if (!p.err) check_decode(l, &p, &cp, B, T, n_decode, all, res);
    pool_free(&p);
    return p.err;
}

int ttt_cuda_check_passed(const ttt_cuda_check *r) {
    const double fwd[] = {r->z, r->ckpt, r->state, r->decode, r->decode_state};
    const double bwd[] = {r->dxq, r->dxk, r->dxv, r->dlr};
    int ok = r->dparams <= TTT_CUDA_TOL_PARAM && r->harness <= TTT_CUDA_TOL_HARNESS;
    for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++) ok = ok && fwd[i] <= TTT_CUDA_TOL_FWD;
    for (size_t i = 0; i < sizeof bwd / sizeof bwd[0]; i++) ok = ok && bwd[i] <= TTT_CUDA_TOL_BWD;
    return ok;
}
