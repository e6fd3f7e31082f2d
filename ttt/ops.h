/*
 * ttt/ops.h — internal: the CPU reference ops, each a forward/backward pair.
 *
 * Every op is a flat function over row-major fp32 arrays with explicit
 * dimensions (llm.c style). Backward functions ACCUMULATE (+=) into every
 * gradient they write, activations and parameters alike, and any gradient
 * pointer may be NULL when it is not wanted. N counts rows (B*T).
 */
#ifndef VTTT_OPS_H
#define VTTT_OPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* C (M,N) = alpha * op(A) op(B) + beta * C, row-major; op(A) is (M,K).
 * ta/tb != 0 transpose A/B. Uses OpenBLAS, on the calling thread alone
 * below VTTT_BLAS_PAR_MIN_FLOPS (ttt/par.h). */
void ttt_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);

/* Hold OpenBLAS at one thread while our own OpenMP threads call it (each
 * call then runs serially inside its thread); begin returns the calling
 * thread's count, which end restores (with OpenBLAS's OpenMP build, the
 * calling thread's OpenMP setting). */
int ttt_blas_serial_begin(void);
void ttt_blas_serial_end(int n);

/* out (N,OC) = inp (N,C) . w(OC,C)^T + bias(OC); bias may be NULL. */
void ttt_linear_forward(float *out, const float *inp, const float *w, const float *bias, int N, int C, int OC);
void ttt_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, int N, int C, int OC);

/* RMSNorm: out = inp / sqrt(mean(inp^2) + eps) * w. rstd (N) saved for backward. */
void ttt_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);
void ttt_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                          const float *rstd, int N, int C);

/* LayerNorm: out = (inp - mean) * rstd * w + b; mean, rstd (N) may be NULL in forward. */
void ttt_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                           const float *b, int N, int C, float eps);
void ttt_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *mean, const float *rstd, int N, int C);

/* GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
void ttt_gelu_forward(float *out, const float *inp, size_t n);
void ttt_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* SiLU x*sigmoid(x); SwiGLU out = silu(gate) * up. */
void ttt_silu_forward(float *out, const float *inp, size_t n);
void ttt_silu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void ttt_swiglu_forward(float *out, const float *gate, const float *up, size_t n);
void ttt_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);

/* Sigmoid; the backward takes the forward's output. */
void ttt_sigmoid_forward(float *out, const float *inp, size_t n);
void ttt_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n);

/* Rotary embedding on (B, T, H, f) rows of width H*f, rotating interleaved
 * pairs (x[2i], x[2i+1]) by angle p * theta^(-2i/f), where position
 * p = (pos0 + t) mod pos_mod (pos_mod <= 0: no modulus). out may equal inp. */
void ttt_rotary_forward(float *out, const float *inp, int B, int T, int H, int f, int64_t pos0, int pos_mod, float theta);
void ttt_rotary_backward(float *dinp, const float *dout, int B, int T, int H, int f, int64_t pos0, int pos_mod, float theta);

/* Depthwise causal conv1d over time, kernel K, per channel c of C:
 * out[b,t,c] = bias[c] + sum_k w[c,k] * x[b, t-(K-1)+k, c], where x before
 * t=0 is taken from state (B, K-1, C) (the previous K-1 inputs, oldest
 * first), or zeros when state is NULL. w is (C, K) (torch Conv1d (C,1,K)). */
void ttt_conv1d_forward(float *out, const float *inp, const float *w, const float *bias, const float *state,
                        int B, int T, int C, int K);
/* Gradients for inp, w, bias (state is a constant). */
void ttt_conv1d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, const float *state, int B, int T, int C, int K);
/* Shifts the last K-1 inputs of inp (B,T,C) into state (B,K-1,C). */
void ttt_conv1d_state_update(float *state, const float *inp, int B, int T, int C, int K);

/* Embedding lookup: out (N,C) = table[ids]. Returns VTTT_EINVAL for an id
 * outside [0, V). */
int ttt_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int V, int C);
void ttt_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C);

/* Softmax cross-entropy per row: losses (N) = -log softmax(logits)[target].
 * Rows with target < 0 are ignored (loss 0). Returns VTTT_EINVAL for a
 * target >= V. Backward: dlogits += dloss[n] * (softmax - onehot). */
int ttt_xent_forward(float *losses, const float *logits, const int32_t *targets, int N, int V);
void ttt_xent_backward(float *dlogits, const float *dloss, const float *logits, const int32_t *targets, int N, int V);

/* ---- 2D image ops (the frame tokenizer, encoder/) -----------------------
 * Images are NCHW fp32: (N, C, H, W), row-major. */

/* 2D convolution (cross-correlation, as torch.nn.Conv2d with groups 1):
 * out (N, OC, OH, OW) = bias(OC) + sum w (OC, C, KH, KW) * inp (N, C, H, W),
 * OH = (H + 2 pad - KH) / stride + 1 (likewise OW); zero padding. bias may
 * be NULL. CPU: im2col + sgemm. */
void ttt_conv2d_forward(float *out, const float *inp, const float *w, const float *bias, int N, int C, int H,
                        int W, int OC, int KH, int KW, int stride, int pad);
/* Gradients for inp, w, bias (each may be NULL; all accumulate). */
void ttt_conv2d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad);

/* GroupNorm over (N, C, HW) with G groups of C/G channels (torch.nn.GroupNorm):
 * out = (inp - mean) * rstd * w[c] + b[c]; mean, rstd (N, G) are saved for
 * the backward. */
void ttt_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int N, int C, int HW, int G, float eps);
void ttt_groupnorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *mean, const float *rstd, int N, int C, int HW, int G);

/* Nearest-neighbour 2x upsampling: out (N, C, 2H, 2W) from inp (N, C, H, W). */
void ttt_upsample2x_forward(float *out, const float *inp, int N, int C, int H, int W);
void ttt_upsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W);

#ifdef __CUDACC__
#define TTT_HOSTDEV __host__ __device__ /* nvcc also compiles the scalar helpers below for the GPU */
#else
#define TTT_HOSTDEV
#endif

/* exp(x) for the activations: Cephes' polynomial after range reduction
 * (relative error ~2e-7), written so that loops over it vectorise (no
 * libm call, no branches). x is clamped to [-87, 88]; NaN gives NaN. */
static inline TTT_HOSTDEV float ttt_expf(float x) {
    x = x < -87.0f ? -87.0f : x; /* with -fno-trapping-math these become vector min/max */
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r * r + r + 1.0f;
    /* n is in [-126, 127] for any non-NaN x; a NaN x (which the clamps let
     * through) gives a NaN e, and this keeps its int conversion defined */
    n = n > -126.0f ? n : -126.0f;
    int32_t bits = ((int32_t)n + 127) * 8388608; /* 2^n as float bits */
    float sc;
    memcpy(&sc, &bits, sizeof sc);
    return e * sc;
}

/* GELU, tanh form, and its first and second derivatives, shared by the op
 * above and the TTT inner loop. 0.5 (1 + tanh(u)) = sigmoid(2u), with
 * u = sqrt(2/pi) (x + 0.044715 x^3), so no tanh is needed. */
#define TTT_GELU_K0 0.7978845608028654f /* sqrt(2/pi) */
#define TTT_GELU_K1 0.044715f
static inline TTT_HOSTDEV float ttt_gelu_sig(float x) { /* sigmoid(2u) */
    float u = TTT_GELU_K0 * (x + TTT_GELU_K1 * x * x * x);
    return 1.0f / (1.0f + ttt_expf(-2.0f * u));
}
static inline TTT_HOSTDEV float ttt_gelu(float x) { return x * ttt_gelu_sig(x); }
static inline TTT_HOSTDEV float ttt_gelu_d1(float x) {
    float s = ttt_gelu_sig(x);
    float du = TTT_GELU_K0 * (1.0f + 3.0f * TTT_GELU_K1 * x * x);
    return s + 2.0f * x * du * s * (1.0f - s);
}
static inline TTT_HOSTDEV float ttt_gelu_d2(float x) {
    float s = ttt_gelu_sig(x);
    float du = TTT_GELU_K0 * (1.0f + 3.0f * TTT_GELU_K1 * x * x);
    float d2u = TTT_GELU_K0 * 6.0f * TTT_GELU_K1 * x;
    return s * (1.0f - s) * (4.0f * du + 4.0f * x * (1.0f - 2.0f * s) * du * du + 2.0f * x * d2u);
}

#endif
