/*
 * A model's training step on a backend's device (model.h, "a training
 * step on a backend's device"): model_forward.c's train forward and
 * backward, step for step, with every op a backend-table op, a ttt_dev_ops
 * step (residual adds) or a vttt_layer_dev call for the TTT layers.
 *
 * Memory: one arena for the model's parameters, gradients and activations
 * (max_B x max_T rows; the LM head works on MODEL_HEAD_ROWS rows at a time
 * as on the CPU, so no (B, T, V) logits), plus each layer's own arena
 * (vttt_layer_dev). Host staging for the token ids and the loss is
 * allocated at init too.
 */
#include <stdlib.h>
#include <string.h>

#include "model_dev_internal.h"



/* model_params is a struct of float pointers only; see layer_dev.c. */
#define N_MODEL_PTRS (sizeof(model_params) / sizeof(float *))
static void mirror(model_params *dst, const model_params *src, const float *host, float *dev) {
    float *const *s = (float *const *)src;
    float **d = (float **)dst;
    for (size_t i = 0; i < N_MODEL_PTRS; i++) d[i] = s[i] ? dev + (s[i] - host) : NULL;
}

static void layout(vttt_model_dev *d, ttt_arena *a) {
    const vttt_model *m = d->m;
    size_t N = (size_t)d->max_B * d->max_T, L = m->L, D = m->D, I = m->I, pc = m->cfg.pre_conv;
    d->pmem = ttt_arena_floats(a, m->n_params);
    d->gmem = ttt_arena_floats(a, m->n_params);
    d->tokens = ttt_arena_take(a, N * sizeof(int32_t));
    d->targets = ttt_arena_take(a, N * sizeof(int32_t));
    d->fpos = ttt_arena_take(a, N * sizeof(int32_t));
    d->h = ttt_arena_floats(a, (L + 1) * N * D);
    d->h1 = pc ? ttt_arena_floats(a, L * N * D) : NULL;
    d->u = pc ? ttt_arena_floats(a, L * N * D) : NULL;
    d->h2 = ttt_arena_floats(a, L * N * D);
    d->xs = ttt_arena_floats(a, L * N * D);
    d->xf = ttt_arena_floats(a, L * N * D);
    d->gate = ttt_arena_floats(a, L * N * I);
    d->up = ttt_arena_floats(a, L * N * I);
    d->rstd = ttt_arena_floats(a, L * 3 * N);
    d->hf = ttt_arena_floats(a, N * D);
    d->rstd_f = ttt_arena_floats(a, N);
    d->losses = ttt_arena_floats(a, N);
    d->inv = ttt_arena_floats(a, N);
    float **nd[] = {&d->dhf, &d->dh, &d->dx, &d->tmp};
    for (size_t i = 0; i < sizeof nd / sizeof nd[0]; i++) *nd[i] = ttt_arena_floats(a, N * D);
    float **ni[] = {&d->act, &d->dact, &d->dup};
    for (size_t i = 0; i < sizeof ni / sizeof ni[0]; i++) *ni[i] = ttt_arena_floats(a, N * I);
    d->logits = ttt_arena_floats(a, (size_t)MODEL_HEAD_ROWS * m->V);
    d->dl = ttt_arena_floats(a, (size_t)MODEL_HEAD_ROWS * m->V);
}

static int check_model(const vttt_model *m, int max_B, int max_T) {
    if (m->cfg.seq_kind == VTTT_LAYER_ATTENTION) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model on a device: TTT models only (attention runs on the CPU)");
        return VTTT_ENOTSUP;
    }
    if (max_B < 1 || max_T < 1) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model on a device: need max_B, max_T >= 1 (got %d, %d)", max_B, max_T);
        return VTTT_EINVAL;
    }
    return VTTT_OK;
}

int vttt_model_dev_init(vttt_model_dev **out, vttt_model *m, const vttt_backend *be, int max_B, int max_T) {
    const ttt_dev_ops *ops = !be ? NULL : be->device == VTTT_DEVICE_CUDA ? ttt_dev_ops_cuda() : ttt_dev_ops_cpu();
    return ttt_model_dev_init_ops(out, m, be, ops, max_B, max_T);
}

int ttt_model_dev_init_ops(vttt_model_dev **out, vttt_model *m, const vttt_backend *be, const ttt_dev_ops *ops,
                           int max_B, int max_T) {
    if (!out || !m || !be) return VTTT_EINVAL;
    *out = NULL;
    int err = check_model(m, max_B, max_T);
    if (err) return err;
    if (!ops) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model on a device: the %s backend has no TTT kernels", be->name);
        return VTTT_ENOTSUP;
    }
    vttt_model_dev *d = calloc(1, sizeof *d);
    if (!d) return VTTT_ENOMEM;
    size_t N = (size_t)max_B * max_T;
    d->m = m, d->be = be, d->ops = ops, d->max_B = max_B, d->max_T = max_T;
    d->ld = calloc((size_t)m->L, sizeof *d->ld);
    d->h_tok = malloc(N * sizeof(int32_t));
    d->h_f = malloc(N * sizeof(float));
    err = d->ld && d->h_tok && d->h_f ? VTTT_OK : VTTT_ENOMEM;
    for (int i = 0; i < m->L && !err; i++) err = ttt_layer_dev_init_ops(&d->ld[i], m->layers[i], be, ops, max_B, max_T);
    ttt_arena plan = ttt_arena_plan();
    if (!err) layout(d, &plan);
    if (!err) err = ttt_arena_init(&d->arena, be, plan.used, &m->log, "model on a device");
    if (!err) {
        layout(d, &d->arena);
        mirror(&d->p, &m->p, m->param_mem, d->pmem);
        mirror(&d->g, &m->g, m->grad_mem, d->gmem);
        err = d->ops->zero(be, d->gmem, m->n_params);
    }
    if (!err) err = vttt_model_dev_upload(d);
    if (err) {
        vttt_model_dev_free(&d);
        return err;
    }
    *out = d;
    return VTTT_OK;
}

void vttt_model_dev_free(vttt_model_dev **dp) {
    if (!dp || !*dp) return;
    vttt_model_dev *d = *dp;
    for (int i = 0; d->ld && i < d->m->L; i++) vttt_layer_dev_free(&d->ld[i]);
    free(d->ld);
    if (d->arena.base) d->be->sync(d->be->ctx);
    ttt_arena_free(&d->arena);
    free(d->h_tok);
    free(d->h_f);
    free(d);
    *dp = NULL;
}

int vttt_model_dev_upload(vttt_model_dev *d) {
    if (!d) return VTTT_EINVAL;
    int err = d->be->to_device(d->be->ctx, d->pmem, d->m->param_mem, d->m->n_params * sizeof(float));
    for (int i = 0; i < d->m->L && !err; i++) err = vttt_layer_dev_upload(d->ld[i]);
    return err ? err : d->be->sync(d->be->ctx);
}

int vttt_model_dev_grads_to_host(vttt_model_dev *d) {
    if (!d) return VTTT_EINVAL;
    const vttt_model *m = d->m;
    float *host = malloc(m->n_params * sizeof(float)); /* outside the step loop: once per optimizer step */
    if (!host) return VTTT_ENOMEM;
    int err = d->be->to_host(d->be->ctx, host, d->gmem, m->n_params * sizeof(float));
    if (!err) err = d->ops->zero(d->be, d->gmem, m->n_params);
    for (size_t i = 0; !err && i < m->n_params; i++) m->grad_mem[i] += host[i];
    free(host);
    for (int i = 0; i < m->L && !err; i++) err = vttt_layer_dev_grads_to_host(d->ld[i]);
    return err;
}

/* ---- forward ------------------------------------------------------------------------------- */

/* Block i's buffers over N rows (model_forward.c train_io). */
block_io ttt_model_dev_io(vttt_model_dev *d, int i, int N) {
    size_t ND = (size_t)N * d->m->D, NI = (size_t)N * d->m->I;
    int pc = d->m->cfg.pre_conv;
    block_io io;
    io.h_in = d->h + i * ND;
    io.h1 = pc ? d->h1 + i * ND : io.h_in;
    io.h2 = d->h2 + i * ND;
    io.h_out = d->h + (i + 1) * ND;
    io.u = pc ? d->u + i * ND : NULL;
    io.xs = d->xs + i * ND;
    io.xf = d->xf + i * ND;
    io.gate = d->gate + i * NI;
    io.up = d->up + i * NI;
    io.act = d->act;
    io.rstd = d->rstd + (size_t)i * 3 * N;
    io.tmp = d->tmp;
    return io;
}

/* model_block_forward on the device. */
static int block_forward(vttt_model_dev *d, int i, const block_io *io, int B, int T) {
    const vttt_model *m = d->m;
    const vttt_backend *be = d->be;
    const model_params *p = &d->p;
    int N = B * T, D = m->D, I = m->I, K = m->K, err = VTTT_OK;
    size_t ND = (size_t)N * D, iD = (size_t)i * D, iDI = (size_t)i * D * I;
    float eps = m->cfg.rms_norm_eps;
    if (m->cfg.pre_conv) {
        be->rmsnorm_forward(io->u, io->rstd, io->h_in, p->conv_norm + iD, N, D, eps);
        be->conv1d_forward(io->tmp, io->u, p->conv_w + iD * K, p->conv_b + iD, NULL, B, T, D, K);
        err = d->ops->add(be, io->h1, io->h_in, io->tmp, ND);
    }
    be->rmsnorm_forward(io->xs, io->rstd + N, io->h1, p->seq_norm + iD, N, D, eps);
    if (!err) err = vttt_layer_dev_forward(d->ld[i], io->tmp, io->xs, B, T, 1);
    if (!err) err = d->ops->add(be, io->h2, io->h1, io->tmp, ND);
    be->rmsnorm_forward(io->xf, io->rstd + 2 * (size_t)N, io->h2, p->ffn_norm + iD, N, D, eps);
    if (!err) err = be->linear_forward(be->ctx, io->gate, io->xf, p->gate_proj + iDI, NULL, N, D, I);
    if (!err) err = be->linear_forward(be->ctx, io->up, io->xf, p->up_proj + iDI, NULL, N, D, I);
    be->swiglu_forward(io->act, io->gate, io->up, (size_t)N * I);
    if (!err) err = be->linear_forward(be->ctx, io->tmp, io->act, p->down_proj + iDI, NULL, N, I, D);
    if (!err) err = d->ops->add(be, io->h_out, io->h2, io->tmp, ND);
    return err;
}

/* The LM head and the loss over N rows, MODEL_HEAD_ROWS at a time, with
 * the gradient of the mean loss taken right away: dhf and the head
 * weight's gradient accumulate (as model_head_rows). */
static int head_train(vttt_model_dev *d, int N) {
    const vttt_model *m = d->m;
    const vttt_backend *be = d->be;
    const float *W = m->cfg.tie_word_embeddings ? d->p.embed : d->p.lm_head;
    float *gW = m->cfg.tie_word_embeddings ? d->g.embed : d->g.lm_head;
    int V = m->V, D = m->D, err = VTTT_OK;
    for (int r0 = 0; r0 < N && !err; r0 += MODEL_HEAD_ROWS) {
        int r = N - r0 < MODEL_HEAD_ROWS ? N - r0 : MODEL_HEAD_ROWS;
        const float *hf = d->hf + (size_t)r0 * D;
        err = be->linear_forward(be->ctx, d->logits, hf, W, NULL, r, D, V);
        if (!err) err = be->xent_forward(d->losses + r0, d->logits, d->targets + r0, r, V);
        if (!err) err = d->ops->zero(be, d->dl, (size_t)r * V);
        if (err) break;
        be->xent_backward(d->dl, d->inv + r0, d->logits, d->targets + r0, r, V);
        err = be->linear_backward(be->ctx, d->dhf + (size_t)r0 * D, gW, NULL, d->dl, hf, W, r, D, V);
    }
    return err;
}

/* Token ids, targets, in-frame positions and the loss weights to the
 * device; *count: the counted targets. */
static int upload_ids(vttt_model_dev *d, const int32_t *tokens, const int32_t *targets, int B, int T,
                      int64_t *count) {
    vttt_model *m = d->m;
    const vttt_backend *be = d->be;
    size_t N = (size_t)B * T;
    int err = be->to_device(be->ctx, d->tokens, tokens, N * sizeof(int32_t));
    if (!err) err = model_targets(m, d->h_tok, tokens, targets, B, T, count);
    if (!err) err = be->to_device(be->ctx, d->targets, d->h_tok, N * sizeof(int32_t));
    if (!err) err = be->sync(be->ctx); /* the staging buffers are reused below */
    float inv = *count > 0 ? 1.0f / (float)*count : 0.0f;
    for (size_t n = 0; n < N; n++) d->h_f[n] = inv;
    if (!err) err = be->to_device(be->ctx, d->inv, d->h_f, N * sizeof(float));
    if (!err && m->P) {
        if (!(err = be->sync(be->ctx)))
            for (size_t n = 0; n < N; n++) d->h_tok[n] = (int32_t)((n % (size_t)T) % (size_t)m->P);
        if (!err) err = be->to_device(be->ctx, d->fpos, d->h_tok, N * sizeof(int32_t));
    }
    return err ? err : be->sync(be->ctx);
}

static int forward(vttt_model_dev *d, const int32_t *tokens, const int32_t *targets, int B, int T, float *loss) {
    vttt_model *m = d->m;
    const vttt_backend *be = d->be;
    int N = B * T, D = m->D, err;
    int64_t count = 0;
    if ((err = upload_ids(d, tokens, targets, B, T, &count))) return err;
    if ((err = be->embedding_forward(d->h, d->tokens, d->p.embed, N, m->V, D))) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model on a device: a token is outside the vocabulary 0..%d", m->V - 1);
        return err;
    }
    if (m->P) {
        err = be->embedding_forward(d->tmp, d->fpos, d->p.frame_pos, N, m->P, D);
        if (!err) err = d->ops->add(be, d->h, d->h, d->tmp, (size_t)N * D);
    }
    for (int i = 0; i < m->L && !err; i++) {
        block_io io = ttt_model_dev_io(d, i, N);
        err = block_forward(d, i, &io, B, T);
    }
    if (err) return err;
    be->rmsnorm_forward(d->hf, d->rstd_f, d->h + (size_t)m->L * N * D, d->p.norm, N, D, m->cfg.rms_norm_eps);
    if ((err = d->ops->zero(be, d->dhf, (size_t)N * D))) return err;
    if ((err = head_train(d, N))) return err;
    if ((err = be->to_host(be->ctx, d->h_f, d->losses, (size_t)N * sizeof(float)))) return err;
    if (loss) *loss = model_mean_loss(d->h_f, (size_t)N, count);
    return VTTT_OK;
}

/* ---- backward -------------------------------------------------------------------------------- */

/* model_forward.c block_backward: dh (N, D) holds the gradient of block
 * i's output on entry and of its input on exit. */
static int block_backward(vttt_model_dev *d, int i, int B, int T) {
    const vttt_model *m = d->m;
    const vttt_backend *be = d->be;
    const ttt_dev_ops *ops = d->ops;
    const model_params *p = &d->p;
    model_params *g = &d->g;
    int N = B * T, D = m->D, I = m->I, K = m->K, err;
    size_t NI = (size_t)N * I, ND = (size_t)N * D, iD = (size_t)i * D, iDI = (size_t)i * D * I;
    block_io io = ttt_model_dev_io(d, i, N);
    float *dh = d->dh, *dx = d->dx, *dgate = d->act;
    be->swiglu_forward(d->act, io.gate, io.up, NI); /* recomputed rather than kept */
    err = ops->zero(be, d->dact, NI);
    if (!err) err = be->linear_backward(be->ctx, d->dact, g->down_proj + iDI, NULL, dh, d->act, p->down_proj + iDI,
                                        N, I, D);
    if (!err) err = ops->zero(be, dgate, NI);
    if (!err) err = ops->zero(be, d->dup, NI);
    if (err) return err;
    be->swiglu_backward(dgate, d->dup, d->dact, io.gate, io.up, NI);
    err = ops->zero(be, dx, ND);
    if (!err)
        err = be->linear_backward(be->ctx, dx, g->gate_proj + iDI, NULL, dgate, io.xf, p->gate_proj + iDI, N, D, I);
    if (!err) err = be->linear_backward(be->ctx, dx, g->up_proj + iDI, NULL, d->dup, io.xf, p->up_proj + iDI, N, D, I);
    if (err) return err;
    be->rmsnorm_backward(dh, g->ffn_norm + iD, dx, io.h2, p->ffn_norm + iD, io.rstd + 2 * (size_t)N, N, D);
    if ((err = vttt_layer_dev_backward(d->ld[i], dx, dh))) return err;
    be->rmsnorm_backward(dh, g->seq_norm + iD, dx, io.h1, p->seq_norm + iD, io.rstd + N, N, D);
    if (m->cfg.pre_conv) {
        if ((err = ops->zero(be, dx, ND))) return err;
        be->conv1d_backward(dx, g->conv_w + iD * K, g->conv_b + iD, dh, io.u, p->conv_w + iD * K, NULL, B, T, D, K);
        be->rmsnorm_backward(dh, g->conv_norm + iD, dx, io.h_in, p->conv_norm + iD, io.rstd, N, D);
    }
    return VTTT_OK;
}

static int backward(vttt_model_dev *d, int B, int T) {
    const vttt_model *m = d->m;
    const vttt_backend *be = d->be;
    int N = B * T, D = m->D, err = d->ops->zero(be, d->dh, (size_t)N * D);
    if (err) return err;
    be->rmsnorm_backward(d->dh, d->g.norm, d->dhf, d->h + (size_t)m->L * N * D, d->p.norm, d->rstd_f, N, D);
    for (int i = m->L - 1; i >= 0 && !err; i--) err = block_backward(d, i, B, T);
    if (err) return err;
    be->embedding_backward(d->g.embed, d->dh, d->tokens, N, D);
    if (m->P) be->embedding_backward(d->g.frame_pos, d->dh, d->fpos, N, D);
    return d->be->sync(be->ctx);
}

int vttt_model_dev_step(vttt_model_dev *d, const int32_t *tokens, const int32_t *targets, int B, int T, float *loss) {
    if (!d || !tokens) return VTTT_EINVAL;
    if (B < 1 || B > d->max_B || T < 1 || T > d->max_T) {
        vttt_log(&d->m->log, VTTT_LOG_ERROR, "model on a device: B=%d, T=%d outside 1..%d, 1..%d (the sizes given "
                                             "to vttt_model_dev_init)", B, T, d->max_B, d->max_T);
        return VTTT_EINVAL;
    }
    int err = forward(d, tokens, targets, B, T, loss);
    return err ? err : backward(d, B, T);
}
