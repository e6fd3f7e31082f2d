/*
 * The CUDA instance of the device layer's ops (ttt/layer_dev.h): the fused
 * TTT launchers of ttt_fused_fwd.cu / ttt_fused_bwd.cu, the elementwise
 * steps of the layer's outer part (bodies shared with the CPU instance in
 * ttt/layer_dev_elem.h), CUDA graphs of the backend's stream, and the
 * bf16 projections of bf16_cuda.cu.
 */
#include <stdlib.h>

#include "cuda_internal.h"
#include "layer_dev.h"
#include "layer_dev_elem.h"

static ttt_cuda_ctx *ctx_of_be(const vttt_backend *be) { return (ttt_cuda_ctx *)be->ctx; }

/* ---- elementwise ------------------------------------------------------------------- */

__global__ void lr_forward_kernel(float *lr, size_t n, float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        lr[i] = ttt_elem_lr(lr[i], scale);
}

__global__ void lr_backward_kernel(float *da, const float *dlr, const float *lr, size_t n, float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        da[i] = ttt_elem_lr_grad(dlr[i], lr[i], scale);
}

__global__ void gate_forward_kernel(float *o, const float *gpre, const float *nrm, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        o[i] = ttt_elem_gate(gpre[i], nrm[i]);
}

__global__ void gate_backward_kernel(float *dg, float *d_o, const float *gpre, const float *nrm, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        ttt_elem_gate_grad(gpre[i], nrm[i], &dg[i], &d_o[i]);
}

__global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

/* One thread per (sequence, channel) walks its column's K-1 slots. */
__global__ void conv_state_kernel(float *state, const float *inp, int B, int T, int C, int K) {
    size_t total = (size_t)B * C;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x)
        ttt_elem_conv_state(state, inp, idx / C, idx % C, T, C, K);
}

static int launched(const vttt_backend *be, const char *what) {
    return ttt_cuda_err(&ctx_of_be(be)->log, cudaGetLastError(), what);
}

static int cu_zero(const vttt_backend *be, float *x, size_t n) {
    ttt_cuda_ctx *ctx = ctx_of_be(be);
    return ttt_cuda_err(&ctx->log, cudaMemsetAsync(x, 0, n * sizeof(float), ctx->stream), "zeroing a buffer");
}

static int cu_copy(const vttt_backend *be, float *dst, const float *src, size_t n) {
    ttt_cuda_ctx *ctx = ctx_of_be(be);
    if (dst == src || n == 0) return VTTT_OK;
    return ttt_cuda_err(&ctx->log,
                        cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, ctx->stream),
                        "device copy");
}

static int cu_lr_forward(const vttt_backend *be, float *lr, size_t n, float scale) {
    TTT_LAUNCH(lr_forward_kernel, ttt_cuda_grid(n, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, ctx_of_be(be)->stream)
        (lr, n, scale);
    return launched(be, "lr_forward launch");
}

static int cu_lr_backward(const vttt_backend *be, float *da, const float *dlr, const float *lr, size_t n, float scale) {
    TTT_LAUNCH(lr_backward_kernel, ttt_cuda_grid(n, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, ctx_of_be(be)->stream)
        (da, dlr, lr, n, scale);
    return launched(be, "lr_backward launch");
}

static int cu_gate_forward(const vttt_backend *be, float *o, const float *gpre, const float *nrm, size_t n) {
    TTT_LAUNCH(gate_forward_kernel, ttt_cuda_grid(n, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, ctx_of_be(be)->stream)
        (o, gpre, nrm, n);
    return launched(be, "gate_forward launch");
}

static int cu_gate_backward(const vttt_backend *be, float *dg, float *d_o, const float *gpre, const float *nrm,
                            size_t n) {
    TTT_LAUNCH(gate_backward_kernel, ttt_cuda_grid(n, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, ctx_of_be(be)->stream)
        (dg, d_o, gpre, nrm, n);
    return launched(be, "gate_backward launch");
}

static int cu_add(const vttt_backend *be, float *out, const float *a, const float *b, size_t n) {
    if (n == 0) return VTTT_OK;
    TTT_LAUNCH(add_kernel, ttt_cuda_grid(n, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, ctx_of_be(be)->stream)(out, a, b, n);
    return launched(be, "add launch");
}

static int cu_conv_state_update(const vttt_backend *be, float *state, const float *inp, int B, int T, int C, int K) {
    if (!state || K <= 1 || T <= 0) return VTTT_OK;
    size_t n = (size_t)B * C;
    TTT_LAUNCH(conv_state_kernel, ttt_cuda_grid(n, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, ctx_of_be(be)->stream)
        (state, inp, B, T, C, K);
    return launched(be, "conv state update launch");
}

/* ---- graphs ----------------------------------------------------------------------------- */

/* Thread-local capture mode: only this thread's work on the stream is
 * recorded, and a stray legacy-stream call from this thread fails the
 * capture instead of silently escaping it. */
static int cu_graph_begin(const vttt_backend *be) {
    ttt_cuda_ctx *ctx = ctx_of_be(be);
    return ttt_cuda_err(&ctx->log, cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal),
                        "beginning a graph capture");
}

static int cu_graph_end(const vttt_backend *be, void **exec) {
    ttt_cuda_ctx *ctx = ctx_of_be(be);
    cudaGraph_t g = NULL;
    cudaGraphExec_t x = NULL;
    *exec = NULL;
    int err = ttt_cuda_err(&ctx->log, cudaStreamEndCapture(ctx->stream, &g), "ending a graph capture");
    if (!err && !g) err = VTTT_EIO;
    if (!err) err = ttt_cuda_err(&ctx->log, cudaGraphInstantiate(&x, g, 0), "instantiating a graph");
    if (g) cudaGraphDestroy(g);
    if (!err) *exec = (void *)x;
    return err;
}

static int cu_graph_launch(const vttt_backend *be, void *exec) {
    ttt_cuda_ctx *ctx = ctx_of_be(be);
    return ttt_cuda_err(&ctx->log, cudaGraphLaunch((cudaGraphExec_t)exec, ctx->stream), "launching a graph");
}

static void cu_graph_free(void *exec) {
    if (exec) cudaGraphExecDestroy((cudaGraphExec_t)exec);
}

/* ---- the table ------------------------------------------------------------------------ */

static const ttt_dev_ops cuda_ops = {
    ttt_cuda_state_init,
    ttt_cuda_prefill,
    ttt_cuda_decode,
    ttt_cuda_backward,
    cu_zero,
    cu_copy,
    cu_lr_forward,
    cu_lr_backward,
    cu_gate_forward,
    cu_gate_backward,
    cu_add,
    cu_conv_state_update,
    cu_graph_begin,
    cu_graph_end,
    cu_graph_launch,
    cu_graph_free,
    ttt_cuda_linear_bf16,
    ttt_cuda_to_bf16,
};

extern "C" const ttt_dev_ops *ttt_dev_ops_cuda(void) { return &cuda_ops; }
