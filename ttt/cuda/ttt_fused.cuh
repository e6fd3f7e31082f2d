/*
 * ttt/cuda/ttt_fused.cuh — internal to ttt_fused_fwd.cu and ttt_fused_bwd.cu:
 * the device building blocks of the fused TTT kernels. One thread block
 * owns one (sequence, head) and walks its mini-batches in order; every
 * helper here is called by all threads of the block and ends with
 * __syncthreads(), so the code reads like the CPU's ttt_inner.c, one
 * matrix product or row pass per line.
 *
 * Buffers are plain float pointers: the kernels decide whether the state
 * and the scratch live in shared or global memory (see ttt_cuda_layout),
 * and the helpers do not care. Matrices are row-major as on the CPU.
 * Inside a mini-batch of n <= b tokens the keys occupy rows [0, n) and the
 * queries rows [b, b+n) of KQ (and of Zall), so the query half starts at
 * a fixed offset for every n; rows [n, b) are zero.
 */
#ifndef VTTT_TTT_FUSED_CUH
#define VTTT_TTT_FUSED_CUH

#include "cuda_internal.h"
#include "ops.h"
#include "ttt_cuda.h"
#include "ttt_inner.h" /* TTT_LN_EPS */

#define TTT_FUSED_THREADS 256 /* threads per block of every fused kernel */

/* Kernel-wide sizes of one call. */
struct kshape {
    int B, T, H, f, h1, b, mlp, D;
    size_t numel; /* floats of one (sequence, head)'s state */
};

static inline kshape kshape_of(const ttt_cuda_shape *s) {
    kshape k;
    k.B = s->B, k.T = s->T, k.H = s->H, k.f = s->f, k.h1 = s->h1, k.b = s->b, k.mlp = s->mlp;
    k.D = s->H * s->f;
    k.numel = ttt_cuda_state_numel(s);
    return k;
}

/* The four parts of a state vector [W1 | b1 | W2 | b2] (or of its gradient). */
struct kstate {
    float *W1, *b1, *W2, *b2;
};

static __device__ __forceinline__ kstate kstate_at(const kshape &S, float *p) {
    size_t n1 = (size_t)S.f * S.h1;
    kstate st;
    st.W1 = p, st.b1 = p + n1, st.W2 = p + n1 + S.h1, st.b2 = p + 2 * n1 + S.h1;
    return st;
}

/* One block's mini-batch buffers (ttt_cuda_layout placed at base). */
struct kbufs {
    float *KQ, *Zall, *X2, *Z2, *Gf, *G1, *E, *P1, *P2, *X2b, *Zf;
    float *s, *lr, *e, *de, *ln_w, *ln_b;
    float *dZf, *dGf, *dK, *dQ, *dG1, *dX2, *dX2b, *dZ1, *dE, *S, *dP, *tmpA, *tmpB, *tmpC, *rows;
};

static __device__ __forceinline__ kbufs kbufs_at(const ttt_cuda_layout &L, float *base, int f) {
    kbufs B;
    B.KQ = base + L.KQ, B.Zall = base + L.Zall, B.X2 = base + L.X2, B.Z2 = base + L.Z2, B.Gf = base + L.Gf;
    B.G1 = base + L.G1, B.E = base + L.E, B.P1 = base + L.P1, B.P2 = base + L.P2, B.X2b = base + L.X2b;
    B.Zf = base + L.Zf, B.s = base + L.s, B.lr = base + L.lr, B.e = base + L.e, B.de = base + L.de;
    B.ln_w = base + L.ln, B.ln_b = base + L.ln + f;
    B.dZf = base + L.dZf, B.dGf = base + L.dGf, B.dK = base + L.dK, B.dQ = base + L.dQ, B.dG1 = base + L.dG1;
    B.dX2 = base + L.dX2, B.dX2b = base + L.dX2b, B.dZ1 = base + L.dZ1, B.dE = base + L.dE, B.S = base + L.S;
    B.dP = base + L.dP, B.tmpA = base + L.tmpA, B.tmpB = base + L.tmpB, B.tmpC = base + L.tmpC;
    B.rows = base + L.rows;
    return B;
}

/* One mini-batch of one (sequence, head): pointers at its first token in
 * this head's columns of the (B,T,D) buffers (row stride D) and of lr
 * (row stride H). */
struct kmb {
    int n;
    const float *q, *k, *v, *lr;
    float *out; /* forward output rows, or NULL */
};

static __device__ __forceinline__ kmb kmb_at(const kshape &S, const float *XQ, const float *XK, const float *XV,
                                             const float *lr, float *Z, int bi, int h, int t) {
    size_t r = ((size_t)bi * S.T + t) * S.D + (size_t)h * S.f;
    kmb mb;
    mb.n = S.T - t < S.b ? S.T - t : S.b;
    mb.q = XQ + r, mb.k = XK + r, mb.v = XV + r, mb.out = Z ? Z + r : NULL;
    mb.lr = lr + ((size_t)bi * S.T + t) * S.H + h;
    return mb;
}

/* ---- block-wide loops ------------------------------------------------------ */

/* f(i) for i < n over the block's threads. */
template <class F>
static __device__ __forceinline__ void blk_for(size_t n, F f) {
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) f(i);
    __syncthreads();
}

/* f(i, lane) for rows i < n, one warp per row (the row's columns are
 * strided over the 32 lanes). */
template <class F>
static __device__ __forceinline__ void blk_rows(int n, F f) {
    int nw = blockDim.x / 32, lane = threadIdx.x % 32;
    for (int i = threadIdx.x / 32; i < n; i += nw) f(i, lane);
    __syncthreads();
}

/* Epilogues of blk_gemm: what to do with acc = (op(A) op(B))[i][j] at c. */
struct epi_set { /* c = alpha acc (sgemm beta 0) */
    float alpha;
    __device__ void operator()(float acc, float *c, int, int) const { *c = alpha * acc; }
};
struct epi_add { /* c = alpha acc + c (sgemm beta 1) */
    float alpha;
    __device__ void operator()(float acc, float *c, int, int) const { *c = alpha * acc + *c; }
};
struct epi_bias { /* c = acc + bias[j] (bias rows, then the product added) */
    const float *bias;
    __device__ void operator()(float acc, float *c, int, int j) const { *c = acc + bias[j]; }
};
struct epi_gelu_gate { /* c = acc * gelu'(Z[i][j]); Z may be c's own matrix */
    const float *Z;
    int ldz;
    __device__ void operator()(float acc, float *c, int i, int j) const {
        *c = acc * ttt_gelu_d1(Z[(size_t)i * ldz + j]);
    }
};
struct epi_scores { /* c = E[i][j] (acc + 1): the dual form's P = E * (A B^T + 1) */
    const float *E;
    int n;
    __device__ void operator()(float acc, float *c, int i, int j) const { *c = E[i * n + j] * (acc + 1.0f); }
};

/* C (M,N) <- epi(op(A) op(B)), row-major, op(A) (M,K), like ttt_sgemm.
 * One thread per output, dot products in fp32. With tb the threads of a
 * warp read B's rows at a stride of ldb floats, which would hit one
 * shared-memory bank; each output therefore starts its sum at k = j mod K
 * (the sum is the same up to rounding order). C must not overlap A or B. */
template <class Epi>
static __device__ void blk_gemm(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B,
                                int ldb, float *C, int ldc, Epi epi) {
    for (int idx = threadIdx.x; idx < M * N; idx += blockDim.x) {
        int i = idx / N, j = idx % N;
        float acc = 0.0f;
        if (!tb) {
            for (int k = 0; k < K; k++) acc += (ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) * B[(size_t)k * ldb + j];
        } else {
            int k = j % K;
            for (int kk = 0; kk < K; kk++, k = k + 1 == K ? 0 : k + 1)
                acc += (ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) * B[(size_t)j * ldb + k];
        }
        epi(acc, C + (size_t)i * ldc + j, i, j);
    }
    __syncthreads();
}

/* ---- rows of the inner LayerNorm (one warp per row) ------------------------- */

/* mean and 1/sigma of z (f), as ttt_ln_row. */
static __device__ __forceinline__ void warp_ln_stats(const float *z, int f, int lane, float *mu, float *r) {
    float s = 0.0f;
    for (int c = lane; c < f; c += 32) s += z[c];
    float m = ttt_warp_sum(s) / (float)f;
    float v = 0.0f;
    for (int c = lane; c < f; c += 32) v += (z[c] - m) * (z[c] - m);
    *mu = m;
    *r = 1.0f / sqrtf(ttt_warp_sum(v) / (float)f + TTT_LN_EPS);
}

/* G (f) = d/dz 0.5 |LN(z) - (v - k)|^2 (ttt_lnl2_grad_row). G may be z:
 * every lane reads its own columns of z before writing them. */
static __device__ void warp_lnl2_grad(const float *z, const float *k, const float *v, const float *w, const float *bb,
                                      int f, int lane, float *G) {
    float mu, r, sg = 0.0f, sgx = 0.0f;
    warp_ln_stats(z, f, lane, &mu, &r);
    for (int c = lane; c < f; c += 32) {
        float xh = (z[c] - mu) * r;
        float gx = w[c] * (w[c] * xh + bb[c] - (v[c] - k[c]));
        sg += gx;
        sgx += gx * xh;
    }
    sg = ttt_warp_sum(sg) / (float)f;
    sgx = ttt_warp_sum(sgx) / (float)f;
    __syncwarp();
    for (int c = lane; c < f; c += 32) {
        float xh = (z[c] - mu) * r;
        float gx = w[c] * (w[c] * xh + bb[c] - (v[c] - k[c]));
        G[c] = (gx - sg - xh * sgx) * r;
    }
}

/* ---- the dual form of one mini-batch (ttt_inner.c) -------------------------- */

/* Once per kernel: token scales s (b) and this head's inner LayerNorm. */
static __device__ void load_head_consts(const kshape &S, const kbufs &B, const float *token_idx, const float *ln_w,
                                        const float *ln_b, int h) {
    blk_for((size_t)S.b + 2 * S.f, [&](size_t i) {
        if (i < (size_t)S.b) {
            float v = 1.0f / (float)(i + 1) + token_idx[i];
            B.s[i] = v > 0.0f ? v : 0.0f;
        } else if (i < (size_t)S.b + S.f) {
            B.ln_w[i - S.b] = ln_w[(size_t)h * S.f + i - S.b];
        } else {
            B.ln_b[i - S.b - S.f] = ln_b[(size_t)h * S.f + i - S.b - S.f];
        }
    });
}

/* Gathers the mini-batch's keys and queries into KQ (zero rows past n)
 * and its learning rates into lr. */
static __device__ void mb_load(const kshape &S, const kbufs &B, const kmb &mb) {
    int f = S.f, b = S.b, n = mb.n;
    blk_for((size_t)2 * b * f + b, [&](size_t idx) {
        if (idx >= (size_t)2 * b * f) {
            int j = (int)(idx - (size_t)2 * b * f);
            B.lr[j] = j < n ? mb.lr[(size_t)j * S.H] : 0.0f;
            return;
        }
        int i = (int)(idx / f), c = (int)(idx % f);
        float x = 0.0f;
        if (i < n) x = mb.k[(size_t)i * S.D + c];
        else if (i >= b && i < b + n) x = mb.q[(size_t)(i - b) * S.D + c];
        B.KQ[idx] = x;
    });
}

/* Keys at W0 and their loss gradients (ttt_dual_keys): Zall = [K;Q] W1 + b1,
 * TTT-MLP X2 = gelu(Z1), Z2 = X2 W2 + b2, Gf = the LN+L2 gradient at the
 * output, G1 = (Gf W2^T) * gelu'(Z1). Needs mb_load first. */
static __device__ void dual_keys(const kshape &S, const kbufs &B, const kmb &mb, const kstate &W) {
    int n = mb.n, f = S.f, h1 = S.h1;
    blk_gemm(0, 0, S.b + n, h1, f, B.KQ, f, W.W1, h1, B.Zall, h1, epi_bias{W.b1});
    const float *Zout = B.Zall;
    if (S.mlp) {
        blk_for((size_t)n * h1, [&](size_t i) { B.X2[i] = ttt_gelu(B.Zall[i]); });
        blk_gemm(0, 0, n, f, h1, B.X2, h1, W.W2, f, B.Z2, f, epi_bias{W.b2});
        Zout = B.Z2;
    }
    blk_rows(n, [&](int i, int lane) {
        warp_lnl2_grad(Zout + (size_t)i * f, B.KQ + (size_t)i * f, mb.v + (size_t)i * S.D, B.ln_w, B.ln_b, f, lane,
                       B.Gf + (size_t)i * f);
    });
    if (S.mlp) blk_gemm(0, 1, n, h1, f, B.Gf, f, W.W2, f, B.G1, h1, epi_gelu_gate{B.Zall, h1});
}

/* The queries' pre-LN outputs Zf at each token's own W_i with matrix
 * products only (ttt_dual_queries): E, P1 = E * (Q K^T + 1),
 * Zb1 = Q W1 + b1 - P1 G1, and for TTT-MLP X2b = gelu(Zb1),
 * P2 = E * (X2b X2^T + 1), Zf = X2b W2 + b2 - P2 Gf. */
static __device__ void dual_queries(const kshape &S, const kbufs &B, const kmb &mb, const kstate &W) {
    int n = mb.n, f = S.f, h1 = S.h1;
    const float *K = B.KQ, *Q = B.KQ + (size_t)S.b * f, *G1 = S.mlp ? B.G1 : B.Gf;
    float *Zb1 = B.Zall + (size_t)S.b * h1;
    blk_for((size_t)n * n, [&](size_t idx) {
        int i = (int)(idx / n), j = (int)(idx % n);
        B.E[idx] = j <= i ? B.s[i] * B.lr[j] : 0.0f;
    });
    blk_gemm(0, 1, n, n, f, Q, f, K, f, B.P1, n, epi_scores{B.E, n});
    blk_gemm(0, 0, n, h1, n, B.P1, n, G1, h1, Zb1, h1, epi_add{-1.0f});
    if (!S.mlp) {
        blk_for((size_t)n * f, [&](size_t i) { B.Zf[i] = Zb1[i]; });
        return;
    }
    blk_for((size_t)n * h1, [&](size_t i) { B.X2b[i] = ttt_gelu(Zb1[i]); });
    blk_gemm(0, 0, n, f, h1, B.X2b, h1, W.W2, f, B.Zf, f, epi_bias{W.b2});
    blk_gemm(0, 1, n, n, h1, B.X2b, h1, B.X2, h1, B.P2, n, epi_scores{B.E, n});
    blk_gemm(0, 0, n, f, n, B.P2, n, B.Gf, f, B.Zf, f, epi_add{-1.0f});
}

/* W (in,out) += sign X^T diag(c) G, bias (out) += sign c^T G; X (n,in),
 * G (n,out) (ttt_inner.c dual_update). */
static __device__ void rank_update(float *W, float *bias, const float *X, const float *G, const float *c, int n,
                                   int in, int out, float sign) {
    size_t nw = (size_t)in * out;
    blk_for(nw + out, [&](size_t idx) {
        if (idx < nw) {
            int a = (int)(idx / out), o = (int)(idx % out);
            float acc = 0.0f;
            for (int j = 0; j < n; j++) acc += X[(size_t)j * in + a] * (c[j] * G[(size_t)j * out + o]);
            W[idx] = sign * acc + W[idx];
        } else {
            int o = (int)(idx - nw);
            for (int j = 0; j < n; j++) bias[o] += sign * (c[j] * G[(size_t)j * out + o]);
        }
    });
}

/* st += sign sum_j c_j grad_j(W0): the commit (c = eta of the last token,
 * sign -1) or the running sum of a partial mini-batch (c = lr, sign +1).
 * Needs dual_keys first. */
static __device__ void dual_apply(const kshape &S, const kbufs &B, int n, const kstate &st, const float *c,
                                  float sign) {
    rank_update(st.W1, st.b1, B.KQ, S.mlp ? B.G1 : B.Gf, c, n, S.f, S.h1, sign);
    if (S.mlp) rank_update(st.W2, st.b2, B.X2, B.Gf, c, n, S.h1, S.f, sign);
}

/* e (n) = eta of the mini-batch's last token, E[n-1][j]. */
static __device__ void last_eta(const kbufs &B, int n) {
    blk_for((size_t)n, [&](size_t j) { B.e[j] = B.E[(size_t)(n - 1) * n + j]; });
}

/* ---- host side, shared by the launchers ------------------------------------------ */

/* The backend's context, or NULL (logged) when be is not a CUDA backend. */
static inline ttt_cuda_ctx *ctx_of(const vttt_backend *be, const char *what) {
    if (be && be->device == VTTT_DEVICE_CUDA && be->ctx) return (ttt_cuda_ctx *)be->ctx;
    vttt_log(NULL, VTTT_LOG_ERROR, "%s: needs a CUDA backend (vttt_backend_cuda_open)", what);
    return NULL;
}

/* Sizes that the kernels can run: positive, and the token kernel's shared
 * memory within 48 KiB. */
static inline int check_shape(ttt_cuda_ctx *ctx, const ttt_cuda_shape *s, const ttt_cuda_params *p, const char *what) {
    if (!s || !p || s->B <= 0 || s->T < 0 || s->H <= 0 || s->f <= 0 || s->h1 <= 0 || s->b <= 0 || s->f > 1024 ||
        s->b > 1024 || (!s->mlp && s->h1 != s->f) || (s->mlp && (!p->W2 || !p->b2)) || !p->W1 || !p->b1 ||
        !p->ln_w || !p->ln_b || !p->token_idx) {
        vttt_log(&ctx->log, VTTT_LOG_ERROR,
                 "%s: bad shape or parameters (B=%d T=%d H=%d f=%d h1=%d b=%d mlp=%d; f, b <= 1024; TTT-Linear "
                 "needs h1 == f, TTT-MLP needs W2 and b2)",
                 what, s ? s->B : 0, s ? s->T : 0, s ? s->H : 0, s ? s->f : 0, s ? s->h1 : 0, s ? s->b : 0,
                 s ? s->mlp : 0);
        return VTTT_EINVAL;
    }
    return VTTT_OK;
}

/* The most dynamic shared memory a block of this device may opt into. */
static inline int smem_optin(ttt_cuda_ctx *ctx, size_t *bytes) {
    int v = 0;
    int err = ttt_cuda_err(&ctx->log, cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx->dev),
                           "reading the shared memory limit");
    *bytes = err ? 0 : (size_t)v;
    return err;
}

/* Allows `kernel` to use `bytes` of dynamic shared memory (over 48 KiB
 * needs the opt-in). */
template <class K>
static inline int smem_allow(ttt_cuda_ctx *ctx, K kernel, size_t bytes) {
    if (bytes <= 48 * 1024) return VTTT_OK;
    return ttt_cuda_err(&ctx->log, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
                        "allowing the fused kernel's shared memory");
}

#endif
