/* The CUDA backend: opening a device, its function table, device memory and
 * copies, and the mapping of CUDA/cuBLAS errors to VTTT codes. The ops live
 * in the other files of this folder (see cuda_internal.h). */
#include <stdio.h>
#include <stdlib.h>

#include "cuda_internal.h"

/* The table and the context in one allocation; the table comes first so
 * vttt_backend_cuda_close can free it from the table pointer. */
typedef struct cuda_backend {
    vttt_backend be;
    ttt_cuda_ctx ctx;
} cuda_backend;

static int code_of_cuda(cudaError_t e) {
    switch (e) {
    case cudaErrorMemoryAllocation: return VTTT_ENOMEM;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
    case cudaErrorInvalidDevicePointer:
    case cudaErrorInvalidMemcpyDirection: return VTTT_EINVAL;
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable: return VTTT_ENODEV;
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorNotSupported: return VTTT_ENOTSUP;
    default: return VTTT_EIO; /* e.g. a fault in a kernel: the context may be unusable */
    }
}

int ttt_cuda_err(const vttt_logger *lg, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return VTTT_OK;
    vttt_log(lg, VTTT_LOG_ERROR, "CUDA: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    (void)cudaGetLastError();
    return code_of_cuda(e);
}

int ttt_cublas_err(const vttt_logger *lg, cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return VTTT_OK;
    vttt_log(lg, VTTT_LOG_ERROR, "cuBLAS: %s failed: %s", what, cublasGetStatusString(s));
    switch (s) {
    case CUBLAS_STATUS_ALLOC_FAILED: return VTTT_ENOMEM;
    case CUBLAS_STATUS_INVALID_VALUE: return VTTT_EINVAL;
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_ARCH_MISMATCH: return VTTT_ENOTSUP;
    case CUBLAS_STATUS_NOT_INITIALIZED: return VTTT_ENODEV;
    default: return VTTT_EIO;
    }
}

void ttt_cuda_check_launch(const char *what) {
    cudaError_t e = cudaPeekAtLastError();
    if (e != cudaSuccess)
        vttt_log(NULL, VTTT_LOG_ERROR, "CUDA: %s: %s (pending; the next sync returns it)", what,
                 cudaGetErrorString(e));
}

/* ---- memory ------------------------------------------------------------ */
static int cuda_alloc(void *vctx, void **p, size_t bytes) {
    ttt_cuda_ctx *ctx = (ttt_cuda_ctx *)vctx;
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    if (e == cudaSuccess) return VTTT_OK;
    *p = NULL;
    char what[96];
    snprintf(what, sizeof what, "allocating %zu bytes on device %d", bytes, ctx->dev);
    return ttt_cuda_err(&ctx->log, e, what);
}

static void cuda_free(void *vctx, void *p) {
    ttt_cuda_ctx *ctx = (ttt_cuda_ctx *)vctx;
    if (p) ttt_cuda_err(&ctx->log, cudaFree(p), "cudaFree");
}

/* Host to device on the stream. From pageable memory the call returns once
 * src has been staged, so src may be reused at once; from pinned memory src
 * must stay untouched until the next sync. */
static int cuda_to_device(void *vctx, void *dst, const void *src, size_t bytes) {
    ttt_cuda_ctx *ctx = (ttt_cuda_ctx *)vctx;
    if (bytes == 0) return VTTT_OK;
    return ttt_cuda_err(&ctx->log, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream),
                        "copy to device");
}

/* Device to host; waits for the copy (and all earlier work) to finish. */
static int cuda_to_host(void *vctx, void *dst, const void *src, size_t bytes) {
    ttt_cuda_ctx *ctx = (ttt_cuda_ctx *)vctx;
    if (bytes == 0) return VTTT_OK;
    int err = ttt_cuda_err(&ctx->log, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream),
                           "copy to host");
    if (err) return err;
    return ttt_cuda_err(&ctx->log, cudaStreamSynchronize(ctx->stream), "copy to host (sync)");
}

/* Waits for all queued work; returns the first error of an earlier
 * asynchronous launch or kernel, including those of the void ops. */
static int cuda_sync(void *vctx) {
    ttt_cuda_ctx *ctx = (ttt_cuda_ctx *)vctx;
    int err = ttt_cuda_err(&ctx->log, cudaStreamSynchronize(ctx->stream), "sync");
    if (err) return err;
    return ttt_cuda_err(&ctx->log, cudaGetLastError(), "an earlier kernel launch");
}

/* ---- the table --------------------------------------------------------- */
static void fill_table(vttt_backend *be, ttt_cuda_ctx *ctx) {
    be->name = "cuda";
    be->device = VTTT_DEVICE_CUDA;
    be->ctx = ctx;
    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->to_device = cuda_to_device;
    be->to_host = cuda_to_host;
    be->sync = cuda_sync;
    ttt_cuda_fill_ops(be);
    be->conv2d_forward = ttt_cuda_conv2d_forward;
    be->conv2d_backward = ttt_cuda_conv2d_backward;
    be->groupnorm_forward = ttt_cuda_groupnorm_forward;
    be->groupnorm_backward = ttt_cuda_groupnorm_backward;
    be->upsample2x_forward = ttt_cuda_upsample2x_forward;
    be->upsample2x_backward = ttt_cuda_upsample2x_backward;
}

/* Checks that device `dev` exists and can run the kernels (built for
 * sm_80 and sm_90, PTX for newer). With no GPU (or no driver) this is the
 * ordinary VTTT_ENODEV path, logged at info level. */
static int probe_device(int dev, const vttt_logger *lg) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        vttt_log(lg, VTTT_LOG_INFO, "no CUDA device: %s", cudaGetErrorString(e));
        return VTTT_ENODEV;
    }
    if (n <= 0) {
        vttt_log(lg, VTTT_LOG_INFO, "no CUDA device: the driver reports 0 devices");
        return VTTT_ENODEV;
    }
    if (dev < 0 || dev >= n) {
        vttt_log(lg, VTTT_LOG_ERROR, "CUDA device %d does not exist (this machine has %d; use 0..%d)", dev, n,
                 n - 1);
        return VTTT_ENODEV;
    }
    int major = 0, minor = 0;
    int err = ttt_cuda_err(lg, cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev),
                           "reading the compute capability");
    if (!err) err = ttt_cuda_err(lg, cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev),
                                 "reading the compute capability");
    if (err) return err;
    if (major < 8) {
        vttt_log(lg, VTTT_LOG_ERROR, "CUDA device %d has compute capability %d.%d; vttt's kernels need 8.0 or newer",
                 dev, major, minor);
        return VTTT_ENOTSUP;
    }
    return VTTT_OK;
}

/* Frees the cuBLAS / cuBLASLt handles and workspaces that exist. */
static void blas_close(ttt_cuda_ctx *ctx) {
    if (ctx->lt) ttt_cublas_err(&ctx->log, cublasLtDestroy(ctx->lt), "cublasLtDestroy");
    if (ctx->blas) ttt_cublas_err(&ctx->log, cublasDestroy(ctx->blas), "cublasDestroy");
    if (ctx->lt_ws) cudaFree(ctx->lt_ws);
    if (ctx->blas_ws) cudaFree(ctx->blas_ws);
    ctx->lt = NULL, ctx->blas = NULL, ctx->lt_ws = ctx->blas_ws = NULL;
}

/* Opens device `dev` for this thread (cudaSetDevice), with a cuBLAS handle
 * on the legacy default stream. On failure *out is NULL and nothing leaks. */
extern "C" int vttt_backend_cuda_open(vttt_backend **out, int dev, const vttt_logger *lg) {
    if (!out) return VTTT_EINVAL;
    *out = NULL;
    int err = probe_device(dev, lg);
    if (err) return err;
    err = ttt_cuda_err(lg, cudaSetDevice(dev), "cudaSetDevice");
    if (err) return err;
    cuda_backend *cb = (cuda_backend *)calloc(1, sizeof *cb);
    if (!cb) {
        vttt_log(lg, VTTT_LOG_ERROR, "out of memory opening the CUDA backend");
        return VTTT_ENOMEM;
    }
    ttt_cuda_ctx *ctx = &cb->ctx;
    if (lg) ctx->log = *lg;
    ctx->dev = dev;
    ctx->stream = TTT_CUDA_STREAM;
    err = ttt_cublas_err(lg, cublasCreate(&ctx->blas), "cublasCreate");
    if (!err) err = ttt_cublas_err(lg, cublasSetStream(ctx->blas, ctx->stream), "cublasSetStream");
    if (!err) err = ttt_cublas_err(lg, cublasSetMathMode(ctx->blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    if (!err) err = ttt_cuda_err(lg, cudaMalloc(&ctx->blas_ws, TTT_CUDA_BLAS_WS), "allocating cuBLAS's workspace");
    if (!err)
        err = ttt_cublas_err(lg, cublasSetWorkspace(ctx->blas, ctx->blas_ws, TTT_CUDA_BLAS_WS), "cublasSetWorkspace");
    if (!err) err = ttt_cuda_err(lg, cudaMalloc(&ctx->lt_ws, TTT_CUDA_BLAS_WS), "allocating cuBLASLt's workspace");
    if (!err) err = ttt_cublas_err(lg, cublasLtCreate(&ctx->lt), "cublasLtCreate");
    if (err) {
        blas_close(ctx);
        free(cb);
        return err;
    }
    fill_table(&cb->be, ctx);
    *out = &cb->be;
    return VTTT_OK;
}

/* Waits for queued work, then frees the handle and the table. Device
 * memory allocated through the table must be freed before. */
extern "C" void vttt_backend_cuda_close(vttt_backend **be) {
    if (!be || !*be) return;
    cuda_backend *cb = (cuda_backend *)*be;
    ttt_cuda_err(&cb->ctx.log, cudaStreamSynchronize(cb->ctx.stream), "sync at close");
    ttt_cudnn_close(&cb->ctx);
    blas_close(&cb->ctx);
    free(cb);
    *be = NULL;
}
