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
    int err = vttt_model_state_init(&s->st, p->m, 1, 0);
    if (err) {
        free(s);
        return err;
    }
    *out = s;
    return VTTT_OK;
}

void vttt_stream_free(vttt_stream **sp) {
    if (!sp || !*sp) return;
    vttt_model_state_free(&(*sp)->st);
    free(*sp);
    *sp = NULL;
}

int64_t vttt_stream_frames(const vttt_stream *s) { return s->frames; }
size_t vttt_stream_state_bytes(const vttt_stream *s) { return vttt_model_state_bytes(s->st); }

/* Continues state st by one frame of tokens (P) and writes the greedy
 * next-frame tokens (P) into out. */
static int frame_step(vttt_predictor *p, vttt_model_state *st, const int32_t *tokens, int32_t *out) {
    int err = vttt_model_prefill(p->m, st, tokens, p->P, p->logits, 1);
    if (!err) err = infer_argmax(p, p->logits, p->P, out);
    return err;
}

/* Frames 2..horizon of a prediction: the stream's state copied into the
 * predictor's roll state, each predicted frame fed back. pred (horizon, P)
 * holds frame 1 on entry. */
static int roll_forward(vttt_stream *s, int horizon, int32_t *pred) {
    vttt_predictor *p = s->p;
    int err = VTTT_OK;
    if (!p->roll) err = vttt_model_state_init(&p->roll, p->m, 1, 0);
    if (!err) err = vttt_model_state_copy(p->roll, s->st);
    for (int k = 1; !err && k < horizon; k++)
        err = frame_step(p, p->roll, pred + (size_t)(k - 1) * p->P, pred + (size_t)k * p->P);
    return err;
}

int vttt_stream_push_tokens(vttt_stream *s, const int32_t *tokens, int horizon, int32_t *pred_tokens) {
    if (!s || !tokens || horizon < 1) return VTTT_EINVAL;
    vttt_predictor *p = s->p;
    int err = infer_scratch_reserve(p, (size_t)p->P * (horizon + 1));
    if (err) return err;
    int32_t *pred = pred_tokens ? pred_tokens : p->tok + p->P; /* tok: P rows spare, then horizon frames */
    if ((err = frame_step(p, s->st, tokens, pred))) return err;
    s->frames++;
    if (horizon > 1) err = roll_forward(s, horizon, pred);
    return err;
}

int vttt_stream_push(vttt_stream *s, const uint8_t *rgb, int horizon, uint8_t *pred, int32_t *pred_tokens) {
    if (!s || !rgb || horizon < 1) return VTTT_EINVAL;
    vttt_predictor *p = s->p;
    size_t P = p->P;
    int err = infer_scratch_reserve(p, P * (horizon + 1));
    if (err) return err;
    int32_t *in = p->tok, *out = pred_tokens ? pred_tokens : p->tok + P;
    if ((err = vttt_encoder_encode(p->e, rgb, 1, in))) return err;
    if ((err = vttt_stream_push_tokens(s, in, horizon, out))) return err;
    return pred ? vttt_encoder_decode(p->e, out, horizon, pred) : VTTT_OK;
}
