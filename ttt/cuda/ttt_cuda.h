/*
 * ttt/cuda/ttt_cuda.h — internal: the fused TTT inner-loop kernels on the GPU
 * (ttt_fused_fwd.cu: prefill and the per-token decode step;
 * ttt_fused_bwd.cu: the training backward), their C-callable launchers,
 * the timing and GEMM-rate helpers of `vttt bench cuda`, and the checking
 * harness that runs them against the CPU reference (ttt/ttt_cuda_check.c).
 *
 * The math is that of ttt/ttt_inner.c and ttt/ttt_inner_bwd.c, step for
 * step: dual form per mini-batch, every gradient at the mini-batch's start
 * state W0, the trailing partial mini-batch accumulating A instead of
 * committing. All buffers are fp32 and live on the device of `be` (a CUDA
 * backend from vttt_backend_cuda_open). Launchers are asynchronous on the
 * backend's stream: they return launch errors; be->sync returns the rest.
 * In a build without CUDA (ttt/cuda/backend_none.c) every function that
 * needs a device returns VTTT_ENODEV; the size helpers below work anyway.
 *
 * Layouts: activations are (B,T,D) rows with D = H*f, head h in columns
 * [h*f, (h+1)*f); learning rates (B,T,H). The inner state of one
 * (sequence, head) is the flat vector of ttt_internal.h,
 * [W1 (f,h1) | b1 (h1) | W2 (h1,f) | b2 (f)] (W2, b2 for TTT-MLP only),
 * numel floats; a batch of states is (B*H, numel), sequence-major
 * (index bi*H + h). Checkpoints are (B*H, n_groups, numel).
 */
#ifndef VTTT_TTT_CUDA_H
#define VTTT_TTT_CUDA_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The shape of one call. */
typedef struct ttt_cuda_shape {
    int B, T;   /* sequences, tokens per sequence in this call */
    int H, f;   /* heads, head dim (D = H*f) */
    int h1;     /* inner hidden width: f (TTT-Linear) or mlp_mult*f (TTT-MLP) */
    int b;      /* mini-batch size */
    int mlp;    /* 1: TTT-MLP, 0: TTT-Linear */
} ttt_cuda_shape;

/* The layer's inner parameters on the device (read only). */
typedef struct ttt_cuda_params {
    const float *W1;        /* (H, f, h1) learned initial states */
    const float *b1;        /* (H, h1) */
    const float *W2;        /* (H, h1, f) TTT-MLP only, else NULL */
    const float *b2;        /* (H, f)     TTT-MLP only, else NULL */
    const float *ln_w;      /* (H, f) inner LayerNorm weight */
    const float *ln_b;      /* (H, f) inner LayerNorm bias */
    const float *token_idx; /* (b) offsets delta_i: s_i = max(0, 1/i + delta_i) */
} ttt_cuda_params;

/* Gradients of the same tensors; the backward ACCUMULATES (+=) into them.
 * A NULL pointer is skipped. */
typedef struct ttt_cuda_grads {
    float *W1, *b1, *W2, *b2, *ln_w, *ln_b, *token_idx;
} ttt_cuda_grads;

/* The activations of one call. */
typedef struct ttt_cuda_io {
    const float *XQ, *XK, *XV; /* (B,T,D) queries, keys (after rotary), values */
    const float *lr;           /* (B,T,H) inner learning rates */
    float *Z;                  /* (B,T,D) out: q + LN(f_{W_i}(q)) per head (forward only) */
} ttt_cuda_io;

/* ---- sizes (no device needed) ------------------------------------------ */

/* Where one thread block's mini-batch buffers lie in its scratch area, in
 * floats from the area's start. Names follow ttt_inner.h. The forward
 * layout aliases buffers that the forward no longer needs (G1 over the
 * keys' Z1, X2b over the queries' Zb1, Z2 over Gf: each is computed in
 * place, element by element); the backward keeps them apart, since it
 * differentiates through all of them. */
typedef struct ttt_cuda_layout {
    size_t KQ, Zall, X2, Z2, Gf, G1, E, P1, P2, X2b, Zf; /* as in ttt_scratch */
    size_t s, lr, e, de, ln;                             /* (b) x4, ln (2f): w then b */
    size_t dZf, dGf, dK, dQ, dG1, dX2, dX2b, dZ1;         /* backward only */
    size_t dE, S, dP, tmpA, tmpB, tmpC, rows;
    size_t total;                                        /* floats */
} ttt_cuda_layout;

static inline size_t ttt_cuda_take_(size_t *off, size_t n) {
    size_t o = *off;
    *off += (n + 31) & ~(size_t)31; /* 128-byte aligned buffers */
    return o;
}

static inline ttt_cuda_layout ttt_cuda_layout_of(const ttt_cuda_shape *s, int backward) {
    ttt_cuda_layout L;
    memset(&L, 0, sizeof L);
    size_t b = (size_t)s->b, f = (size_t)s->f, h = (size_t)s->h1, off = 0;
    L.KQ = ttt_cuda_take_(&off, 2 * b * f);
    L.Zall = ttt_cuda_take_(&off, 2 * b * h);
    L.Gf = ttt_cuda_take_(&off, b * f);
    L.Zf = ttt_cuda_take_(&off, b * f);
    L.E = ttt_cuda_take_(&off, b * b);
    L.P1 = ttt_cuda_take_(&off, b * b);
    L.s = ttt_cuda_take_(&off, b);
    L.lr = ttt_cuda_take_(&off, b);
    L.e = ttt_cuda_take_(&off, b);
    L.de = ttt_cuda_take_(&off, b);
    L.ln = ttt_cuda_take_(&off, 2 * f);
    L.Z2 = L.Gf;
    L.G1 = L.Gf; /* TTT-Linear: the gradient at the only layer is Gf */
    if (s->mlp) {
        L.X2 = ttt_cuda_take_(&off, b * h);
        L.P2 = ttt_cuda_take_(&off, b * b);
        L.G1 = L.Zall;         /* forward: over Z1 */
        L.X2b = L.Zall + b * h; /* forward: over Zb1 */
    }
    if (backward) {
        if (s->mlp) {
            L.Z2 = ttt_cuda_take_(&off, b * f);
            L.G1 = ttt_cuda_take_(&off, b * h);
            L.X2b = ttt_cuda_take_(&off, b * h);
            L.dG1 = ttt_cuda_take_(&off, b * h);
            L.dX2 = ttt_cuda_take_(&off, b * h);
            L.dX2b = ttt_cuda_take_(&off, b * h);
        }
        L.dZf = ttt_cuda_take_(&off, b * f);
        L.dGf = ttt_cuda_take_(&off, b * f);
        L.dK = ttt_cuda_take_(&off, b * f);
        L.dQ = ttt_cuda_take_(&off, b * f);
        L.dZ1 = ttt_cuda_take_(&off, b * h);
        L.dE = ttt_cuda_take_(&off, b * b);
        L.S = ttt_cuda_take_(&off, b * b);
        L.dP = ttt_cuda_take_(&off, b * b);
        L.tmpA = ttt_cuda_take_(&off, b * h);
        L.tmpB = ttt_cuda_take_(&off, b * h);
        L.tmpC = ttt_cuda_take_(&off, b * f);
        L.rows = ttt_cuda_take_(&off, b * f);
        if (!s->mlp) L.dG1 = L.dGf;
    }
    L.total = off;
    return L;
}

/* Floats in one (sequence, head)'s inner state. */
static inline size_t ttt_cuda_state_numel(const ttt_cuda_shape *s) {
    size_t f = (size_t)s->f, h = (size_t)s->h1;
    return f * h + h + (s->mlp ? h * f + f : 0);
}

/* Full mini-batches and trailing partial one in T tokens starting at a
 * mini-batch boundary, and the checkpoint groups of `group` of them. */
static inline int ttt_cuda_num_groups(int T, int b, int group) {
    int nmb = (T + b - 1) / b;
    return group > 0 ? (nmb + group - 1) / group : 0;
}

/* Per (sequence, head) gradient partials of the backward, reduced into
 * ttt_cuda_grads afterwards: dW (numel), ds (b), dln (2f). */
static inline size_t ttt_cuda_head_grad_floats(const ttt_cuda_shape *s) {
    return (ttt_cuda_state_numel(s) + (size_t)s->b + 2 * (size_t)s->f + 31) & ~(size_t)31;
}

/* Device workspace (bytes) of ttt_cuda_prefill and ttt_cuda_backward:
 * one scratch area per (sequence, head) (used where shared memory is too
 * small to hold it); the backward adds `group` recomputed states and the
 * gradient partials per (sequence, head). */
static inline size_t ttt_cuda_fwd_workspace(const ttt_cuda_shape *s) {
    return (size_t)s->B * s->H * ttt_cuda_layout_of(s, 0).total * sizeof(float);
}
static inline size_t ttt_cuda_bwd_workspace(const ttt_cuda_shape *s, int group) {
    size_t per = ttt_cuda_layout_of(s, 1).total + (size_t)(group > 0 ? group : 1) * ttt_cuda_state_numel(s) +
                 ttt_cuda_head_grad_floats(s);
    return (size_t)s->B * s->H * per * sizeof(float);
}

/* ---- the kernels ---------------------------------------------------------- */

/* W (B*H, numel) = the learned initial state of each head, tiled over the
 * sequences; A (B*H, numel), if not NULL, = 0. */
int ttt_cuda_state_init(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, float *W,
                        float *A);

/* Prefill: continues each (sequence, head) from state W (committed at the
 * last mini-batch boundary) and A (the running mini-batch's sum of
 * lr_j grad_j; may be NULL only when pos % b == 0 and the caller does not
 * want the trailing partial mini-batch's sum) over the T tokens of io,
 * the first at absolute position pos, as ttt_head_run: per-token steps up
 * to the next boundary, dual-form mini-batches, a trailing partial one.
 * Writes io->Z; W and A are left as a decode would find them. ckpt (NULL,
 * or (B*H, ttt_cuda_num_groups(T', b, group), numel) with T' the tokens
 * after the first boundary): the state before every group-th mini-batch.
 * ws: ttt_cuda_fwd_workspace(s) bytes. */
int ttt_cuda_prefill(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                     const ttt_cuda_io *io, int64_t pos, float *W, float *A, float *ckpt, int group, void *ws,
                     size_t ws_bytes);

/* Decode: one token per sequence at absolute position pos (s->T must be
 * 1; io rows are (B,1,D), lr (B,1,H)): A += lr grad(W), the output at
 * W - s_i A, and at the last token of a mini-batch the commit W -= s_i A,
 * A = 0 (ttt_seq.c token_step). */
int ttt_cuda_decode(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                    const ttt_cuda_io *io, int64_t pos, float *W, float *A);

/* Backward of a training prefill (pos 0, from the learned initial state,
 * with checkpoints every `group` mini-batches): walks the groups in
 * reverse, recomputes each group's states from its checkpoint and
 * differentiates each mini-batch as ttt_dual_backward. dZ (B,T,D): the
 * gradient of io->Z's rows. Accumulates (+=) into dXQ, dXK, dXV (B,T,D),
 * dlr (B,T,H) and g. ws: ttt_cuda_bwd_workspace(s, group) bytes. */
int ttt_cuda_backward(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                      const ttt_cuda_io *io, const float *ckpt, int group, const float *dZ, float *dXQ, float *dXK,
                      float *dXV, float *dlr, const ttt_cuda_grads *g, void *ws, size_t ws_bytes);

/* ---- bench helpers ---------------------------------------------------------- */

/* Elapsed device time between two events recorded on the backend's stream. */
typedef struct ttt_cuda_timer ttt_cuda_timer;
int ttt_cuda_timer_new(const vttt_backend *be, ttt_cuda_timer **t);
int ttt_cuda_timer_start(ttt_cuda_timer *t);
/* Records the stop event, waits for it, and gives the time since start. */
int ttt_cuda_timer_stop(ttt_cuda_timer *t, double *ms);
void ttt_cuda_timer_free(ttt_cuda_timer **t);

/* Measured matrix rate of the device: best of a few cuBLAS n x n x n GEMMs,
 * fp32 (exact, no TF32) or bf16 inputs with fp32 accumulation, in TFLOP/s.
 * Allocates and frees its own buffers. */
int ttt_cuda_gemm_rate(const vttt_backend *be, int bf16, int n, double *tflops);
/* The device's name ("NVIDIA H100 80GB HBM3"). */
int ttt_cuda_device_name(const vttt_backend *be, char *buf, size_t len);

/* ---- bf16 (bf16_cuda.cu) ------------------------------------------------------ */

/* dst (n) = src rounded to bf16 (nearest even, as vttt_f32_to_bf16), and
 * back (exact). bf16 values travel as uint16_t bit patterns. */
int ttt_cuda_to_bf16(const vttt_backend *be, uint16_t *dst, const float *src, size_t n);
int ttt_cuda_from_bf16(const vttt_backend *be, float *dst, const uint16_t *src, size_t n);
/* out (N,OC) fp32 = xb (N,C) . wb (OC,C)^T, bf16 inputs, fp32 accumulation
 * (cuBLASLt). */
int ttt_cuda_gemm_bf16(const vttt_backend *be, float *out, const uint16_t *xb, const uint16_t *wb, int N, int C,
                       int OC);
/* The same from an fp32 input: xb (N*C bf16) receives bf16(inp) first. */
int ttt_cuda_linear_bf16(const vttt_backend *be, float *out, const float *inp, const uint16_t *wb, uint16_t *xb,
                         int N, int C, int OC);

/* ---- checking harness (ttt/ttt_cuda_check.c) ------------------------------- */

/* Tolerances on the relative errors below, in fp32 (shared by
 * tests/test_ttt_cuda.c and `vttt bench cuda`):
 * - FWD for the forward outputs and states: both sides fp32, but the GPU
 *   sums its dot products and row statistics in another order (and
 *   contracts to FMA);
 * - BWD for the activations' gradients;
 * - PARAM for the inner parameters' gradients, sums over every mini-batch
 *   of every sequence (the token scales' over every head too), with
 *   cancellation between the terms;
 * - HARNESS for the harness's own CPU loop against the layer's backward:
 *   the same arithmetic but for OpenBLAS, which the layer runs on one
 *   thread per head and the harness on all. */
#define TTT_CUDA_TOL_FWD 1e-4
#define TTT_CUDA_TOL_BWD 1e-4
#define TTT_CUDA_TOL_PARAM 1e-3
#define TTT_CUDA_TOL_HARNESS 1e-5

/* Relative errors (max |GPU - CPU| / max |CPU|) of the GPU kernels against
 * the CPU reference on one layer. NaN: not compared. */
typedef struct ttt_cuda_check {
    double z;        /* prefill output Z (training forward) */
    double ckpt;     /* checkpointed states */
    double state;    /* the state after the last full mini-batch */
    double decode;   /* decode steps then a prefill from mid-mini-batch: outputs */
    double decode_state; /* ... and the final W, A */
    double dxq, dxk, dxv, dlr; /* backward activations */
    double dparams;  /* worst of the inner parameter gradients (W1, b1, W2, b2, ln, token_idx) */
    double harness;  /* the harness's own CPU backward loop against vttt_layer_backward (CPU vs CPU) */
} ttt_cuda_check;

/* Runs layer l (TTT-Linear or TTT-MLP, CPU parameters) on x (B,T,D) with a
 * training forward, then the GPU kernels on the same XQ/XK/XV/lr (from the
 * CPU's outer part), and compares: Z and checkpoints, the backward of
 * L = sum(y * dy) through the inner loop (dy (B,T,D)), and decode steps
 * over the first n_decode tokens followed by a prefill of the rest.
 * Overwrites l's gradients and training cache. res is filled; the return
 * value is a VTTT code (VTTT_ENODEV without a GPU build). */
int ttt_cuda_check_layer(vttt_layer *l, const vttt_backend *be, const float *x, const float *dy, int B, int T,
                         int n_decode, ttt_cuda_check *res);
/* 1 when every compared error of res is within the tolerances above. */
int ttt_cuda_check_passed(const ttt_cuda_check *res);

#ifdef __cplusplus
}
#endif
#endif
