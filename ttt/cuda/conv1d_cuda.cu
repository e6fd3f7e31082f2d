/* Depthwise causal conv1d over time with a carried state of the previous
 * K-1 inputs, as in ttt/conv1d.c. inp, out (B,T,C); w (C,K); bias (C);
 * state (B,K-1,C) oldest first, NULL for zeros. */
#include "cuda_internal.h"

/* Input at time s (down to -(K-1)) of batch b, channel c, from inp or the
 * state; 0 before t=0 without a state. */
static __device__ __forceinline__ float conv_input(const float *inp, const float *state, int b, int s, int c,
                                                   int T, int C, int K) {
    if (s >= 0) return inp[((size_t)b * T + s) * C + c];
    return state ? state[((size_t)b * (K - 1) + (K - 1 + s)) * C + c] : 0.0f;
}

/* out[b,t,c] = bias[c] + sum_k w[c,k] * x[b, t-(K-1)+k, c]. */
__global__ void conv1d_forward_kernel(float *out, const float *inp, const float *w, const float *bias,
                                      const float *state, int B, int T, int C, int K) {
    size_t total = (size_t)B * T * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int c = (int)(i % C);
        size_t r = i / C;
        int b = (int)(r / T), t = (int)(r % T);
        float o = bias ? bias[c] : 0.0f;
        for (int k = 0; k < K; k++) o += w[(size_t)c * K + k] * conv_input(inp, state, b, t - (K - 1) + k, c, T, C, K);
        out[i] = o;
    }
}

/* dinp[b,s,c] += sum_k w[c,k] * dout[b, s+K-1-k, c] over the outputs that
 * read input s (each thread owns one input element: no race). */
__global__ void conv1d_dinp_kernel(float *dinp, const float *dout, const float *w, int B, int T, int C, int K) {
    size_t total = (size_t)B * T * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int c = (int)(i % C);
        size_t r = i / C;
        int b = (int)(r / T), s = (int)(r % T);
        float acc = dinp[i];
        for (int k = 0; k < K; k++) {
            int t = s + (K - 1) - k;
            if (t < T) acc += w[(size_t)c * K + k] * dout[((size_t)b * T + t) * C + c];
        }
        dinp[i] = acc;
    }
}

/* f(n, c, k) = dout[n, c] * x[b, t-(K-1)+k, c] with n = b*T + t: the
 * weight gradient of tap k (the slice index). */
struct conv_dw_term {
    const float *dout, *inp, *state;
    int T, C, K;
    __device__ float operator()(int n, int c, int k) const {
        int b = n / T, t = n % T;
        return dout[(size_t)n * C + c] * conv_input(inp, state, b, t - (K - 1) + k, c, T, C, K);
    }
};

void ttt_cuda_conv1d_forward(float *out, const float *inp, const float *w, const float *bias, const float *state,
                             int B, int T, int C, int K) {
    size_t total = (size_t)B * T * C;
    if (B <= 0 || T <= 0 || C <= 0 || K <= 0) return;
    TTT_LAUNCH(conv1d_forward_kernel, ttt_cuda_grid(total, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, TTT_CUDA_STREAM)
        ( out, inp, w, bias, state, B, T, C, K);
    ttt_cuda_check_launch("conv1d_forward");
}

/* Gradients for inp, w (C,K) and bias (C); state is a constant. */
void ttt_cuda_conv1d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                              const float *w, const float *state, int B, int T, int C, int K) {
    size_t total = (size_t)B * T * C;
    if (B <= 0 || T <= 0 || C <= 0 || K <= 0) return;
    if (dinp)
        TTT_LAUNCH(conv1d_dinp_kernel, ttt_cuda_grid(total, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, TTT_CUDA_STREAM)
            ( dinp, dout, w, B, T, C, K);
    if (dw) ttt_colsum(dw, conv_dw_term{dout, inp, state, T, C, K}, B * T, C, K, K, 1);
    if (dbias) ttt_colsum(dbias, ttt_matrix_entry{dout, C}, B * T, C, 1, 1, 0);
    ttt_cuda_check_launch("conv1d_backward");
}
