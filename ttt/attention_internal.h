/*
 * ttt/attention_internal.h — internal: the flash-attention CPU kernels
 * (attention_kernels.c) behind the attention layer (attention.c).
 *
 * Heads are column blocks of width f inside rows of width D = H*f. Nothing
 * of size T x T is ever stored: scores live in per-thread tiles, and the
 * backward pass recomputes them from the saved per-row logsumexp.
 */
#ifndef VTTT_ATTENTION_INTERNAL_H
#define VTTT_ATTENTION_INTERNAL_H

#include <stdint.h>
#include <string.h>

/* Tile of the kernels: query rows x key columns. */
enum { ATTN_BR = 64, ATTN_BC = 64 };

/* expf for the arguments softmax needs (x <= 0, small x > 0 tolerated):
 * Cephes' range reduction and polynomial, about 1 ulp, branch-free so the
 * loops that call it vectorise (the kernel files are compiled without
 * trapping math for that). Results below ~1e-38 flush to ~1e-38. */
static inline float attn_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float sc;
    memcpy(&sc, &e, sizeof sc);
    return p * sc;
}

/* Keys of the tile [j0, j0+nc) that the query at position p may see. */
static inline int attn_visible(int64_t p, int64_t j0, int nc) {
    int64_t nv = p - j0 + 1;
    return nv < 0 ? 0 : nv > nc ? nc : (int)nv;
}

/* Hold OpenBLAS at one thread while OpenMP threads call it; begin returns
 * the count that end restores. */
int attn_blas_serial_begin(void);
void attn_blas_serial_end(int n);

/* Causal softmax attention forward, scale 1/sqrt(f).
 * q, o: (B, Tq, D); k, v: (B, kv_rows, D), batch b's keys from row
 * b*kv_rows; lse: (B, H, Tq) per-row logsumexp of the scaled scores, or NULL.
 * Query i has absolute position q_off + i and sees keys 0 .. q_off + i, so
 * k and v must hold at least q_off + Tq rows per batch.
 * Returns 0, or VTTT_ENOMEM when its scratch cannot be allocated. */
int ttt_flash_forward(float *o, float *lse, const float *q, const float *k, const float *v, int B, int Tq,
                      int64_t kv_rows, int64_t q_off, int H, int f);

/* Backward of ttt_flash_forward over a full sequence (q_off = 0,
 * kv_rows = T), FlashAttention-2 style. dout, q, k, v, o: (B, T, D);
 * lse: (B, H, T) from the forward. Accumulates (+=) into dq, dk, dv
 * (B, T, D). Returns 0, or VTTT_ENOMEM. */
int ttt_flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                       const float *v, const float *o, const float *lse, int B, int T, int H, int f);

#endif
