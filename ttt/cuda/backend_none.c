/* The CUDA backend's entry points in a build without CUDA: no device. */
#include "ttt.h"

int vttt_backend_cuda_open(vttt_backend **out, int dev, const vttt_logger *lg) {
    (void)dev;
    if (out) *out = NULL;
    vttt_log(lg, VTTT_LOG_INFO, "vttt was built without CUDA (no nvcc at configure time)");
    return VTTT_ENODEV;
}

void vttt_backend_cuda_close(vttt_backend **be) {
    if (be) *be = NULL;
}
