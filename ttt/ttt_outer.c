/*
 * The outer part of a TTT layer, around the inner loop: projections (or the
 * shared projection and conv_q/conv_k of the Mamba backbone), rotary on
 * positions mod the mini-batch size, the learning-rate gate, and after the
 * inner loop the post-norm, the optional gelu gate and o_proj.
 */
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "ttt_internal.h"

#define POST_LN_EPS 1e-6f

int ttt_outer_in_forward(const vttt_layer *l, const float *x, int B, int T, int64_t pos0, const float *conv_state,
                         float *XQ, float *XK, float *XV, float *lr, float *xqk) {
    const vttt_layer_params *p = &l->p;
    int D = l->D, H = l->H, N = B * T, K = l->cfg.conv_kernel;
    if (l->cfg.share_qk) {
        ttt_linear_forward(xqk, x, p->wq, NULL, N, D, D);
        ttt_conv1d_forward(XQ, xqk, p->conv_q_w, p->conv_q_b, conv_state, B, T, D, K);
        ttt_conv1d_forward(XK, xqk, p->conv_k_w, p->conv_k_b, conv_state, B, T, D, K);
    } else {
        ttt_linear_forward(XQ, x, p->wq, NULL, N, D, D);
        ttt_linear_forward(XK, x, p->wk, NULL, N, D, D);
    }
    ttt_linear_forward(XV, x, p->wv, NULL, N, D, D);
    ttt_rotary_forward(XQ, XQ, B, T, H, l->f, pos0, l->b, l->cfg.rope_theta);
    ttt_rotary_forward(XK, XK, B, T, H, l->f, pos0, l->b, l->cfg.rope_theta);
    /* lr (N,H) = sigmoid(x lr_w^T + lr_b) * base_lr / f */
    ttt_linear_forward(lr, x, p->lr_w, p->lr_b, N, D, H);
    ttt_sigmoid_forward(lr, lr, (size_t)N * H);
    float scale = l->cfg.base_lr / (float)l->f;
    for (size_t i = 0; i < (size_t)N * H; i++) lr[i] *= scale;
    return VTTT_OK;
}

void ttt_outer_in_backward(vttt_layer *l, float *dx, const float *x, const float *xqk, const float *conv0, float *dXQ,
                           float *dXK, const float *dXV, const float *dlr, const float *lr, float *tmp, int B, int T) {
    const vttt_layer_params *p = &l->p;
    vttt_layer_params *g = &l->g;
    int D = l->D, H = l->H, N = B * T, K = l->cfg.conv_kernel;
    /* rotary_backward accumulates, so it cannot run in place: rotate each
     * gradient back into a zeroed copy */
    float *rot = tmp;
    float *grads[2] = {dXQ, dXK};
    for (int i = 0; i < 2; i++) {
        memset(rot, 0, (size_t)N * D * sizeof(float));
        ttt_rotary_backward(rot, grads[i], B, T, H, l->f, 0, l->b, l->cfg.rope_theta);
        memcpy(grads[i], rot, (size_t)N * D * sizeof(float));
    }
    ttt_linear_backward(dx, g->wv, NULL, dXV, x, p->wv, N, D, D);
    if (l->cfg.share_qk) {
        float *dxqk = tmp;
        memset(dxqk, 0, (size_t)N * D * sizeof(float));
        ttt_conv1d_backward(dxqk, g->conv_q_w, g->conv_q_b, dXQ, xqk, p->conv_q_w, conv0, B, T, D, K);
        ttt_conv1d_backward(dxqk, g->conv_k_w, g->conv_k_b, dXK, xqk, p->conv_k_w, conv0, B, T, D, K);
        ttt_linear_backward(dx, g->wq, NULL, dxqk, x, p->wq, N, D, D);
    } else {
        ttt_linear_backward(dx, g->wq, NULL, dXQ, x, p->wq, N, D, D);
        ttt_linear_backward(dx, g->wk, NULL, dXK, x, p->wk, N, D, D);
    }
    /* lr = sig(a) * c  =>  da = dlr * lr * (1 - lr / c) */
    float c = l->cfg.base_lr / (float)l->f;
    float *da = tmp; /* (N,H) */
    for (size_t i = 0; i < (size_t)N * H; i++) da[i] = c > 0 ? dlr[i] * lr[i] * (1.0f - lr[i] / c) : 0.0f;
    ttt_linear_backward(dx, g->lr_w, g->lr_b, da, x, p->lr_w, N, D, H);
}

void ttt_outer_out_forward(const vttt_layer *l, float *y, const float *x, const float *Z, int B, int T, float *mean,
                           float *rstd, float *normed, float *gpre, float *tmp) {
    const vttt_layer_params *p = &l->p;
    int D = l->D, N = B * T;
    size_t ND = (size_t)N * D;
    float *nrm = normed ? normed : tmp;
    float *gp = gpre ? gpre : tmp + ND;
    ttt_layernorm_forward(nrm, mean, rstd, Z, p->post_w, p->post_b, N, D, POST_LN_EPS);
    const float *o = nrm;
    if (l->cfg.use_gate) {
        ttt_linear_forward(gp, x, p->wg, NULL, N, D, D);
        for (size_t i = 0; i < ND; i++) tmp[i] = ttt_gelu(gp[i]) * nrm[i]; /* in place when nrm == tmp */
        o = tmp;
    }
    ttt_linear_forward(y, o, p->wo, NULL, N, D, D);
}

void ttt_outer_out_backward(vttt_layer *l, float *dZ, float *dx, const float *dy, const float *x, const float *Z,
                            const float *mean, const float *rstd, const float *normed, const float *gpre,
                            float *tmp, int B, int T) {
    const vttt_layer_params *p = &l->p;
    vttt_layer_params *g = &l->g;
    int D = l->D, N = B * T;
    size_t ND = (size_t)N * D;
    float *o = tmp, *d_o = tmp + ND;
    if (l->cfg.use_gate)
        for (size_t i = 0; i < ND; i++) o[i] = ttt_gelu(gpre[i]) * normed[i];
    else
        memcpy(o, normed, ND * sizeof(float));
    memset(d_o, 0, ND * sizeof(float));
    ttt_linear_backward(d_o, g->wo, NULL, dy, o, p->wo, N, D, D);
    if (l->cfg.use_gate) {
        float *dg = o; /* o is no longer needed */
        for (size_t i = 0; i < ND; i++) {
            dg[i] = d_o[i] * normed[i] * ttt_gelu_d1(gpre[i]);
            d_o[i] *= ttt_gelu(gpre[i]);
        }
        ttt_linear_backward(dx, g->wg, NULL, dg, x, p->wg, N, D, D);
    }
    ttt_layernorm_backward(dZ, g->post_w, g->post_b, d_o, Z, p->post_w, mean, rstd, N, D);
}
