/*
 * The checking harness of the device layer (layer_dev.h): one TTT layer
 * through the CPU layer (vttt_layer_forward/backward, vttt_state prefill
 * and decode) and through vttt_layer_dev on a backend with the same
 * parameters and inputs, with the relative error of every output. Used by
 * tests/test_layer_dev.c on the CPU backend (which runs the device path's
 * steps on the host) and tests/test_ttt_cuda.c on a GPU.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer_dev_internal.h"
#include "ttt_internal.h"

/* ---- errors ----------------------------------------------------------------- */

static double rel_err(const float *a, const float *b, size_t n) {
    double diff = 0.0, ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!isfinite(d)) d = INFINITY;
        diff = d > diff ? d : diff;
        ref = fabs((double)b[i]) > ref ? fabs((double)b[i]) : ref;
    }
    return diff == 0.0 ? 0.0 : diff / (ref > 1e-30 ? ref : 1e-30);
}

/* ---- buffers: the host and device arrays of one check ------------------------- */

typedef struct {
    const vttt_backend *be;
    float *dx_dev, *x_dev, *y_dev, *dy_dev; /* (B,T,D) on the device */
    float *y, *dx, *y_ref, *dx_ref, *g_ref; /* host */
    float *xc, *yc, *yd;                    /* host (B,T,D): a chunk, the CPU's and the device's outputs */
    float *W0, *A;                          /* host (B*H, numel) */
} bufs;

static int bufs_new(bufs *b, const vttt_backend *be, const vttt_layer *l, int B, int T) {
    size_t ND = (size_t)B * T * l->D, NS = (size_t)B * l->H * ttt_dims_of(l).numel;
    memset(b, 0, sizeof *b);
    b->be = be;
    float **dev[] = {&b->dx_dev, &b->x_dev, &b->y_dev, &b->dy_dev};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (be->alloc(be->ctx, (void **)dev[i], ND * sizeof(float))) return VTTT_ENOMEM;
    float **host[] = {&b->y, &b->dx, &b->y_ref, &b->dx_ref, &b->xc, &b->yc, &b->yd};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        if (!(*host[i] = malloc(ND * sizeof(float)))) return VTTT_ENOMEM;
    if (!(b->g_ref = malloc(l->n_params * sizeof(float))) || !(b->W0 = malloc(NS * sizeof(float))) ||
        !(b->A = malloc(NS * sizeof(float))))
        return VTTT_ENOMEM;
    return VTTT_OK;
}

static void bufs_free(bufs *b) {
    float *dev[] = {b->dx_dev, b->x_dev, b->y_dev, b->dy_dev};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) b->be->free(b->be->ctx, dev[i]);
    float *host[] = {b->y, b->dx, b->y_ref, b->dx_ref, b->xc, b->yc, b->yd, b->g_ref, b->W0, b->A};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}

/* ---- training: forward and backward ---------------------------------------------- */

/* The worst relative error over the parameter gradients, tensor by tensor:
 * the device's (now in l's gradients) against ref (l's layout). */
static void compare_grads(vttt_layer *l, const float *ref, ttt_layer_dev_check *res) {
    vttt_param_info info[32];
    int n = vttt_layer_param_list(l, 1, info, 32);
    res->dparams = 0.0;
    res->worst = "";
    for (int i = 0; i < n; i++) {
        double e = rel_err(info[i].data, ref + (info[i].data - l->grad_mem), (size_t)info[i].numel);
        if (e > res->dparams || !isfinite(e)) res->dparams = e, res->worst = info[i].name;
    }
}

static int check_train(vttt_layer *l, vttt_layer_dev *d, bufs *b, const float *x, const float *dy, int B, int T,
                       ttt_layer_dev_check *res) {
    const vttt_backend *be = b->be;
    size_t ND = (size_t)B * T * l->D;
    vttt_layer_zero_grads(l);
    int err = vttt_layer_forward(l, b->y_ref, x, B, T, VTTT_FORM_DUAL, 1);
    if (!err) err = vttt_layer_backward(l, b->dx_ref, dy);
    if (err) return err;
    memcpy(b->g_ref, l->grad_mem, l->n_params * sizeof(float));
    vttt_layer_zero_grads(l);
    err = be->to_device(be->ctx, b->x_dev, x, ND * sizeof(float));
    if (!err) err = be->to_device(be->ctx, b->dy_dev, dy, ND * sizeof(float));
    if (!err) err = vttt_layer_dev_forward(d, b->y_dev, b->x_dev, B, T, 1);
    if (!err) err = vttt_layer_dev_backward(d, b->dx_dev, b->dy_dev);
    if (!err) err = be->to_host(be->ctx, b->y, b->y_dev, ND * sizeof(float));
    if (!err) err = be->to_host(be->ctx, b->dx, b->dx_dev, ND * sizeof(float));
    if (!err) err = vttt_layer_dev_grads_to_host(d);
    if (err) return err;
    res->y = rel_err(b->y, b->y_ref, ND);
    res->dx = rel_err(b->dx, b->dx_ref, ND);
    compare_grads(l, b->g_ref, res);
    return VTTT_OK;
}

/* ---- generation -------------------------------------------------------------------------- */

/* Tokens [t0, t0+n) of every sequence of (B,T,D) src into (B,n,D) dst, or
 * back (scatter). */
static void chunk_copy(float *dst, const float *src, int B, int T, int D, int t0, int n, int scatter) {
    for (int bi = 0; bi < B; bi++) {
        float *a = scatter ? dst + ((size_t)bi * T + t0) * D : dst + (size_t)bi * n * D;
        const float *c = scatter ? src + (size_t)bi * n * D : src + ((size_t)bi * T + t0) * D;
        memcpy(a, c, (size_t)n * D * sizeof(float));
    }
}

/* One chunk through the CPU state and the device state; outputs go to
 * b->yc and b->yd at their places in (B,T,D). */
static int gen_chunk(vttt_layer *l, vttt_state *cs, vttt_layer_dev *d, vttt_state_dev *ds, bufs *b, const float *x,
                     int B, int T, int t0, int n, int decode) {
    const vttt_backend *be = b->be;
    int D = l->D;
    size_t bytes = (size_t)B * n * D * sizeof(float);
    float *out = b->xc + (size_t)B * n * D; /* the chunk's output, after its input (n <= T / 2 or a single token) */
    if (2 * (size_t)n > (size_t)T) out = b->y; /* scratch of (B,T,D) */
    chunk_copy(b->xc, x, B, T, D, t0, n, 0);
    int err = decode ? vttt_layer_decode(l, cs, out, b->xc) : vttt_layer_prefill(l, cs, out, b->xc, n);
    if (err) return err;
    chunk_copy(b->yc, out, B, T, D, t0, n, 1);
    if ((err = be->to_device(be->ctx, b->x_dev, b->xc, bytes))) return err;
    err = decode ? vttt_layer_dev_decode(d, ds, b->y_dev, b->x_dev)
                 : vttt_layer_dev_prefill(d, ds, b->y_dev, b->x_dev, n);
    if (!err) err = be->to_host(be->ctx, out, b->y_dev, bytes);
    if (!err) chunk_copy(b->yd, out, B, T, D, t0, n, 1);
    return err;
}

static int check_gen(vttt_layer *l, vttt_layer_dev *d, bufs *b, const float *x, int B, int T, int n_prefill,
                     int n_decode, ttt_layer_dev_check *res) {
    vttt_state *cs = NULL;
    vttt_state_dev *ds = NULL;
    int err = vttt_state_init(&cs, l, B, 0);
    if (!err) err = vttt_state_dev_init(&ds, d, B);
    for (int t0 = 0, n = 0; !err && t0 < T; t0 += n) {
        int decode = t0 >= n_prefill && t0 < n_prefill + n_decode;
        n = decode ? 1 : t0 < n_prefill ? n_prefill : T - t0;
        err = gen_chunk(l, cs, d, ds, b, x, B, T, t0, n, decode);
    }
    size_t NS = (size_t)B * l->H * ttt_dims_of(l).numel;
    if (!err) err = ttt_state_dev_download(ds, b->W0, b->A);
    if (!err) {
        res->gen_y = rel_err(b->yd, b->yc, (size_t)B * T * l->D);
        res->gen_state = fmax(rel_err(b->W0, cs->W0, NS), rel_err(b->A, cs->A, NS));
        ttt_state_dev_graph_counts(ds, &res->replays, &res->captured);
    }
    vttt_state_dev_free(&ds);
    vttt_state_free(&cs);
    return err;
}

/* The forward with bf16 projections against the CPU's fp32 output
 * (b->y_ref of check_train). */
static int check_bf16(vttt_layer_dev *d, bufs *b, const float *x, int B, int T, ttt_layer_dev_check *res) {
    const vttt_backend *be = b->be;
    size_t ND = (size_t)B * T * d->l->D;
    if (!d->ops->linear_bf16) return VTTT_OK;
    int err = ttt_layer_dev_set_bf16(d, 1);
    if (!err) err = be->to_device(be->ctx, b->x_dev, x, ND * sizeof(float));
    if (!err) err = vttt_layer_dev_forward(d, b->y_dev, b->x_dev, B, T, 0);
    if (!err) err = be->to_host(be->ctx, b->y, b->y_dev, ND * sizeof(float));
    if (!err) res->bf16_y = rel_err(b->y, b->y_ref, ND);
    int off = ttt_layer_dev_set_bf16(d, 0);
    return err ? err : off;
}

int ttt_layer_dev_check_run(vttt_layer *l, const vttt_backend *be, const float *x, const float *dy, int B, int T,
                            int n_prefill, int n_decode, ttt_layer_dev_check *res) {
    return ttt_layer_dev_check_run_ops(l, be, NULL, x, dy, B, T, n_prefill, n_decode, res);
}

int ttt_layer_dev_check_run_ops(vttt_layer *l, const vttt_backend *be, const ttt_dev_ops *ops, const float *x,
                                const float *dy, int B, int T, int n_prefill, int n_decode, ttt_layer_dev_check *res) {
    if (!l || !be || !x || !dy || !res || B < 1 || T < 1 || n_prefill < 0 || n_decode < 0 ||
        n_prefill + n_decode > T || 2 * n_prefill > T) {
        vttt_log(l ? &l->log : NULL, VTTT_LOG_ERROR,
                 "device layer check: needs x, dy, B, T >= 1, 0 <= 2 n_prefill <= T, n_prefill + n_decode <= T");
        return VTTT_EINVAL;
    }
    memset(res, 0, sizeof *res);
    res->y = res->dx = res->dparams = res->gen_y = res->gen_state = res->bf16_y = NAN;
    res->worst = "";
    bufs b;
    vttt_layer_dev *d = NULL;
    int err = bufs_new(&b, be, l, B, T);
    if (!err) err = ops ? ttt_layer_dev_init_ops(&d, l, be, ops, B, T) : vttt_layer_dev_init(&d, l, be, B, T);
    if (!err) err = check_train(l, d, &b, x, dy, B, T, res);
    if (!err) err = check_gen(l, d, &b, x, B, T, n_prefill, n_decode, res);
    if (!err) err = check_bf16(d, &b, x, B, T, res);
    vttt_layer_dev_free(&d);
    bufs_free(&b);
    return err;
}
