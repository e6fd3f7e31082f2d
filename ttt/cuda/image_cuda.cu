/* GroupNorm and nearest 2x upsampling of NCHW images on the GPU, as
 * ttt/groupnorm.c and ttt/upsample.c (backward accumulates, NULL gradients
 * skipped, w and b may be NULL). Every sum is a block reduction with one
 * writer per output, so the results are deterministic (no atomics).
 * Launches are spelled TTT_LAUNCH so that tests/test_image_cuda_emu.cpp
 * can run these kernels on the CPU emulation of CUDA (cuda_emu.h). */
#include "cuda_internal.h"

#define GN_THREADS 256

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024);
 * every thread gets the result. red is __shared__ float[32]. */
static __device__ float block_sum(float v, float *red) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = ttt_warp_sum(v);
    __syncthreads(); /* red may still be read from a previous call */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return ttt_warp_sum(v);
}

/* One block per (image, group): mean and rstd of its cg*HW contiguous
 * values (two passes: mean, then squared deviations), then the output. */
__global__ void groupnorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                         const float *b, int C, int HW, int G, float eps) {
    __shared__ float red[32];
    int ng = blockIdx.x, cg = C / G, c0 = (ng % G) * cg;
    size_t len = (size_t)cg * HW;
    const float *x = inp + ng * len;
    float *y = out + ng * len;
    float s = 0.0f;
    for (size_t i = threadIdx.x; i < len; i += blockDim.x) s += x[i];
    float m = block_sum(s, red) / (float)len;
    float v = 0.0f;
    for (size_t i = threadIdx.x; i < len; i += blockDim.x) v += (x[i] - m) * (x[i] - m);
    float r = 1.0f / sqrtf(block_sum(v, red) / (float)len + eps);
    if (threadIdx.x == 0) {
        if (mean) mean[ng] = m;
        if (rstd) rstd[ng] = r;
    }
    for (size_t i = threadIdx.x; i < len; i += blockDim.x) {
        int c = c0 + (int)(i / HW);
        y[i] = (x[i] - m) * r * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
    }
}

/* dinp += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) per
 * (image, group), dxhat = dout * w[c]. */
__global__ void groupnorm_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *w,
                                      const float *mean, const float *rstd, int C, int HW, int G) {
    __shared__ float red[32];
    int ng = blockIdx.x, cg = C / G, c0 = (ng % G) * cg;
    size_t len = (size_t)cg * HW;
    const float *x = inp + ng * len, *g = dout + ng * len;
    float *dx = dinp + ng * len;
    float m = mean[ng], r = rstd[ng], sd = 0.0f, sdx = 0.0f;
    for (size_t i = threadIdx.x; i < len; i += blockDim.x) {
        float d = g[i] * (w ? w[c0 + (int)(i / HW)] : 1.0f);
        sd += d;
        sdx += d * (x[i] - m) * r;
    }
    float md = block_sum(sd, red) / (float)len;
    float mdx = block_sum(sdx, red) / (float)len;
    for (size_t i = threadIdx.x; i < len; i += blockDim.x) {
        float d = g[i] * (w ? w[c0 + (int)(i / HW)] : 1.0f);
        dx[i] += r * (d - md - (x[i] - m) * r * mdx);
    }
}

/* One block per channel c: dw[c] += sum dout * xhat, db[c] += sum dout
 * over images and pixels. */
__global__ void groupnorm_dparams_kernel(float *dw, float *db, const float *dout, const float *inp,
                                         const float *mean, const float *rstd, int N, int C, int HW, int G) {
    __shared__ float red[32];
    int c = blockIdx.x, cg = C / G;
    float sw = 0.0f, sb = 0.0f;
    for (int n = 0; n < N; n++) {
        int ng = n * G + c / cg;
        float m = mean[ng], r = rstd[ng];
        const float *x = inp + ((size_t)n * C + c) * HW, *g = dout + ((size_t)n * C + c) * HW;
        for (int p = threadIdx.x; p < HW; p += blockDim.x) {
            sw += g[p] * (x[p] - m) * r;
            sb += g[p];
        }
    }
    sw = block_sum(sw, red);
    sb = block_sum(sb, red);
    if (threadIdx.x == 0) {
        if (dw) dw[c] += sw;
        if (db) db[c] += sb;
    }
}

void ttt_cuda_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                const float *b, int N, int C, int HW, int G, float eps) {
    if (N <= 0 || C <= 0 || HW <= 0 || G <= 0 || C % G) return;
    TTT_LAUNCH(groupnorm_forward_kernel, (unsigned)(N * G), GN_THREADS, 0, TTT_CUDA_STREAM)
    (out, mean, rstd, inp, w, b, C, HW, G, eps);
    ttt_cuda_check_launch("groupnorm_forward");
}

void ttt_cuda_groupnorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, const float *mean, const float *rstd, int N, int C, int HW, int G) {
    if (N <= 0 || C <= 0 || HW <= 0 || G <= 0 || C % G) return;
    if (dinp)
        TTT_LAUNCH(groupnorm_dinp_kernel, (unsigned)(N * G), GN_THREADS, 0, TTT_CUDA_STREAM)
        (dinp, dout, inp, w, mean, rstd, C, HW, G);
    if (dw || db)
        TTT_LAUNCH(groupnorm_dparams_kernel, (unsigned)C, GN_THREADS, 0, TTT_CUDA_STREAM)
        (dw, db, dout, inp, mean, rstd, N, C, HW, G);
    ttt_cuda_check_launch("groupnorm_backward");
}

/* ---- nearest 2x upsampling ---------------------------------------------- */

/* One thread per output pixel of (planes, 2H, 2W). */
__global__ void upsample2x_forward_kernel(float *out, const float *inp, size_t total, int H, int W) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t ox = i % (2 * W), rest = i / (2 * W);
        size_t oy = rest % (2 * H), plane = rest / (2 * H);
        out[i] = inp[(plane * H + oy / 2) * W + ox / 2];
    }
}

/* One thread per input pixel: the sum of its 2x2 block. */
__global__ void upsample2x_backward_kernel(float *dinp, const float *dout, size_t total, int H, int W) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t x = i % W, rest = i / W;
        size_t y = rest % H, plane = rest / H;
        const float *g = dout + (plane * 2 * H + 2 * y) * 2 * W + 2 * x;
        dinp[i] += g[0] + g[1] + g[2 * W] + g[2 * W + 1];
    }
}

void ttt_cuda_upsample2x_forward(float *out, const float *inp, int N, int C, int H, int W) {
    size_t total = (size_t)N * C * 4 * H * W;
    if (N <= 0 || C <= 0 || H <= 0 || W <= 0) return;
    TTT_LAUNCH(upsample2x_forward_kernel, ttt_cuda_grid(total, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, TTT_CUDA_STREAM)
    (out, inp, total, H, W);
    ttt_cuda_check_launch("upsample2x_forward");
}

void ttt_cuda_upsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W) {
    size_t total = (size_t)N * C * H * W;
    if (N <= 0 || C <= 0 || H <= 0 || W <= 0 || !dinp) return;
    TTT_LAUNCH(upsample2x_backward_kernel, ttt_cuda_grid(total, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, TTT_CUDA_STREAM)
    (dinp, dout, total, H, W);
    ttt_cuda_check_launch("upsample2x_backward");
}
