/* 2D convolution on the GPU through cuDNN's convolution API: forward,
 * backward data and backward filter, the bias added with cudnnAddTensor and
 * its gradient with cudnnConvolutionBackwardBias. Semantics as
 * ttt_conv2d_forward/backward (NCHW fp32, zero padding, groups 1, backward
 * accumulates, NULL gradients skipped).
 *
 * Everything that depends only on the shape -- the tensor, filter and
 * convolution descriptors, the algorithms (benchmarked once with
 * cudnnFind*, heuristics as a fallback) and their workspace sizes -- is
 * made the first time a shape is seen and kept in a small cache in the
 * backend's context (ctx->dnn, created on the first convolution). One
 * device workspace serves all plans; it grows only when a new plan needs
 * more, so steady-state calls allocate nothing. The math is plain fp32
 * FMA (no TF32), like the cuBLAS handle, and only deterministic algorithms
 * are chosen. */
#ifndef TTT_CUDA_EMU
#include <cudnn.h> /* tests/test_conv2d_cudnn_emu.cpp provides a stand-in for the emulation */
#endif
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

#define CONV_PLANS 32                  /* shapes kept; the oldest is replaced */
#define CONV_WS_LIMIT ((size_t)1 << 30) /* most workspace an algorithm may ask for, bytes */

enum { KEY_N, KEY_C, KEY_H, KEY_W, KEY_OC, KEY_KH, KEY_KW, KEY_STRIDE, KEY_PAD, KEY_LEN };

/* Descriptors and algorithms of one shape. The backward algorithms are
 * chosen on the first backward of the shape (inference never needs them). */
typedef struct conv_plan {
    int key[KEY_LEN];
    int used;
    int have_bwd;
    cudnnTensorDescriptor_t x, y, b;   /* (N,C,H,W), (N,OC,OH,OW), (1,OC,1,1) */
    cudnnFilterDescriptor_t w;         /* (OC,C,KH,KW) */
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws_fwd, ws_data, ws_filter;  /* bytes */
} conv_plan;

/* The cuDNN state of a CUDA backend (ttt_cuda_ctx.dnn). */
struct ttt_cudnn {
    cudnnHandle_t h;
    conv_plan plans[CONV_PLANS];
    int next;           /* slot replaced when all are used */
    void *ws;           /* device workspace shared by all plans */
    size_t ws_bytes;
};

/* Maps a cuDNN status to a VTTT code, logging what failed. */
static int dnn_err(const ttt_cuda_ctx *ctx, cudnnStatus_t s, const char *what) {
    if (s == CUDNN_STATUS_SUCCESS) return VTTT_OK;
    vttt_log(&ctx->log, VTTT_LOG_ERROR, "cuDNN: %s failed: %s", what, cudnnGetErrorString(s));
    switch (s) {
    case CUDNN_STATUS_ALLOC_FAILED: return VTTT_ENOMEM;
    case CUDNN_STATUS_BAD_PARAM: return VTTT_EINVAL;
    case CUDNN_STATUS_NOT_SUPPORTED:
    case CUDNN_STATUS_ARCH_MISMATCH: return VTTT_ENOTSUP;
    case CUDNN_STATUS_NOT_INITIALIZED: return VTTT_ENODEV;
    default: return VTTT_EIO;
    }
}

static void plan_release(conv_plan *p) {
    if (!p->used) return;
    if (p->x) cudnnDestroyTensorDescriptor(p->x);
    if (p->y) cudnnDestroyTensorDescriptor(p->y);
    if (p->b) cudnnDestroyTensorDescriptor(p->b);
    if (p->w) cudnnDestroyFilterDescriptor(p->w);
    if (p->conv) cudnnDestroyConvolutionDescriptor(p->conv);
    memset(p, 0, sizeof *p);
}

/* Frees the cuDNN state of ctx (plans, workspace, handle); NULL-safe. */
void ttt_cudnn_close(ttt_cuda_ctx *ctx) {
    struct ttt_cudnn *d = ctx->dnn;
    if (!d) return;
    for (int i = 0; i < CONV_PLANS; i++) plan_release(&d->plans[i]);
    if (d->ws) ttt_cuda_err(&ctx->log, cudaFree(d->ws), "freeing the cuDNN workspace");
    if (d->h) dnn_err(ctx, cudnnDestroy(d->h), "cudnnDestroy");
    free(d);
    ctx->dnn = NULL;
}

/* The cuDNN state, created on first use with a handle bound to the
 * backend's stream. */
static int dnn_get(ttt_cuda_ctx *ctx, struct ttt_cudnn **out) {
    if (ctx->dnn) {
        *out = ctx->dnn;
        return VTTT_OK;
    }
    struct ttt_cudnn *d = (struct ttt_cudnn *)calloc(1, sizeof *d);
    if (!d) {
        vttt_log(&ctx->log, VTTT_LOG_ERROR, "out of memory creating the cuDNN state");
        return VTTT_ENOMEM;
    }
    int err = dnn_err(ctx, cudnnCreate(&d->h), "cudnnCreate (is libcudnn installed for this driver?)");
    if (!err) err = dnn_err(ctx, cudnnSetStream(d->h, ctx->stream), "cudnnSetStream");
    if (err) {
        if (d->h) cudnnDestroy(d->h);
        free(d);
        return err;
    }
    ctx->dnn = d;
    *out = d;
    return VTTT_OK;
}

/* ---- plans ------------------------------------------------------------- */

static int plan_descriptors(ttt_cuda_ctx *ctx, conv_plan *p) {
    const int *k = p->key;
    int OH = (k[KEY_H] + 2 * k[KEY_PAD] - k[KEY_KH]) / k[KEY_STRIDE] + 1;
    int OW = (k[KEY_W] + 2 * k[KEY_PAD] - k[KEY_KW]) / k[KEY_STRIDE] + 1;
    int err = dnn_err(ctx, cudnnCreateTensorDescriptor(&p->x), "creating a tensor descriptor");
    if (!err) err = dnn_err(ctx, cudnnCreateTensorDescriptor(&p->y), "creating a tensor descriptor");
    if (!err) err = dnn_err(ctx, cudnnCreateTensorDescriptor(&p->b), "creating a tensor descriptor");
    if (!err) err = dnn_err(ctx, cudnnCreateFilterDescriptor(&p->w), "creating a filter descriptor");
    if (!err) err = dnn_err(ctx, cudnnCreateConvolutionDescriptor(&p->conv), "creating a convolution descriptor");
    if (err) return err;
    err = dnn_err(ctx,
                  cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, k[KEY_N], k[KEY_C], k[KEY_H],
                                             k[KEY_W]),
                  "describing the input");
    if (!err)
        err = dnn_err(ctx,
                      cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, k[KEY_N], k[KEY_OC], OH,
                                                 OW),
                      "describing the output");
    if (!err)
        err = dnn_err(ctx, cudnnSetTensor4dDescriptor(p->b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, k[KEY_OC], 1, 1),
                      "describing the bias");
    if (!err)
        err = dnn_err(ctx,
                      cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, k[KEY_OC], k[KEY_C],
                                                 k[KEY_KH], k[KEY_KW]),
                      "describing the weights");
    if (!err)
        err = dnn_err(ctx,
                      cudnnSetConvolution2dDescriptor(p->conv, k[KEY_PAD], k[KEY_PAD], k[KEY_STRIDE], k[KEY_STRIDE],
                                                      1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                      "describing the convolution");
    if (!err)
        err = dnn_err(ctx, cudnnSetConvolutionMathType(p->conv, CUDNN_FMA_MATH), "setting FMA math (no TF32)");
    return err;
}

/* Picks the first (fastest) result that succeeded, is deterministic, uses
 * no tensor-core (TF32) math and fits the workspace limit. -1 when none
 * does. */
template <class Perf>
static int pick(const Perf *perf, int n) {
    for (int i = 0; i < n; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC &&
            perf[i].mathType != CUDNN_TENSOR_OP_MATH && perf[i].mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
            perf[i].memory <= CONV_WS_LIMIT)
            return i;
    return -1;
}

/* The forward algorithm: measured with cudnnFindConvolutionForwardAlgorithm
 * (it allocates its own buffers), cuDNN's heuristics if that fails. */
static int plan_forward_algo(ttt_cuda_ctx *ctx, struct ttt_cudnn *d, conv_plan *p) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int n = 0, i = -1;
    if (cudnnFindConvolutionForwardAlgorithm(d->h, p->x, p->w, p->conv, p->y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n,
                                             perf) == CUDNN_STATUS_SUCCESS)
        i = pick(perf, n);
    if (i < 0) {
        int err = dnn_err(ctx,
                          cudnnGetConvolutionForwardAlgorithm_v7(d->h, p->x, p->w, p->conv, p->y,
                                                                 CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf),
                          "choosing a forward convolution algorithm");
        if (err) return err;
        if ((i = pick(perf, n)) < 0) {
            vttt_log(&ctx->log, VTTT_LOG_ERROR, "cuDNN has no deterministic forward algorithm for this shape");
            return VTTT_ENOTSUP;
        }
    }
    p->fwd = perf[i].algo;
    return dnn_err(ctx, cudnnGetConvolutionForwardWorkspaceSize(d->h, p->x, p->w, p->conv, p->y, p->fwd, &p->ws_fwd),
                   "sizing the forward workspace");
}

static int plan_backward_algos(ttt_cuda_ctx *ctx, struct ttt_cudnn *d, conv_plan *p) {
    cudnnConvolutionBwdDataAlgoPerf_t pd[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    cudnnConvolutionBwdFilterAlgoPerf_t pf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int n = 0, i = -1;
    if (cudnnFindConvolutionBackwardDataAlgorithm(d->h, p->w, p->y, p->conv, p->x,
                                                  CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n,
                                                  pd) == CUDNN_STATUS_SUCCESS)
        i = pick(pd, n);
    if (i < 0 && cudnnGetConvolutionBackwardDataAlgorithm_v7(d->h, p->w, p->y, p->conv, p->x,
                                                             CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n,
                                                             pd) == CUDNN_STATUS_SUCCESS)
        i = pick(pd, n);
    if (i < 0) {
        vttt_log(&ctx->log, VTTT_LOG_ERROR, "cuDNN has no deterministic backward-data algorithm for this shape");
        return VTTT_ENOTSUP;
    }
    p->bwd_data = pd[i].algo;
    i = -1;
    if (cudnnFindConvolutionBackwardFilterAlgorithm(d->h, p->x, p->y, p->conv, p->w,
                                                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n,
                                                    pf) == CUDNN_STATUS_SUCCESS)
        i = pick(pf, n);
    if (i < 0 && cudnnGetConvolutionBackwardFilterAlgorithm_v7(d->h, p->x, p->y, p->conv, p->w,
                                                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n,
                                                               pf) == CUDNN_STATUS_SUCCESS)
        i = pick(pf, n);
    if (i < 0) {
        vttt_log(&ctx->log, VTTT_LOG_ERROR, "cuDNN has no deterministic backward-filter algorithm for this shape");
        return VTTT_ENOTSUP;
    }
    p->bwd_filter = pf[i].algo;
    int err = dnn_err(ctx,
                      cudnnGetConvolutionBackwardDataWorkspaceSize(d->h, p->w, p->y, p->conv, p->x, p->bwd_data,
                                                                   &p->ws_data),
                      "sizing the backward-data workspace");
    if (!err)
        err = dnn_err(ctx,
                      cudnnGetConvolutionBackwardFilterWorkspaceSize(d->h, p->x, p->y, p->conv, p->w, p->bwd_filter,
                                                                     &p->ws_filter),
                      "sizing the backward-filter workspace");
    if (!err) p->have_bwd = 1;
    return err;
}

/* Grows the shared workspace to at least bytes (the old one is freed; the
 * free waits for the work that used it). */
static int workspace_reserve(ttt_cuda_ctx *ctx, struct ttt_cudnn *d, size_t bytes) {
    if (bytes <= d->ws_bytes) return VTTT_OK;
    if (d->ws) ttt_cuda_err(&ctx->log, cudaFree(d->ws), "freeing the cuDNN workspace");
    d->ws = NULL;
    d->ws_bytes = 0;
    int err = ttt_cuda_err(&ctx->log, cudaMalloc(&d->ws, bytes), "allocating the cuDNN workspace");
    if (err) {
        d->ws = NULL;
        return err;
    }
    d->ws_bytes = bytes;
    return VTTT_OK;
}

/* The plan of a shape, made (descriptors and forward algorithm) if new;
 * with backward, its backward algorithms too. The workspace is grown to
 * what the plan needs. */
static int plan_get(ttt_cuda_ctx *ctx, const int key[KEY_LEN], int backward, conv_plan **out) {
    struct ttt_cudnn *d;
    int err = dnn_get(ctx, &d);
    if (err) return err;
    conv_plan *p = NULL;
    for (int i = 0; i < CONV_PLANS && !p; i++)
        if (d->plans[i].used && !memcmp(d->plans[i].key, key, sizeof d->plans[i].key)) p = &d->plans[i];
    if (!p) {
        p = &d->plans[d->next];
        d->next = (d->next + 1) % CONV_PLANS;
        plan_release(p);
        memcpy(p->key, key, sizeof p->key);
        p->used = 1;
        err = plan_descriptors(ctx, p);
        if (!err) err = plan_forward_algo(ctx, d, p);
        if (!err) err = workspace_reserve(ctx, d, p->ws_fwd);
        if (err) {
            plan_release(p);
            return err;
        }
    }
    if (backward && !p->have_bwd) {
        err = plan_backward_algos(ctx, d, p);
        if (!err) err = workspace_reserve(ctx, d, p->ws_data > p->ws_filter ? p->ws_data : p->ws_filter);
        if (err) return err;
    }
    *out = p;
    return VTTT_OK;
}

/* Checks the shape (positive sizes, an output of at least one pixel, every
 * tensor within cuDNN's int element counts) and fills the plan key. */
static int conv_key(ttt_cuda_ctx *ctx, int *key, int N, int C, int H, int W, int OC, int KH, int KW, int stride,
                    int pad) {
    int v[KEY_LEN] = {N, C, H, W, OC, KH, KW, stride, pad};
    int ok = N > 0 && C > 0 && H > 0 && W > 0 && OC > 0 && KH > 0 && KW > 0 && stride > 0 && pad >= 0 &&
             H + 2 * pad >= KH && W + 2 * pad >= KW;
    if (ok) {
        long long OH = (H + 2LL * pad - KH) / stride + 1, OW = (W + 2LL * pad - KW) / stride + 1;
        ok = (long long)N * C * H * W <= INT_MAX && (long long)N * OC * OH * OW <= INT_MAX &&
             (long long)OC * C * KH * KW <= INT_MAX;
    }
    if (!ok) {
        vttt_log(&ctx->log, VTTT_LOG_ERROR,
                 "conv2d (cuDNN): bad or too large shape N=%d C=%d %dx%d OC=%d kernel %dx%d stride %d pad %d", N, C,
                 H, W, OC, KH, KW, stride, pad);
        return VTTT_EINVAL;
    }
    memcpy(key, v, sizeof v);
    return VTTT_OK;
}

/* ---- the table's ops ---------------------------------------------------- */

int ttt_cuda_conv2d_forward(void *vctx, float *out, const float *inp, const float *w, const float *bias, int N, int C,
                            int H, int W, int OC, int KH, int KW, int stride, int pad) {
    ttt_cuda_ctx *ctx = (ttt_cuda_ctx *)vctx;
    int key[KEY_LEN];
    conv_plan *p;
    int err = conv_key(ctx, key, N, C, H, W, OC, KH, KW, stride, pad);
    if (!err) err = plan_get(ctx, key, 0, &p);
    if (err) return err;
    struct ttt_cudnn *d = ctx->dnn;
    const float one = 1.0f, zero = 0.0f;
    err = dnn_err(ctx,
                  cudnnConvolutionForward(d->h, &one, p->x, inp, p->w, w, p->conv, p->fwd, d->ws, p->ws_fwd, &zero,
                                          p->y, out),
                  "convolution forward");
    if (!err && bias) err = dnn_err(ctx, cudnnAddTensor(d->h, &one, p->b, bias, &one, p->y, out), "adding the bias");
    return err;
}

/* beta = 1 makes every cuDNN call add into its gradient (the ops.h
 * contract); the bias gradient is cuDNN's sum over N, OH, OW. */
int ttt_cuda_conv2d_backward(void *vctx, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                             const float *w, int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad) {
    ttt_cuda_ctx *ctx = (ttt_cuda_ctx *)vctx;
    if (!dinp && !dw && !dbias) return VTTT_OK;
    int key[KEY_LEN];
    conv_plan *p;
    int err = conv_key(ctx, key, N, C, H, W, OC, KH, KW, stride, pad);
    if (!err) err = plan_get(ctx, key, 1, &p);
    if (err) return err;
    struct ttt_cudnn *d = ctx->dnn;
    const float one = 1.0f;
    if (dinp)
        err = dnn_err(ctx,
                      cudnnConvolutionBackwardData(d->h, &one, p->w, w, p->y, dout, p->conv, p->bwd_data, d->ws,
                                                   p->ws_data, &one, p->x, dinp),
                      "convolution backward (input gradient)");
    if (!err && dw)
        err = dnn_err(ctx,
                      cudnnConvolutionBackwardFilter(d->h, &one, p->x, inp, p->y, dout, p->conv, p->bwd_filter, d->ws,
                                                     p->ws_filter, &one, p->w, dw),
                      "convolution backward (weight gradient)");
    if (!err && dbias)
        err = dnn_err(ctx, cudnnConvolutionBackwardBias(d->h, &one, p->y, dout, &one, p->b, dbias),
                      "convolution backward (bias gradient)");
    return err;
}
