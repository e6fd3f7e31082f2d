/*
 * ttt/model_dev_internal.h — internal to model_dev.c (the training step)
 * and model_dev_gen.c (generation): the device model object.
 */
#ifndef VTTT_MODEL_DEV_INTERNAL_H
#define VTTT_MODEL_DEV_INTERNAL_H

#include "layer_dev_internal.h"
#include "model_internal.h"

struct vttt_model_dev {
    vttt_model *m;
    const vttt_backend *be;
    const ttt_dev_ops *ops;
    int max_B, max_T;
    vttt_layer_dev **ld;   /* (L) */
    ttt_arena arena;
    float *pmem, *gmem;    /* (n_params) the model's own block */
    model_params p, g;     /* pointers into pmem, gmem */
    int32_t *tokens, *targets, *fpos; /* (N) device; fpos: in-frame position ids (tokens_per_frame > 0) */
    float *h;              /* (L+1, N, D) residual stream */
    float *h1, *h2, *u, *xs, *xf; /* (L, N, D); h1, u: pre_conv only */
    float *gate, *up;      /* (L, N, I) */
    float *rstd;           /* (L, 3, N) */
    float *hf, *rstd_f;    /* (N, D), (N) */
    float *losses;         /* (N) */
    float *inv;            /* (N) 1 / n_targets: the per-row weight of the mean loss */
    float *dhf, *dh, *dx, *tmp; /* (N, D) */
    float *act, *dact, *dup;    /* (N, I) */
    float *logits, *dl;    /* (MODEL_HEAD_ROWS, V) */
    int32_t *h_tok;        /* (N) host staging */
    float *h_f;            /* (N) host staging */
    int B, T, valid;
};

/* Block i's training buffers over N rows (model_forward.c train_io). */
block_io ttt_model_dev_io(vttt_model_dev *d, int i, int N);

#endif
