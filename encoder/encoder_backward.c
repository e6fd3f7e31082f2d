/*
 * The tokenizer's backward pass after a training forward: the loss
 * gradient at the image, the decoder's layers, FSQ's straight-through rule
 * (on the host), the encoder's layers. Parameter gradients accumulate into
 * the host gradients (on CUDA through the device gradient array, cleared
 * before and added to the host after).
 */
#include <string.h>

#include "encoder_internal.h"

/* The gradient of layer l's input, or NULL when nobody needs it. */
static float *input_grad(vttt_encoder *e, int l) {
    if (l == 0) return e->want_dx ? e->dx : NULL;
    if (l == e->n_enc) return e->dq;
    return e->L[l - 1].dy;
}

/* Backward of layer l: dy -> parameter gradients and (assigned) input
 * gradient, through conv, upsample, SiLU and GroupNorm in turn. */
static int layer_backward(vttt_encoder *e, int l, int N) {
    const vttt_backend *be = e->be;
    enc_layer *L = &e->L[l];
    float *in = enc_layer_input(e, l), *din = input_grad(e, l);
    int h = L->h, w = L->w, ch = L->up ? 2 * h : h, cw = L->up ? 2 * w : w;
    size_t n_in = (size_t)N * L->cin * h * w, n_conv = (size_t)N * L->cin * ch * cw;
    const float *conv_in = L->up ? L->upb : L->norm ? L->act : in;
    int direct = !L->norm && !L->up; /* the conv's input gradient is din itself */
    float *dconv = direct ? din : e->scr[0];
    int err = VTTT_OK;
    if (dconv) err = enc_buf_zero(e, dconv, direct ? n_in : n_conv);
    if (!err)
        err = be->conv2d_backward(be->ctx, dconv, L->dg[ENC_P_CONV_W], L->dg[ENC_P_CONV_B], L->dy, conv_in,
                                  L->dp[ENC_P_CONV_W], N, L->cin, ch, cw, L->cout, L->k, L->k, L->stride, L->pad);
    if (err || direct) return err;
    float *dact = dconv;
    if (L->up) {
        dact = L->norm ? e->scr[1] : din;
        if (!dact) return VTTT_OK;
        if ((err = enc_buf_zero(e, dact, n_in))) return err;
        be->upsample2x_backward(dact, dconv, N, L->cin, h, w);
    }
    if (!L->norm) return VTTT_OK;
    float *dgn = e->scr[2];
    if ((err = enc_buf_zero(e, dgn, n_in)) || (din && (err = enc_buf_zero(e, din, n_in)))) return err;
    be->silu_backward(dgn, dact, L->gn, n_in);
    be->groupnorm_backward(din, L->dg[ENC_P_GN_W], L->dg[ENC_P_GN_B], dgn, in, L->dp[ENC_P_GN_W], L->mean, L->rstd, N,
                           L->cin, h * w, e->groups);
    return VTTT_OK;
}

/* dy of the last layer: dloss * 2 (y + 0.5 - img) / n, uploaded. */
static int loss_grad(vttt_encoder *e, float dloss) {
    int S = e->cfg.image_size;
    size_t n = (size_t)e->N * 3 * S * S;
    float k = 2.0f * dloss / (float)n;
    for (size_t i = 0; i < n; i++) e->h_y[i] = k * (e->h_y[i] + 0.5f - e->h_img[i]);
    if (e->cfg.kind == VTTT_ENCODER_DELTA) return enc_delta_loss_grad(e, e->N);
    return e->be->to_device(e->be->ctx, e->L[e->n_layers - 1].dy, e->h_y, n * sizeof(float));
}

/* dz from dq through FSQ's straight-through rule, plus the rate term's
 * gradient, on the host. */
static int fsq_grad(vttt_encoder *e) {
    int P = e->P;
    size_t n = (size_t)e->N * e->cfg.num_levels * P;
    int err = e->cfg.kind == VTTT_ENCODER_DELTA ? enc_delta_dq_to_host(e, e->h_q, e->N)
                                                : e->be->to_host(e->be->ctx, e->h_q, e->dq, n * sizeof(float));
    if (err) return err;
    /* h_z still holds z from the forward */
    enc_fsq_backward(&e->cfg, e->h_q, e->h_q, e->h_z, e->N, P);
    if (e->rate_weight > 0.0f)
        enc_fsq_rate(&e->cfg, e->h_z, e->N, P, e->dloss * e->rate_weight / (float)n, e->h_q);
    return e->be->to_device(e->be->ctx, e->L[e->n_enc - 1].dy, e->h_q, n * sizeof(float));
}

/* Non-CPU backends: host grads += device grads. */
static int gather_grads(vttt_encoder *e) {
    if (!e->dgrads) return VTTT_OK;
    float *tmp = e->zeros; /* reused as staging, zeroed again after */
    size_t chunk = (size_t)e->cap * enc_max_layer_floats(e), done = 0;
    int err = VTTT_OK;
    while (done < e->n_params && !err) {
        size_t k = e->n_params - done < chunk ? e->n_params - done : chunk;
        err = e->be->to_host(e->be->ctx, tmp, e->dgrads + done, k * sizeof(float));
        for (size_t i = 0; i < k && !err; i++) e->grads[done + i] += tmp[i];
        memset(tmp, 0, k * sizeof(float));
        done += k;
    }
    return err;
}

int vttt_encoder_backward(vttt_encoder *e, float dloss) {
    if (!e->has_fwd) {
        vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer backward: no training forward to go back through");
        return VTTT_EINVAL;
    }
    int err = VTTT_OK;
    if (e->dgrads) {
        for (size_t done = 0, chunk = (size_t)e->cap * enc_max_layer_floats(e); done < e->n_params && !err;
             done += chunk)
            err = enc_buf_zero(e, e->dgrads + done, e->n_params - done < chunk ? e->n_params - done : chunk);
    }
    e->dloss = dloss;
    if (!err) err = loss_grad(e, dloss);
    for (int l = e->n_layers - 1; l >= e->n_enc && !err; l--) err = layer_backward(e, l, e->N);
    if (!err) err = fsq_grad(e);
    for (int l = e->n_enc - 1; l >= 0 && !err; l--) err = layer_backward(e, l, e->N);
    if (!err) err = gather_grads(e);
    if (err) vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer backward failed on %s (%s)", e->be->name,
                      vttt_strerror(err));
    e->has_fwd = 0; /* the loss gradient overwrote h_y */
    return err;
}

/* The network's input gradient plus the target's: the loss compares the
 * reconstruction with the image itself, so d loss / d img has both (h_y
 * holds the loss gradient at y after a backward). */
int enc_get_dx(vttt_encoder *e, float *dx, int N) {
    int S = e->cfg.image_size;
    size_t n = (size_t)N * 3 * S * S;
    int err = e->be->to_host(e->be->ctx, dx, e->dx, n * sizeof(float));
    for (size_t i = 0; i < n && !err; i++) dx[i] -= e->h_y[i];
    return err;
}
