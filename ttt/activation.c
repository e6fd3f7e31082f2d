/* Elementwise activations: GELU (tanh form), SiLU, SwiGLU, sigmoid. */
#include <math.h>

#include "ops.h"
#include "par.h"

#define ACT_PAR(n) VTTT_PAR((double)(n) * VTTT_COST_EXP)

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* d silu / dx = s * (1 + x * (1 - s)), s = sigmoid(x). */
static inline float silu_d1(float x) {
    float s = sigmoidf(x);
    return s * (1.0f + x * (1.0f - s));
}

void ttt_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for if (ACT_PAR(n))
    for (size_t i = 0; i < n; i++) out[i] = ttt_gelu(inp[i]);
}

void ttt_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel for if (ACT_PAR(n))
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * ttt_gelu_d1(inp[i]);
}

void ttt_silu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for if (ACT_PAR(n))
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoidf(inp[i]);
}

void ttt_silu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel for if (ACT_PAR(n))
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * silu_d1(inp[i]);
}

/* out = silu(gate) * up, all (n). */
void ttt_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
#pragma omp parallel for if (ACT_PAR(n))
    for (size_t i = 0; i < n; i++) out[i] = gate[i] * sigmoidf(gate[i]) * up[i];
}

void ttt_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n) {
#pragma omp parallel for if (ACT_PAR(n))
    for (size_t i = 0; i < n; i++) {
        if (dgate) dgate[i] += dout[i] * up[i] * silu_d1(gate[i]);
        if (dup) dup[i] += dout[i] * gate[i] * sigmoidf(gate[i]);
    }
}

void ttt_sigmoid_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for if (ACT_PAR(n))
    for (size_t i = 0; i < n; i++) out[i] = sigmoidf(inp[i]);
}

/* Takes the forward's output y: dinp += dout * y * (1 - y). */
void ttt_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n) {
#pragma omp parallel for if (ACT_PAR(n))
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * out[i] * (1.0f - out[i]);
}
