/* Elementwise activations, as in ttt/activation.c: GELU (tanh form, the
 * scalar functions of ops.h compiled for the GPU), SiLU, SwiGLU, sigmoid.
 * Each op is a small functor applied by one grid-stride kernel. */
#include "cuda_internal.h"
#include "ops.h"

static __device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

/* d silu / dx = s * (1 + x * (1 - s)), s = sigmoid(x). */
static __device__ __forceinline__ float silu_d1(float x) {
    float s = sigmoid_f(x);
    return s * (1.0f + x * (1.0f - s));
}

template <class F>
__global__ void map_kernel(size_t n, F f) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        f(i);
}

template <class F>
static void map(size_t n, F f, const char *what) {
    if (n == 0) return;
    TTT_LAUNCH(map_kernel<F>, ttt_cuda_grid(n, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, TTT_CUDA_STREAM)(n, f);
    ttt_cuda_check_launch(what);
}

struct gelu_fwd {
    float *out;
    const float *inp;
    __device__ void operator()(size_t i) const { out[i] = ttt_gelu(inp[i]); }
};
struct gelu_bwd {
    float *dinp;
    const float *dout, *inp;
    __device__ void operator()(size_t i) const { dinp[i] += dout[i] * ttt_gelu_d1(inp[i]); }
};
struct silu_fwd {
    float *out;
    const float *inp;
    __device__ void operator()(size_t i) const { out[i] = inp[i] * sigmoid_f(inp[i]); }
};
struct silu_bwd {
    float *dinp;
    const float *dout, *inp;
    __device__ void operator()(size_t i) const { dinp[i] += dout[i] * silu_d1(inp[i]); }
};
struct swiglu_fwd {
    float *out;
    const float *gate, *up;
    __device__ void operator()(size_t i) const { out[i] = gate[i] * sigmoid_f(gate[i]) * up[i]; }
};
/* Either gradient may be NULL. */
struct swiglu_bwd {
    float *dgate, *dup;
    const float *dout, *gate, *up;
    __device__ void operator()(size_t i) const {
        if (dgate) dgate[i] += dout[i] * up[i] * silu_d1(gate[i]);
        if (dup) dup[i] += dout[i] * gate[i] * sigmoid_f(gate[i]);
    }
};
struct sigmoid_fwd {
    float *out;
    const float *inp;
    __device__ void operator()(size_t i) const { out[i] = sigmoid_f(inp[i]); }
};
/* Takes the forward's output y: dinp += dout * y * (1 - y). */
struct sigmoid_bwd {
    float *dinp;
    const float *dout, *out;
    __device__ void operator()(size_t i) const { dinp[i] += dout[i] * out[i] * (1.0f - out[i]); }
};

void ttt_cuda_gelu_forward(float *out, const float *inp, size_t n) { map(n, gelu_fwd{out, inp}, "gelu_forward"); }

void ttt_cuda_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    if (dinp) map(n, gelu_bwd{dinp, dout, inp}, "gelu_backward");
}

void ttt_cuda_silu_forward(float *out, const float *inp, size_t n) { map(n, silu_fwd{out, inp}, "silu_forward"); }

void ttt_cuda_silu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    if (dinp) map(n, silu_bwd{dinp, dout, inp}, "silu_backward");
}

void ttt_cuda_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    map(n, swiglu_fwd{out, gate, up}, "swiglu_forward");
}

void ttt_cuda_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                              size_t n) {
    if (dgate || dup) map(n, swiglu_bwd{dgate, dup, dout, gate, up}, "swiglu_backward");
}

void ttt_cuda_sigmoid_forward(float *out, const float *inp, size_t n) {
    map(n, sigmoid_fwd{out, inp}, "sigmoid_forward");
}

void ttt_cuda_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n) {
    if (dinp) map(n, sigmoid_bwd{dinp, dout, out}, "sigmoid_backward");
}
