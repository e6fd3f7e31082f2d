/*
 * infer/infer_internal.h — internal to infer/: the predictor and stream
 * objects and the scratch the predictor lends to the pushes it serializes.
 */
#ifndef VTTT_INFER_INTERNAL_H
#define VTTT_INFER_INTERNAL_H

#include "infer.h"

struct vttt_predictor {
    vttt_model *m;
    vttt_encoder *e;
    vttt_logger log;
    int S;                  /* frame size: frames are (S, S, 3) */
    int P;                  /* tokens per frame: M motion tokens, then P - M cells */
    int M;                  /* motion tokens at the start of a frame (0 or 2) */
    int V;                  /* vocabulary (the logits' row length) */
    int Vc;                 /* the cells' vocabulary [0, Vc) */
    int mlo[2], mn;         /* motion tokens of axis a (x 0, y 1): [mlo[a], mlo[a] + mn) */
    uint64_t fingerprint;   /* of the model's configuration and weights (snapshots) */
    uint8_t *key;           /* (key_n) snapshot signing key, or NULL: unsigned snapshots */
    size_t key_n;
    /* scratch of the pushes, grown on demand */
    size_t cap_rows;        /* token rows the buffers below hold */
    float *logits;          /* (cap_rows, V) */
    int32_t *tok;           /* (cap_rows) */
    vttt_model_state *roll; /* B = 1: horizon roll-outs (NULL until needed) */
    vttt_model_state *batch;/* B = batch_n: push_batch (NULL until needed) */
    int batch_n;
    int decoding;           /* VTTT_DECODE_* */
    float *q;               /* (d, P): the latent of one predicted frame */
    float *pz;              /* (P): DELTA: each cell's probability of "no change" */
    float *mix;             /* (S*S*3): MIXTURE's weighted sum */
    uint8_t *rank_frame;    /* (S*S*3): MIXTURE: the decoding of one rank */
    uint8_t *mref;          /* (S*S*3): the reference moved by the predicted motion */
    int32_t *mtok;          /* (4, M): MIXTURE/EXPECT: the motion tokens of each combination */
    float *mp;              /* (2, M): the probability of the likeliest and second token of each axis */
    int32_t *rank_tok;      /* (TOP, P) MIXTURE: each cell's ranked tokens */
    float *rank_p;          /* (TOP, P) their probabilities */
    uint8_t *ref;           /* (cap_frames, S, S, 3): push_batch's reference frames */
    int cap_frames;
};

struct vttt_stream {
    vttt_predictor *p;
    vttt_model_state *st;   /* B = 1 */
    int64_t frames;
    uint8_t *last;          /* (S, S, 3): the last true frame pushed (a DELTA tokenizer's reference) */
    int has_last;
};

/* Makes the predictor's scratch hold `rows` token rows. */
int infer_scratch_reserve(vttt_predictor *p, size_t rows);
/* out (n) = argmax of each row of logits (n, V) over the tokens its place
 * in the frame may hold (a motion token of its axis, or a cell token);
 * ties: lowest id. A non-finite logit is VTTT_ENAN with a message (out
 * may be NULL: the check alone). */
int infer_argmax(const vttt_predictor *p, const float *logits, int n, int32_t *out);
/* The next frame from the model's outputs (P rows of logits): its tokens
 * (argmax, or drawn for VTTT_DECODE_SAMPLE with a hash of salt) and, when
 * out is not NULL, its pixels decoded on ref (the frame before it, shifted
 * by the motion tokens chosen): from the expected latent
 * (VTTT_DECODE_EXPECT), the mixture of the likeliest (MIXTURE) or the
 * tokens' latents. VTTT_ENAN for non-finite logits. */
int infer_next_frame(vttt_predictor *p, const float *logits, uint64_t salt, const uint8_t *ref, int32_t *tokens,
                     uint8_t *out);

#endif
