/*
 * ttt/model_internal.h — internal to ttt/model*.c: the model object, its
 * parameter block, training activations, generation state, and the block
 * forward shared by training and generation.
 */
#ifndef VTTT_MODEL_INTERNAL_H
#define VTTT_MODEL_INTERNAL_H

#include "model.h"

/* The model's own parameters (the sequence layers own theirs), one
 * allocation; V vocab, D width, I SwiGLU width, L layers, K conv kernel,
 * P tokens per frame. Unused pointers are NULL. */
typedef struct model_params {
    float *embed;       /* (V, D)    model.embed_tokens.weight */
    float *frame_pos;   /* (P, D)    model.frame_pos_embed.weight (tokens_per_frame > 0) */
    float *conv_norm;   /* (L, D)    model.layers.{i}.conv.norm.weight (pre_conv) */
    float *conv_w;      /* (L, D, K) model.layers.{i}.conv.conv.weight (D,1,K) */
    float *conv_b;      /* (L, D)    model.layers.{i}.conv.conv.bias */
    float *seq_norm;    /* (L, D)    model.layers.{i}.seq_norm.weight */
    float *ffn_norm;    /* (L, D)    model.layers.{i}.ffn_norm.weight */
    float *gate_proj;   /* (L, I, D) model.layers.{i}.mlp.gate_proj.weight */
    float *up_proj;     /* (L, I, D) model.layers.{i}.mlp.up_proj.weight */
    float *down_proj;   /* (L, D, I) model.layers.{i}.mlp.down_proj.weight */
    float *norm;        /* (D)       model.norm.weight */
    float *lm_head;     /* (V, D)    lm_head.weight (untied only) */
} model_params;

/* Training activations of the last train forward, N = B*T rows, grown on
 * demand and kept between steps. */
typedef struct model_acts {
    size_t cap_rows;    /* rows the big buffers hold */
    size_t cap_tgt;     /* rows of tokens, targets, losses */
    int B, T;
    int valid;          /* a train forward is ready for backward */
    int carry;          /* it was a carried window ... */
    int64_t pos0;       /* ... starting at this position */
    int64_t n_targets;
    int32_t *tokens;    /* (N) */
    int32_t *targets;   /* (N) */
    float *losses;      /* (N) */
    float *h;           /* (L+1, N, D) residual stream at the block inputs; h[L] the last output */
    float *h1;          /* (L, N, D) after the pre-conv (pre_conv only) */
    float *h2;          /* (L, N, D) after the sequence layer */
    float *u;           /* (L, N, D) pre-conv RMSNorm output (pre_conv only) */
    float *xs;          /* (L, N, D) sequence-layer input */
    float *xf;          /* (L, N, D) SwiGLU input */
    float *gate, *up;   /* (L, N, I) SwiGLU pre-activations */
    float *rstd;        /* (L, 3, N) RMSNorm 1/rms: conv, seq, ffn */
    float *hf;          /* (N, D) final RMSNorm output */
    float *rstd_f;      /* (N) */
    float *dhf;         /* (N, D) d mean-loss / d hf, computed in the forward */
    float *dlm;         /* (V, D) d mean-loss / d LM-head weight, likewise */
    float *dlogits;     /* (MODEL_HEAD_ROWS, V) scratch of the LM head's gradient */
    float *conv0;       /* (L, B, K-1, D) pre-conv states at a carried window's start */
    size_t cap_conv0;
} model_acts;

/* Scratch shared by training (one layer at a time) and generation chunks,
 * grown on demand. */
typedef struct model_scratch {
    size_t cap_rows;
    float *nd[3];       /* 3 x (N, D) */
    float *ni[3];       /* 3 x (N, I) */
    float *rstd;        /* (3, N) */
    float *logits;      /* (MODEL_HEAD_ROWS, V) */
    int32_t *tok;       /* (N) */
} model_scratch;

struct vttt_model {
    vttt_model_config cfg;
    vttt_logger log;
    int V, D, I, L, K, P;
    size_t n_params;        /* floats in the model's own block (with padding) */
    float *param_mem;       /* (n_params) */
    float *grad_mem;        /* (n_params) */
    model_params p, g;
    vttt_layer **layers;    /* (L) */
    vttt_model_tensor *tensors;
    int n_tensors;
    model_acts acts;
    model_scratch scr;
};

struct vttt_model_state {
    const vttt_model *m;
    int B;
    int64_t pos;
    vttt_state **ls;        /* (L) */
    float *conv;            /* (L, B, K-1, D) pre-conv states (pre_conv only) */
};

/* Rows of the LM head computed at a time (logits chunk). */
#define MODEL_HEAD_ROWS 256

/* LM-head weight (V, D): the embedding when tied. */
static inline const float *model_head_w(const vttt_model *m) {
    return m->cfg.tie_word_embeddings ? m->p.embed : m->p.lm_head;
}

/* Buffers of one block's forward. For generation every h* points at the
 * same residual buffer and u, xs, xf at one normed buffer (in place). */
typedef struct block_io {
    float *h_in, *h1, *h2, *h_out;   /* (N, D) */
    float *u, *xs, *xf;              /* (N, D) */
    float *gate, *up, *act;          /* (N, I); act may equal gate */
    float *rstd;                     /* (3, N) */
    float *tmp;                      /* (N, D) */
} block_io;

/* How a block runs its sequence layer. */
typedef enum { SEQ_TRAIN, SEQ_CARRY, SEQ_PREFILL } seq_mode;

/* One block over (B, T) rows. ls: the layer's state (SEQ_CARRY,
 * SEQ_PREFILL); conv_state (B, K-1, D) or NULL: the pre-conv's previous
 * inputs, advanced past these T tokens. */
int model_block_forward(vttt_model *m, int i, const block_io *io, int B, int T, seq_mode mode, vttt_state *ls,
                        float *conv_state);
/* h (N, D) = embedding of tokens (B, T) at positions pos0.. (plus the
 * in-frame position embedding). VTTT_EINVAL (logged) for a bad token. */
int model_embed(vttt_model *m, float *h, const int32_t *tokens, int B, int T, int64_t pos0);
/* Makes the scratch hold N rows. */
int model_scratch_reserve(vttt_model *m, size_t rows);
/* Makes acts.tokens, targets, losses hold N rows. */
int model_targets_reserve(vttt_model *m, size_t N);
/* out (B, T) = targets, or the tokens shifted by the target shift when
 * targets is NULL; negative targets become -1. *count: targets >= 0.
 * VTTT_EINVAL (logged) for a target >= V. */
int model_targets(vttt_model *m, int32_t *out, const int32_t *tokens, const int32_t *targets, int B, int T,
                  int64_t *count);
/* LM head over n rows hf (n, D): logits (n, V) (NULL: computed into the
 * scratch piece by piece), losses (n) against targets (n) when losses is
 * not NULL. dhf (n, D) not NULL: dhf and acts.dlm accumulate the gradient
 * of inv_count * sum(losses). */
void model_head_rows(vttt_model *m, const float *hf, int n, const int32_t *targets, float *losses, float *logits,
                     float *dhf, float inv_count);
/* Logs "path: <fmt with detail>" as an error and returns err. */
int model_io_fail(const vttt_logger *lg, const char *path, int err, const char *fmt, const char *detail);
/* Sum of losses (N) / count, in double; 0 when count is 0. */
float model_mean_loss(const float *losses, size_t N, int64_t count);
/* vttt_model_forward with train = 0: a fresh state prefilled chunk by
 * chunk (memory independent of T for TTT models). */
int model_forward_eval(vttt_model *m, const int32_t *tokens, const int32_t *targets, int B, int T, float *loss,
                       float *logits);

#endif
