/*
 * ttt/safetensors.h — reading and writing safetensors files.
 *
 * Layout (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length N, N bytes of UTF-8 JSON mapping tensor names
 * to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
 * the byte buffer after the header) plus an optional "__metadata__" object
 * of string values, then the byte buffer, which the tensors must cover
 * exactly (no holes, no overlaps). Data are little-endian, row-major.
 *
 * Opening maps the file read-only and validates the whole header; a file
 * that does not follow the layout is VTTT_EFORMAT with a message naming the
 * file and the problem. Writing is atomic: a temporary file beside the
 * target is written, synced and renamed over it.
 */
#ifndef VTTT_SAFETENSORS_H
#define VTTT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The byte-sized safetensors dtypes (sub-byte F4/F6 are not supported). */
typedef enum {
    VTTT_ST_F32 = 0,
    VTTT_ST_F16,
    VTTT_ST_BF16,
    VTTT_ST_F64,
    VTTT_ST_I8,
    VTTT_ST_I16,
    VTTT_ST_I32,
    VTTT_ST_I64,
    VTTT_ST_U8,
    VTTT_ST_U16,
    VTTT_ST_U32,
    VTTT_ST_U64,
    VTTT_ST_BOOL,
    VTTT_ST_F8_E4M3,
    VTTT_ST_F8_E5M2,
    VTTT_ST_NUM_DTYPES
} vttt_st_dtype;

/* Bytes per element (0 for an unknown dtype) and the file's name ("F32"). */
size_t vttt_st_dtype_size(vttt_st_dtype dt);
const char *vttt_st_dtype_name(vttt_st_dtype dt);

#define VTTT_ST_MAX_DIMS 8

/* One tensor. When obtained from an open file, name and data point into the
 * vttt_st and stay valid until vttt_st_close; data is NOT necessarily
 * aligned for its dtype (copy with memcpy or vttt_st_read_f32). */
typedef struct vttt_st_tensor {
    const char *name;
    vttt_st_dtype dtype;
    int ndim;                          /* 0 = scalar */
    int64_t shape[VTTT_ST_MAX_DIMS];
    const void *data;                  /* nbytes bytes, little-endian */
    size_t nbytes;                     /* numel * dtype size */
} vttt_st_tensor;

typedef struct vttt_st vttt_st;

/* Maps and validates a file. VTTT_EIO if it cannot be read, VTTT_EFORMAT if
 * it is malformed (unknown dtypes included), VTTT_ENOTSUP for tensors of more
 * than VTTT_ST_MAX_DIMS dims. *out is NULL on failure. The logger is copied
 * and used by the calls below. The file must not shrink while it is open. */
int vttt_st_open(vttt_st **out, const char *path, const vttt_logger *lg);
void vttt_st_close(vttt_st **st);

/* Tensors in the order of the file's data offsets. */
int vttt_st_count(const vttt_st *st);
int vttt_st_get(const vttt_st *st, int i, vttt_st_tensor *t);
/* VTTT_EINVAL (logged) if there is no tensor of that name. */
int vttt_st_find(const vttt_st *st, const char *name, vttt_st_tensor *t);
/* Copies a tensor into dst as fp32 after checking that its shape is exactly
 * shape[0..ndim) (VTTT_EINVAL with both shapes in the message otherwise).
 * F32, F16, BF16 and F64 are converted; other dtypes are VTTT_EINVAL. */
int vttt_st_read_f32(const vttt_st *st, const char *name, float *dst, int ndim, const int64_t *shape);
/* The "__metadata__" value for key, or NULL. Valid until vttt_st_close. */
const char *vttt_st_meta(const vttt_st *st, const char *key);

/* Writes n tensors in the given order, contiguous, with metadata given as
 * n_meta (key, value) pairs: meta_kv[2*i], meta_kv[2*i+1]. The header is
 * padded with spaces to a multiple of 8 bytes. Atomic: on any failure an
 * existing file at path is left as it was and no temporary file remains.
 * VTTT_EINVAL for bad tensors (duplicate names, nbytes != numel * size),
 * VTTT_EIO for I/O failures. */
int vttt_st_write(const char *path, const vttt_st_tensor *tensors, int n, const char *const *meta_kv,
                  int n_meta, const vttt_logger *lg);

#ifdef __cplusplus
}
#endif
#endif
