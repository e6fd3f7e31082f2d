/* The CPU backend table: host memory and the reference ops of ops.h. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "ops.h"

static int cpu_alloc(void *ctx, void **p, size_t bytes) {
    (void)ctx;
    *p = NULL;
    if (bytes == 0) bytes = 1;
    if (posix_memalign(p, 64, bytes) != 0) return VTTT_ENOMEM;
    return VTTT_OK;
}

static void cpu_free(void *ctx, void *p) { (void)ctx; free(p); }

static int cpu_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx;
    memmove(dst, src, bytes);
    return VTTT_OK;
}

static int cpu_sync(void *ctx) { (void)ctx; return VTTT_OK; }

static int cpu_matmul(void *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
    (void)ctx;
    ttt_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return VTTT_OK;
}

static int cpu_linear_forward(void *ctx, float *out, const float *inp, const float *w, const float *bias, int N,
                              int C, int OC) {
    (void)ctx;
    ttt_linear_forward(out, inp, w, bias, N, C, OC);
    return VTTT_OK;
}

static int cpu_linear_backward(void *ctx, float *dinp, float *dw, float *dbias, const float *dout,
                               const float *inp, const float *w, int N, int C, int OC) {
    (void)ctx;
    ttt_linear_backward(dinp, dw, dbias, dout, inp, w, N, C, OC);
    return VTTT_OK;
}

static int cpu_conv2d_forward(void *ctx, float *out, const float *inp, const float *w, const float *bias, int N,
                              int C, int H, int W, int OC, int KH, int KW, int stride, int pad) {
    (void)ctx;
    ttt_conv2d_forward(out, inp, w, bias, N, C, H, W, OC, KH, KW, stride, pad);
    return VTTT_OK;
}

static int cpu_conv2d_backward(void *ctx, float *dinp, float *dw, float *dbias, const float *dout,
                               const float *inp, const float *w, int N, int C, int H, int W, int OC, int KH, int KW,
                               int stride, int pad) {
    (void)ctx;
    ttt_conv2d_backward(dinp, dw, dbias, dout, inp, w, N, C, H, W, OC, KH, KW, stride, pad);
    return VTTT_OK;
}

static const vttt_backend cpu_backend = {
    .name = "cpu",
    .device = VTTT_DEVICE_CPU,
    .ctx = NULL,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .sync = cpu_sync,
    .matmul = cpu_matmul,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .rmsnorm_forward = ttt_rmsnorm_forward,
    .rmsnorm_backward = ttt_rmsnorm_backward,
    .layernorm_forward = ttt_layernorm_forward,
    .layernorm_backward = ttt_layernorm_backward,
    .gelu_forward = ttt_gelu_forward,
    .gelu_backward = ttt_gelu_backward,
    .silu_forward = ttt_silu_forward,
    .silu_backward = ttt_silu_backward,
    .swiglu_forward = ttt_swiglu_forward,
    .swiglu_backward = ttt_swiglu_backward,
    .sigmoid_forward = ttt_sigmoid_forward,
    .sigmoid_backward = ttt_sigmoid_backward,
    .rotary_forward = ttt_rotary_forward,
    .rotary_backward = ttt_rotary_backward,
    .conv1d_forward = ttt_conv1d_forward,
    .conv1d_backward = ttt_conv1d_backward,
    .embedding_forward = ttt_embedding_forward,
    .embedding_backward = ttt_embedding_backward,
    .xent_forward = ttt_xent_forward,
    .xent_backward = ttt_xent_backward,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward = cpu_conv2d_backward,
    .groupnorm_forward = ttt_groupnorm_forward,
    .groupnorm_backward = ttt_groupnorm_backward,
    .upsample2x_forward = ttt_upsample2x_forward,
    .upsample2x_backward = ttt_upsample2x_backward,
};

/* The table is constant: the CPU backend holds no state. */
const vttt_backend *vttt_backend_cpu(void) { return &cpu_backend; }
