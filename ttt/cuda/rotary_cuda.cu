/* Rotary position embedding on interleaved pairs of (B, T, H, f) rows, as
 * in ttt/rotary.c. One thread per (row, pair index i) computes the angle
 * once and rotates pair i of every head. */
#include "cuda_internal.h"

/* Rotates every pair of x (B,T,H,f) by sign * angle into y, or adds the
 * rotated value to y when acc != 0 (acc == 0 allows y == x). The inverse
 * frequency is powf(theta, 2i/f) evaluated in double and rounded once, the
 * correctly rounded value that glibc's powf (< 1 ulp) nearly always gives
 * too, so both backends rotate by the same fp32 angle p * inv_freq. An odd
 * trailing element is passed through. */
__global__ void rotary_kernel(float *y, const float *x, int B, int T, int H, int f, long long pos0, int pos_mod,
                              float theta, float sign, int acc) {
    int half = (f + 1) / 2;
    size_t total = (size_t)B * T * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        size_t row = idx / half;
        long long p = pos0 + (long long)(row % T);
        if (pos_mod > 0) p = ((p % pos_mod) + pos_mod) % pos_mod;
        const float *xr = x + row * H * f;
        float *yr = y + row * H * f;
        if (2 * i + 1 == f) { /* odd f: the unpaired last element */
            for (int h = 0; h < H; h++) {
                size_t j = (size_t)h * f + f - 1;
                yr[j] = acc ? yr[j] + xr[j] : xr[j];
            }
            continue;
        }
        float inv_freq = 1.0f / (float)pow((double)theta, (double)((float)(2 * i) / (float)f));
        float ang = (float)p * inv_freq;
        float c = cosf(ang), s = sign * sinf(ang);
        for (int h = 0; h < H; h++) {
            size_t j = (size_t)h * f + 2 * i;
            float x0 = xr[j], x1 = xr[j + 1];
            float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
            if (acc) {
                yr[j] += y0;
                yr[j + 1] += y1;
            } else {
                yr[j] = y0;
                yr[j + 1] = y1;
            }
        }
    }
}

static void rotary_launch(float *y, const float *x, int B, int T, int H, int f, int64_t pos0, int pos_mod,
                          float theta, float sign, int acc, const char *what) {
    if (B <= 0 || T <= 0 || H <= 0 || f <= 0) return;
    size_t total = (size_t)B * T * ((f + 1) / 2);
    TTT_LAUNCH(rotary_kernel, ttt_cuda_grid(total, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, TTT_CUDA_STREAM)
        ( y, x, B, T, H, f, (long long)pos0, pos_mod, theta, sign, acc);
    ttt_cuda_check_launch(what);
}

/* out (B,T,H,f) = rotate(inp) at positions (pos0 + t) mod pos_mod; out may equal inp. */
void ttt_cuda_rotary_forward(float *out, const float *inp, int B, int T, int H, int f, int64_t pos0, int pos_mod,
                             float theta) {
    rotary_launch(out, inp, B, T, H, f, pos0, pos_mod, theta, 1.0f, 0, "rotary_forward");
}

/* The rotation is orthogonal: dinp += R(-angle) dout. */
void ttt_cuda_rotary_backward(float *dinp, const float *dout, int B, int T, int H, int f, int64_t pos0,
                              int pos_mod, float theta) {
    if (dinp) rotary_launch(dinp, dout, B, T, H, f, pos0, pos_mod, theta, -1.0f, 1, "rotary_backward");
}
