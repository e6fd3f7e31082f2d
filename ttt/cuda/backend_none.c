/* The CUDA backend's entry points in a build without CUDA: no device. */
#include "ttt.h"
#include "ttt_cuda.h"
#include "layer_dev.h"

int vttt_backend_cuda_open(vttt_backend **out, int dev, const vttt_logger *lg) {
    (void)dev;
    if (out) *out = NULL;
    vttt_log(lg, VTTT_LOG_INFO, "vttt was built without CUDA (no nvcc at configure time)");
    return VTTT_ENODEV;
}

void vttt_backend_cuda_close(vttt_backend **be) {
    if (be) *be = NULL;
}

/* The fused TTT kernels and the bench helpers of ttt_cuda.h: no device. */

int ttt_cuda_state_init(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, float *W,
                        float *A) {
    return VTTT_ENODEV;
}

int ttt_cuda_prefill(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                     const ttt_cuda_io *io, int64_t pos, float *W, float *A, float *ckpt, int group, void *ws,
                     size_t ws_bytes) {
    return VTTT_ENODEV;
}

int ttt_cuda_decode(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                    const ttt_cuda_io *io, int64_t pos, float *W, float *A) {
    return VTTT_ENODEV;
}

int ttt_cuda_backward(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                      const ttt_cuda_io *io, const float *ckpt, int group, const float *dZ, float *dXQ, float *dXK,
                      float *dXV, float *dlr, const ttt_cuda_grads *g, void *ws, size_t ws_bytes) {
    return VTTT_ENODEV;
}

int ttt_cuda_timer_new(const vttt_backend *be, ttt_cuda_timer **t) {
    if (t) *t = NULL;
    return VTTT_ENODEV;
}

int ttt_cuda_timer_start(ttt_cuda_timer *t) { return VTTT_ENODEV; }

int ttt_cuda_timer_stop(ttt_cuda_timer *t, double *ms) { return VTTT_ENODEV; }

void ttt_cuda_timer_free(ttt_cuda_timer **t) {
    if (t) *t = NULL;
}

int ttt_cuda_gemm_rate(const vttt_backend *be, int bf16, int n, double *tflops) { return VTTT_ENODEV; }

int ttt_cuda_device_name(const vttt_backend *be, char *buf, size_t len) { return VTTT_ENODEV; }

int ttt_cuda_to_bf16(const vttt_backend *be, uint16_t *dst, const float *src, size_t n) { return VTTT_ENODEV; }

int ttt_cuda_from_bf16(const vttt_backend *be, float *dst, const uint16_t *src, size_t n) { return VTTT_ENODEV; }

int ttt_cuda_gemm_bf16(const vttt_backend *be, float *out, const uint16_t *xb, const uint16_t *wb, int N, int C,
                       int OC) {
    return VTTT_ENODEV;
}

int ttt_cuda_linear_bf16(const vttt_backend *be, float *out, const float *inp, const uint16_t *wb, uint16_t *xb,
                         int N, int C, int OC) {
    return VTTT_ENODEV;
}

/* The device layer has no CUDA ops in this build (ttt/layer_dev.h). */
const ttt_dev_ops *ttt_dev_ops_cuda(void) { return NULL; }
