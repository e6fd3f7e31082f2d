/*
 * ttt/ttt_internal.h — internal: the TTT-Linear / TTT-MLP layer split into
 * the outer part (projections, rotary, learning rates, post-norm, gate,
 * o_proj: ttt_outer.c) and the inner loop (the fast weights trained while
 * the sequence is read: ttt_inner*.c), plus the sequence drivers.
 *
 * One head's inner state is a flat vector [W1 (f,h1) | b1 (h1) | W2 (h1,f)
 * | b2 (f)] (the last two for TTT-MLP only).
 */
#ifndef VTTT_TTT_INTERNAL_H
#define VTTT_TTT_INTERNAL_H

#include "layer.h"

typedef struct {
    int f, h1, b;   /* head dim, inner hidden, mini-batch size */
    int mlp;        /* 1: TTT-MLP (two inner layers), 0: TTT-Linear */
    size_t numel;   /* floats in one head's inner state */
} ttt_dims;

ttt_dims ttt_dims_of(const struct vttt_layer *l);
static inline float *ttt_W1(const ttt_dims *d, float *s) { return s; }
static inline float *ttt_b1(const ttt_dims *d, float *s) { return s + (size_t)d->f * d->h1; }
static inline float *ttt_W2(const ttt_dims *d, float *s) { return s + (size_t)d->f * d->h1 + d->h1; }
static inline float *ttt_b2(const ttt_dims *d, float *s) { return s + (size_t)2 * d->f * d->h1 + d->h1; }
/* Copies head h's learned initial state from the parameters into s. */
void ttt_state_from_params(const struct vttt_layer *l, int h, float *s);

/* Per-thread scratch of the inner kernels, sized for one mini-batch. */
typedef struct ttt_scratch ttt_scratch;
ttt_scratch *ttt_scratch_new(const ttt_dims *d);
void ttt_scratch_free(ttt_scratch **ws);

/* Per-head view of one mini-batch of n tokens: rows of q, k, v with row
 * stride ld (floats), token scales s (n) and learning rates lr (n), the
 * inner LayerNorm (f) and the output rows (n, ld). */
typedef struct {
    int n, ld;
    const float *q, *k, *v;
    const float *s, *lr;
    const float *ln_w, *ln_b;
    float *out;
} ttt_mb;

/* Dual form of one mini-batch that starts at a mini-batch boundary.
 * W (numel) is the state W0. commit != 0: W becomes the next mini-batch's
 * W0 (W0 - sum_j eta_nj grad_j). commit == 0: W is left alone and, if A is
 * not NULL, A (numel) += sum_j lr_j grad_j (for a later decode). */
void ttt_dual_forward(const ttt_dims *d, ttt_scratch *ws, const ttt_mb *mb, float *W, float *A, int commit);

/* Backward of ttt_dual_forward with commit (W: the state W0 at entry,
 * unchanged). dout (n, ld): gradient of the output rows; dW (numel): on
 * entry the gradient of the committed state, on exit the gradient of W0.
 * Accumulates into dq, dk, dv (rows, ld), ds (n), dlr (n), dln_w, dln_b (f). */
void ttt_dual_backward(const ttt_dims *d, ttt_scratch *ws, const ttt_mb *mb, const float *W, const float *dout,
                       float *dW, float *dq, float *dk, float *dv, float *ds, float *dlr, float *dln_w,
                       float *dln_b);

/* One token for decode/primal: grad (numel) = gradient of
 * l(W) = 0.5 |LN(f_W(k)) - (v - k)|^2 at W. */
void ttt_token_grad(const ttt_dims *d, ttt_scratch *ws, const float *W, const float *k, const float *v,
                    const float *ln_w, const float *ln_b, float *grad);
/* out (f) = q + LN(f_W(q)). */
void ttt_token_apply(const ttt_dims *d, ttt_scratch *ws, const float *W, const float *q, const float *ln_w,
                     const float *ln_b, float *out);

/* Token scale s_i = max(0, 1/i + delta_{i-1}) for i = 1..n. */
void ttt_token_scales(const struct vttt_layer *l, float *s, int n);

/* Outer part, forward. x (B,T,D); writes XQ, XK, XV (B,T,D) after rotary
 * (positions pos0..), lr (B,T,H) and, with share_qk, xqk (B,T,D) (the
 * conv input). conv_state (B,K-1,D) or NULL (zeros). */
int ttt_outer_in_forward(const struct vttt_layer *l, const float *x, int B, int T, int64_t pos0,
                         const float *conv_state, float *XQ, float *XK, float *XV, float *lr, float *xqk);
/* Backward of the above (windows start at mini-batch boundaries, so the
 * rotary positions are those of pos0 = 0): dXQ, dXK are rotated back in
 * place; dlr is (B,T,H); lr is the forward's; conv0 the forward's conv
 * state (a constant; it still feeds the conv weights' gradient) or NULL;
 * tmp: (B,T,D) scratch. */
void ttt_outer_in_backward(struct vttt_layer *l, float *dx, const float *x, const float *xqk, const float *conv0,
                           float *dXQ, float *dXK, const float *dXV, const float *dlr, const float *lr, float *tmp,
                           int B, int T);

/* Outer part after the inner loop: Z (B,T,D) -> post_norm -> gate -> o_proj.
 * Saves into the optional buffers (NULL: not kept): post-norm mean/rstd
 * (B*T), the normed rows (B,T,D), the gate pre-activation (B,T,D).
 * tmp: (2,B,T,D) scratch. */
void ttt_outer_out_forward(const struct vttt_layer *l, float *y, const float *x, const float *Z, int B, int T,
                           float *mean, float *rstd, float *normed, float *gpre, float *tmp);
void ttt_outer_out_backward(struct vttt_layer *l, float *dZ, float *dx, const float *dy, const float *x,
                            const float *Z, const float *mean, const float *rstd, const float *normed,
                            const float *gpre, float *tmp, int B, int T);

/* Buffers of a layer's TTT computations, grown on demand and kept between
 * calls (a layer is used by one thread at a time). Training activations
 * are those of the last train forward. */
struct ttt_cache {
    int nthreads;
    ttt_scratch **ws;   /* one per thread */
    float *tok;         /* (nthreads, 2, numel) per-token gradient / weights */
    size_t cap;         /* capacity of the (B,T,D) buffers, in floats */
    int B, T, train;    /* shape of the last forward; train: activations valid */
    float *x, *XQ, *XK, *XV, *xqk, *Z, *normed, *gpre, *tmp; /* (B,T,D); tmp (2,B,T,D) */
    float *lr;          /* (B,T,H) */
    float *mean, *rstd; /* (B,T) post-norm statistics */
    int group;          /* mini-batches per checkpoint */
    int n_groups;
    float *ckpt;        /* (B*H, n_groups, numel) inner states at group starts */
    size_t ckpt_cap;
    float *conv0;       /* (B,K-1,D) share_qk: conv inputs before the window (zeros, or carried) */
    size_t conv0_cap;
    float *bwd;         /* backward scratch, kept across steps */
    size_t bwd_cap;
};
/* Makes sure c holds buffers for (B,T) (and training ones when train). */
int ttt_cache_reserve(struct vttt_layer *l, int B, int T, int train);

/* One (sequence, head) of the inner loop over tokens [t0, t0+T) of the
 * (B,T,D) buffers, the first at absolute position pos: per-token steps up
 * to the next mini-batch boundary, dual-form full mini-batches, and a dual
 * trailing partial one. W, A: the head's state (numel each). ckpt (NULL or
 * (n_groups, numel)): the state is saved before every group-th mini-batch. */
void ttt_head_run(const struct vttt_layer *l, int tid, int bi, int h, int T, int64_t pos, float *W, float *A,
                  float *ckpt, int group);

/* Sequence drivers. */
int ttt_forward(struct vttt_layer *l, float *y, const float *x, int B, int T, int train);
int ttt_forward_primal(struct vttt_layer *l, float *y, const float *x, int B, int T);
int ttt_backward(struct vttt_layer *l, float *dx, const float *dy);
int ttt_prefill(struct vttt_layer *l, struct vttt_state *s, float *y, const float *x, int T);
void ttt_cache_free(struct ttt_cache **c);

#endif
