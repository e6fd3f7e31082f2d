/*
 * Streams: one video each, with its own constant-size model state. A push
 * continues the state by the frame's tokens and reads the model's output
 * at every token of the frame (the prediction of the same place in the
 * next frame); a horizon rolls forward on the predictor's spare state.
 */
#include <stdlib.h>
#include <string.h>

#include "infer_internal.h"

int vttt_stream_open(vttt_stream **out, vttt_predictor *p) {
    if (!out || !p) return VTTT_EINVAL;
    *out = NULL;
    vttt_stream *s = calloc(1, sizeof *s);
    if (!s) return VTTT_ENOMEM;
    s->p = p;
    s->last = malloc((size_t)p->S * p->S * 3);
    int err = s->last ? vttt_model_state_init(&s->st, p->m, 1, 0) : VTTT_ENOMEM;
    if (err) {
        free(s->last);
        free(s);
        return err;
    }
    *out = s;
    return VTTT_OK;
}

void vttt_stream_free(vttt_stream **sp) {
    if (!sp || !*sp) return;
    vttt_model_state_free(&(*sp)->st);
    free((*sp)->last);
    free(*sp);
    *sp = NULL;
}

int64_t vttt_stream_frames(const vttt_stream *s) { return s->frames; }
size_t vttt_stream_state_bytes(const vttt_stream *s) {
    return vttt_model_state_bytes(s->st) + (size_t)s->p->S * s->p->S * 3;
}
const uint8_t *vttt_stream_last_frame(const vttt_stream *s) { return s->has_last ? s->last : NULL; }

/* Continues state st by one frame of tokens (P); the model's outputs
 * (P rows) land in p->logits. */
static int model_step(vttt_predictor *p, vttt_model_state *st, const int32_t *tokens) {
    return vttt_model_prefill(p->m, st, tokens, p->P, p->logits, 1);
}

int vttt_stream_push_encoded(vttt_stream *s, const uint8_t *rgb, const int32_t *tokens, int horizon, uint8_t *pred,
                             int32_t *pred_tokens) {
    if (!s || !tokens || horizon < 1 || (pred && !rgb)) return VTTT_EINVAL;
    vttt_predictor *p = s->p;
    size_t P = p->P, fb = (size_t)p->S * p->S * 3;
    int err = infer_scratch_reserve(p, P * (horizon + 1));
    if (err) return err;
    int32_t *out = pred_tokens ? pred_tokens : p->tok + P; /* tok: P rows spare, then horizon frames */
    if ((err = model_step(p, s->st, tokens))) return err;
    uint64_t salt = (uint64_t)s->frames << 8;
    err = infer_next_frame(p, p->logits, salt, rgb, out, pred);
    s->frames++;
    if (rgb) memcpy(s->last, rgb, fb), s->has_last = 1;
    else s->has_last = 0; /* tokens alone: the next frame of pixels is coded intra */
    if (!err && horizon > 1) { /* roll forward on a copy of the state, feeding the predicted tokens back */
        if (!p->roll) err = vttt_model_state_init(&p->roll, p->m, 1, 0);
        if (!err) err = vttt_model_state_copy(p->roll, s->st);
        for (int k = 1; !err && k < horizon; k++) {
            if (!(err = model_step(p, p->roll, out + (k - 1) * P)))
                err = infer_next_frame(p, p->logits, salt + (uint64_t)k, pred ? pred + (k - 1) * fb : NULL,
                                       out + k * P, pred ? pred + k * fb : NULL);
        }
    }
    return err;
}

int vttt_stream_push_tokens(vttt_stream *s, const int32_t *tokens, int horizon, int32_t *pred_tokens) {
    return vttt_stream_push_encoded(s, NULL, tokens, horizon, NULL, pred_tokens);
}

int vttt_stream_push(vttt_stream *s, const uint8_t *rgb, int horizon, uint8_t *pred, int32_t *pred_tokens) {
    if (!s || !rgb || horizon < 1) return VTTT_EINVAL;
    vttt_predictor *p = s->p;
    int err = infer_scratch_reserve(p, (size_t)p->P * (horizon + 1));
    if (err) return err;
    int32_t *in = p->tok; /* row 0; push_encoded uses the rows after it */
    if ((err = vttt_encoder_encode(p->e, vttt_stream_last_frame(s), rgb, 1, in))) return err;
    return vttt_stream_push_encoded(s, rgb, in, horizon, pred, pred_tokens);
}
