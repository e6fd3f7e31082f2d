/* Matrix products on cuBLAS (exact fp32, no TF32) and the fully connected
 * layer built on them: same semantics as ttt_sgemm / ttt_linear_*. */
#include "cuda_internal.h"

/* C (M,N) = alpha op(A) op(B) + beta C, all row-major. cuBLAS is
 * column-major, where a row-major X reads as X^T, so this computes
 * C^T = alpha op(B)^T op(A)^T + beta C^T: the operands swap places and
 * keep their own transpose flags. */
int ttt_cuda_matmul(void *vctx, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    ttt_cuda_ctx *ctx = (ttt_cuda_ctx *)vctx;
    if (M < 0 || N < 0 || K < 0) {
        vttt_log(&ctx->log, VTTT_LOG_ERROR, "matmul: negative size M=%d N=%d K=%d", M, N, K);
        return VTTT_EINVAL;
    }
    if (M == 0 || N == 0) return VTTT_OK;
    cublasStatus_t s = cublasSgemm(ctx->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N,
                                   M, K, &alpha, B, ldb, A, lda, &beta, C, ldc);
    return ttt_cublas_err(&ctx->log, s, "cublasSgemm");
}

/* out (N,OC) = bias (OC) broadcast over rows, or zeros. */
__global__ void fill_rows_kernel(float *out, const float *bias, int N, int OC) {
    size_t total = (size_t)N * OC;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        out[i] = bias ? bias[i % OC] : 0.0f;
}

/* out (N,OC) = inp (N,C) . w (OC,C)^T + bias (OC); bias may be NULL. As on
 * the CPU the bias is written first and the GEMM adds onto it. */
int ttt_cuda_linear_forward(void *vctx, float *out, const float *inp, const float *w, const float *bias, int N,
                            int C, int OC) {
    ttt_cuda_ctx *ctx = (ttt_cuda_ctx *)vctx;
    if (N <= 0 || OC <= 0) return VTTT_OK;
    size_t total = (size_t)N * OC;
    TTT_LAUNCH(fill_rows_kernel, ttt_cuda_grid(total, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, ctx->stream)
        (out, bias, N, OC);
    int err = ttt_cuda_err(&ctx->log, cudaGetLastError(), "linear_forward bias launch");
    if (err || C <= 0) return err;
    return ttt_cuda_matmul(ctx, 0, 1, N, OC, C, 1.0f, inp, C, w, C, 1.0f, out, OC);
}

/* dinp (N,C) += dout (N,OC) . w (OC,C); dw (OC,C) += dout^T . inp;
 * dbias (OC) += column sums of dout. NULL gradients are skipped. */
int ttt_cuda_linear_backward(void *vctx, float *dinp, float *dw, float *dbias, const float *dout,
                             const float *inp, const float *w, int N, int C, int OC) {
    ttt_cuda_ctx *ctx = (ttt_cuda_ctx *)vctx;
    if (N <= 0 || OC <= 0) return VTTT_OK;
    int err = VTTT_OK;
    if (dinp && C > 0) err = ttt_cuda_matmul(ctx, 0, 0, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
    if (!err && dw && C > 0) err = ttt_cuda_matmul(ctx, 1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (!err && dbias) {
        ttt_colsum(dbias, ttt_matrix_entry{dout, OC}, N, OC, 1, 1, 0);
        err = ttt_cuda_err(&ctx->log, cudaGetLastError(), "linear_backward bias-gradient launch");
    }
    return err;
}
