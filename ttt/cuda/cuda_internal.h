/*
 * ttt/cuda/cuda_internal.h — internal to the CUDA backend: its context,
 * error mapping, launch helpers, the reductions shared by several kernels,
 * and the ops that fill the vttt_backend table (same names as ops.h with a
 * ttt_cuda_ prefix, same semantics: backward ACCUMULATES, NULL gradients
 * are skipped).
 *
 * Streams: the table's elementwise entries take no context, so they cannot
 * be told which stream to use. Everything in this backend therefore runs on
 * one fixed stream, the calling thread's per-thread default stream
 * (cudaStreamPerThread), which orders all of a thread's work on the device
 * (and is ordered with the legacy stream 0). It is not the legacy stream
 * because that one cannot be captured into a CUDA graph (the device
 * layer's decode step is, ttt/layer_dev_state.c). A backend is used by the
 * thread that opened it. The context's stream and cuBLAS handles are bound
 * to it too.
 */
#ifndef VTTT_CUDA_INTERNAL_H
#define VTTT_CUDA_INTERNAL_H

#ifdef TTT_CUDA_EMU
/* tests/test_cuda_emu.cpp compiles the fused TTT kernels and the device
 * layer's CUDA ops with g++ against a CPU emulation of the CUDA subset
 * they use (cuda_emu.h). */
#include "cuda_emu.h"
#else
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
/* A kernel launch, spelled so that the emulation can run it too:
 * TTT_LAUNCH(k, grid, block, smem, stream)(args). */
#define TTT_LAUNCH(k, g, b, s, st) k<<<(g), (b), (s), (st)>>>
/* The kernel's dynamic shared memory, an array `name` of `type`. */
#define TTT_DYN_SMEM(type, name) extern __shared__ __align__(16) type name[]
#endif

#include "backend.h"

#define TTT_CUDA_STREAM cudaStreamPerThread /* see above */

/* The backend's private state, allocated together with its table. */
typedef struct ttt_cuda_ctx {
    int dev;              /* device ordinal */
    cudaStream_t stream;  /* TTT_CUDA_STREAM */
    cublasHandle_t blas;  /* bound to stream, CUBLAS_DEFAULT_MATH (exact fp32, no TF32) */
    cublasLtHandle_t lt;  /* bf16 projections (bf16_cuda.cu) */
    void *blas_ws;        /* TTT_CUDA_BLAS_WS bytes, cuBLAS's workspace (explicit: graph capture allocates nothing) */
    void *lt_ws;          /* TTT_CUDA_BLAS_WS bytes, cuBLASLt's */
    struct ttt_cudnn *dnn; /* cuDNN handle, per-shape conv plans, workspace (conv2d_cudnn.cu); made on first use */
    vttt_logger log;
} ttt_cuda_ctx;

#define TTT_CUDA_BLAS_WS ((size_t)32 << 20) /* bytes; NVIDIA's recommendation for Hopper */

/* Maps a failed CUDA runtime call to a negative VTTT code, logs "what" with
 * the CUDA message, and clears the (non-sticky) error so a later sync does
 * not report it again. VTTT_OK for cudaSuccess. */
int ttt_cuda_err(const vttt_logger *lg, cudaError_t e, const char *what);
/* The same for a cuBLAS status. */
int ttt_cublas_err(const vttt_logger *lg, cublasStatus_t s, const char *what);
/* For ops that return void: logs a pending launch error (to stderr, there is
 * no logger) without clearing it, so the next sync still returns it. */
void ttt_cuda_check_launch(const char *what);

/* Block count for a grid-stride loop over n items. */
#define TTT_CUDA_BLOCK 256
static inline unsigned ttt_cuda_grid(size_t n, int block) {
    size_t g = (n + (size_t)block - 1) / (size_t)block;
    return (unsigned)(g < 65536 ? (g ? g : 1) : 65536);
}

/* ---- shared device reductions ------------------------------------------ */
static __device__ __forceinline__ float ttt_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Adds into out[c * out_cs + s * out_ss] the sum over rows n < N of f(n, c, s)
 * for every column c < C and slice s < gridDim.y. One block owns 32 columns
 * and one slice, so every output is written by exactly one thread and the
 * sum is deterministic (no atomics). Block (32, TTT_COLSUM_ROWS). */
#define TTT_COLSUM_ROWS 8
template <class F>
__global__ void ttt_colsum_kernel(float *out, F f, int N, int C, int out_cs, int out_ss) {
    __shared__ float part[TTT_COLSUM_ROWS][33];
    int c = blockIdx.x * 32 + threadIdx.x, s = blockIdx.y;
    float acc = 0.0f;
    if (c < C)
        for (int n = threadIdx.y; n < N; n += TTT_COLSUM_ROWS) acc += f(n, c, s);
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y != 0 || c >= C) return;
    float sum = 0.0f;
    for (int r = 0; r < TTT_COLSUM_ROWS; r++) sum += part[r][threadIdx.x];
    out[(size_t)c * out_cs + (size_t)s * out_ss] += sum;
}

/* f(n, c, s) = x[n * ld + c]: column sums of a row-major matrix. */
struct ttt_matrix_entry {
    const float *x;
    int ld;
    __device__ float operator()(int n, int c, int) const { return x[(size_t)n * ld + c]; }
};

/* Launches ttt_colsum_kernel for C columns and S slices. */
template <class F>
static void ttt_colsum(float *out, F f, int N, int C, int S, int out_cs, int out_ss) {
    if (N <= 0 || C <= 0 || S <= 0) return;
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)S), block(32, TTT_COLSUM_ROWS);
    TTT_LAUNCH(ttt_colsum_kernel<F>, grid, block, 0, TTT_CUDA_STREAM)(out, f, N, C, out_cs, out_ss);
}

/* ---- the table's ops ---------------------------------------------------- */
/* linear_cuda.cu */
int ttt_cuda_matmul(void *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);
int ttt_cuda_linear_forward(void *ctx, float *out, const float *inp, const float *w, const float *bias, int N,
                            int C, int OC);
int ttt_cuda_linear_backward(void *ctx, float *dinp, float *dw, float *dbias, const float *dout,
                             const float *inp, const float *w, int N, int C, int OC);
/* norm_cuda.cu */
void ttt_cuda_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);
void ttt_cuda_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                               const float *rstd, int N, int C);
void ttt_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                const float *b, int N, int C, float eps);
void ttt_cuda_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, const float *mean, const float *rstd, int N, int C);
/* pointwise_cuda.cu */
void ttt_cuda_gelu_forward(float *out, const float *inp, size_t n);
void ttt_cuda_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void ttt_cuda_silu_forward(float *out, const float *inp, size_t n);
void ttt_cuda_silu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void ttt_cuda_swiglu_forward(float *out, const float *gate, const float *up, size_t n);
void ttt_cuda_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                              size_t n);
void ttt_cuda_sigmoid_forward(float *out, const float *inp, size_t n);
void ttt_cuda_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n);
/* rotary_cuda.cu */
void ttt_cuda_rotary_forward(float *out, const float *inp, int B, int T, int H, int f, int64_t pos0, int pos_mod,
                             float theta);
void ttt_cuda_rotary_backward(float *dinp, const float *dout, int B, int T, int H, int f, int64_t pos0,
                              int pos_mod, float theta);
/* conv1d_cuda.cu */
void ttt_cuda_conv1d_forward(float *out, const float *inp, const float *w, const float *bias, const float *state,
                             int B, int T, int C, int K);
void ttt_cuda_conv1d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                              const float *w, const float *state, int B, int T, int C, int K);
/* token_cuda.cu */
int ttt_cuda_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int V, int C);
void ttt_cuda_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C);
int ttt_cuda_xent_forward(float *losses, const float *logits, const int32_t *targets, int N, int V);
void ttt_cuda_xent_backward(float *dlogits, const float *dloss, const float *logits, const int32_t *targets,
                            int N, int V);

/* Puts the ops above (linear_cuda.cu .. token_cuda.cu) into be's table:
 * the one list that backend_cuda.cu's table and the emulated one of
 * tests/test_cuda_emu.cpp (which compiles these files with g++) share.
 * The image ops below (cuDNN, image_cuda.cu) are set by the caller. */
static inline void ttt_cuda_fill_ops(vttt_backend *be) {
    be->matmul = ttt_cuda_matmul;
    be->linear_forward = ttt_cuda_linear_forward;
    be->linear_backward = ttt_cuda_linear_backward;
    be->rmsnorm_forward = ttt_cuda_rmsnorm_forward;
    be->rmsnorm_backward = ttt_cuda_rmsnorm_backward;
    be->layernorm_forward = ttt_cuda_layernorm_forward;
    be->layernorm_backward = ttt_cuda_layernorm_backward;
    be->gelu_forward = ttt_cuda_gelu_forward;
    be->gelu_backward = ttt_cuda_gelu_backward;
    be->silu_forward = ttt_cuda_silu_forward;
    be->silu_backward = ttt_cuda_silu_backward;
    be->swiglu_forward = ttt_cuda_swiglu_forward;
    be->swiglu_backward = ttt_cuda_swiglu_backward;
    be->sigmoid_forward = ttt_cuda_sigmoid_forward;
    be->sigmoid_backward = ttt_cuda_sigmoid_backward;
    be->rotary_forward = ttt_cuda_rotary_forward;
    be->rotary_backward = ttt_cuda_rotary_backward;
    be->conv1d_forward = ttt_cuda_conv1d_forward;
    be->conv1d_backward = ttt_cuda_conv1d_backward;
    be->embedding_forward = ttt_cuda_embedding_forward;
    be->embedding_backward = ttt_cuda_embedding_backward;
    be->xent_forward = ttt_cuda_xent_forward;
    be->xent_backward = ttt_cuda_xent_backward;
}
/* conv2d_cudnn.cu: ctx is the ttt_cuda_ctx; ttt_cudnn_close frees ctx->dnn */
int ttt_cuda_conv2d_forward(void *ctx, float *out, const float *inp, const float *w, const float *bias, int N, int C,
                            int H, int W, int OC, int KH, int KW, int stride, int pad);
int ttt_cuda_conv2d_backward(void *ctx, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                             const float *w, int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad);
void ttt_cudnn_close(ttt_cuda_ctx *ctx);
/* image_cuda.cu */
void ttt_cuda_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                const float *b, int N, int C, int HW, int G, float eps);
void ttt_cuda_groupnorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, const float *mean, const float *rstd, int N, int C, int HW, int G);
void ttt_cuda_upsample2x_forward(float *out, const float *inp, int N, int C, int H, int W);
void ttt_cuda_upsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W);

#endif
