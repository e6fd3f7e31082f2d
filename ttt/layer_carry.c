/*
 * Train forward of a layer from a carried per-sequence state, and the
 * matching truncated backward. The forward is ttt_forward's train path with
 * the inner loop started from the state's W0 (and A) at the state's
 * position, and the share_qk conv fed with the state's last inputs; the
 * layer's training activations are the same, so the layer's own backward
 * applies.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "layer_carry.h"
#include "ops.h"
#include "par.h"
#include "ttt_internal.h"

/* The inner loop of every (sequence, head) from the state, keeping the
 * training checkpoints of the layer's cache. */
static void carry_heads(vttt_layer *l, vttt_state *s, int T) {
    struct ttt_cache *c = l->tc;
    size_t numel = s->inner_numel;
    int H = l->H, B = s->B;
    int blas_threads = ttt_blas_serial_begin(); /* the heads run in parallel, each serial */
    double work = (double)B * H * T * numel * VTTT_COST_TTT;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->nthreads) if (VTTT_PAR(work))
    for (int bh = 0; bh < B * H; bh++)
        ttt_head_run(l, omp_get_thread_num(), bh / H, bh % H, T, s->pos, s->W0 + (size_t)bh * numel,
                     s->A + (size_t)bh * numel, c->ckpt + (size_t)bh * c->n_groups * numel, c->group);
    ttt_blas_serial_end(blas_threads);
}

int ttt_layer_forward_carry(vttt_layer *l, vttt_state *s, float *y, const float *x, int T) {
    if (!l || !s || !y || !x || T <= 0 || s->l != l) return VTTT_EINVAL;
    int B = s->B, err;
    if (l->cfg.kind == VTTT_LAYER_ATTENTION) return vttt_layer_forward(l, y, x, B, T, VTTT_FORM_DUAL, 1);
    if ((err = ttt_position_check(&l->log, "carried train forward", s->pos, T))) return err;
    if (s->pos % l->b != 0) {
        vttt_log(&l->log, VTTT_LOG_ERROR,
                 "carried train forward: the state is at position %lld, inside a mini-batch of %d; windows must "
                 "start at mini-batch boundaries",
                 (long long)s->pos, l->b);
        return VTTT_EINVAL;
    }
    size_t ND = (size_t)B * T * l->D;
    if ((err = ttt_check_finite(l, "layer forward input", x, ND))) return err;
    if ((err = ttt_cache_reserve(l, B, T, 1))) return err;
    struct ttt_cache *c = l->tc;
    memcpy(c->x, x, ND * sizeof(float));
    ttt_outer_in_forward(l, x, B, T, s->pos, s->conv_state, c->XQ, c->XK, c->XV, c->lr, c->xqk);
    if (l->cfg.share_qk) {
        memcpy(c->conv0, s->conv_state, (size_t)B * (l->cfg.conv_kernel - 1) * l->D * sizeof(float));
        ttt_conv1d_state_update(s->conv_state, c->xqk, B, T, l->D, l->cfg.conv_kernel);
    }
    carry_heads(l, s, T);
    ttt_outer_out_forward(l, y, x, c->Z, B, T, c->mean, c->rstd, c->normed, c->gpre, c->tmp);
    c->train = 1;
    s->pos += T;
    return VTTT_OK;
}

int ttt_layer_backward_carry(vttt_layer *l, float *dx, const float *dy, int truncate) {
    if (!l) return VTTT_EINVAL;
    if (!truncate || l->cfg.kind == VTTT_LAYER_ATTENTION) return vttt_layer_backward(l, dx, dy);
    /* The layer's backward adds the start state's gradient to the learned
     * initial state; the carried state is a constant, so keep those
     * gradients as they were. */
    vttt_layer_params *g = &l->g;
    size_t n1 = (size_t)l->H * l->f * l->h1, nb1 = (size_t)l->H * l->h1, nb2 = (size_t)l->H * l->f;
    int mlp = l->cfg.kind == VTTT_LAYER_TTT_MLP;
    struct { float *p; size_t n; } keep[4] = {{g->W1, n1}, {g->b1, nb1}, {g->W2, mlp ? n1 : 0}, {g->b2, mlp ? nb2 : 0}};
    size_t total = 0;
    for (int i = 0; i < 4; i++) total += keep[i].n;
    float *saved = malloc(total * sizeof(float));
    if (!saved) return VTTT_ENOMEM;
    for (size_t i = 0, off = 0; i < 4; off += keep[i++].n)
        if (keep[i].n) memcpy(saved + off, keep[i].p, keep[i].n * sizeof(float));
    int err = vttt_layer_backward(l, dx, dy);
    for (size_t i = 0, off = 0; i < 4; off += keep[i++].n)
        if (keep[i].n) memcpy(keep[i].p, saved + off, keep[i].n * sizeof(float));
    free(saved);
    return err;
}

int ttt_layer_state_copy(vttt_state *d, const vttt_state *s) {
    if (!d || !s || d->l != s->l || d->B != s->B || (s->k_cache && d->max_T < s->pos)) return VTTT_EINVAL;
    const vttt_layer *l = s->l;
    size_t rowlen = (size_t)l->D * sizeof(float);
    if (s->W0) {
        size_t n = (size_t)s->B * l->H * s->inner_numel * sizeof(float);
        memcpy(d->W0, s->W0, n);
        memcpy(d->A, s->A, n);
    }
    if (s->conv_state) memcpy(d->conv_state, s->conv_state, (size_t)s->B * (l->cfg.conv_kernel - 1) * rowlen);
    for (int b = 0; s->k_cache && b < s->B; b++) {
        memcpy(d->k_cache + (size_t)b * d->max_T * l->D, s->k_cache + (size_t)b * s->max_T * l->D, s->pos * rowlen);
        memcpy(d->v_cache + (size_t)b * d->max_T * l->D, s->v_cache + (size_t)b * s->max_T * l->D, s->pos * rowlen);
    }
    d->pos = s->pos;
    return VTTT_OK;
}
