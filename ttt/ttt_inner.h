/*
 * ttt/ttt_inner.h — internal to the inner-loop files: the per-thread
 * scratch and the row helpers (inner LayerNorm, the fused LN + L2 loss
 * gradient) shared by the forward and backward kernels.
 */
#ifndef VTTT_TTT_INNER_H
#define VTTT_TTT_INNER_H

#include "ttt_internal.h"

#define TTT_LN_EPS 1e-6f

/* Buffers for one mini-batch (n <= b rows). Names follow ttt_inner.c. */
struct ttt_scratch {
    float *KQ;   /* (2b, f)  keys then queries, gathered */
    float *Zall; /* (2b, h1) [K;Q] W1 + b1 */
    float *X2;   /* (b, h1)  gelu(Z1) (mlp) */
    float *Z2;   /* (b, f)   X2 W2 + b2 (mlp) */
    float *Gf;   /* (b, f)   gradient at the inner output (G1 linear, G2 mlp) */
    float *G1;   /* (b, h1)  gradient at Z1 (mlp) */
    float *E;    /* (b, b)   eta, lower triangular */
    float *P1;   /* (b, b)   E * (Q K^T + 1) */
    float *P2;   /* (b, b)   E * (X2b X2^T + 1) (mlp) */
    float *X2b;  /* (b, h1)  gelu(Zb1) (mlp) */
    float *Zf;   /* (b, f)   pre-LN output of the inner model on queries */
    float *tmpA; /* (2b, h1) scratch */
    float *tmpB; /* (2b, h1) scratch */
    float *tmpC; /* (b, h1)  scratch */
    float *tmpD; /* (b, h1)  scratch */
    float *bb;   /* (b, b)   scratch */
    float *bb2;  /* (b, b)   scratch */
    float *vec;  /* (4 h1 + 4 f) scratch for per-token work */
    /* backward only */
    float *dZf, *dGf, *dK, *dQ;      /* (b, f) */
    float *dG1, *dX2, *dX2b, *dZ1;   /* (b, h1) */
    float *dE, *S, *dP;              /* (b, b) */
    float *mem;
};

/* y = LN(z) over f with weight w, bias b; also x_hat (f) and 1/sigma. */
void ttt_ln_row(const float *z, const float *w, const float *b, int f, float *y, float *xhat, float *rstd);
/* G (f) = d/dz 0.5 |LN(z) - t|^2. */
void ttt_lnl2_grad_row(const float *z, const float *t, const float *w, const float *b, int f, float *G);
/* Backward of ttt_lnl2_grad_row: given dG, accumulates dz, dt, dw, db. */
void ttt_lnl2_grad_row_backward(const float *z, const float *t, const float *w, const float *b, int f,
                                const float *dG, float *dz, float *dt, float *dw, float *db);

/* The two halves of ttt_dual_forward, shared with the backward (which
 * recomputes them): keys at W0 and their loss gradients (fills KQ, Zall, Gf
 * and for TTT-MLP X2, Z2, G1), then the queries' pre-LN outputs Zf (fills
 * E, P1 and for TTT-MLP X2b, P2). */
void ttt_dual_keys(const ttt_dims *d, ttt_scratch *ws, const ttt_mb *mb, const float *W);
void ttt_dual_queries(const ttt_dims *d, ttt_scratch *ws, const ttt_mb *mb, const float *W);

#endif
