/*
 * Generation on the device: a state (inner weights committed at the last
 * mini-batch boundary, the running mini-batch's gradient sum, the conv
 * inputs, the position) in its own arena, prefill and decode.
 *
 * Decode through CUDA graphs: everything a step launches depends on the
 * position only through pos mod b (rotary uses positions mod b; the token
 * kernel uses the index in the mini-batch and commits at its end), so one
 * graph per index i < b, captured the first time that index comes and
 * replayed afterwards, reproduces every step. The graphs read the state's
 * own xin and write yout (a graph's pointers are fixed), so a step is
 * copy in, replay, copy out. If capturing fails (a backend or driver
 * without it), the state falls back to launching op by op, for good.
 */
#include <stdlib.h>
#include <string.h>

#include "layer_dev_internal.h"

static size_t conv_floats(const vttt_layer *l, int B) {
    return l->cfg.share_qk ? (size_t)B * (l->cfg.conv_kernel - 1) * l->D : 0;
}

static void state_layout(vttt_state_dev *s, ttt_arena *a) {
    const vttt_layer *l = s->d->l;
    ttt_cuda_shape sh = ttt_dev_shape(s->d, s->B, 1);
    size_t NS = (size_t)s->B * l->H * ttt_cuda_state_numel(&sh);
    s->W0 = ttt_arena_floats(a, NS);
    s->A = ttt_arena_floats(a, NS);
    s->conv_state = conv_floats(l, s->B) ? ttt_arena_floats(a, conv_floats(l, s->B)) : NULL;
    s->xin = ttt_arena_floats(a, (size_t)s->B * l->D);
    s->yout = ttt_arena_floats(a, (size_t)s->B * l->D);
}

int vttt_state_dev_init(vttt_state_dev **out, vttt_layer_dev *d, int B) {
    if (!out || !d) return VTTT_EINVAL;
    *out = NULL;
    int err = ttt_dev_check_bt(d, B, 1, "device state");
    if (err) return err;
    vttt_state_dev *s = calloc(1, sizeof *s);
    void **graph = calloc((size_t)d->l->b, sizeof *graph);
    if (!s || !graph) {
        free(s), free(graph);
        return VTTT_ENOMEM;
    }
    s->d = d, s->B = B, s->graph = graph, s->graph_epoch = d->graph_epoch;
    s->use_graphs = d->ops->graph_begin != NULL;
    ttt_arena plan = ttt_arena_plan();
    state_layout(s, &plan);
    err = ttt_arena_init(&s->arena, d->be, plan.used, &d->l->log, "device state");
    if (!err) {
        state_layout(s, &s->arena);
        err = vttt_state_dev_reset(s);
    }
    if (err) {
        vttt_state_dev_free(&s);
        return err;
    }
    *out = s;
    return VTTT_OK;
}

static void drop_graphs(vttt_state_dev *s) {
    for (int i = 0; s->graph && i < s->d->l->b; i++)
        if (s->graph[i]) {
            s->d->ops->graph_free(s->graph[i]);
            s->graph[i] = NULL;
        }
    s->captured = 0;
}

void vttt_state_dev_free(vttt_state_dev **sp) {
    if (!sp || !*sp) return;
    vttt_state_dev *s = *sp;
    if (s->arena.base) s->d->be->sync(s->d->be->ctx);
    drop_graphs(s);
    free(s->graph);
    ttt_arena_free(&s->arena);
    free(s);
    *sp = NULL;
}

/* Back to position 0 with the layer's learned initial state (as uploaded
 * last). The graphs stay valid: they point at the same buffers. */
int vttt_state_dev_reset(vttt_state_dev *s) {
    if (!s) return VTTT_EINVAL;
    vttt_layer_dev *d = s->d;
    ttt_cuda_shape sh = ttt_dev_shape(d, s->B, 1);
    ttt_cuda_params ip = ttt_dev_inner_params(d);
    s->pos = 0;
    int err = d->ops->state_init(d->be, &sh, &ip, s->W0, s->A);
    if (!err && s->conv_state) err = d->ops->zero(d->be, s->conv_state, conv_floats(d->l, s->B));
    return err;
}

int64_t vttt_state_dev_position(const vttt_state_dev *s) { return s ? s->pos : -1; }

void ttt_state_dev_set_graphs(vttt_state_dev *s, int on) { s->use_graphs = on && s->d->ops->graph_begin != NULL; }

void ttt_state_dev_graph_counts(const vttt_state_dev *s, long *replays, int *captured) {
    if (replays) *replays = s->replays;
    if (captured) *captured = s->captured;
}

int ttt_state_dev_download(const vttt_state_dev *s, float *W0, float *A) {
    const vttt_backend *be = s->d->be;
    ttt_cuda_shape sh = ttt_dev_shape(s->d, s->B, 1);
    size_t bytes = (size_t)s->B * s->d->l->H * ttt_cuda_state_numel(&sh) * sizeof(float);
    int err = be->to_host(be->ctx, W0, s->W0, bytes);
    return err ? err : be->to_host(be->ctx, A, s->A, bytes);
}

/* T tokens (x, y (B,T,D), T <= max_T) from the state; the position is not
 * advanced here. decode: the inner step is the token kernel (T == 1). */
static int run_tokens(vttt_layer_dev *d, vttt_state_dev *s, float *y, const float *x, int T, int decode) {
    const vttt_layer *l = d->l;
    int err = ttt_dev_outer_in(d, x, s->B, T, s->pos, s->conv_state);
    if (!err && s->conv_state)
        err = d->ops->conv_state_update(d->be, s->conv_state, d->xqk, s->B, T, l->D, l->cfg.conv_kernel);
    ttt_cuda_shape sh = ttt_dev_shape(d, s->B, T);
    ttt_cuda_params ip = ttt_dev_inner_params(d);
    ttt_cuda_io io = {d->XQ, d->XK, d->XV, d->lr, d->Z};
    if (!err && decode) err = d->ops->decode(d->be, &sh, &ip, &io, s->pos, s->W0, s->A);
    else if (!err) err = d->ops->prefill(d->be, &sh, &ip, &io, s->pos, s->W0, s->A, NULL, 0, d->wsf, d->wsf_bytes);
    return err ? err : ttt_dev_outer_out(d, y, x, s->B, T);
}

static int check_state(vttt_layer_dev *d, vttt_state_dev *s, const void *y, const void *x, const char *what) {
    if (!d || !s || !y || !x) return VTTT_EINVAL;
    if (s->d != d) {
        vttt_log(&d->l->log, VTTT_LOG_ERROR, "%s: the state belongs to another device layer", what);
        return VTTT_EINVAL;
    }
    d->train = 0; /* the activation buffers are about to be overwritten */
    return VTTT_OK;
}

int vttt_layer_dev_prefill(vttt_layer_dev *d, vttt_state_dev *s, float *y, const float *x, int T) {
    int err = check_state(d, s, y, x, "device prefill");
    if (!err) err = ttt_position_check(&d->l->log, "device prefill", s->pos, T);
    if (err) return err;
    if (T < 1 || (T > d->max_T && s->B > 1)) {
        vttt_log(&d->l->log, VTTT_LOG_ERROR, "device prefill: T=%d must be 1..%d for B=%d sequences (max_T of "
                                             "vttt_layer_dev_init; B=1 prefills any T in chunks)",
                 T, d->max_T, s->B);
        return VTTT_EINVAL;
    }
    size_t D = (size_t)d->l->D;
    for (int t = 0; t < T && !err; t += d->max_T) { /* with B == 1 a chunk of rows is contiguous */
        int n = T - t < d->max_T ? T - t : d->max_T;
        err = run_tokens(d, s, y + (size_t)t * D, x + (size_t)t * D, n, 0);
        if (!err) s->pos += n;
    }
    return err;
}

/* Captures the step at mini-batch index i into s->graph[i]. A failed
 * capture turns graphs off for this state (logged at info level): the
 * step is then launched directly by the caller. */
static int capture(vttt_layer_dev *d, vttt_state_dev *s, int i) {
    const ttt_dev_ops *ops = d->ops;
    int err = ops->graph_begin(d->be);
    if (!err) {
        int step = run_tokens(d, s, s->yout, s->xin, 1, 1);
        err = ops->graph_end(d->be, &s->graph[i]);
        if (!err && step) err = step;
    }
    if (err || !s->graph[i]) {
        if (s->graph[i]) ops->graph_free(s->graph[i]);
        s->graph[i] = NULL;
        vttt_log(&d->l->log, VTTT_LOG_INFO, "device decode: CUDA graph capture failed (%s); launching op by op",
                 vttt_strerror(err ? err : VTTT_ENOTSUP));
        drop_graphs(s);
        s->use_graphs = 0;
        return VTTT_ENOTSUP;
    }
    s->captured++;
    return VTTT_OK;
}

int vttt_layer_dev_decode(vttt_layer_dev *d, vttt_state_dev *s, float *y, const float *x) {
    int err = check_state(d, s, y, x, "device decode");
    if (err) return err;
    size_t BD = (size_t)s->B * d->l->D;
    int i = (int)(s->pos % d->l->b);
    if (s->graph_epoch != d->graph_epoch) { /* the layer's op sequence changed since the capture */
        drop_graphs(s);
        s->graph_epoch = d->graph_epoch;
    }
    if (s->use_graphs && !s->graph[i]) capture(d, s, i);
    if (!s->use_graphs) {
        err = run_tokens(d, s, y, x, 1, 1);
    } else {
        err = d->ops->copy(d->be, s->xin, x, BD);
        if (!err) err = d->ops->graph_launch(d->be, s->graph[i]);
        if (!err) err = d->ops->copy(d->be, y, s->yout, BD);
        if (!err) s->replays++;
    }
    if (!err) s->pos++;
    return err;
}
