/* Fuzz target: the safetensors reader (ttt/safetensors.c) on a whole file.
 * An accepted file's tensors must lie inside the file, and converting each
 * floating tensor to fp32 must succeed with its own shape. */
#include <string.h>

#include "fuzz.h"
#include "safetensors.h"

static void check_tensor(const vttt_st *st, int i, const uint8_t *file, size_t size) {
    vttt_st_tensor t;
    FUZZ_CHECK(vttt_st_get(st, i, &t) == VTTT_OK);
    FUZZ_CHECK(t.ndim >= 0 && t.ndim <= VTTT_ST_MAX_DIMS);
    uint64_t numel = 1;
    for (int d = 0; d < t.ndim; d++) numel *= (uint64_t)t.shape[d];
    FUZZ_CHECK(numel * vttt_st_dtype_size(t.dtype) == t.nbytes);
    FUZZ_CHECK(t.nbytes <= size);
    volatile uint8_t sink = 0;   /* touches the first and last byte: ASan checks the mapping's bounds */
    if (t.nbytes) sink ^= ((const uint8_t *)t.data)[0] ^ ((const uint8_t *)t.data)[t.nbytes - 1];
    (void)sink, (void)file;
    vttt_st_tensor again;
    FUZZ_CHECK(vttt_st_find(st, t.name, &again) == VTTT_OK && again.data == t.data);
    int floating = t.dtype == VTTT_ST_F32 || t.dtype == VTTT_ST_F16 || t.dtype == VTTT_ST_BF16 ||
                   t.dtype == VTTT_ST_F64;
    float *dst = malloc((size_t)(numel ? numel : 1) * sizeof *dst);
    FUZZ_CHECK(dst);
    int err = vttt_st_read_f32(st, t.name, dst, t.ndim, t.shape);
    FUZZ_CHECK(floating ? err == VTTT_OK : err == VTTT_EINVAL);
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FUZZ_PATH_MAX];
    fuzz_file(path, "model.safetensors", data, size);
    vttt_logger lg = FUZZ_QUIET;
    vttt_st *st = NULL;
    int err = vttt_st_open(&st, path, &lg);
    FUZZ_CHECK(err ? st == NULL : st != NULL);
    if (err) return 0;
    fuzz_accepted();
    for (int i = 0; i < vttt_st_count(st); i++) check_tensor(st, i, data, size);
    (void)vttt_st_meta(st, "format");
    vttt_st_close(&st);
    FUZZ_CHECK(st == NULL);
    return 0;
}
