/*
 * A TTT layer on a backend's device (ttt.h, "a TTT layer on a backend's
 * device"): the steps of ttt_outer.c, ttt_seq.c and ttt_backward.c, each
 * one a backend op (projections, norms, rotary, conv) or a ttt_dev_ops
 * call (the fused inner loop and a few elementwise steps), on buffers cut
 * from one arena at init. Nothing is allocated after init; the decode
 * step is captured into one CUDA graph per position inside the mini-batch
 * and replayed (layer_dev_state.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer_dev_internal.h"

#define POST_LN_EPS 1e-6f

/* ---- parameters: the host block's layout, mirrored ------------------------ */

/* vttt_layer_params is a struct of float pointers only; each device
 * pointer keeps its host pointer's offset from the block's start. */
#define N_PARAM_PTRS (sizeof(vttt_layer_params) / sizeof(float *))
static void mirror_params(vttt_layer_params *dst, const vttt_layer_params *src, const float *host_base,
                          float *dev_base) {
    float *const *s = (float *const *)src;
    float **d = (float **)dst;
    for (size_t i = 0; i < N_PARAM_PTRS; i++) d[i] = s[i] ? dev_base + (s[i] - host_base) : NULL;
}

ttt_cuda_params ttt_dev_inner_params(const vttt_layer_dev *d) {
    const vttt_layer_params *p = &d->p;
    ttt_cuda_params ip = {p->W1, p->b1, p->W2, p->b2, p->ln_w, p->ln_b, p->token_idx};
    return ip;
}

ttt_cuda_shape ttt_dev_shape(const vttt_layer_dev *d, int B, int T) {
    const vttt_layer *l = d->l;
    ttt_cuda_shape s = {B, T, l->H, l->f, l->h1, l->b, l->cfg.kind == VTTT_LAYER_TTT_MLP};
    return s;
}

/* Mini-batches per checkpoint for a training forward of T tokens, as
 * ttt_cache_reserve chooses it. */
static int group_of(const vttt_layer *l, int T) {
    int nmb = (T + l->b - 1) / l->b, g = l->cfg.ckpt_group;
    if (g <= 0)
        for (g = 1; (int64_t)g * g < nmb; g++) {}
    return g;
}

/* ---- the arena -------------------------------------------------------------------- */

/* Cuts every buffer from a (a plan or the real arena). */
static void layout(vttt_layer_dev *d, ttt_arena *a) {
    const vttt_layer *l = d->l;
    size_t ND = (size_t)d->max_B * d->max_T * l->D, NH = (size_t)d->max_B * d->max_T * l->H;
    size_t N = (size_t)d->max_B * d->max_T, D = (size_t)l->D;
    ttt_cuda_shape s = ttt_dev_shape(d, d->max_B, d->max_T);
    size_t numel = ttt_cuda_state_numel(&s), NS = (size_t)d->max_B * l->H * numel;
    int gmax = 1, ngmax = 1, nmb = (d->max_T + l->b - 1) / l->b;
    for (int t = l->b; t <= nmb * l->b; t += l->b) { /* the largest group and group count over T <= max_T */
        int g = group_of(l, t), ng = ttt_cuda_num_groups(t, l->b, g);
        gmax = g > gmax ? g : gmax;
        ngmax = ng > ngmax ? ng : ngmax;
    }
    d->wsf_bytes = ttt_cuda_fwd_workspace(&s);
    d->wsb_bytes = ttt_cuda_bwd_workspace(&s, gmax);
    d->pmem = ttt_arena_floats(a, l->n_params);
    d->gmem = ttt_arena_floats(a, l->n_params);
    float **nd[] = {&d->x, &d->XQ, &d->XK, &d->XV, &d->xqk, &d->Z, &d->normed, &d->gpre,
                    &d->dZ, &d->dXQ, &d->dXK, &d->dXV};
    for (size_t i = 0; i < sizeof nd / sizeof nd[0]; i++) *nd[i] = ttt_arena_floats(a, ND);
    d->tmp = ttt_arena_floats(a, 2 * ND);
    d->lr = ttt_arena_floats(a, NH);
    d->dlr = ttt_arena_floats(a, NH);
    d->mean = ttt_arena_floats(a, N);
    d->rstd = ttt_arena_floats(a, N);
    d->W = ttt_arena_floats(a, NS);
    d->ckpt = ttt_arena_floats(a, NS * (size_t)ngmax);
    d->conv0 = ttt_arena_floats(a, (size_t)d->max_B * (l->cfg.conv_kernel > 1 ? l->cfg.conv_kernel - 1 : 1) * D);
    d->wsf = ttt_arena_take(a, d->wsf_bytes);
    d->wsb = ttt_arena_take(a, d->wsb_bytes);
    if (d->ops->linear_bf16) { /* bf16 copies of the D x D projections, and the input's */
        uint16_t **wb[] = {&d->wq_b, &d->wk_b, &d->wv_b, &d->wo_b, &d->wg_b};
        for (size_t i = 0; i < sizeof wb / sizeof wb[0]; i++) *wb[i] = ttt_arena_take(a, D * D * sizeof(uint16_t));
        d->xb = ttt_arena_take(a, ND * sizeof(uint16_t));
    }
}

static int check_layer(const vttt_layer *l, int max_B, int max_T) {
    if (l->cfg.kind != VTTT_LAYER_TTT_LINEAR && l->cfg.kind != VTTT_LAYER_TTT_MLP) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "layer on a device: only TTT-Linear and TTT-MLP layers (attention runs "
                                          "on the CPU)");
        return VTTT_ENOTSUP;
    }
    if (max_B <= 0 || max_T <= 0) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "layer on a device: need max_B >= 1 and max_T >= 1 (got %d, %d)", max_B,
                 max_T);
        return VTTT_EINVAL;
    }
    return VTTT_OK;
}

int vttt_layer_dev_init(vttt_layer_dev **out, vttt_layer *l, const vttt_backend *be, int max_B, int max_T) {
    const ttt_dev_ops *ops = !be ? NULL : be->device == VTTT_DEVICE_CUDA ? ttt_dev_ops_cuda() : ttt_dev_ops_cpu();
    return ttt_layer_dev_init_ops(out, l, be, ops, max_B, max_T);
}

int ttt_layer_dev_init_ops(vttt_layer_dev **out, vttt_layer *l, const vttt_backend *be, const ttt_dev_ops *ops,
                           int max_B, int max_T) {
    if (!out || !l || !be) return VTTT_EINVAL;
    *out = NULL;
    int err = check_layer(l, max_B, max_T);
    if (err) return err;
    if (!ops) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "layer on a device: the %s backend has no TTT kernels", be->name);
        return VTTT_ENOTSUP;
    }
    vttt_layer_dev *d = calloc(1, sizeof *d);
    float *host = malloc(l->n_params * sizeof(float));
    if (!d || !host) {
        free(d), free(host);
        return VTTT_ENOMEM;
    }
    d->l = l, d->be = be, d->ops = ops, d->max_B = max_B, d->max_T = max_T, d->host = host;
    ttt_arena plan = ttt_arena_plan();
    layout(d, &plan);
    if ((err = ttt_arena_init(&d->arena, be, plan.used, &l->log, "layer on a device"))) {
        vttt_layer_dev_free(&d);
        return err;
    }
    layout(d, &d->arena);
    mirror_params(&d->p, &l->p, l->param_mem, d->pmem);
    mirror_params(&d->g, &l->g, l->grad_mem, d->gmem);
    err = ops->zero(be, d->gmem, l->n_params);
    size_t nconv = (size_t)max_B * (l->cfg.conv_kernel > 1 ? l->cfg.conv_kernel - 1 : 1) * l->D;
    if (!err) err = ops->zero(be, d->conv0, nconv);
    if (!err) err = vttt_layer_dev_upload(d);
    if (err) {
        vttt_layer_dev_free(&d);
        return err;
    }
    *out = d;
    return VTTT_OK;
}

void vttt_layer_dev_free(vttt_layer_dev **dp) {
    if (!dp || !*dp) return;
    vttt_layer_dev *d = *dp;
    if (d->arena.base) d->be->sync(d->be->ctx);
    ttt_arena_free(&d->arena);
    free(d->host);
    free(d);
    *dp = NULL;
}

size_t ttt_layer_dev_bytes(const vttt_layer_dev *d) { return d->arena.cap; }

/* The bf16 copies of the projection weights, from the device's fp32 ones. */
static int refresh_bf16(vttt_layer_dev *d) {
    size_t DD = (size_t)d->l->D * d->l->D;
    const float *w[] = {d->p.wq, d->p.wk, d->p.wv, d->p.wo, d->p.wg};
    uint16_t *wb[] = {d->wq_b, d->wk_b, d->wv_b, d->wo_b, d->wg_b};
    int err = VTTT_OK;
    for (size_t i = 0; i < sizeof w / sizeof w[0] && !err; i++)
        if (w[i]) err = d->ops->to_bf16(d->be, wb[i], w[i], DD);
    return err;
}

int vttt_layer_dev_upload(vttt_layer_dev *d) {
    if (!d) return VTTT_EINVAL;
    int err = d->be->to_device(d->be->ctx, d->pmem, d->l->param_mem, d->l->n_params * sizeof(float));
    if (!err && d->bf16) err = refresh_bf16(d);
    if (!err) err = d->be->sync(d->be->ctx);
    return err;
}

int vttt_layer_dev_grads_to_host(vttt_layer_dev *d) {
    if (!d) return VTTT_EINVAL;
    size_t n = d->l->n_params;
    int err = d->be->to_host(d->be->ctx, d->host, d->gmem, n * sizeof(float));
    if (!err) err = d->ops->zero(d->be, d->gmem, n);
    if (err) return err;
    for (size_t i = 0; i < n; i++) d->l->grad_mem[i] += d->host[i];
    return d->be->sync(d->be->ctx);
}

int ttt_layer_dev_set_bf16(vttt_layer_dev *d, int on) {
    if (!d) return VTTT_EINVAL;
    if (on && (!d->ops->linear_bf16 || !d->ops->to_bf16)) {
        vttt_log(&d->l->log, VTTT_LOG_ERROR, "layer on a device: the %s backend has no bf16 projections",
                 d->be->name);
        return VTTT_ENOTSUP;
    }
    if (d->bf16 != (on != 0)) d->graph_epoch++; /* captured decode steps launch the other projections */
    d->bf16 = on != 0;
    d->train = 0; /* a backward must follow a forward of the same precision */
    return on ? refresh_bf16(d) : VTTT_OK;
}

/* ---- forward ---------------------------------------------------------------------------- */

/* out (N, D) = inp (N, D) w^T: fp32 cuBLAS, or bf16 inputs with fp32
 * accumulation where enabled. */
static int proj(vttt_layer_dev *d, float *out, const float *inp, const float *w, const uint16_t *wb, int N) {
    int D = d->l->D;
    if (d->bf16) return d->ops->linear_bf16(d->be, out, inp, wb, d->xb, N, D, D);
    return d->be->linear_forward(d->be->ctx, out, inp, w, NULL, N, D, D);
}

/* ttt_outer_in_forward on the device: XQ, XK, XV (rotated, positions
 * pos0..), lr, and xqk for share_qk (conv state cs or zeros). */
int ttt_dev_outer_in(vttt_layer_dev *d, const float *x, int B, int T, int64_t pos0, const float *cs) {
    const vttt_layer *l = d->l;
    const vttt_layer_params *p = &d->p;
    const vttt_backend *be = d->be;
    int D = l->D, H = l->H, N = B * T, K = l->cfg.conv_kernel, err;
    if (l->cfg.share_qk) {
        if ((err = proj(d, d->xqk, x, p->wq, d->wq_b, N))) return err;
        be->conv1d_forward(d->XQ, d->xqk, p->conv_q_w, p->conv_q_b, cs ? cs : d->conv0, B, T, D, K);
        be->conv1d_forward(d->XK, d->xqk, p->conv_k_w, p->conv_k_b, cs ? cs : d->conv0, B, T, D, K);
    } else {
        if ((err = proj(d, d->XQ, x, p->wq, d->wq_b, N)) || (err = proj(d, d->XK, x, p->wk, d->wk_b, N))) return err;
    }
    if ((err = proj(d, d->XV, x, p->wv, d->wv_b, N))) return err;
    be->rotary_forward(d->XQ, d->XQ, B, T, H, l->f, pos0, l->b, l->cfg.rope_theta);
    be->rotary_forward(d->XK, d->XK, B, T, H, l->f, pos0, l->b, l->cfg.rope_theta);
    if ((err = be->linear_forward(be->ctx, d->lr, x, p->lr_w, p->lr_b, N, D, H))) return err;
    return d->ops->lr_forward(be, d->lr, (size_t)N * H, l->cfg.base_lr / (float)l->f);
}

/* ttt_outer_out_forward: y = o_proj(gate(post_norm(Z))). */
int ttt_dev_outer_out(vttt_layer_dev *d, float *y, const float *x, int B, int T) {
    const vttt_layer *l = d->l;
    const vttt_layer_params *p = &d->p;
    int D = l->D, N = B * T, err;
    d->be->layernorm_forward(d->normed, d->mean, d->rstd, d->Z, p->post_w, p->post_b, N, D, POST_LN_EPS);
    const float *o = d->normed;
    if (l->cfg.use_gate) {
        if ((err = proj(d, d->gpre, x, p->wg, d->wg_b, N))) return err;
        if ((err = d->ops->gate_forward(d->be, d->tmp, d->gpre, d->normed, (size_t)N * D))) return err;
        o = d->tmp;
    }
    return proj(d, y, o, p->wo, d->wo_b, N);
}

/* B, T within the arena's sizes; a message otherwise. */
int ttt_dev_check_bt(const vttt_layer_dev *d, int B, int T, const char *what) {
    if (B >= 1 && B <= d->max_B && T >= 1 && T <= d->max_T) return VTTT_OK;
    vttt_log(&d->l->log, VTTT_LOG_ERROR, "%s: B=%d, T=%d outside the device layer's 1..%d sequences, 1..%d tokens "
                                         "(vttt_layer_dev_init's max_B, max_T)",
             what, B, T, d->max_B, d->max_T);
    return VTTT_EINVAL;
}

int vttt_layer_dev_forward(vttt_layer_dev *d, float *y, const float *x, int B, int T, int train) {
    if (!d || !y || !x) return VTTT_EINVAL;
    int err = ttt_dev_check_bt(d, B, T, "device layer forward");
    if (err) return err;
    const vttt_layer *l = d->l;
    size_t ND = (size_t)B * T * l->D;
    d->train = 0;
    if (train && (err = d->ops->copy(d->be, d->x, x, ND))) return err;
    if ((err = ttt_dev_outer_in(d, x, B, T, 0, NULL))) return err;
    ttt_cuda_shape s = ttt_dev_shape(d, B, T);
    ttt_cuda_params ip = ttt_dev_inner_params(d);
    ttt_cuda_io io = {d->XQ, d->XK, d->XV, d->lr, d->Z};
    int group = group_of(l, T);
    if ((err = d->ops->state_init(d->be, &s, &ip, d->W, NULL))) return err;
    err = d->ops->prefill(d->be, &s, &ip, &io, 0, d->W, NULL, train ? d->ckpt : NULL, group, d->wsf, d->wsf_bytes);
    if (!err) err = ttt_dev_outer_out(d, y, x, B, T);
    if (!err && train) d->B = B, d->T = T, d->group = group, d->train = 1;
    return err;
}

/* ---- backward ----------------------------------------------------------------------------- */

/* ttt_outer_out_backward: dZ (zeroed by the caller) and dx (+=). */
static int outer_out_backward(vttt_layer_dev *d, float *dx, const float *dy, int N) {
    const vttt_layer *l = d->l;
    const vttt_backend *be = d->be;
    const ttt_dev_ops *ops = d->ops;
    size_t ND = (size_t)N * l->D;
    int D = l->D, err;
    float *o = d->tmp, *d_o = d->tmp + ND;
    err = l->cfg.use_gate ? ops->gate_forward(be, o, d->gpre, d->normed, ND) : ops->copy(be, o, d->normed, ND);
    if (!err) err = ops->zero(be, d_o, ND);
    if (!err) err = be->linear_backward(be->ctx, d_o, d->g.wo, NULL, dy, o, d->p.wo, N, D, D);
    if (!err && l->cfg.use_gate) {
        err = ops->gate_backward(be, o, d_o, d->gpre, d->normed, ND); /* o becomes the gate's gradient */
        if (!err) err = be->linear_backward(be->ctx, dx, d->g.wg, NULL, o, d->x, d->p.wg, N, D, D);
    }
    if (!err) be->layernorm_backward(d->dZ, d->g.post_w, d->g.post_b, d_o, d->Z, d->p.post_w, d->mean, d->rstd, N, D);
    return err;
}

/* ttt_outer_in_backward: rotates dXQ, dXK back, then the projections',
 * convs' and learning-rate gate's gradients into dx and the parameters. */
static int outer_in_backward(vttt_layer_dev *d, float *dx, int B, int T) {
    const vttt_layer *l = d->l;
    const vttt_backend *be = d->be;
    const ttt_dev_ops *ops = d->ops;
    const vttt_layer_params *p = &d->p;
    vttt_layer_params *g = &d->g;
    int D = l->D, H = l->H, N = B * T, K = l->cfg.conv_kernel, err = VTTT_OK;
    size_t ND = (size_t)N * D;
    float *grads[2] = {d->dXQ, d->dXK};
    for (int i = 0; i < 2 && !err; i++) {
        err = ops->zero(be, d->tmp, ND);
        be->rotary_backward(d->tmp, grads[i], B, T, H, l->f, 0, l->b, l->cfg.rope_theta);
        if (!err) err = ops->copy(be, grads[i], d->tmp, ND);
    }
    if (!err) err = be->linear_backward(be->ctx, dx, g->wv, NULL, d->dXV, d->x, p->wv, N, D, D);
    if (!err && l->cfg.share_qk) {
        err = ops->zero(be, d->tmp, ND);
        be->conv1d_backward(d->tmp, g->conv_q_w, g->conv_q_b, d->dXQ, d->xqk, p->conv_q_w, d->conv0, B, T, D, K);
        be->conv1d_backward(d->tmp, g->conv_k_w, g->conv_k_b, d->dXK, d->xqk, p->conv_k_w, d->conv0, B, T, D, K);
        if (!err) err = be->linear_backward(be->ctx, dx, g->wq, NULL, d->tmp, d->x, p->wq, N, D, D);
    } else if (!err) {
        err = be->linear_backward(be->ctx, dx, g->wq, NULL, d->dXQ, d->x, p->wq, N, D, D);
        if (!err) err = be->linear_backward(be->ctx, dx, g->wk, NULL, d->dXK, d->x, p->wk, N, D, D);
    }
    if (!err) err = ops->lr_backward(be, d->tmp, d->dlr, d->lr, (size_t)N * H, l->cfg.base_lr / (float)l->f);
    if (!err) err = be->linear_backward(be->ctx, dx, g->lr_w, g->lr_b, d->tmp, d->x, p->lr_w, N, D, H);
    return err;
}

int vttt_layer_dev_backward(vttt_layer_dev *d, float *dx, const float *dy) {
    if (!d || !dx || !dy) return VTTT_EINVAL;
    if (!d->train) {
        vttt_log(&d->l->log, VTTT_LOG_ERROR, "device layer backward: no training forward to differentiate (call "
                                             "vttt_layer_dev_forward with train=1 first; prefill/decode overwrite it)");
        return VTTT_EINVAL;
    }
    const vttt_layer *l = d->l;
    const ttt_dev_ops *ops = d->ops;
    int B = d->B, T = d->T, N = B * T, err = VTTT_OK;
    size_t ND = (size_t)N * l->D, NH = (size_t)N * l->H;
    float *zeroed[] = {d->dZ, d->dXQ, d->dXK, d->dXV, dx};
    for (size_t i = 0; i < sizeof zeroed / sizeof zeroed[0] && !err; i++) err = ops->zero(d->be, zeroed[i], ND);
    if (!err) err = ops->zero(d->be, d->dlr, NH);
    if (!err) err = outer_out_backward(d, dx, dy, N);
    ttt_cuda_shape s = ttt_dev_shape(d, B, T);
    ttt_cuda_params ip = ttt_dev_inner_params(d);
    ttt_cuda_io io = {d->XQ, d->XK, d->XV, d->lr, d->Z};
    ttt_cuda_grads ig = {d->g.W1, d->g.b1, d->g.W2, d->g.b2, d->g.ln_w, d->g.ln_b, d->g.token_idx};
    if (!err)
        err = ops->backward(d->be, &s, &ip, &io, d->ckpt, d->group, d->dZ, d->dXQ, d->dXK, d->dXV, d->dlr, &ig, d->wsb,
                            d->wsb_bytes);
    if (!err) err = outer_in_backward(d, dx, B, T);
    return err;
}
