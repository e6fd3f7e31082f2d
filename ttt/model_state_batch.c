/*
 * Gathering one-sequence model states into one batched state and
 * scattering it back, so that n independent streams take one model step
 * (B = n) instead of n steps (B = 1). Every sequence's numbers are its
 * own: the layers treat the batch rows independently, and the only thing
 * the rows share is the position counter, which is why the positions must
 * agree (see model.h).
 */
#include <string.h>

#include "layer.h"
#include "model_internal.h"

/* Copies sequence sb of layer state s into sequence db of d (same layer),
 * with `rows` KV rows for attention. */
static void layer_seq_copy(vttt_state *d, int db, const vttt_state *s, int sb, int64_t rows) {
    const vttt_layer *l = s->l;
    size_t D = l->D;
    if (l->cfg.kind == VTTT_LAYER_ATTENTION) {
        size_t nb = (size_t)rows * D * sizeof(float);
        memcpy(d->k_cache + (size_t)db * d->max_T * D, s->k_cache + (size_t)sb * s->max_T * D, nb);
        memcpy(d->v_cache + (size_t)db * d->max_T * D, s->v_cache + (size_t)sb * s->max_T * D, nb);
        return;
    }
    size_t w = (size_t)l->H * s->inner_numel;
    memcpy(d->W0 + db * w, s->W0 + sb * w, w * sizeof(float));
    memcpy(d->A + db * w, s->A + sb * w, w * sizeof(float));
    if (s->conv_state) {
        size_t c = (size_t)(l->cfg.conv_kernel - 1) * D;
        memcpy(d->conv_state + db * c, s->conv_state + sb * c, c * sizeof(float));
    }
}

/* Same for the model's pre-conv states (L, B, K-1, D). */
static void conv_seq_copy(vttt_model_state *d, int db, const vttt_model_state *s, int sb) {
    if (!s->conv) return;
    const vttt_model *m = s->m;
    size_t c = (size_t)(m->K - 1) * m->D;
    for (int i = 0; i < m->L; i++)
        memcpy(d->conv + ((size_t)i * d->B + db) * c, s->conv + ((size_t)i * s->B + sb) * c, c * sizeof(float));
}

static int has_attention(const vttt_model *m) {
    return m->cfg.seq_kind == VTTT_LAYER_ATTENTION;
}

/* KV rows a layer state can hold (unbounded for TTT). */
static int64_t kv_capacity(const vttt_model_state *s) {
    return has_attention(s->m) ? s->ls[0]->max_T : INT64_MAX;
}

static int fail(const vttt_model *m, const char *op, const char *what) {
    vttt_log(&m->log, VTTT_LOG_ERROR, "model state %s: %s", op, what);
    return VTTT_EINVAL;
}

/* Positions that can share one counter: equal (attention), or congruent
 * modulo the mini-batch size and tokens_per_frame (TTT). */
static int positions_agree(const vttt_model *m, int64_t a, int64_t b) {
    if (has_attention(m)) return a == b;
    int64_t q = m->cfg.mini_batch_size, P = m->cfg.tokens_per_frame;
    int64_t d = a > b ? a - b : b - a;
    return d % q == 0 && (P <= 0 || d % P == 0);
}

int vttt_model_state_gather(vttt_model_state *dst, vttt_model_state *const *src, int n) {
    if (!dst || !src || n <= 0) return VTTT_EINVAL;
    const vttt_model *m = dst->m;
    if (dst->B != n) return fail(m, "gather", "the batched state's B differs from the number of states");
    for (int i = 0; i < n; i++) {
        if (!src[i] || src[i]->m != m || src[i]->B != 1)
            return fail(m, "gather", "every state must be a one-sequence state of the same model");
        if (!positions_agree(m, src[i]->pos, src[0]->pos))
            return fail(m, "gather", "the states' positions do not agree (frame or mini-batch offsets differ)");
    }
    int64_t p0 = src[0]->pos;
    if (p0 > kv_capacity(dst)) return fail(m, "gather", "the batched state's KV cache is too short");
    for (int i = 0; i < n; i++) {
        for (int l = 0; l < m->L; l++) layer_seq_copy(dst->ls[l], i, src[i]->ls[l], 0, p0);
        conv_seq_copy(dst, i, src[i], 0);
    }
    for (int l = 0; l < m->L; l++) dst->ls[l]->pos = src[0]->ls[l]->pos;
    dst->pos = p0;
    return VTTT_OK;
}

int vttt_model_state_scatter(vttt_model_state *const *dst, int n, const vttt_model_state *src) {
    if (!dst || !src || n <= 0) return VTTT_EINVAL;
    const vttt_model *m = src->m;
    if (src->B != n) return fail(m, "scatter", "the batched state's B differs from the number of states");
    for (int i = 0; i < n; i++)
        if (!dst[i] || dst[i]->m != m || dst[i]->B != 1)
            return fail(m, "scatter", "every state must be a one-sequence state of the same model");
    int64_t adv = src->pos - dst[0]->pos;
    if (adv < 0) return fail(m, "scatter", "the batched state is behind the states it was gathered from");
    for (int i = 0; i < n; i++)
        if (dst[i]->pos + adv > kv_capacity(dst[i])) return fail(m, "scatter", "a state's KV cache is too short");
    for (int i = 0; i < n; i++) {
        for (int l = 0; l < m->L; l++) {
            layer_seq_copy(dst[i]->ls[l], 0, src->ls[l], i, src->ls[l]->pos);
            dst[i]->ls[l]->pos += adv;
        }
        conv_seq_copy(dst[i], 0, src, i);
        dst[i]->pos += adv;
    }
    return VTTT_OK;
}
