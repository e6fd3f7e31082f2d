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

/* Keys of the tile [j0, j0+nc) that the query at position p may see. */
static inline int attn_visible(int64_t p, int64_t j0, int nc) {
    int64_t nv = p - j0 + 1;
    return nv < 0 ? 0 : nv > nc ? nc : (int)nv;
}


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
