/* The host side of the cuDNN convolutions (ttt/cuda/conv2d_cudnn.cu) run
 * against a stand-in for cuDNN written here: every call checks its
 * arguments the way the cuDNN documentation states them and computes with
 * the CPU reference ops, so what is tested is conv2d_cudnn.cu's own logic,
 * not cuDNN:
 *
 * - the descriptors (shapes, padding, stride, cross-correlation, FMA math)
 *   reproduce ttt_conv2d_forward/backward for many shapes, and the alpha /
 *   beta values make the backward accumulate (+=) and the forward replace;
 *   the bias goes through cudnnAddTensor / cudnnConvolutionBackwardBias;
 * - algorithm choice skips failed, non-deterministic, tensor-core and
 *   over-limit results, falls back to the heuristics when Find fails, and
 *   each call gets a workspace at least as large as its algorithm needs;
 * - one plan per shape: Find runs once per shape and direction, the cache
 *   replaces its oldest plan after CONV_PLANS shapes and rebuilds it when
 *   the shape returns, and closing releases every descriptor and handle;
 * - errors: a bad shape is VTTT_EINVAL before any cuDNN call, a failing
 *   cudnnCreate is reported and leaves no state.
 *
 * The device kernels of cuDNN itself run only on a GPU (test_cuda). */
#define TTT_CUDA_EMU 1

#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "backend.h"
#include "cuda/cuda_emu.h"
#include "ttt.h"
extern "C" {
#include "ops.h"
#include "testutil.h"
}

#define TOL_SAME 1e-6   /* the stand-in computes with the CPU ops: only alpha/beta rounding differs */
#define GRAD_FILL 0.1f

namespace ttt_emu {

/* ---- the cuDNN stand-in -------------------------------------------------------- */

typedef enum {
    CUDNN_STATUS_SUCCESS = 0,
    CUDNN_STATUS_NOT_INITIALIZED = 1001,
    CUDNN_STATUS_BAD_PARAM = 2000,
    CUDNN_STATUS_NOT_SUPPORTED = 3000,
    CUDNN_STATUS_ALLOC_FAILED = 4000,
    CUDNN_STATUS_ARCH_MISMATCH = 5000,
} cudnnStatus_t;
typedef enum { CUDNN_TENSOR_NCHW = 0 } cudnnTensorFormat_t;
typedef enum { CUDNN_DATA_FLOAT = 0 } cudnnDataType_t;
typedef enum { CUDNN_CONVOLUTION = 0, CUDNN_CROSS_CORRELATION = 1 } cudnnConvolutionMode_t;
typedef enum {
    CUDNN_DEFAULT_MATH = 0,
    CUDNN_TENSOR_OP_MATH = 1,
    CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION = 2,
    CUDNN_FMA_MATH = 3
} cudnnMathType_t;
typedef enum { CUDNN_NON_DETERMINISTIC = 0, CUDNN_DETERMINISTIC = 1 } cudnnDeterminism_t;
typedef int cudnnConvolutionFwdAlgo_t, cudnnConvolutionBwdDataAlgo_t, cudnnConvolutionBwdFilterAlgo_t;
#define CUDNN_CONVOLUTION_FWD_ALGO_COUNT 8
#define CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT 6
#define CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT 7

struct stub_handle { cudaStream_t stream; };
struct stub_tensor { int n, c, h, w, set; };
struct stub_filter { int k, c, h, w, set; };
struct stub_conv { int ph, pw, u, v, dh, dw, mode, math, set; };
typedef stub_handle *cudnnHandle_t;
typedef stub_tensor *cudnnTensorDescriptor_t;
typedef stub_filter *cudnnFilterDescriptor_t;
typedef stub_conv *cudnnConvolutionDescriptor_t;

struct cudnnConvolutionFwdAlgoPerf_t {
    cudnnConvolutionFwdAlgo_t algo;
    cudnnStatus_t status;
    float time;
    size_t memory;
    cudnnDeterminism_t determinism;
    cudnnMathType_t mathType;
    int reserved[3];
};
typedef cudnnConvolutionFwdAlgoPerf_t cudnnConvolutionBwdDataAlgoPerf_t;
typedef cudnnConvolutionFwdAlgoPerf_t cudnnConvolutionBwdFilterAlgoPerf_t;

/* What the stand-in saw. */
static struct {
    int handles, tensors, filters, convs;            /* live objects */
    int find[3], get[3];                             /* per direction: forward, backward data, backward filter */
    int runs[3], bias_adds, bias_grads;
    int fail_create, fail_find;                      /* make cudnnCreate / Find* fail */
    char violation[256];                             /* the first broken rule, if any */
} S;

static cudnnStatus_t violate(const char *what) {
    if (!S.violation[0]) snprintf(S.violation, sizeof S.violation, "%s", what);
    return CUDNN_STATUS_BAD_PARAM;
}

/* The algorithms the stand-in offers, per direction: only GOOD (from Find)
 * or HEUR (from the heuristics) may be used; WS is the workspace each
 * needs. */
enum { GOOD = 3, HEUR = 4 };
static size_t algo_ws(int dir, int algo) {
    return algo == GOOD ? ((size_t)3 << 20) * (size_t)(dir + 1) : algo == HEUR ? ((size_t)1 << 20) : 0;
}

/* Find's answer: failed, non-deterministic, tensor-op and over-limit
 * results first, the usable one last; the heuristics' answer likewise. */
static void perf_list(int dir, int heuristic, cudnnConvolutionFwdAlgoPerf_t *p, int *n) {
    cudnnConvolutionFwdAlgoPerf_t l[5] = {
        {0, CUDNN_STATUS_NOT_SUPPORTED, 0.1f, 0, CUDNN_DETERMINISTIC, CUDNN_FMA_MATH, {0}},
        {1, CUDNN_STATUS_SUCCESS, 0.2f, 0, CUDNN_NON_DETERMINISTIC, CUDNN_FMA_MATH, {0}},
        {2, CUDNN_STATUS_SUCCESS, 0.3f, 0, CUDNN_DETERMINISTIC, CUDNN_TENSOR_OP_MATH, {0}},
        {5, CUDNN_STATUS_SUCCESS, 0.4f, (size_t)4 << 30, CUDNN_DETERMINISTIC, CUDNN_FMA_MATH, {0}},
        {heuristic ? HEUR : GOOD, CUDNN_STATUS_SUCCESS, 0.5f, 0, CUDNN_DETERMINISTIC, CUDNN_FMA_MATH, {0}},
    };
    for (int i = 0; i < 5; i++) l[i].memory = l[i].memory ? l[i].memory : algo_ws(dir, l[i].algo);
    memcpy(p, l, sizeof l);
    *n = 5;
}

static const char *cudnnGetErrorString(cudnnStatus_t s) { return s ? "stand-in cuDNN error" : "success"; }

static cudnnStatus_t cudnnCreate(cudnnHandle_t *h) {
    if (S.fail_create) return CUDNN_STATUS_NOT_INITIALIZED;
    *h = new stub_handle{NULL};
    S.handles++;
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnDestroy(cudnnHandle_t h) {
    delete h;
    S.handles--;
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s) {
    if (s != cudaStreamPerThread) return violate("cudnnSetStream: not the backend's stream");
    h->stream = s;
    return CUDNN_STATUS_SUCCESS;
}

#define STUB_LIFETIME(Kind, Type, counter)                                                                  \
    static cudnnStatus_t cudnnCreate##Kind##Descriptor(Type *d) {                                          \
        *d = new std::remove_pointer<Type>::type();                                                         \
        S.counter++;                                                                                        \
        return CUDNN_STATUS_SUCCESS;                                                                        \
    }                                                                                                       \
    static cudnnStatus_t cudnnDestroy##Kind##Descriptor(Type d) {                                          \
        delete d;                                                                                           \
        S.counter--;                                                                                        \
        return CUDNN_STATUS_SUCCESS;                                                                        \
    }
STUB_LIFETIME(Tensor, cudnnTensorDescriptor_t, tensors)
STUB_LIFETIME(Filter, cudnnFilterDescriptor_t, filters)
STUB_LIFETIME(Convolution, cudnnConvolutionDescriptor_t, convs)

static cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t f, cudnnDataType_t t,
                                                int n, int c, int h, int w) {
    if (f != CUDNN_TENSOR_NCHW || t != CUDNN_DATA_FLOAT || n <= 0 || c <= 0 || h <= 0 || w <= 0)
        return violate("cudnnSetTensor4dDescriptor: bad arguments");
    *d = stub_tensor{n, c, h, w, 1};
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t t, cudnnTensorFormat_t f,
                                                int k, int c, int h, int w) {
    if (f != CUDNN_TENSOR_NCHW || t != CUDNN_DATA_FLOAT || k <= 0 || c <= 0 || h <= 0 || w <= 0)
        return violate("cudnnSetFilter4dDescriptor: bad arguments");
    *d = stub_filter{k, c, h, w, 1};
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int ph, int pw, int u, int v,
                                                     int dh, int dw, cudnnConvolutionMode_t mode, cudnnDataType_t t) {
    if (t != CUDNN_DATA_FLOAT || ph < 0 || pw < 0 || u <= 0 || v <= 0 || dh <= 0 || dw <= 0)
        return violate("cudnnSetConvolution2dDescriptor: bad arguments");
    int math = d->math;
    *d = stub_conv{ph, pw, u, v, dh, dw, (int)mode, math, 1};
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
    d->math = (int)m;
    return CUDNN_STATUS_SUCCESS;
}

/* The shape a (x, w, conv, y) quadruple describes, checked for
 * consistency, as ttt_conv2d_* arguments; NULL-free. */
struct conv_args {
    int N, C, H, W, OC, K, stride, pad;
};
static cudnnStatus_t describe(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t c,
                              cudnnTensorDescriptor_t y, conv_args *a) {
    if (!x->set || !w->set || !c->set || !y->set) return violate("a descriptor used before it was set");
    if (c->mode != CUDNN_CROSS_CORRELATION) return violate("convolution mode is not cross-correlation");
    if (c->math != CUDNN_FMA_MATH) return violate("math type is not CUDNN_FMA_MATH");
    if (c->dh != 1 || c->dw != 1 || c->ph != c->pw || c->u != c->v || w->h != w->w)
        return violate("dilation, padding, stride or kernel not as vttt's ops have them");
    if (w->c != x->c || w->k != y->c || x->n != y->n) return violate("channels or batch do not match");
    int oh = (x->h + 2 * c->ph - w->h) / c->u + 1, ow = (x->w + 2 * c->pw - w->w) / c->v + 1;
    if (oh != y->h || ow != y->w) return violate("output size does not follow from the input and convolution");
    *a = conv_args{x->n, x->c, x->h, x->w, w->k, w->h, c->u, c->ph};
    return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(cudnnHandle_t, cudnnTensorDescriptor_t,
                                                          cudnnFilterDescriptor_t, cudnnConvolutionDescriptor_t,
                                                          cudnnTensorDescriptor_t, int req, int *n,
                                                          cudnnConvolutionFwdAlgoPerf_t *p) {
    S.find[0]++;
    if (S.fail_find) return CUDNN_STATUS_NOT_SUPPORTED;
    if (req < 5) return violate("Find asked for fewer results than exist");
    perf_list(0, 0, p, n);
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t, cudnnTensorDescriptor_t,
                                                            cudnnFilterDescriptor_t, cudnnConvolutionDescriptor_t,
                                                            cudnnTensorDescriptor_t, int req, int *n,
                                                            cudnnConvolutionFwdAlgoPerf_t *p) {
    S.get[0]++;
    perf_list(0, 1, p, n);
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithm(cudnnHandle_t, cudnnFilterDescriptor_t,
                                                               cudnnTensorDescriptor_t, cudnnConvolutionDescriptor_t,
                                                               cudnnTensorDescriptor_t, int req, int *n,
                                                               cudnnConvolutionBwdDataAlgoPerf_t *p) {
    S.find[1]++;
    if (S.fail_find) return CUDNN_STATUS_NOT_SUPPORTED;
    perf_list(1, 0, p, n);
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t, cudnnFilterDescriptor_t,
                                                                 cudnnTensorDescriptor_t,
                                                                 cudnnConvolutionDescriptor_t, cudnnTensorDescriptor_t,
                                                                 int req, int *n,
                                                                 cudnnConvolutionBwdDataAlgoPerf_t *p) {
    S.get[1]++;
    perf_list(1, 1, p, n);
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithm(cudnnHandle_t, cudnnTensorDescriptor_t,
                                                                 cudnnTensorDescriptor_t,
                                                                 cudnnConvolutionDescriptor_t, cudnnFilterDescriptor_t,
                                                                 int req, int *n,
                                                                 cudnnConvolutionBwdFilterAlgoPerf_t *p) {
    S.find[2]++;
    if (S.fail_find) return CUDNN_STATUS_NOT_SUPPORTED;
    perf_list(2, 0, p, n);
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t, cudnnTensorDescriptor_t,
                                                                   cudnnTensorDescriptor_t,
                                                                   cudnnConvolutionDescriptor_t,
                                                                   cudnnFilterDescriptor_t, int req, int *n,
                                                                   cudnnConvolutionBwdFilterAlgoPerf_t *p) {
    S.get[2]++;
    perf_list(2, 1, p, n);
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t, cudnnTensorDescriptor_t,
                                                             cudnnFilterDescriptor_t, cudnnConvolutionDescriptor_t,
                                                             cudnnTensorDescriptor_t, int algo, size_t *bytes) {
    *bytes = algo_ws(0, algo);
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t, cudnnFilterDescriptor_t,
                                                                  cudnnTensorDescriptor_t,
                                                                  cudnnConvolutionDescriptor_t,
                                                                  cudnnTensorDescriptor_t, int algo, size_t *bytes) {
    *bytes = algo_ws(1, algo);
    return CUDNN_STATUS_SUCCESS;
}
static cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t, cudnnTensorDescriptor_t,
                                                                    cudnnTensorDescriptor_t,
                                                                    cudnnConvolutionDescriptor_t,
                                                                    cudnnFilterDescriptor_t, int algo, size_t *bytes) {
    *bytes = algo_ws(2, algo);
    return CUDNN_STATUS_SUCCESS;
}

/* The algorithm may be one the stand-in offered as usable, and the
 * workspace must be there and large enough for it. */
static cudnnStatus_t check_run(int dir, int algo, const void *ws, size_t bytes) {
    if (algo != GOOD && algo != HEUR) return violate("an algorithm that is failed, non-deterministic, TF32 or too big");
    if (bytes < algo_ws(dir, algo) || (algo_ws(dir, algo) && !ws)) return violate("workspace missing or too small");
    S.runs[dir]++;
    return CUDNN_STATUS_SUCCESS;
}

static size_t numel(const stub_tensor *t) { return (size_t)t->n * t->c * t->h * t->w; }

/* dst = alpha * src + beta * dst (beta 0: dst is not read, as cuDNN says). */
static void blend(float *dst, const float *src, size_t n, float alpha, float beta) {
    for (size_t i = 0; i < n; i++) dst[i] = alpha * src[i] + (beta == 0.0f ? 0.0f : beta * dst[i]);
}

static cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t, const void *alpha, cudnnTensorDescriptor_t xd,
                                             const void *x, cudnnFilterDescriptor_t wd, const void *w,
                                             cudnnConvolutionDescriptor_t cd, int algo, void *ws, size_t bytes,
                                             const void *beta, cudnnTensorDescriptor_t yd, void *y) {
    conv_args a;
    cudnnStatus_t st = describe(xd, wd, cd, yd, &a);
    if (!st) st = check_run(0, algo, ws, bytes);
    if (st) return st;
    float *t = (float *)calloc(numel(yd), sizeof(float));
    ttt_conv2d_forward(t, (const float *)x, (const float *)w, NULL, a.N, a.C, a.H, a.W, a.OC, a.K, a.K, a.stride,
                       a.pad);
    blend((float *)y, t, numel(yd), *(const float *)alpha, *(const float *)beta);
    free(t);
    return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t, const void *alpha, cudnnFilterDescriptor_t wd,
                                                  const void *w, cudnnTensorDescriptor_t dyd, const void *dy,
                                                  cudnnConvolutionDescriptor_t cd, int algo, void *ws, size_t bytes,
                                                  const void *beta, cudnnTensorDescriptor_t dxd, void *dx) {
    conv_args a;
    cudnnStatus_t st = describe(dxd, wd, cd, dyd, &a);
    if (!st) st = check_run(1, algo, ws, bytes);
    if (st) return st;
    float *t = (float *)calloc(numel(dxd), sizeof(float)), *xz = (float *)calloc(numel(dxd), sizeof(float));
    ttt_conv2d_backward(t, NULL, NULL, (const float *)dy, xz, (const float *)w, a.N, a.C, a.H, a.W, a.OC, a.K, a.K,
                        a.stride, a.pad);
    blend((float *)dx, t, numel(dxd), *(const float *)alpha, *(const float *)beta);
    free(t), free(xz);
    return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t, const void *alpha, cudnnTensorDescriptor_t xd,
                                                    const void *x, cudnnTensorDescriptor_t dyd, const void *dy,
                                                    cudnnConvolutionDescriptor_t cd, int algo, void *ws, size_t bytes,
                                                    const void *beta, cudnnFilterDescriptor_t dwd, void *dw) {
    conv_args a;
    cudnnStatus_t st = describe(xd, dwd, cd, dyd, &a);
    if (!st) st = check_run(2, algo, ws, bytes);
    if (st) return st;
    size_t nw = (size_t)dwd->k * dwd->c * dwd->h * dwd->w;
    float *t = (float *)calloc(nw, sizeof(float)), *wz = (float *)calloc(nw, sizeof(float));
    ttt_conv2d_backward(NULL, t, NULL, (const float *)dy, (const float *)x, wz, a.N, a.C, a.H, a.W, a.OC, a.K, a.K,
                        a.stride, a.pad);
    blend((float *)dw, t, nw, *(const float *)alpha, *(const float *)beta);
    free(t), free(wz);
    return CUDNN_STATUS_SUCCESS;
}

/* C = alpha * A + beta * C with A (1, c, 1, 1) broadcast over C (n, c, h, w). */
static cudnnStatus_t cudnnAddTensor(cudnnHandle_t, const void *alpha, cudnnTensorDescriptor_t ad, const void *A,
                                    const void *beta, cudnnTensorDescriptor_t cd, void *C) {
    if (ad->n != 1 || ad->h != 1 || ad->w != 1 || ad->c != cd->c) return violate("cudnnAddTensor: bias shape");
    float al = *(const float *)alpha, be = *(const float *)beta, *c = (float *)C;
    const float *b = (const float *)A;
    size_t hw = (size_t)cd->h * cd->w;
    for (size_t i = 0; i < numel(cd); i++) c[i] = al * b[(i / hw) % cd->c] + be * c[i];
    S.bias_adds++;
    return CUDNN_STATUS_SUCCESS;
}

/* db = alpha * sum over n, h, w of dy + beta * db. */
static cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t, const void *alpha, cudnnTensorDescriptor_t dyd,
                                                  const void *dy, const void *beta, cudnnTensorDescriptor_t dbd,
                                                  void *db) {
    if (dbd->n != 1 || dbd->h != 1 || dbd->w != 1 || dbd->c != dyd->c) return violate("backward bias: shape");
    const float *g = (const float *)dy;
    float *d = (float *)db;
    size_t hw = (size_t)dyd->h * dyd->w;
    for (int c = 0; c < dyd->c; c++) {
        double s = 0.0;
        for (int n = 0; n < dyd->n; n++)
            for (size_t p = 0; p < hw; p++) s += g[((size_t)n * dyd->c + c) * hw + p];
        d[c] = *(const float *)alpha * (float)s + *(const float *)beta * d[c];
    }
    S.bias_grads++;
    return CUDNN_STATUS_SUCCESS;
}

/* Device memory of the emulation is host memory. */
static size_t g_ws_allocs;
static cudaError_t cudaMalloc(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    g_ws_allocs++;
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
static cudaError_t cudaFree(void *p) {
    free(p);
    return cudaSuccess;
}

/* ---- the code under test --------------------------------------------------------- */

#include "cuda/cuda_internal.h"

int ttt_cuda_err(const vttt_logger *lg, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return VTTT_OK;
    vttt_log(lg, VTTT_LOG_ERROR, "CUDA (emulated): %s failed (%d)", what, (int)e);
    return e == cudaErrorMemoryAllocation ? VTTT_ENOMEM : VTTT_EINVAL;
}

#include "cuda/conv2d_cudnn.cu"
} // namespace ttt_emu

/* ---- tests ------------------------------------------------------------------------- */

static tu_rng g_rng;
static tu_log g_log;
static ttt_emu::ttt_cuda_ctx g_ctx;

static void setup(void) {
    tu_seed(&g_rng, 99);
    memset(&ttt_emu::S, 0, sizeof ttt_emu::S);
    memset(&g_ctx, 0, sizeof g_ctx);
    g_ctx.stream = cudaStreamPerThread;
    g_ctx.log = tu_log_capture(&g_log, VTTT_LOG_ERROR, 0);
}

static void teardown(void) {
    ttt_emu::ttt_cudnn_close(&g_ctx);
    ck_assert_ptr_null(g_ctx.dnn);
    ck_assert_int_eq(ttt_emu::S.handles, 0);
    ck_assert_int_eq(ttt_emu::S.tensors, 0);
    ck_assert_int_eq(ttt_emu::S.filters, 0);
    ck_assert_int_eq(ttt_emu::S.convs, 0);
}

static float *rnd(size_t n, float scale) {
    float *p = (float *)malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(p);
    tu_fill_normal(&g_rng, p, n, scale);
    return p;
}

static float *copy(const float *p, size_t n) {
    float *q = (float *)malloc(n * sizeof(float));
    memcpy(q, p, n * sizeof(float));
    return q;
}

/* The CUDA op (through the stand-in) against the CPU op: forward with and
 * without bias, backward with want (1 dinp, 2 dw, 4 dbias) onto
 * pre-filled gradients. */
static void check_conv(int N, int C, int H, int W, int OC, int K, int stride, int pad, int with_bias, int want) {
    int OH = (H + 2 * pad - K) / stride + 1, OW = (W + 2 * pad - K) / stride + 1;
    size_t ni = (size_t)N * C * H * W, nw = (size_t)OC * C * K * K, no = (size_t)N * OC * OH * OW;
    float *x = rnd(ni, 1.0f), *w = rnd(nw, 0.3f), *b = rnd(OC, 1.0f), *dy = rnd(no, 1.0f);
    float *y1 = rnd(no, 1.0f), *y2 = copy(y1, no);
    float *dx1 = rnd(ni, GRAD_FILL), *dw1 = rnd(nw, GRAD_FILL), *db1 = rnd(OC, GRAD_FILL);
    float *dx2 = copy(dx1, ni), *dw2 = copy(dw1, nw), *db2 = copy(db1, OC);
    char what[128];
    snprintf(what, sizeof what, "conv2d N%d C%d %dx%d OC%d k%d s%d p%d bias%d want%d", N, C, H, W, OC, K, stride, pad,
             with_bias, want);
    ttt_conv2d_forward(y1, x, w, with_bias ? b : NULL, N, C, H, W, OC, K, K, stride, pad);
    int err = ttt_emu::ttt_cuda_conv2d_forward(&g_ctx, y2, x, w, with_bias ? b : NULL, N, C, H, W, OC, K, K, stride,
                                              pad);
    ck_assert_msg(err == 0, "%s forward: %s; %s; %s", what, vttt_strerror(err), ttt_emu::S.violation, g_log.text);
    ck_assert_msg(tu_rel_err(y2, y1, no) <= TOL_SAME, "%s: forward differs", what);
    ttt_conv2d_backward(want & 1 ? dx1 : NULL, want & 2 ? dw1 : NULL, want & 4 ? db1 : NULL, dy, x, w, N, C, H, W,
                        OC, K, K, stride, pad);
    err = ttt_emu::ttt_cuda_conv2d_backward(&g_ctx, want & 1 ? dx2 : NULL, want & 2 ? dw2 : NULL,
                                            want & 4 ? db2 : NULL, dy, x, w, N, C, H, W, OC, K, K, stride, pad);
    ck_assert_msg(err == 0, "%s backward: %s; %s; %s", what, vttt_strerror(err), ttt_emu::S.violation, g_log.text);
    ck_assert_msg(tu_rel_err(dx2, dx1, ni) <= TOL_SAME, "%s: dinp differs", what);
    ck_assert_msg(tu_rel_err(dw2, dw1, nw) <= TOL_SAME, "%s: dw differs", what);
    ck_assert_msg(tu_rel_err(db2, db1, OC) <= TOL_SAME, "%s: dbias differs", what);
    free(x), free(w), free(b), free(dy), free(y1), free(y2), free(dx1), free(dw1), free(db1), free(dx2), free(dw2),
        free(db2);
}

START_TEST(test_conv_matches_cpu) {
    check_conv(2, 3, 16, 16, 8, 3, 1, 1, 1, 7);
    check_conv(2, 8, 16, 16, 8, 3, 2, 1, 1, 7);
    check_conv(3, 5, 11, 10, 7, 4, 2, 1, 1, 7);
    check_conv(2, 4, 9, 7, 3, 3, 2, 0, 0, 7);
    check_conv(1, 6, 7, 9, 5, 1, 2, 0, 1, 7);
    check_conv(2, 8, 4, 4, 4, 1, 1, 0, 1, 7);
    for (int want = 0; want < 8; want++) check_conv(2, 3, 6, 5, 4, 3, 1, 1, 1, want);
    ck_assert_int_eq(ttt_emu::S.handles, 1);   /* one handle, made on first use */
    ck_assert_int_gt(ttt_emu::S.bias_adds, 0);
    ck_assert_int_gt(ttt_emu::S.bias_grads, 0);
}
END_TEST

/* Find runs once per shape and direction; the plan is reused after; the
 * workspace is allocated only when a plan needs more than there is. */
START_TEST(test_plan_once_per_shape) {
    for (int r = 0; r < 3; r++) check_conv(2, 4, 8, 8, 6, 3, 1, 1, 1, 7);
    ck_assert_int_eq(ttt_emu::S.find[0], 1);
    ck_assert_int_eq(ttt_emu::S.find[1], 1);
    ck_assert_int_eq(ttt_emu::S.find[2], 1);
    ck_assert_int_eq(ttt_emu::S.get[0] + ttt_emu::S.get[1] + ttt_emu::S.get[2], 0);
    ck_assert_int_eq(ttt_emu::S.runs[0], 3);
    ck_assert_int_eq(ttt_emu::S.tensors, 3);   /* x, y, bias: one plan */
    size_t allocs = ttt_emu::g_ws_allocs;
    check_conv(2, 4, 8, 8, 6, 3, 1, 1, 1, 7);
    ck_assert_int_eq(ttt_emu::g_ws_allocs, allocs);   /* steady state: no allocation */
    /* a forward-only shape never looks for backward algorithms */
    float x[2 * 4 * 5 * 5] = {0}, w[3 * 4 * 9] = {0}, y[2 * 3 * 5 * 5];
    ck_assert_int_eq(ttt_emu::ttt_cuda_conv2d_forward(&g_ctx, y, x, w, NULL, 2, 4, 5, 5, 3, 3, 3, 1, 1), 0);
    ck_assert_int_eq(ttt_emu::S.find[0], 2);
    ck_assert_int_eq(ttt_emu::S.find[1], 1);
}
END_TEST

/* More shapes than the cache holds: the oldest are replaced (their
 * descriptors destroyed) and rebuilt when they return. */
START_TEST(test_plan_cache_replacement) {
    int shapes = 40;
    for (int i = 0; i < shapes; i++) check_conv(1, 2, 4 + i, 5, 3, 3, 1, 1, 1, 7);
    ck_assert_int_eq(ttt_emu::S.find[0], shapes);
    ck_assert_int_eq(ttt_emu::S.convs, 32);   /* CONV_PLANS live plans */
    ck_assert_int_eq(ttt_emu::S.tensors, 3 * 32);
    check_conv(1, 2, 4 + shapes - 1, 5, 3, 3, 1, 1, 1, 7);   /* still cached */
    ck_assert_int_eq(ttt_emu::S.find[0], shapes);
    check_conv(1, 2, 4, 5, 3, 3, 1, 1, 1, 7);                /* replaced: made again */
    ck_assert_int_eq(ttt_emu::S.find[0], shapes + 1);
    ck_assert_int_eq(ttt_emu::S.convs, 32);
}
END_TEST

/* When Find fails, cuDNN's heuristics choose (and their algorithm runs). */
START_TEST(test_heuristics_fallback) {
    ttt_emu::S.fail_find = 1;
    check_conv(2, 3, 9, 8, 4, 3, 2, 1, 1, 7);
    ck_assert_int_eq(ttt_emu::S.get[0], 1);
    ck_assert_int_eq(ttt_emu::S.get[1], 1);
    ck_assert_int_eq(ttt_emu::S.get[2], 1);
}
END_TEST

START_TEST(test_errors) {
    float x[64] = {0}, w[64] = {0}, y[64] = {0};
    /* bad shapes: no cuDNN call at all */
    ck_assert_int_eq(ttt_emu::ttt_cuda_conv2d_forward(&g_ctx, y, x, w, NULL, 1, 1, 2, 2, 1, 3, 3, 1, 0), VTTT_EINVAL);
    ck_assert(strstr(g_log.text, "bad or too large shape") != NULL);
    ck_assert_int_eq(ttt_emu::ttt_cuda_conv2d_backward(&g_ctx, x, NULL, NULL, y, x, w, 0, 1, 4, 4, 1, 3, 3, 1, 1),
                     VTTT_EINVAL);
    ck_assert_int_eq(ttt_emu::ttt_cuda_conv2d_forward(&g_ctx, y, x, w, NULL, 1, 1, 4, 4, 1, 3, 3, 0, 1), VTTT_EINVAL);
    ck_assert_int_eq(ttt_emu::ttt_cuda_conv2d_forward(&g_ctx, y, x, w, NULL, 1 << 16, 1 << 8, 1 << 8, 1 << 8, 1, 1, 1, 1,
                                                      0),
                     VTTT_EINVAL);   /* more elements than cuDNN's int counts */
    ck_assert_ptr_null(g_ctx.dnn);
    /* no gradient wanted: nothing to do */
    ck_assert_int_eq(ttt_emu::ttt_cuda_conv2d_backward(&g_ctx, NULL, NULL, NULL, y, x, w, 1, 1, 4, 4, 1, 3, 3, 1, 1), 0);
    ck_assert_ptr_null(g_ctx.dnn);
    /* cudnnCreate fails: the error is returned and logged, nothing is kept */
    ttt_emu::S.fail_create = 1;
    ck_assert_int_eq(ttt_emu::ttt_cuda_conv2d_forward(&g_ctx, y, x, w, NULL, 1, 1, 4, 4, 1, 3, 3, 1, 1), VTTT_ENODEV);
    ck_assert(strstr(g_log.text, "cudnnCreate") != NULL);
    ck_assert_ptr_null(g_ctx.dnn);
    ttt_emu::S.fail_create = 0;
    ck_assert_int_eq(ttt_emu::ttt_cuda_conv2d_forward(&g_ctx, y, x, w, NULL, 1, 1, 4, 4, 1, 3, 3, 1, 1), 0);
    ck_assert_ptr_nonnull(g_ctx.dnn);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("conv2d_cudnn_emu");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_conv_matches_cpu);
    tcase_add_test(tc, test_plan_once_per_shape);
    tcase_add_test(tc, test_plan_cache_replacement);
    tcase_add_test(tc, test_heuristics_fallback);
    tcase_add_test(tc, test_errors);
    return tu_run("conv2d_cudnn_emu", tc, CK_NOFORK);
}
