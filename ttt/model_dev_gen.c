/*
 * Generation with a model on a device (model.h, vttt_model_dev_state):
 * model_generate.c's prefill and decode, step for step, with every op on
 * the backend and the TTT layers through vttt_layer_dev prefill/decode (so
 * a decode step replays each layer's CUDA graph). The chunk buffers are
 * the device model's training buffers (a generation call and a training
 * step do not overlap); the state holds the layers' device states and the
 * pre-conv states in its own arena.
 */
#include <stdlib.h>
#include <string.h>

#include "model_dev_internal.h"

struct vttt_model_dev_state {
    vttt_model_dev *d;
    int B;
    int64_t pos;
    vttt_state_dev **ls; /* (L) */
    ttt_arena arena;
    float *conv;         /* (L, B, K-1, D) pre-conv states (pre_conv only) */
    int32_t *h_tok;      /* (B * max_T) host: a chunk's tokens, then its in-frame positions */
};

static size_t conv_floats(const vttt_model *m, int B) {
    return m->cfg.pre_conv && m->K > 1 ? (size_t)m->L * B * (m->K - 1) * m->D : 0;
}

int vttt_model_dev_state_init(vttt_model_dev_state **out, vttt_model_dev *d, int B) {
    if (!out || !d) return VTTT_EINVAL;
    *out = NULL;
    const vttt_model *m = d->m;
    if (B < 1 || B > d->max_B) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model state on a device: B=%d outside 1..%d (vttt_model_dev_init's max_B)",
                 B, d->max_B);
        return VTTT_EINVAL;
    }
    vttt_model_dev_state *s = calloc(1, sizeof *s);
    if (!s) return VTTT_ENOMEM;
    s->d = d, s->B = B;
    s->ls = calloc((size_t)m->L, sizeof *s->ls);
    s->h_tok = malloc((size_t)B * d->max_T * sizeof(int32_t));
    int err = s->ls && s->h_tok ? VTTT_OK : VTTT_ENOMEM;
    for (int i = 0; i < m->L && !err; i++) err = vttt_state_dev_init(&s->ls[i], d->ld[i], B);
    size_t nc = conv_floats(m, B);
    if (!err && nc) {
        err = ttt_arena_init(&s->arena, d->be, nc * sizeof(float), &m->log, "model state on a device");
        if (!err) s->conv = ttt_arena_floats(&s->arena, nc);
    }
    if (!err) err = vttt_model_dev_state_reset(s);
    if (err) {
        vttt_model_dev_state_free(&s);
        return err;
    }
    *out = s;
    return VTTT_OK;
}

void vttt_model_dev_state_free(vttt_model_dev_state **sp) {
    if (!sp || !*sp) return;
    vttt_model_dev_state *s = *sp;
    for (int i = 0; s->ls && i < s->d->m->L; i++) vttt_state_dev_free(&s->ls[i]);
    free(s->ls);
    if (s->arena.base) s->d->be->sync(s->d->be->ctx);
    ttt_arena_free(&s->arena);
    free(s->h_tok);
    free(s);
    *sp = NULL;
}

int vttt_model_dev_state_reset(vttt_model_dev_state *s) {
    if (!s) return VTTT_EINVAL;
    int err = VTTT_OK;
    s->pos = 0;
    for (int i = 0; i < s->d->m->L && !err; i++) err = vttt_state_dev_reset(s->ls[i]);
    if (!err && s->conv) err = s->d->ops->zero(s->d->be, s->conv, conv_floats(s->d->m, s->B));
    return err;
}

int64_t vttt_model_dev_state_position(const vttt_model_dev_state *s) { return s ? s->pos : -1; }

/* Block i over the chunk's rows in place (model_block_forward with
 * SEQ_PREFILL): h (N, D) the residual stream, nrm, tmp (N, D) scratch. */
static int gen_block(vttt_model_dev *d, vttt_model_dev_state *s, int i, int n, int decode, float *h, float *nrm,
                     float *tmp) {
    const vttt_model *m = d->m;
    const vttt_backend *be = d->be;
    const model_params *p = &d->p;
    int B = s->B, N = B * n, D = m->D, I = m->I, K = m->K, err = VTTT_OK;
    size_t ND = (size_t)N * D, iD = (size_t)i * D, iDI = (size_t)i * D * I;
    float eps = m->cfg.rms_norm_eps, *rstd = d->rstd_f;
    if (m->cfg.pre_conv) {
        float *cs = s->conv ? s->conv + (size_t)i * B * (K - 1) * D : NULL;
        be->rmsnorm_forward(nrm, rstd, h, p->conv_norm + iD, N, D, eps);
        be->conv1d_forward(tmp, nrm, p->conv_w + iD * K, p->conv_b + iD, cs, B, n, D, K);
        if (cs) err = d->ops->conv_state_update(be, cs, nrm, B, n, D, K);
        if (!err) err = d->ops->add(be, h, h, tmp, ND);
    }
    be->rmsnorm_forward(nrm, rstd, h, p->seq_norm + iD, N, D, eps);
    if (!err)
        err = decode ? vttt_layer_dev_decode(d->ld[i], s->ls[i], tmp, nrm)
                     : vttt_layer_dev_prefill(d->ld[i], s->ls[i], tmp, nrm, n);
    if (!err) err = d->ops->add(be, h, h, tmp, ND);
    be->rmsnorm_forward(nrm, rstd, h, p->ffn_norm + iD, N, D, eps);
    if (!err) err = be->linear_forward(be->ctx, d->gate, nrm, p->gate_proj + iDI, NULL, N, D, I);
    if (!err) err = be->linear_forward(be->ctx, d->up, nrm, p->up_proj + iDI, NULL, N, D, I);
    be->swiglu_forward(d->act, d->gate, d->up, (size_t)N * I);
    if (!err) err = be->linear_forward(be->ctx, tmp, d->act, p->down_proj + iDI, NULL, N, I, D);
    if (!err) err = d->ops->add(be, h, h, tmp, ND);
    return err;
}

/* Embeds tokens (B, n) (host) at the state's position into h (N, D). */
static int gen_embed(vttt_model_dev *d, vttt_model_dev_state *s, const int32_t *tok, int n, float *h, float *tmp) {
    const vttt_model *m = d->m;
    const vttt_backend *be = d->be;
    int N = s->B * n, D = m->D;
    int err = be->to_device(be->ctx, d->tokens, tok, (size_t)N * sizeof(int32_t));
    if (!err) err = be->embedding_forward(h, d->tokens, d->p.embed, N, m->V, D);
    if (err || !m->P) return err;
    if ((err = be->sync(be->ctx))) return err; /* s->h_tok may hold tok */
    for (int r = 0; r < N; r++) s->h_tok[r] = (int32_t)((s->pos + r % n) % m->P);
    err = be->to_device(be->ctx, d->fpos, s->h_tok, (size_t)N * sizeof(int32_t));
    if (!err) err = be->embedding_forward(tmp, d->fpos, d->p.frame_pos, N, m->P, D);
    if (!err) err = d->ops->add(be, h, h, tmp, (size_t)N * D);
    return err;
}

/* Logits of rows [r0, r0+r) of the final norm's output hf into host out
 * (r, V), MODEL_HEAD_ROWS at a time. */
static int gen_logits(vttt_model_dev *d, const float *hf, int r, float *out) {
    const vttt_model *m = d->m;
    const vttt_backend *be = d->be;
    const float *W = m->cfg.tie_word_embeddings ? d->p.embed : d->p.lm_head;
    int V = m->V, D = m->D, err = VTTT_OK;
    for (int k = 0; k < r && !err; k += MODEL_HEAD_ROWS) {
        int c = r - k < MODEL_HEAD_ROWS ? r - k : MODEL_HEAD_ROWS;
        err = be->linear_forward(be->ctx, d->logits, hf + (size_t)k * D, W, NULL, c, D, V);
        if (!err) err = be->to_host(be->ctx, out + (size_t)k * V, d->logits, (size_t)c * V * sizeof(float));
    }
    return err;
}

/* One chunk of n tokens per sequence (tok (B, n), host); logits as in
 * vttt_model_prefill for columns [t0, t0+n) of a (B, T) call. */
static int gen_chunk(vttt_model_dev *d, vttt_model_dev_state *s, const int32_t *tok, int n, int decode, int T,
                     int t0, float *logits, int all) {
    const vttt_model *m = d->m;
    int B = s->B, N = B * n, D = m->D, err;
    float *h = d->h, *nrm = d->xs, *tmp = d->tmp;
    if ((err = gen_embed(d, s, tok, n, h, tmp))) return err;
    for (int i = 0; i < m->L && !err; i++) err = gen_block(d, s, i, n, decode, h, nrm, tmp);
    if (err) return err;
    d->be->rmsnorm_forward(d->hf, d->rstd_f, h, d->p.norm, N, D, m->cfg.rms_norm_eps);
    s->pos += n;
    for (int b = 0; logits && b < B && !err; b++) {
        const float *hf = d->hf + (size_t)b * n * D;
        if (all) err = gen_logits(d, hf, n, logits + ((size_t)b * T + t0) * m->V);
        else if (t0 + n == T) err = gen_logits(d, hf + (size_t)(n - 1) * D, 1, logits + (size_t)b * m->V);
    }
    return err;
}

static int check_tokens(const vttt_model *m, const int32_t *tokens, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->V) {
            vttt_log(&m->log, VTTT_LOG_ERROR, "model on a device: token %d at index %zu is outside the vocabulary "
                                              "0..%d", tokens[i], i, m->V - 1);
            return VTTT_EINVAL;
        }
    return VTTT_OK;
}

int vttt_model_dev_prefill(vttt_model_dev *d, vttt_model_dev_state *s, const int32_t *tokens, int T, float *logits,
                           int all_logits) {
    if (!d || !s || !tokens || s->d != d || T < 1) return VTTT_EINVAL;
    int B = s->B, err = ttt_position_check(&d->m->log, "device model prefill", s->pos, T);
    if (!err) err = check_tokens(d->m, tokens, (size_t)B * T);
    for (int t0 = 0; t0 < T && !err; t0 += d->max_T) {
        int n = T - t0 < d->max_T ? T - t0 : d->max_T;
        const int32_t *tok = tokens + t0;
        if (B > 1) { /* columns [t0, t0+n) of every sequence, contiguous */
            if ((err = d->be->sync(d->be->ctx))) break; /* the staging buffer's last upload */
            for (int b = 0; b < B; b++)
                memcpy(s->h_tok + (size_t)b * n, tokens + (size_t)b * T + t0, n * sizeof(int32_t));
            tok = s->h_tok;
        }
        err = gen_chunk(d, s, tok, n, 0, T, t0, logits, all_logits);
    }
    return err;
}

int vttt_model_dev_decode(vttt_model_dev *d, vttt_model_dev_state *s, const int32_t *tokens, float *logits) {
    if (!d || !s || !tokens || s->d != d) return VTTT_EINVAL;
    int err = ttt_position_check(&d->m->log, "device model decode", s->pos, 1);
    if (!err) err = check_tokens(d->m, tokens, (size_t)s->B);
    return err ? err : gen_chunk(d, s, tokens, 1, 1, 1, 0, logits, 0);
}
