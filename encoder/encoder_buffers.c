/*
 * The tokenizer's buffers on its backend: activations for up to `cap`
 * frames, gradient scratch, host staging for the steps that run on the
 * host (input conversion, FSQ, loss); and moving the tokenizer to another
 * backend. On the CPU the "device" buffers are host memory and parameters
 * are used in place; on CUDA the parameters live in one device allocation
 * that is refreshed from the host copy (which AdamW updates) before a
 * forward, and the gradients are added back to the host after a backward.
 */
#include <stdlib.h>
#include <string.h>

#include "encoder_internal.h"

static void bfree(vttt_encoder *e, float **p) {
    if (*p) e->be->free(e->be->ctx, *p);
    *p = NULL;
}

static int balloc(vttt_encoder *e, float **p, size_t n, int *err) {
    if (*err) return *err;
    void *v = NULL;
    *err = e->be->alloc(e->be->ctx, &v, (n ? n : 1) * sizeof(float));
    *p = v;
    return *err;
}

void enc_buffers_free(vttt_encoder *e) {
    for (int l = 0; l < e->n_layers; l++) {
        enc_layer *L = &e->L[l];
        float **bufs[] = {&L->gn, &L->mean, &L->rstd, &L->act, &L->upb, &L->y, &L->dy};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) bfree(e, bufs[i]);
    }
    bfree(e, &e->x), bfree(e, &e->q), bfree(e, &e->dq), bfree(e, &e->dx);
    for (int i = 0; i < 3; i++) bfree(e, &e->scr[i]);
    free(e->zeros), free(e->h_img), free(e->h_y), free(e->h_z), free(e->h_q), free(e->h_x), free(e->h_prev);
    free(e->h_mask), free(e->h_mref), free(e->h_cells);
    e->zeros = e->h_img = e->h_y = e->h_z = e->h_q = e->h_x = e->h_prev = NULL;
    e->h_mask = e->h_mref = NULL;
    e->h_cells = NULL;
    e->cap = 0;
    e->has_fwd = 0;
}

/* Allocates layer l's activations for N frames. */
static int layer_alloc(vttt_encoder *e, enc_layer *L, size_t N, int *err) {
    size_t in = (size_t)L->cin * L->h * L->w, out = (size_t)L->cout * L->oh * L->ow;
    if (L->norm) {
        balloc(e, &L->gn, N * in, err);
        balloc(e, &L->act, N * in, err);
        balloc(e, &L->mean, N * (size_t)e->groups, err);
        balloc(e, &L->rstd, N * (size_t)e->groups, err);
    }
    if (L->up) balloc(e, &L->upb, N * in * 4, err);
    balloc(e, &L->y, N * out, err);
    return balloc(e, &L->dy, N * out, err);
}

int enc_buffers_reserve(vttt_encoder *e, int N) {
    if (N <= e->cap) return VTTT_OK;
    enc_buffers_free(e);
    int err = VTTT_OK, S = e->cfg.image_size, delta = e->cfg.kind == VTTT_ENCODER_DELTA;
    size_t n = (size_t)N, img = n * 3 * S * S, z = n * (size_t)e->cfg.num_levels * e->P;
    size_t xin = delta ? 2 * img : img, zq = n * (size_t)e->dec_cin * e->P;
    size_t big = n * enc_max_layer_floats(e);
    for (int l = 0; l < e->n_layers; l++) layer_alloc(e, &e->L[l], n, &err);
    balloc(e, &e->x, xin, &err);
    balloc(e, &e->q, zq, &err);
    balloc(e, &e->dq, zq, &err);
    balloc(e, &e->dx, xin, &err);
    for (int i = 0; i < 3; i++) balloc(e, &e->scr[i], big, &err);
    e->zeros = calloc(big, sizeof(float));
    e->h_img = malloc(img * sizeof(float)), e->h_y = malloc(img * sizeof(float));
    e->h_z = malloc(z * sizeof(float)), e->h_q = malloc(zq * sizeof(float));
    e->h_x = malloc(xin * sizeof(float)), e->h_prev = malloc(img * sizeof(float));
    e->h_mask = malloc(n * (size_t)e->P), e->h_mref = malloc(img), e->h_cells = malloc(n * e->P * sizeof(int32_t));
    if (err || !e->zeros || !e->h_img || !e->h_y || !e->h_z || !e->h_q || !e->h_x || !e->h_prev || !e->h_mask ||
        !e->h_mref || !e->h_cells) {
        enc_buffers_free(e);
        vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer: out of memory for the buffers of %d frames (%s)", N,
                 e->be->name);
        return VTTT_ENOMEM;
    }
    e->cap = N;
    return VTTT_OK;
}

int enc_buf_zero(vttt_encoder *e, float *p, size_t n) {
    if (e->be->device == VTTT_DEVICE_CPU) {
        memset(p, 0, n * sizeof(float));
        return VTTT_OK;
    }
    return e->be->to_device(e->be->ctx, p, e->zeros, n * sizeof(float));
}

int enc_params_sync(vttt_encoder *e) {
    /* uploaded before every forward: AdamW and loading change the host copy */
    if (!e->dparams) return VTTT_OK;
    return e->be->to_device(e->be->ctx, e->dparams, e->params, e->n_params * sizeof(float));
}

/* Points the layers' device slots at dparams/dgrads (or the host arrays). */
static void point_device(vttt_encoder *e) {
    size_t off = 0;
    for (int l = 0; l < e->n_layers; l++) {
        enc_layer *L = &e->L[l];
        for (int s = 0; s < ENC_P_COUNT; s++) {
            if (!L->numel[s]) continue;
            L->dp[s] = e->dparams ? e->dparams + off : L->p[s];
            L->dg[s] = e->dgrads ? e->dgrads + off : L->g[s];
            off += (size_t)L->numel[s];
        }
    }
}

/* The ops a backend must fill to run the tokenizer. */
static int backend_complete(const vttt_backend *be) {
    return be->alloc && be->free && be->to_device && be->to_host && be->conv2d_forward && be->conv2d_backward &&
           be->groupnorm_forward && be->groupnorm_backward && be->upsample2x_forward && be->upsample2x_backward &&
           be->silu_forward && be->silu_backward;
}

int vttt_encoder_set_backend(vttt_encoder *e, const vttt_backend *be) {
    if (!be) be = vttt_backend_cpu();
    if (!backend_complete(be)) {
        vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer: the %s backend lacks the 2D image ops (conv2d, groupnorm, "
                 "upsample2x, silu)", be->name);
        return VTTT_ENOTSUP;
    }
    enc_buffers_free(e);
    if (e->dparams) e->be->free(e->be->ctx, e->dparams), e->dparams = NULL;
    if (e->dgrads) e->be->free(e->be->ctx, e->dgrads), e->dgrads = NULL;
    e->be = be;
    int err = VTTT_OK;
    if (be->device != VTTT_DEVICE_CPU) {
        balloc(e, &e->dparams, e->n_params, &err);
        balloc(e, &e->dgrads, e->n_params, &err);
        if (err) {
            vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer: cannot allocate %zu parameters on %s", e->n_params,
                     be->name);
            if (e->dparams) be->free(be->ctx, e->dparams), e->dparams = NULL;
            e->be = vttt_backend_cpu();
            point_device(e);
            return err;
        }
    }
    point_device(e);
    return enc_params_sync(e);
}
