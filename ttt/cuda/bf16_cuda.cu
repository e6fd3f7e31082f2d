/*
 * bf16 on the GPU: conversions (round to nearest even, as
 * vttt_f32_to_bf16 on the host) and the projections with bf16 inputs and
 * fp32 accumulation and output through cuBLASLt. The weights' fp32 master
 * copy stays where it is; callers keep bf16 copies next to it.
 */
#include <cuda_bf16.h>

#include "cuda_internal.h"
#include "ttt_cuda.h"

__global__ void to_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat16_as_ushort(__float2bfloat16_rn(src[i]));
}

__global__ void from_bf16_kernel(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(__ushort_as_bfloat16(src[i]));
}

static ttt_cuda_ctx *bf16_ctx(const vttt_backend *be, const char *what) {
    if (be && be->device == VTTT_DEVICE_CUDA && be->ctx) return (ttt_cuda_ctx *)be->ctx;
    vttt_log(NULL, VTTT_LOG_ERROR, "%s: needs a CUDA backend (vttt_backend_cuda_open)", what);
    return NULL;
}

extern "C" int ttt_cuda_to_bf16(const vttt_backend *be, uint16_t *dst, const float *src, size_t n) {
    ttt_cuda_ctx *ctx = bf16_ctx(be, "ttt_cuda_to_bf16");
    if (!ctx || (n && (!dst || !src))) return VTTT_EINVAL;
    if (n == 0) return VTTT_OK;
    to_bf16_kernel<<<ttt_cuda_grid(n, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, ctx->stream>>>(dst, src, n);
    return ttt_cuda_err(&ctx->log, cudaGetLastError(), "to_bf16 launch");
}

extern "C" int ttt_cuda_from_bf16(const vttt_backend *be, float *dst, const uint16_t *src, size_t n) {
    ttt_cuda_ctx *ctx = bf16_ctx(be, "ttt_cuda_from_bf16");
    if (!ctx || (n && (!dst || !src))) return VTTT_EINVAL;
    if (n == 0) return VTTT_OK;
    from_bf16_kernel<<<ttt_cuda_grid(n, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, ctx->stream>>>(dst, src, n);
    return ttt_cuda_err(&ctx->log, cudaGetLastError(), "from_bf16 launch");
}

/* The descriptors of one cuBLASLt matmul, destroyed together. */
typedef struct {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulPreference_t pref;
} lt_descs;

static void lt_destroy(lt_descs *L) {
    if (L->pref) cublasLtMatmulPreferenceDestroy(L->pref);
    if (L->d) cublasLtMatrixLayoutDestroy(L->d);
    if (L->b) cublasLtMatrixLayoutDestroy(L->b);
    if (L->a) cublasLtMatrixLayoutDestroy(L->a);
    if (L->op) cublasLtMatmulDescDestroy(L->op);
}

/* Row-major out (N,OC) = x (N,C) w (OC,C)^T is column-major
 * out^T (OC,N) = op(A) B with A = w seen as (C,OC), transposed, and
 * B = x seen as (C,N). */
static cublasStatus_t lt_describe(lt_descs *L, int N, int C, int OC) {
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    size_t ws = TTT_CUDA_BLAS_WS;
    cublasStatus_t st = cublasLtMatmulDescCreate(&L->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (!st) st = cublasLtMatmulDescSetAttribute(L->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (!st) st = cublasLtMatmulDescSetAttribute(L->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (!st) st = cublasLtMatrixLayoutCreate(&L->a, CUDA_R_16BF, (uint64_t)C, (uint64_t)OC, (int64_t)C);
    if (!st) st = cublasLtMatrixLayoutCreate(&L->b, CUDA_R_16BF, (uint64_t)C, (uint64_t)N, (int64_t)C);
    if (!st) st = cublasLtMatrixLayoutCreate(&L->d, CUDA_R_32F, (uint64_t)OC, (uint64_t)N, (int64_t)OC);
    if (!st) st = cublasLtMatmulPreferenceCreate(&L->pref);
    if (!st)
        st = cublasLtMatmulPreferenceSetAttribute(L->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    return st;
}

/* out (N,OC) fp32 = wb (OC,C) bf16 applied to xb (N,C) bf16, fp32
 * accumulation, on the context's stream. */
extern "C" int ttt_cuda_gemm_bf16(const vttt_backend *be, float *out, const uint16_t *xb, const uint16_t *wb, int N,
                                  int C, int OC) {
    ttt_cuda_ctx *ctx = bf16_ctx(be, "ttt_cuda_gemm_bf16");
    if (!ctx || N <= 0 || C <= 0 || OC <= 0 || !out || !xb || !wb) return VTTT_EINVAL;
    lt_descs L = {};
    cublasLtMatmulHeuristicResult_t heur = {};
    int found = 0;
    float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = lt_describe(&L, N, C, OC);
    if (!st) st = cublasLtMatmulAlgoGetHeuristic(ctx->lt, L.op, L.a, L.b, L.d, L.d, L.pref, 1, &heur, &found);
    if (!st && found < 1) st = CUBLAS_STATUS_NOT_SUPPORTED;
    if (!st)
        st = cublasLtMatmul(ctx->lt, L.op, &one, wb, L.a, xb, L.b, &zero, out, L.d, out, L.d, &heur.algo, ctx->lt_ws,
                            TTT_CUDA_BLAS_WS, ctx->stream);
    lt_destroy(&L);
    return ttt_cublas_err(&ctx->log, st, "cuBLASLt bf16 matmul");
}

extern "C" int ttt_cuda_linear_bf16(const vttt_backend *be, float *out, const float *inp, const uint16_t *wb,
                                    uint16_t *xb, int N, int C, int OC) {
    int err = ttt_cuda_to_bf16(be, xb, inp, (size_t)N * C);
    return err ? err : ttt_cuda_gemm_bf16(be, out, xb, wb, N, C, OC);
}
