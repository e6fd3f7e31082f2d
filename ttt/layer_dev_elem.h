/*
 * ttt/layer_dev_elem.h — internal: the per-element bodies of the device
 * layer's elementwise ops (ttt_dev_ops lr_*, gate_*, conv_state_update),
 * compiled for the host (layer_dev_cpu.c) and by nvcc for the GPU
 * (ttt/cuda/layer_cuda.cu). The CPU instance runs exactly these lines, so
 * tests/test_layer_dev.c, which compares the CPU instance with the CPU
 * layer (ttt_outer.c, conv1d.c), checks the GPU kernels' arithmetic and
 * indexing too; only the launch around them is GPU-only.
 */
#ifndef VTTT_LAYER_DEV_ELEM_H
#define VTTT_LAYER_DEV_ELEM_H

#include <math.h>
#include <stddef.h>

#include "ops.h" /* ttt_gelu, ttt_gelu_d1, TTT_HOSTDEV */

/* lr = sigmoid(a) scale (ttt_outer_in_forward). */
static inline TTT_HOSTDEV float ttt_elem_lr(float a, float scale) { return 1.0f / (1.0f + expf(-a)) * scale; }

/* The gradient of a given lr = sigmoid(a) scale and dlr (ttt_outer_in_backward). */
static inline TTT_HOSTDEV float ttt_elem_lr_grad(float dlr, float lr, float scale) {
    return scale > 0.0f ? dlr * lr * (1.0f - lr / scale) : 0.0f;
}

/* o = gelu(g) nrm; and its backward: dg = d_o nrm gelu'(g), d_o *= gelu(g). */
static inline TTT_HOSTDEV float ttt_elem_gate(float g, float nrm) { return ttt_gelu(g) * nrm; }
static inline TTT_HOSTDEV void ttt_elem_gate_grad(float g, float nrm, float *dg, float *d_o) {
    float dout = *d_o;
    *dg = dout * nrm * ttt_gelu_d1(g);
    *d_o = dout * ttt_gelu(g);
}

/* Column (sequence b, channel c) of ttt_conv1d_state_update: the K-1 slots
 * of state (B,K-1,C), oldest first, take slot j+T (not yet overwritten,
 * since j+T > j) or input row T-(K-1)+j of inp (B,T,C). */
static inline TTT_HOSTDEV void ttt_elem_conv_state(float *state, const float *inp, size_t b, size_t c, int T, int C,
                                                   int K) {
    float *st = state + b * (size_t)(K - 1) * C + c;
    for (int j = 0; j < K - 1; j++) {
        int s = T - (K - 1) + j;
        st[(size_t)j * C] = s >= 0 ? inp[(b * T + s) * C + c] : st[(size_t)(j + T) * C];
    }
}

#endif
