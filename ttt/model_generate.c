/*
 * Generation: the model state (a vttt_state per layer plus the pre-conv
 * states), prefill and decode, and the evaluation forward built on them.
 * Tokens run through the blocks in chunks of about MODEL_CHUNK_ROWS rows
 * with every buffer updated in place, so memory does not grow with the
 * sequence (TTT) beyond attention's KV cache.
 */
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "layer_carry.h"
#include "model_internal.h"
#include "ops.h"

#define MODEL_CHUNK_ROWS 2048 /* rows (sequences x tokens) per chunk */

int vttt_model_state_init(vttt_model_state **out, const vttt_model *m, int B, int max_T) {
    if (!out || !m) return VTTT_EINVAL;
    *out = NULL;
    if (B <= 0) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model state: need B >= 1 (got %d)", B);
        return VTTT_EINVAL;
    }
    if (max_T <= 0) max_T = m->cfg.max_position_embeddings;
    vttt_model_state *s = calloc(1, sizeof *s);
    if (!s) return VTTT_ENOMEM;
    s->m = m;
    s->B = B;
    int err = VTTT_ENOMEM;
    size_t nconv = m->cfg.pre_conv ? (size_t)m->L * B * (m->K - 1) * m->D : 0;
    if (!(s->ls = calloc((size_t)m->L, sizeof *s->ls)) || (nconv && !(s->conv = malloc(nconv * sizeof(float)))))
        goto fail;
    for (int i = 0; i < m->L; i++)
        if ((err = vttt_state_init(&s->ls[i], m->layers[i], B, max_T))) goto fail;
    vttt_model_state_reset(s);
    *out = s;
    return VTTT_OK;
fail:
    vttt_log(&m->log, VTTT_LOG_ERROR, "model state: cannot allocate (B=%d, max_T=%d): %s", B, max_T,
             vttt_strerror(err));
    vttt_model_state_free(&s);
    return err;
}

void vttt_model_state_free(vttt_model_state **sp) {
    if (!sp || !*sp) return;
    vttt_model_state *s = *sp;
    for (int i = 0; s->ls && i < s->m->L; i++) vttt_state_free(&s->ls[i]);
    free(s->ls);
    free(s->conv);
    free(s);
    *sp = NULL;
}

void vttt_model_state_reset(vttt_model_state *s) {
    const vttt_model *m = s->m;
    s->pos = 0;
    for (int i = 0; i < m->L; i++) vttt_state_reset(s->ls[i]);
    if (s->conv) memset(s->conv, 0, (size_t)m->L * s->B * (m->K - 1) * m->D * sizeof(float));
}

int vttt_model_state_copy(vttt_model_state *dst, const vttt_model_state *src) {
    if (!dst || !src || dst->m != src->m || dst->B != src->B) return VTTT_EINVAL;
    const vttt_model *m = src->m;
    for (int i = 0; i < m->L; i++) {
        if (ttt_layer_state_copy(dst->ls[i], src->ls[i])) {
            vttt_log(&m->log, VTTT_LOG_ERROR, "model state copy: the destination's KV cache is too short");
            return VTTT_EINVAL;
        }
    }
    if (src->conv) memcpy(dst->conv, src->conv, (size_t)m->L * src->B * (m->K - 1) * m->D * sizeof(float));
    dst->pos = src->pos;
    return VTTT_OK;
}

size_t vttt_model_state_bytes(const vttt_model_state *s) {
    const vttt_model *m = s->m;
    size_t n = s->conv ? (size_t)m->L * s->B * (m->K - 1) * m->D * sizeof(float) : 0;
    for (int i = 0; i < m->L; i++) n += vttt_state_bytes(s->ls[i]);
    return n;
}

int64_t vttt_model_state_position(const vttt_model_state *s) { return s->pos; }

/* Tokens per sequence in one chunk: about MODEL_CHUNK_ROWS rows in all, a
 * multiple of the mini-batch size so that chunks stay aligned. */
static int chunk_len(const vttt_model *m, int B) {
    int b = m->cfg.mini_batch_size, n = MODEL_CHUNK_ROWS / B;
    n -= n % b;
    return n > b ? n : b;
}

/* Checks every token before the state is touched. */
static int check_tokens(vttt_model *m, const int32_t *tokens, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->V) {
            vttt_log(&m->log, VTTT_LOG_ERROR, "model: token %d at index %zu is outside the vocabulary 0..%d",
                     tokens[i], i, m->V - 1);
            return VTTT_EINVAL;
        }
    }
    return VTTT_OK;
}

/* Runs tok (B, n) through the state: the final RMSNorm output (B, n, D)
 * is left in scr.nd[1]. */
static int run_chunk(vttt_model *m, vttt_model_state *s, const int32_t *tok, int n) {
    int B = s->B, N = B * n, D = m->D, err;
    model_scratch *sc = &m->scr;
    float *h = sc->nd[0], *nrm = sc->nd[1];
    if ((err = model_embed(m, h, tok, B, n, s->pos))) return err;
    block_io io = {h, h, h, h, nrm, nrm, nrm, sc->ni[0], sc->ni[1], sc->ni[0], sc->rstd, sc->nd[2]};
    size_t conv_per_layer = (size_t)B * (m->K - 1) * D;
    for (int i = 0; i < m->L; i++) {
        float *cs = s->conv ? s->conv + i * conv_per_layer : NULL;
        if ((err = model_block_forward(m, i, &io, B, n, SEQ_PREFILL, s->ls[i], cs))) return err;
    }
    ttt_rmsnorm_forward(nrm, NULL, h, m->p.norm, N, D, m->cfg.rms_norm_eps);
    s->pos += n;
    return VTTT_OK;
}

/* Copies columns [t0, t0+n) of tokens (B, T) into scr.tok (B, n). */
static const int32_t *gather_tokens(vttt_model *m, const int32_t *tokens, int B, int T, int t0, int n) {
    if (B == 1) return tokens + t0;
    for (int b = 0; b < B; b++) memcpy(m->scr.tok + (size_t)b * n, tokens + (size_t)b * T + t0, n * sizeof(int32_t));
    return m->scr.tok;
}

/* What each chunk's final rows feed: logits (all or the last position's)
 * and, for evaluation, losses. */
typedef struct {
    float *logits;          /* (B, T, V) when all, else (B, V); or NULL */
    int all;
    const int32_t *targets; /* (B, T) or NULL */
    float *losses;          /* (B, T) or NULL */
} chunk_out;

static void chunk_head(vttt_model *m, const chunk_out *o, int B, int T, int t0, int n) {
    const float *hf = m->scr.nd[1];
    size_t V = m->V, D = m->D;
    for (int b = 0; b < B; b++) {
        size_t row = (size_t)b * T + t0;
        if (o->all || o->losses) {
            model_head_rows(m, hf + (size_t)b * n * D, n, o->targets ? o->targets + row : NULL,
                            o->losses ? o->losses + row : NULL, o->all && o->logits ? o->logits + row * V : NULL,
                            NULL, 0.0f);
        } else if (o->logits && t0 + n == T) {
            model_head_rows(m, hf + ((size_t)b * n + n - 1) * D, 1, NULL, NULL, o->logits + b * V, NULL, 0.0f);
        }
    }
}

/* Tokens (B, T) through s chunk by chunk, feeding o. */
static int run_tokens(vttt_model *m, vttt_model_state *s, const int32_t *tokens, int T, const chunk_out *o) {
    int B = s->B, err;
    if ((err = ttt_position_check(&m->log, "model prefill", s->pos, T))) return err;
    if ((err = check_tokens(m, tokens, (size_t)B * T))) return err;
    int C = chunk_len(m, B);
    if ((err = model_scratch_reserve(m, (size_t)B * (T < C ? T : C)))) return err;
    for (int t0 = 0; t0 < T; t0 += C) {
        int n = T - t0 < C ? T - t0 : C;
        if ((err = run_chunk(m, s, gather_tokens(m, tokens, B, T, t0, n), n))) return err;
        chunk_head(m, o, B, T, t0, n);
    }
    return VTTT_OK;
}

int vttt_model_prefill(vttt_model *m, vttt_model_state *s, const int32_t *tokens, int T, float *logits,
                       int all_logits) {
    if (!m || !s || !tokens || s->m != m) return VTTT_EINVAL;
    if (T <= 0) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model prefill: empty input (T=%d)", T);
        return VTTT_EINVAL;
    }
    chunk_out o = {logits, all_logits, NULL, NULL};
    return run_tokens(m, s, tokens, T, &o);
}

int vttt_model_decode(vttt_model *m, vttt_model_state *s, const int32_t *tokens, float *logits) {
    return vttt_model_prefill(m, s, tokens, 1, logits, 0);
}

int model_forward_eval(vttt_model *m, const int32_t *tokens, const int32_t *targets, int B, int T, float *loss,
                       float *logits) {
    model_acts *a = &m->acts;
    size_t N = (size_t)B * T;
    a->valid = 0;
    int err = model_targets_reserve(m, N);
    if (!err) err = model_targets(m, a->targets, tokens, targets, B, T, &a->n_targets);
    if (err) return err;
    vttt_model_state *s = NULL;
    if ((err = vttt_model_state_init(&s, m, B, T))) return err;
    chunk_out o = {logits, 1, a->targets, a->losses};
    err = run_tokens(m, s, tokens, T, &o);
    vttt_model_state_free(&s);
    if (!err && loss) *loss = model_mean_loss(a->losses, N, a->n_targets);
    return err;
}
