/* The CPU instance of the device layer's ops (layer_dev.h): the inner loop
 * of ttt_flat.c and the elementwise bodies of layer_dev_elem.h (the same
 * lines the CUDA kernels run), on host memory. No graphs and no bf16
 * projections: layer_dev.c then launches op by op in fp32. */
#include <string.h>

#include "layer_dev.h"
#include "layer_dev_elem.h"

static int cpu_zero(const vttt_backend *be, float *x, size_t n) {
    memset(x, 0, n * sizeof(float));
    return VTTT_OK;
}

static int cpu_copy(const vttt_backend *be, float *dst, const float *src, size_t n) {
    memmove(dst, src, n * sizeof(float));
    return VTTT_OK;
}

static int cpu_lr_forward(const vttt_backend *be, float *lr, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) lr[i] = ttt_elem_lr(lr[i], scale);
    return VTTT_OK;
}

static int cpu_lr_backward(const vttt_backend *be, float *da, const float *dlr, const float *lr, size_t n,
                           float scale) {
    for (size_t i = 0; i < n; i++) da[i] = ttt_elem_lr_grad(dlr[i], lr[i], scale);
    return VTTT_OK;
}

static int cpu_gate_forward(const vttt_backend *be, float *o, const float *gpre, const float *nrm, size_t n) {
    for (size_t i = 0; i < n; i++) o[i] = ttt_elem_gate(gpre[i], nrm[i]);
    return VTTT_OK;
}

static int cpu_gate_backward(const vttt_backend *be, float *dg, float *d_o, const float *gpre, const float *nrm,
                             size_t n) {
    for (size_t i = 0; i < n; i++) ttt_elem_gate_grad(gpre[i], nrm[i], &dg[i], &d_o[i]);
    return VTTT_OK;
}

static int cpu_add(const vttt_backend *be, float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return VTTT_OK;
}

static int cpu_conv_state_update(const vttt_backend *be, float *state, const float *inp, int B, int T, int C, int K) {
    if (!state || K <= 1 || T <= 0) return VTTT_OK;
    for (size_t i = 0; i < (size_t)B * C; i++) ttt_elem_conv_state(state, inp, i / C, i % C, T, C, K);
    return VTTT_OK;
}

static const ttt_dev_ops cpu_ops = {
    .state_init = ttt_flat_state_init,
    .prefill = ttt_flat_prefill,
    .decode = ttt_flat_decode,
    .backward = ttt_flat_backward,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .lr_forward = cpu_lr_forward,
    .lr_backward = cpu_lr_backward,
    .gate_forward = cpu_gate_forward,
    .gate_backward = cpu_gate_backward,
    .add = cpu_add,
    .conv_state_update = cpu_conv_state_update,
};

const ttt_dev_ops *ttt_dev_ops_cpu(void) { return &cpu_ops; }
