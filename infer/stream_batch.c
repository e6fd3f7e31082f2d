/*
 * Pushing one frame into each of n streams in one model step: the streams'
 * states are gathered into one batched state (B = n), prefilled together
 * and scattered back. Every stream sits at a frame boundary, so for TTT
 * models the positions always agree (model.h); attention models whose
 * streams are at different frames fall back to separate steps.
 */
#include <stdlib.h>
#include <string.h>

#include "infer_internal.h"

/* The streams are distinct and belong to one predictor. */
static int check_streams(vttt_stream **s, int n) {
    vttt_predictor *p = s[0]->p;
    for (int i = 0; i < n; i++) {
        if (!s[i] || s[i]->p != p) return VTTT_EINVAL;
        for (int j = 0; j < i; j++)
            if (s[j] == s[i]) {
                vttt_log(&p->log, VTTT_LOG_ERROR, "stream batch: stream %d is given twice (%d and %d)", i, j, i);
                return VTTT_EINVAL;
            }
    }
    return VTTT_OK;
}

static int same_positions(vttt_stream **s, int n) {
    for (int i = 1; i < n; i++)
        if (s[i]->frames != s[0]->frames) return 0;
    return 1;
}

/* The predictor's batched state for n sequences. */
static int batch_state(vttt_predictor *p, int n) {
    if (p->batch && p->batch_n == n) return VTTT_OK;
    vttt_model_state_free(&p->batch);
    p->batch_n = 0;
    int err = vttt_model_state_init(&p->batch, p->m, n, 0);
    if (!err) p->batch_n = n;
    return err;
}

int vttt_stream_push_batch_tokens(vttt_stream **s, int n, const int32_t *tokens, int32_t *pred_tokens) {
    if (!s || n <= 0 || !tokens || !s[0]) return VTTT_EINVAL;
    int err = check_streams(s, n);
    if (err) return err;
    vttt_predictor *p = s[0]->p;
    size_t P = p->P;
    int attention = vttt_model_get_config(p->m)->seq_kind == VTTT_LAYER_ATTENTION;
    if (n == 1 || (attention && !same_positions(s, n))) {
        for (int i = 0; i < n && !err; i++)
            err = vttt_stream_push_tokens(s[i], tokens + i * P, 1, pred_tokens ? pred_tokens + i * P : NULL);
        return err;
    }
    if ((err = infer_scratch_reserve(p, P * n)) || (err = batch_state(p, n))) return err;
    vttt_model_state **states = malloc((size_t)n * sizeof *states);
    if (!states) return VTTT_ENOMEM;
    for (int i = 0; i < n; i++) states[i] = s[i]->st;
    err = vttt_model_state_gather(p->batch, states, n);
    if (!err) err = vttt_model_prefill(p->m, p->batch, tokens, (int)P, p->logits, 1);
    if (!err) err = vttt_model_state_scatter(states, n, p->batch);
    free(states);
    if (err) return err;
    for (int i = 0; pred_tokens && i < n && !err; i++)
        err = infer_next_frame(p, p->logits + i * P * p->V, (uint64_t)s[i]->frames << 8, NULL, pred_tokens + i * P,
                               NULL);
    for (int i = 0; i < n; i++) s[i]->frames++, s[i]->has_last = 0;
    return err;
}

int vttt_stream_push_batch(vttt_stream **s, int n, const uint8_t *rgb, uint8_t *pred, int32_t *pred_tokens) {
    if (!s || n <= 0 || !rgb || !s[0]) return VTTT_EINVAL;
    int err = check_streams(s, n);
    if (err) return err;
    vttt_predictor *p = s[0]->p;
    size_t P = p->P, fb = (size_t)p->S * p->S * 3;
    int attention = vttt_model_get_config(p->m)->seq_kind == VTTT_LAYER_ATTENTION;
    if (n == 1 || (attention && !same_positions(s, n))) {
        for (int i = 0; i < n && !err; i++)
            err = vttt_stream_push(s[i], rgb + i * fb, 1, pred ? pred + i * fb : NULL,
                                   pred_tokens ? pred_tokens + i * P : NULL);
        return err;
    }
    if (p->cap_frames < n) { /* each stream's reference: its last frame, or mid-grey (intra) */
        uint8_t *r = realloc(p->ref, (size_t)n * fb);
        if (!r) return VTTT_ENOMEM;
        p->ref = r, p->cap_frames = n;
    }
    for (int i = 0; i < n; i++) {
        const uint8_t *last = vttt_stream_last_frame(s[i]);
        if (last) memcpy(p->ref + i * fb, last, fb);
        else memset(p->ref + i * fb, 128, fb);
    }
    int32_t *buf = malloc(2 * P * n * sizeof(int32_t));
    if (!buf) return VTTT_ENOMEM;
    int32_t *in = buf, *out = pred_tokens ? pred_tokens : buf + P * n;
    err = vttt_encoder_encode(p->e, p->ref, rgb, n, in);
    if (!err) err = vttt_stream_push_batch_tokens(s, n, in, NULL); /* the batch's outputs stay in p->logits */
    for (int i = 0; i < n && !err; i++) { /* the salt of the frame just pushed, as vttt_stream_push's */
        err = infer_next_frame(p, p->logits + i * P * p->V, (uint64_t)(s[i]->frames - 1) << 8, rgb + i * fb,
                               out + i * P, pred ? pred + i * fb : NULL);
        memcpy(s[i]->last, rgb + i * fb, fb), s[i]->has_last = 1;
    }
    free(buf);
    return err;
}
