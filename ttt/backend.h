/*
 * ttt/backend.h — internal: the backend function table.
 *
 * The CPU table is complete and points at the ops of ttt/ops.h; the CUDA
 * table (ttt/cuda/) fills what it supports and leaves the rest NULL.
 * Pointers passed to a backend's ops live on that backend's device. The ops
 * keep the argument lists of ops.h; those that need the backend's own
 * context (a cuBLAS handle) take it first.
 */
#ifndef VTTT_BACKEND_H
#define VTTT_BACKEND_H

#include "ttt.h"

struct vttt_backend {
    const char *name;
    vttt_device device;
    void *ctx;   /* backend-private (CUDA: handles, stream); NULL on CPU */

    int (*alloc)(void *ctx, void **p, size_t bytes);
    void (*free)(void *ctx, void *p);
    int (*to_device)(void *ctx, void *dst, const void *src, size_t bytes);
    int (*to_host)(void *ctx, void *dst, const void *src, size_t bytes);
    int (*sync)(void *ctx);

    /* C (M,N) = alpha op(A) op(B) + beta C, row-major (see ttt_sgemm). */
    int (*matmul)(void *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);
    int (*linear_forward)(void *ctx, float *out, const float *inp, const float *w, const float *bias, int N,
                          int C, int OC);
    int (*linear_backward)(void *ctx, float *dinp, float *dw, float *dbias, const float *dout,
                           const float *inp, const float *w, int N, int C, int OC);

    void (*rmsnorm_forward)(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);
    void (*rmsnorm_backward)(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                             const float *rstd, int N, int C);
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, int N, int C, float eps);
    void (*layernorm_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, const float *mean, const float *rstd, int N, int C);
    void (*gelu_forward)(float *out, const float *inp, size_t n);
    void (*gelu_backward)(float *dinp, const float *dout, const float *inp, size_t n);
    void (*silu_forward)(float *out, const float *inp, size_t n);
    void (*silu_backward)(float *dinp, const float *dout, const float *inp, size_t n);
    void (*swiglu_forward)(float *out, const float *gate, const float *up, size_t n);
    void (*swiglu_backward)(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                            size_t n);
    void (*sigmoid_forward)(float *out, const float *inp, size_t n);
    void (*sigmoid_backward)(float *dinp, const float *dout, const float *out, size_t n);
    void (*rotary_forward)(float *out, const float *inp, int B, int T, int H, int f, int64_t pos0, int pos_mod,
                           float theta);
    void (*rotary_backward)(float *dinp, const float *dout, int B, int T, int H, int f, int64_t pos0,
                            int pos_mod, float theta);
    void (*conv1d_forward)(float *out, const float *inp, const float *w, const float *bias, const float *state,
                           int B, int T, int C, int K);
    void (*conv1d_backward)(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                            const float *w, const float *state, int B, int T, int C, int K);
    int (*embedding_forward)(float *out, const int32_t *ids, const float *table, int N, int V, int C);
    void (*embedding_backward)(float *dtable, const float *dout, const int32_t *ids, int N, int C);
    int (*xent_forward)(float *losses, const float *logits, const int32_t *targets, int N, int V);
    void (*xent_backward)(float *dlogits, const float *dloss, const float *logits, const int32_t *targets,
                          int N, int V);

    /* 2D image ops (ops.h). The convolutions take the backend's context
     * (CUDA: the cuDNN handle, descriptors and algorithm chosen once per
     * shape, workspace). */
    int (*conv2d_forward)(void *ctx, float *out, const float *inp, const float *w, const float *bias, int N,
                          int C, int H, int W, int OC, int KH, int KW, int stride, int pad);
    int (*conv2d_backward)(void *ctx, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                           const float *w, int N, int C, int H, int W, int OC, int KH, int KW, int stride,
                           int pad);
    void (*groupnorm_forward)(float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, int N, int C, int HW, int G, float eps);
    void (*groupnorm_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, const float *mean, const float *rstd, int N, int C, int HW, int G);
    void (*upsample2x_forward)(float *out, const float *inp, int N, int C, int H, int W);
    void (*upsample2x_backward)(float *dinp, const float *dout, int N, int C, int H, int W);
};

#endif
