/*
 * ttt/layer.h — internal: the layer object and per-sequence state shared by
 * layer.c (config, parameters, dispatch), the TTT files (ttt_*.c) and
 * attention.c.
 */
#ifndef VTTT_LAYER_H
#define VTTT_LAYER_H

#include "ttt.h"

struct ttt_cache;   /* TTT training activations (ttt_train.c) */
struct attn_cache;  /* attention training activations (attention.c) */

struct vttt_layer {
    vttt_layer_config cfg;
    vttt_logger log;
    int D, H, f;      /* width, heads, head dim */
    int h1;           /* inner hidden width: f (linear) or mlp_mult*f (mlp) */
    int b;            /* mini-batch size */
    size_t n_params;  /* floats in one parameter block */
    float *param_mem; /* (n_params) */
    float *grad_mem;  /* (n_params) */
    vttt_layer_params p;
    vttt_layer_params g;
    struct ttt_cache *tc;
    struct attn_cache *ac;
};

/* Per-sequence generation state. */
struct vttt_state {
    const struct vttt_layer *l;
    int B;
    int64_t pos;        /* tokens consumed so far (same for every sequence) */
    /* TTT: inner weights committed at the last mini-batch boundary and the
     * sum over the running mini-batch of lr_j * grad_j, per (batch, head). */
    size_t inner_numel; /* floats of one head's inner state: W1,b1[,W2,b2] */
    float *W0;          /* (B, H, inner_numel) */
    float *A;           /* (B, H, inner_numel) */
    float *conv_state;  /* (B, K-1, D) share_qk: last inputs of the conv */
    /* attention: KV cache */
    int max_T;
    float *k_cache;     /* (B, max_T, D) */
    float *v_cache;     /* (B, max_T, D) */
};

/* Checks an activation buffer for NaN/Inf; VTTT_ENAN with a message. */
int ttt_check_finite(const vttt_layer *l, const char *what, const float *x, size_t n);
/* VTTT_OK when a sequence at position pos may take n more tokens without
 * passing VTTT_MAX_POSITION (no overflow for any pos, n); VTTT_EINVAL with
 * a message naming `what` otherwise. */
int ttt_position_check(const vttt_logger *lg, const char *what, int64_t pos, int64_t n);

/* attention.c */
int ttt_attn_forward(struct vttt_layer *l, float *y, const float *x, int B, int T, int train);
int ttt_attn_backward(struct vttt_layer *l, float *dx, const float *dy);
int ttt_attn_prefill(struct vttt_layer *l, struct vttt_state *s, float *y, const float *x, int T);
int ttt_attn_decode(struct vttt_layer *l, struct vttt_state *s, float *y, const float *x);
void ttt_attn_cache_free(struct attn_cache **c);

#endif
