/* RMSNorm and LayerNorm over the last dimension C of (N, C) rows, as in
 * ttt/norm.c: one warp per row with fp32 accumulation for the row
 * statistics, and deterministic column sums (ttt_colsum) for the
 * parameter gradients. */
#include "cuda_internal.h"

#define NORM_WARPS 8 /* rows per block of 256 threads */

static unsigned norm_grid(int N) { return (unsigned)((N + NORM_WARPS - 1) / NORM_WARPS); }

/* out (N,C) = inp * rstd * w; rstd (N) = 1/sqrt(mean(inp^2) + eps), may be NULL. */
__global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                                       float eps) {
    int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    float *o = out + (size_t)row * C;
    float ss = 0.0f;
    for (int i = lane; i < C; i += 32) ss += x[i] * x[i];
    ss = ttt_warp_sum(ss);
    float r = 1.0f / sqrtf(ss / C + eps);
    for (int i = lane; i < C; i += 32) o[i] = x[i] * r * w[i];
    if (rstd && lane == 0) rstd[row] = r;
}

/* dinp += r * dout*w - r^3/C * x * sum(dout*w*x), per row. */
__global__ void rmsnorm_backward_kernel(float *dinp, const float *dout, const float *inp, const float *w,
                                        const float *rstd, int N, int C) {
    int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float *dx = dinp + (size_t)row * C;
    float r = rstd[row], dot = 0.0f;
    for (int i = lane; i < C; i += 32) dot += dy[i] * w[i] * x[i];
    dot = ttt_warp_sum(dot);
    float k = (dot / C) * r * r * r;
    for (int i = lane; i < C; i += 32) dx[i] += r * dy[i] * w[i] - k * x[i];
}

/* f(n, c) = dout * x * rstd[n]: the RMSNorm weight gradient. */
struct rms_dw_term {
    const float *dout, *inp, *rstd;
    int C;
    __device__ float operator()(int n, int c, int) const {
        size_t i = (size_t)n * C + c;
        return dout[i] * inp[i] * rstd[n];
    }
};

void ttt_cuda_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
    TTT_LAUNCH(rmsnorm_forward_kernel, norm_grid(N), NORM_WARPS * 32, 0, TTT_CUDA_STREAM)(out, rstd, inp, w, N, C, eps);
    ttt_cuda_check_launch("rmsnorm_forward");
}

void ttt_cuda_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                               const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    if (dinp)
        TTT_LAUNCH(rmsnorm_backward_kernel, norm_grid(N), NORM_WARPS * 32, 0, TTT_CUDA_STREAM)
            (dinp, dout, inp, w, rstd, N, C);
    if (dw) ttt_colsum(dw, rms_dw_term{dout, inp, rstd, C}, N, C, 1, 1, 0);
    ttt_cuda_check_launch("rmsnorm_backward");
}

/* out (N,C) = (inp - mean) * rstd * w + b, two passes over the row (mean,
 * then the biased variance); mean, rstd (N) may be NULL. */
__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                         const float *b, int N, int C, float eps) {
    int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    float *o = out + (size_t)row * C;
    float s = 0.0f;
    for (int i = lane; i < C; i += 32) s += x[i];
    float m = ttt_warp_sum(s) / C;
    float v = 0.0f;
    for (int i = lane; i < C; i += 32) v += (x[i] - m) * (x[i] - m);
    float r = 1.0f / sqrtf(ttt_warp_sum(v) / C + eps);
    for (int i = lane; i < C; i += 32) o[i] = (x[i] - m) * r * w[i] + b[i];
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = r;
    }
}

/* With xhat = (x - mean) * rstd and g = dout * w:
 * dinp += rstd * (g - mean(g) - xhat * mean(g * xhat)), per row. */
__global__ void layernorm_backward_kernel(float *dinp, const float *dout, const float *inp, const float *w,
                                          const float *mean, const float *rstd, int N, int C) {
    int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float *dx = dinp + (size_t)row * C;
    float m = mean[row], r = rstd[row], sg = 0.0f, sgx = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float g = dy[i] * w[i];
        sg += g;
        sgx += g * (x[i] - m) * r;
    }
    float mg = ttt_warp_sum(sg) / C, mgx = ttt_warp_sum(sgx) / C;
    for (int i = lane; i < C; i += 32) dx[i] += r * (dy[i] * w[i] - mg - (x[i] - m) * r * mgx);
}

/* f(n, c) = dout * xhat: the LayerNorm weight gradient. */
struct ln_dw_term {
    const float *dout, *inp, *mean, *rstd;
    int C;
    __device__ float operator()(int n, int c, int) const {
        size_t i = (size_t)n * C + c;
        return dout[i] * (inp[i] - mean[n]) * rstd[n];
    }
};

void ttt_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                const float *b, int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
    TTT_LAUNCH(layernorm_forward_kernel, norm_grid(N), NORM_WARPS * 32, 0, TTT_CUDA_STREAM)
        (out, mean, rstd, inp, w, b, N, C, eps);
    ttt_cuda_check_launch("layernorm_forward");
}

void ttt_cuda_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, const float *mean, const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    if (dinp)
        TTT_LAUNCH(layernorm_backward_kernel, norm_grid(N), NORM_WARPS * 32, 0, TTT_CUDA_STREAM)
            (dinp, dout, inp, w, mean, rstd, N, C);
    if (dw) ttt_colsum(dw, ln_dw_term{dout, inp, mean, rstd, C}, N, C, 1, 1, 0);
    if (db) ttt_colsum(db, ttt_matrix_entry{dout, C}, N, C, 1, 1, 0);
    ttt_cuda_check_launch("layernorm_backward");
}
