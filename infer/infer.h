/*
 * infer/infer.h — next-frame prediction: a predictor (a video model and its
 * frame tokenizer, loaded once) and streams (one video each, with its own
 * constant-size model state). The offline `vttt predict`, the HTTP daemon
 * `vttt serve` and the tests all go through these calls, so the same frames
 * give the same predictions everywhere.
 *
 * Pushing frame t of a stream encodes it into tokens, continues the
 * stream's state by those tokens (one prefill over the frame) and reads the
 * model's output at every token of the frame, which predicts the token at
 * the same place in frame t+1 (DESIGN.md "Video as tokens"). Greedy
 * (argmax) tokens are decoded into the predicted frame. A horizon K > 1
 * rolls forward on a copy of the state, feeding each predicted frame back;
 * the stream's own state only ever sees the true frames.
 *
 * Conventions as in ttt/ttt.h. A predictor's model and tokenizer are used
 * by one thread at a time: callers serialize vttt_stream_push* on one
 * predictor (the daemon runs them on its model thread).
 */
#ifndef VTTT_INFER_H
#define VTTT_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "encoder.h"
#include "model.h"
#include "ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vttt_predictor vttt_predictor;

/* Loads a video model directory (tokens_per_frame > 0) and a tokenizer
 * directory and checks that they agree (vocabulary, tokens per frame).
 * VTTT_EFORMAT with a message naming both directories otherwise. */
int vttt_predictor_open(vttt_predictor **out, const char *model_dir, const char *encoder_dir,
                        const vttt_logger *lg);
void vttt_predictor_close(vttt_predictor **p);
int vttt_predictor_frame_size(const vttt_predictor *p);       /* S: frames are (S, S, 3) */
int vttt_predictor_tokens_per_frame(const vttt_predictor *p);
vttt_model *vttt_predictor_model(vttt_predictor *p);
vttt_encoder *vttt_predictor_encoder(vttt_predictor *p);

typedef struct vttt_stream vttt_stream;

int vttt_stream_open(vttt_stream **out, vttt_predictor *p);
void vttt_stream_free(vttt_stream **s);
int64_t vttt_stream_frames(const vttt_stream *s);   /* frames pushed so far */
size_t vttt_stream_state_bytes(const vttt_stream *s); /* constant for TTT models */

/* Pushes one true frame rgb (S, S, 3). pred (horizon, S, S, 3) and
 * pred_tokens (horizon, tokens_per_frame) receive the predicted next
 * `horizon` frames; either may be NULL. horizon >= 1. */
int vttt_stream_push(vttt_stream *s, const uint8_t *rgb, int horizon, uint8_t *pred, int32_t *pred_tokens);
/* The same for n streams at once (distinct streams of one predictor, one
 * frame each, horizon 1), batched into one model step: rgb (n, S, S, 3),
 * pred (n, S, S, 3), pred_tokens (n, tokens_per_frame), either may be NULL.
 * Results equal n separate vttt_stream_push calls. */
int vttt_stream_push_batch(vttt_stream **s, int n, const uint8_t *rgb, uint8_t *pred, int32_t *pred_tokens);

/* Snapshots: the stream's whole state as bytes (a malloc'd buffer the
 * caller frees), and a new stream from such bytes. Restoring checks that
 * the snapshot belongs to this predictor's model (VTTT_EFORMAT otherwise,
 * or for damaged bytes). */
int vttt_stream_snapshot(const vttt_stream *s, uint8_t **out, size_t *n);
int vttt_stream_restore(vttt_stream **out, vttt_predictor *p, const uint8_t *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif
