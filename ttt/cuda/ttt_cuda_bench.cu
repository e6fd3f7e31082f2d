/* Measurement helpers for `vttt bench cuda` (ttt_cuda.h): event timers on
 * the backend's stream, the device's measured GEMM rate through cuBLAS,
 * and its name. */
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>

#include "cuda_internal.h"
#include "ttt_cuda.h"

struct ttt_cuda_timer {
    ttt_cuda_ctx *ctx;
    cudaEvent_t start, stop;
};

static ttt_cuda_ctx *bench_ctx(const vttt_backend *be) {
    return be && be->device == VTTT_DEVICE_CUDA ? (ttt_cuda_ctx *)be->ctx : NULL;
}

extern "C" int ttt_cuda_timer_new(const vttt_backend *be, ttt_cuda_timer **out) {
    ttt_cuda_ctx *ctx = bench_ctx(be);
    if (!out) return VTTT_EINVAL;
    *out = NULL;
    if (!ctx) return VTTT_EINVAL;
    ttt_cuda_timer *t = (ttt_cuda_timer *)calloc(1, sizeof *t);
    if (!t) return VTTT_ENOMEM;
    t->ctx = ctx;
    int err = ttt_cuda_err(&ctx->log, cudaEventCreate(&t->start), "cudaEventCreate");
    if (!err) err = ttt_cuda_err(&ctx->log, cudaEventCreate(&t->stop), "cudaEventCreate");
    if (err) {
        ttt_cuda_timer_free(&t);
        return err;
    }
    *out = t;
    return VTTT_OK;
}

extern "C" int ttt_cuda_timer_start(ttt_cuda_timer *t) {
    if (!t) return VTTT_EINVAL;
    return ttt_cuda_err(&t->ctx->log, cudaEventRecord(t->start, t->ctx->stream), "cudaEventRecord");
}

extern "C" int ttt_cuda_timer_stop(ttt_cuda_timer *t, double *ms) {
    if (!t || !ms) return VTTT_EINVAL;
    float v = 0.0f;
    int err = ttt_cuda_err(&t->ctx->log, cudaEventRecord(t->stop, t->ctx->stream), "cudaEventRecord");
    if (!err) err = ttt_cuda_err(&t->ctx->log, cudaEventSynchronize(t->stop), "cudaEventSynchronize");
    if (!err) err = ttt_cuda_err(&t->ctx->log, cudaEventElapsedTime(&v, t->start, t->stop), "cudaEventElapsedTime");
    *ms = v;
    return err;
}

extern "C" void ttt_cuda_timer_free(ttt_cuda_timer **t) {
    if (!t || !*t) return;
    if ((*t)->start) cudaEventDestroy((*t)->start);
    if ((*t)->stop) cudaEventDestroy((*t)->stop);
    free(*t);
    *t = NULL;
}

/* Fills n elements with values in [-1, 1) from a hash of the index (not
 * zeros: tensor cores draw less power, and clock higher, on zeros). */
template <class T>
__global__ void gemm_fill_kernel(T *x, size_t n, unsigned salt) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ salt;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        x[i] = (T)((float)(h & 0xffff) / 32768.0f - 1.0f);
    }
}

/* One n^3 GEMM C = A B on the context's handle: fp32 (cublasSgemm under
 * CUBLAS_DEFAULT_MATH, no TF32) or bf16 A, B, C with fp32 compute. */
static cublasStatus_t gemm_once(ttt_cuda_ctx *ctx, int bf16, int n, const void *A, const void *B, void *C) {
    float one = 1.0f, zero = 0.0f;
    if (!bf16)
        return cublasSgemm(ctx->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, (const float *)A, n, (const float *)B,
                           n, &zero, (float *)C, n);
    return cublasGemmEx(ctx->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, A, CUDA_R_16BF, n, B, CUDA_R_16BF, n,
                        &zero, C, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

extern "C" int ttt_cuda_gemm_rate(const vttt_backend *be, int bf16, int n, double *tflops) {
    ttt_cuda_ctx *ctx = bench_ctx(be);
    if (!ctx || !tflops || n <= 0) return VTTT_EINVAL;
    *tflops = 0.0;
    size_t el = (size_t)n * n, sz = bf16 ? sizeof(__nv_bfloat16) : sizeof(float);
    void *buf = NULL;
    int err = ttt_cuda_err(&ctx->log, cudaMalloc(&buf, 3 * el * sz), "allocating GEMM buffers");
    if (err) return err;
    char *A = (char *)buf, *B = A + el * sz, *C = B + el * sz;
    if (bf16) gemm_fill_kernel<<<1024, 256, 0, ctx->stream>>>((__nv_bfloat16 *)buf, 2 * el, 7u);
    else gemm_fill_kernel<<<1024, 256, 0, ctx->stream>>>((float *)buf, 2 * el, 7u);
    err = ttt_cuda_err(&ctx->log, cudaGetLastError(), "GEMM buffer fill");
    ttt_cuda_timer *t = NULL;
    if (!err) err = ttt_cuda_timer_new(be, &t);
    double best = 0.0;
    for (int r = 0; r < 6 && !err; r++) { /* the first run warms up */
        double ms = 0.0;
        err = ttt_cuda_timer_start(t);
        for (int k = 0; k < 4 && !err; k++) err = ttt_cublas_err(&ctx->log, gemm_once(ctx, bf16, n, A, B, C), "GEMM");
        if (!err) err = ttt_cuda_timer_stop(t, &ms);
        double rate = 4 * 2.0 * n * (double)n * n / (ms * 1e-3) / 1e12;
        if (!err && r > 0 && rate > best) best = rate;
    }
    ttt_cuda_timer_free(&t);
    cudaFree(buf);
    *tflops = best;
    return err;
}

extern "C" int ttt_cuda_device_name(const vttt_backend *be, char *buf, size_t len) {
    ttt_cuda_ctx *ctx = bench_ctx(be);
    if (!ctx || !buf || len == 0) return VTTT_EINVAL;
    cudaDeviceProp prop;
    int err = ttt_cuda_err(&ctx->log, cudaGetDeviceProperties(&prop, ctx->dev), "cudaGetDeviceProperties");
    if (err) return err;
    strncpy(buf, prop.name, len - 1);
    buf[len - 1] = '\0';
    return VTTT_OK;
}
