/*
 * The model's training forward and backward: embedding, blocks (pre-conv,
 * sequence layer, SwiGLU, each behind an RMSNorm with a residual), final
 * RMSNorm and the LM head with the cross-entropy. The LM head works on
 * MODEL_HEAD_ROWS rows at a time and, in training, takes the gradient of
 * the mean loss right away (into d hf and the LM-head weight's gradient
 * scratch), so no (B, T, V) logits are kept; the backward scales them by
 * dloss.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "layer_carry.h"
#include "model_internal.h"
#include "ops.h"
#include "par.h"

int model_embed(vttt_model *m, float *h, const int32_t *tokens, int B, int T, int64_t pos0) {
    int N = B * T, D = m->D;
    if (ttt_embedding_forward(h, tokens, m->p.embed, N, m->V, D)) {
        for (int n = 0; n < N; n++)
            if (tokens[n] < 0 || tokens[n] >= m->V) {
                vttt_log(&m->log, VTTT_LOG_ERROR, "model: token %d at (sequence %d, position %d) is outside the "
                         "vocabulary 0..%d", tokens[n], n / T, n % T, m->V - 1);
                break;
            }
        return VTTT_EINVAL;
    }
    if (!m->P) return VTTT_OK;
#pragma omp parallel for if (VTTT_PAR((double)N * D * VTTT_COST_COPY))
    for (int n = 0; n < N; n++) {
        const float *e = m->p.frame_pos + (size_t)((pos0 + n % T) % m->P) * D;
        float *o = h + (size_t)n * D;
        for (int i = 0; i < D; i++) o[i] += e[i];
    }
    return VTTT_OK;
}

/* out (n) = a + b, elementwise; out may alias a. */
static void add_rows(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for if (VTTT_PAR((double)n * VTTT_COST_COPY))
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* out (N, OC) = inp (N, C) w (OC, C)^T. A few rows (decode) go through
 * matrix-vector products: a GEMM would pack all of w on every call. */
static void linear_rows(float *out, const float *inp, const float *w, int N, int C, int OC) {
    if (N > 4) {
        ttt_linear_forward(out, inp, w, NULL, N, C, OC);
        return;
    }
    for (int n = 0; n < N; n++)
        ttt_sgemm(0, 1, 1, OC, C, 1.0f, inp + (size_t)n * C, C, w, C, 0.0f, out + (size_t)n * OC, OC);
}

static int seq_forward(vttt_model *m, int i, const block_io *io, int B, int T, seq_mode mode, vttt_state *ls) {
    vttt_layer *l = m->layers[i];
    switch (mode) {
    case SEQ_TRAIN: return vttt_layer_forward(l, io->tmp, io->xs, B, T, VTTT_FORM_DUAL, 1);
    case SEQ_CARRY: return ttt_layer_forward_carry(l, ls, io->tmp, io->xs, T);
    default: return vttt_layer_prefill(l, ls, io->tmp, io->xs, T);
    }
}

int model_block_forward(vttt_model *m, int i, const block_io *io, int B, int T, seq_mode mode, vttt_state *ls,
                        float *conv_state) {
    const model_params *p = &m->p;
    int N = B * T, D = m->D, I = m->I, K = m->K;
    size_t ND = (size_t)N * D;
    float eps = m->cfg.rms_norm_eps;
    if (m->cfg.pre_conv) {
        ttt_rmsnorm_forward(io->u, io->rstd, io->h_in, p->conv_norm + (size_t)i * D, N, D, eps);
        ttt_conv1d_forward(io->tmp, io->u, p->conv_w + (size_t)i * D * K, p->conv_b + (size_t)i * D, conv_state, B,
                           T, D, K);
        if (conv_state) ttt_conv1d_state_update(conv_state, io->u, B, T, D, K);
        add_rows(io->h1, io->h_in, io->tmp, ND);
    }
    ttt_rmsnorm_forward(io->xs, io->rstd + N, io->h1, p->seq_norm + (size_t)i * D, N, D, eps);
    int err = seq_forward(m, i, io, B, T, mode, ls);
    if (err) return err;
    add_rows(io->h2, io->h1, io->tmp, ND);
    ttt_rmsnorm_forward(io->xf, io->rstd + 2 * (size_t)N, io->h2, p->ffn_norm + (size_t)i * D, N, D, eps);
    linear_rows(io->gate, io->xf, p->gate_proj + (size_t)i * I * D, N, D, I);
    linear_rows(io->up, io->xf, p->up_proj + (size_t)i * I * D, N, D, I);
    ttt_swiglu_forward(io->act, io->gate, io->up, (size_t)N * I);
    linear_rows(io->tmp, io->act, p->down_proj + (size_t)i * D * I, N, I, D);
    add_rows(io->h_out, io->h2, io->tmp, ND);
    return VTTT_OK;
}

void model_head_rows(vttt_model *m, const float *hf, int n, const int32_t *targets, float *losses, float *logits,
                     float *dhf, float inv_count) {
    const float *W = model_head_w(m);
    int V = m->V, D = m->D;
    for (int r0 = 0; r0 < n; r0 += MODEL_HEAD_ROWS) {
        int r = n - r0 < MODEL_HEAD_ROWS ? n - r0 : MODEL_HEAD_ROWS;
        float *lg = logits ? logits + (size_t)r0 * V : m->scr.logits;
        linear_rows(lg, hf + (size_t)r0 * D, W, r, D, V);
        if (losses) ttt_xent_forward(losses + r0, lg, targets + r0, r, V); /* targets checked by the caller */
        if (!dhf) continue;
        float *dl = m->acts.dlogits;
        memset(dl, 0, (size_t)r * V * sizeof(float));
        ttt_xent_backward(dl, NULL, lg, targets + r0, r, V);
        for (size_t j = 0; j < (size_t)r * V; j++) dl[j] *= inv_count;
        ttt_linear_backward(dhf + (size_t)r0 * D, m->acts.dlm, NULL, dl, hf + (size_t)r0 * D, W, r, D, V);
    }
}

int model_targets(vttt_model *m, int32_t *out, const int32_t *tokens, const int32_t *targets, int B, int T,
                  int64_t *count) {
    int shift = vttt_model_config_target_shift(&m->cfg);
    int64_t c = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)b * T + t;
            int32_t y = targets ? targets[n] : t + shift < T ? tokens[n + shift] : -1;
            if (y >= m->V) {
                vttt_log(&m->log, VTTT_LOG_ERROR, "model: target %d at (sequence %d, position %d) is outside the "
                         "vocabulary 0..%d", y, b, t, m->V - 1);
                return VTTT_EINVAL;
            }
            out[n] = y < 0 ? -1 : y;
            c += y >= 0;
        }
    }
    *count = c;
    return VTTT_OK;
}

int model_targets_reserve(vttt_model *m, size_t N) {
    model_acts *a = &m->acts;
    if (N <= a->cap_tgt) return VTTT_OK;
    free(a->tokens), free(a->targets), free(a->losses);
    a->tokens = malloc(N * sizeof(int32_t));
    a->targets = malloc(N * sizeof(int32_t));
    a->losses = malloc(N * sizeof(float));
    a->cap_tgt = a->tokens && a->targets && a->losses ? N : 0;
    if (a->cap_tgt) return VTTT_OK;
    free(a->tokens), free(a->targets), free(a->losses);
    a->tokens = a->targets = NULL, a->losses = NULL;
    vttt_log(&m->log, VTTT_LOG_ERROR, "model: out of memory for %zu targets", N);
    return VTTT_ENOMEM;
}

/* Grows the training activations to N = B*T rows. */
static int acts_reserve(vttt_model *m, int B, int T) {
    model_acts *a = &m->acts;
    size_t N = (size_t)B * T, L = m->L, D = m->D, I = m->I;
    int err;
    a->valid = 0;
    if ((err = model_targets_reserve(m, N))) return err;
    if (N > a->cap_rows) {
        int pc = m->cfg.pre_conv;
        struct { float **p; size_t n; } t[] = {
            {&a->h, (L + 1) * N * D},   {&a->h1, pc ? L * N * D : 0}, {&a->h2, L * N * D},
            {&a->u, pc ? L * N * D : 0}, {&a->xs, L * N * D},         {&a->xf, L * N * D},
            {&a->gate, L * N * I},      {&a->up, L * N * I},          {&a->rstd, L * 3 * N},
            {&a->hf, N * D},            {&a->rstd_f, N},              {&a->dhf, N * D},
        };
        a->cap_rows = 0;
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            free(*t[i].p);
            *t[i].p = NULL;
        }
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            if (t[i].n && !(*t[i].p = malloc(t[i].n * sizeof(float)))) {
                vttt_log(&m->log, VTTT_LOG_ERROR, "model: out of memory for training activations (B=%d, T=%d)", B, T);
                return VTTT_ENOMEM;
            }
        }
        a->cap_rows = N;
    }
    if (!a->dlm && (!(a->dlm = malloc((size_t)m->V * D * sizeof(float))) ||
                    !(a->dlogits = malloc((size_t)MODEL_HEAD_ROWS * m->V * sizeof(float))))) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model: out of memory for the LM head's gradient");
        free(a->dlm);
        a->dlm = NULL;
        return VTTT_ENOMEM;
    }
    return model_scratch_reserve(m, N);
}

/* Layer i's activation buffers of the training forward. */
static block_io train_io(vttt_model *m, int i, int N) {
    model_acts *a = &m->acts;
    size_t ND = (size_t)N * m->D, NI = (size_t)N * m->I;
    block_io io;
    io.h_in = a->h + i * ND;
    io.h1 = m->cfg.pre_conv ? a->h1 + i * ND : io.h_in;
    io.h2 = a->h2 + i * ND;
    io.h_out = a->h + (i + 1) * ND;
    io.u = m->cfg.pre_conv ? a->u + i * ND : NULL;
    io.xs = a->xs + i * ND;
    io.xf = a->xf + i * ND;
    io.gate = a->gate + i * NI;
    io.up = a->up + i * NI;
    io.act = m->scr.ni[0];
    io.rstd = a->rstd + (size_t)i * 3 * N;
    io.tmp = m->scr.nd[0];
    return io;
}

/* Saves the pre-conv states at a carried window's start (backward needs
 * them) before the forward advances them. */
static int save_conv0(vttt_model *m, const vttt_model_state *s) {
    model_acts *a = &m->acts;
    size_t n = (size_t)m->L * s->B * (m->K - 1) * m->D;
    if (!m->cfg.pre_conv || !n) return VTTT_OK;
    if (n > a->cap_conv0) {
        free(a->conv0);
        if (!(a->conv0 = malloc(n * sizeof(float)))) {
            a->cap_conv0 = 0;
            return VTTT_ENOMEM;
        }
        a->cap_conv0 = n;
    }
    memcpy(a->conv0, s->conv, n * sizeof(float));
    return VTTT_OK;
}

float model_mean_loss(const float *losses, size_t N, int64_t count) {
    double s = 0.0;
    for (size_t n = 0; n < N; n++) s += losses[n];
    return count > 0 ? (float)(s / (double)count) : 0.0f;
}

/* The LM head of a train forward that asked for no logits when only some
 * rows have a target (MQAR scores a few positions in a hundred): those
 * rows are gathered into scratch (hf into scr.nd[0], targets into
 * scr.tok, losses into scr.rstd, d hf into scr.nd[1]), run through the
 * head, and their loss and d hf scattered back; the other rows keep loss
 * 0 and d hf 0, as the full head leaves them. */
static void head_counted_rows(vttt_model *m, int N, float inv) {
    model_acts *a = &m->acts;
    size_t D = (size_t)m->D;
    float *hfc = m->scr.nd[0], *dhfc = m->scr.nd[1], *lc = m->scr.rstd;
    int32_t *tc = m->scr.tok;
    int n = 0;
    for (int r = 0; r < N; r++) {
        a->losses[r] = 0.0f;
        if (a->targets[r] < 0) continue;
        memcpy(hfc + (size_t)n * D, a->hf + (size_t)r * D, D * sizeof(float));
        tc[n++] = a->targets[r];
    }
    memset(dhfc, 0, (size_t)n * D * sizeof(float));
    model_head_rows(m, hfc, n, tc, lc, NULL, dhfc, inv);
    for (int r = 0, k = 0; r < N; r++) {
        if (a->targets[r] < 0) continue;
        a->losses[r] = lc[k];
        memcpy(a->dhf + (size_t)r * D, dhfc + (size_t)k * D, D * sizeof(float));
        k++;
    }
}

/* The train forward, from the learned initial state (s NULL) or from s. */
static int forward_train(vttt_model *m, vttt_model_state *s, const int32_t *tokens, const int32_t *targets, int B,
                         int T, float *loss, float *logits) {
    model_acts *a = &m->acts;
    int N = B * T, D = m->D, err;
    int64_t pos0 = s ? s->pos : 0;
    if ((err = ttt_position_check(&m->log, "carried train forward", pos0, T))) return err;
    if ((err = acts_reserve(m, B, T))) return err;
    if ((err = model_targets(m, a->targets, tokens, targets, B, T, &a->n_targets))) return err;
    memcpy(a->tokens, tokens, (size_t)N * sizeof(int32_t));
    if ((err = model_embed(m, a->h, tokens, B, T, pos0))) return err;
    if (s && (err = save_conv0(m, s))) return err;
    size_t conv_per_layer = (size_t)B * (m->K - 1) * D;
    for (int i = 0; i < m->L; i++) {
        block_io io = train_io(m, i, N);
        float *cs = s && s->conv ? s->conv + i * conv_per_layer : NULL;
        if ((err = model_block_forward(m, i, &io, B, T, s ? SEQ_CARRY : SEQ_TRAIN, s ? s->ls[i] : NULL, cs)))
            return err;
    }
    ttt_rmsnorm_forward(a->hf, a->rstd_f, a->h + (size_t)m->L * N * D, m->p.norm, N, D, m->cfg.rms_norm_eps);
    memset(a->dhf, 0, (size_t)N * D * sizeof(float));
    memset(a->dlm, 0, (size_t)m->V * D * sizeof(float));
    float inv = a->n_targets > 0 ? 1.0f / (float)a->n_targets : 0.0f;
    if (!logits && a->n_targets > 0 && a->n_targets <= N / 2) head_counted_rows(m, N, inv);
    else model_head_rows(m, a->hf, N, a->targets, a->losses, logits, a->n_targets > 0 ? a->dhf : NULL, inv);
    if (loss) *loss = model_mean_loss(a->losses, (size_t)N, a->n_targets);
    a->B = B, a->T = T, a->carry = s != NULL, a->pos0 = pos0;
    a->valid = 1;
    if (s) s->pos += T;
    return VTTT_OK;
}

/* An evaluation whose loss is not finite (weights that overflow: finite
 * but huge) is an error, not a number to report: VTTT_ENAN naming the
 * first such position. */
static int check_losses(const vttt_model *m, int B, int T) {
    const float *l = m->acts.losses;
    for (size_t i = 0; l && i < (size_t)B * T; i++) {
        if (isfinite(l[i])) continue;
        vttt_log(&m->log, VTTT_LOG_ERROR, "model forward: the loss at sequence %zu, position %zu is not finite (%g); "
                 "the weights overflow (check the model's values)", i / (size_t)T, i % (size_t)T, (double)l[i]);
        return VTTT_ENAN;
    }
    return VTTT_OK;
}

int vttt_model_forward(vttt_model *m, const int32_t *tokens, const int32_t *targets, int B, int T, int train,
                       float *loss, float *logits) {
    if (!m || !tokens) return VTTT_EINVAL;
    if (B <= 0 || T <= 0) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model forward: empty input (B=%d, T=%d)", B, T);
        return VTTT_EINVAL;
    }
    if (!train) {
        int err = model_forward_eval(m, tokens, targets, B, T, loss, logits);
        return err ? err : check_losses(m, B, T);
    }
    return forward_train(m, NULL, tokens, targets, B, T, loss, logits);
}

int vttt_model_forward_carry(vttt_model *m, vttt_model_state *s, const int32_t *tokens, const int32_t *targets,
                             int T, float *loss, float *logits) {
    if (!m || !s || !tokens || s->m != m) return VTTT_EINVAL;
    if (T <= 0) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model forward: empty window (T=%d)", T);
        return VTTT_EINVAL;
    }
    return forward_train(m, s, tokens, targets, s->B, T, loss, logits);
}

int vttt_model_target_logits(vttt_model *m, float *logits) {
    model_acts *a = m ? &m->acts : NULL;
    if (!a || !a->valid || !logits) {
        if (m) vttt_log(&m->log, VTTT_LOG_ERROR, "model target logits: no train forward to read (call "
                        "vttt_model_forward with train=1 first)");
        return VTTT_EINVAL;
    }
    size_t D = (size_t)m->D, V = (size_t)m->V;
    float *hfc = m->scr.nd[0];
    int N = a->B * a->T, n = 0;
    int64_t done = 0;
    for (int r = 0; r < N; r++) {
        if (a->targets[r] >= 0) memcpy(hfc + (size_t)n++ * D, a->hf + (size_t)r * D, D * sizeof(float));
        if (n == MODEL_HEAD_ROWS || (r == N - 1 && n > 0)) {
            model_head_rows(m, hfc, n, NULL, NULL, logits + (size_t)done * V, NULL, 0.0f);
            done += n, n = 0;
        }
    }
    return VTTT_OK;
}

const float *vttt_model_losses(const vttt_model *m, int64_t *n_targets) {
    if (n_targets) *n_targets = m->acts.losses ? m->acts.n_targets : 0;
    return m->acts.losses;
}

/* Backward of block i: dh (N, D) holds the gradient of the block's output
 * on entry and of its input on exit. */
static int block_backward(vttt_model *m, int i, float *dh) {
    model_acts *a = &m->acts;
    const model_params *p = &m->p;
    model_params *g = &m->g;
    int B = a->B, T = a->T, N = B * T, D = m->D, I = m->I, K = m->K;
    size_t NI = (size_t)N * I, ND = (size_t)N * D, iD = (size_t)i * D, iDI = (size_t)i * D * I;
    block_io io = train_io(m, i, N);
    float *act = m->scr.ni[0], *dact = m->scr.ni[1], *dup = m->scr.ni[2], *dx = m->scr.nd[0];
    ttt_swiglu_forward(act, io.gate, io.up, NI); /* recomputed rather than kept */
    memset(dact, 0, NI * sizeof(float));
    ttt_linear_backward(dact, g->down_proj + iDI, NULL, dh, act, p->down_proj + iDI, N, I, D);
    float *dgate = act;
    memset(dgate, 0, NI * sizeof(float));
    memset(dup, 0, NI * sizeof(float));
    ttt_swiglu_backward(dgate, dup, dact, io.gate, io.up, NI);
    memset(dx, 0, ND * sizeof(float));
    ttt_linear_backward(dx, g->gate_proj + iDI, NULL, dgate, io.xf, p->gate_proj + iDI, N, D, I);
    ttt_linear_backward(dx, g->up_proj + iDI, NULL, dup, io.xf, p->up_proj + iDI, N, D, I);
    ttt_rmsnorm_backward(dh, g->ffn_norm + iD, dx, io.h2, p->ffn_norm + iD, io.rstd + 2 * (size_t)N, N, D);
    int err = ttt_layer_backward_carry(m->layers[i], dx, dh, a->carry && a->pos0 > 0);
    if (err) return err;
    ttt_rmsnorm_backward(dh, g->seq_norm + iD, dx, io.h1, p->seq_norm + iD, io.rstd + N, N, D);
    if (m->cfg.pre_conv) {
        const float *c0 = a->carry && K > 1 ? a->conv0 + (size_t)i * B * (K - 1) * D : NULL;
        memset(dx, 0, ND * sizeof(float));
        ttt_conv1d_backward(dx, g->conv_w + iD * K, g->conv_b + iD, dh, io.u, p->conv_w + iD * K, c0, B, T, D, K);
        ttt_rmsnorm_backward(dh, g->conv_norm + iD, dx, io.h_in, p->conv_norm + iD, io.rstd, N, D);
    }
    return VTTT_OK;
}

int vttt_model_backward(vttt_model *m, float dloss) {
    if (!m) return VTTT_EINVAL;
    model_acts *a = &m->acts;
    if (!a->valid) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model backward: no train forward to differentiate (call "
                 "vttt_model_forward with train=1 first)");
        return VTTT_EINVAL;
    }
    int N = a->B * a->T, D = m->D;
    size_t ND = (size_t)N * D, VD = (size_t)m->V * D;
    float *gW = m->cfg.tie_word_embeddings ? m->g.embed : m->g.lm_head;
#pragma omp parallel for if (VTTT_PAR((double)VD * VTTT_COST_COPY))
    for (size_t j = 0; j < VD; j++) gW[j] += dloss * a->dlm[j];
    float *dh = m->scr.nd[1], *dhf = m->scr.nd[2];
#pragma omp parallel for if (VTTT_PAR((double)ND * VTTT_COST_COPY))
    for (size_t j = 0; j < ND; j++) dhf[j] = dloss * a->dhf[j];
    memset(dh, 0, ND * sizeof(float));
    ttt_rmsnorm_backward(dh, m->g.norm, dhf, a->h + (size_t)m->L * ND, m->p.norm, a->rstd_f, N, D);
    for (int i = m->L - 1; i >= 0; i--) {
        int err = block_backward(m, i, dh);
        if (err) return err;
    }
    ttt_embedding_backward(m->g.embed, dh, a->tokens, N, D);
    for (int n = 0; m->P && n < N; n++) {
        float *gp = m->g.frame_pos + (size_t)((a->pos0 + n % a->T) % m->P) * D;
        for (int j = 0; j < D; j++) gp[j] += dh[(size_t)n * D + j];
    }
    return VTTT_OK;
}
