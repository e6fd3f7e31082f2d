/* Tensor shape arithmetic, allocation on a backend, bf16 conversion. */
#include <string.h>

#include "backend.h"

size_t vttt_dtype_size(vttt_dtype dt) { return dt == VTTT_DTYPE_BF16 ? 2 : 4; }

int64_t vttt_tensor_numel(const vttt_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t vttt_tensor_nbytes(const vttt_tensor *t) {
    return (size_t)vttt_tensor_numel(t) * vttt_dtype_size(t->dtype);
}

int vttt_tensor_alloc(vttt_tensor *t, const vttt_backend *be, vttt_dtype dt, int ndim, const int64_t *shape) {
    if (!t || !be || ndim < 1 || ndim > VTTT_MAX_DIMS || !shape) return VTTT_EINVAL;
    memset(t, 0, sizeof *t);
    for (int i = 0; i < VTTT_MAX_DIMS; i++) t->shape[i] = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return VTTT_EINVAL;
        t->shape[i] = shape[i];
    }
    t->ndim = ndim;
    t->dtype = dt;
    t->device = be->device;
    return be->alloc(be->ctx, &t->data, vttt_tensor_nbytes(t));
}

void vttt_tensor_free(vttt_tensor *t, const vttt_backend *be) {
    if (!t || !t->data) return;
    be->free(be->ctx, t->data);
    t->data = NULL;
}

uint16_t vttt_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float vttt_bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
