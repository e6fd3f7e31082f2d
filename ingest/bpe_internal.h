/* ingest/bpe_internal.h — shared by ingest/bpe*.c only: the tokenizer's
 * layout, the pair -> id map, and the pre-tokenizer's streaming piece cutter. */
#ifndef VTTT_BPE_INTERNAL_H
#define VTTT_BPE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "bpe.h"

/* Open-addressing hash map from a pair of ids (packed a << 32 | b) to an
 * int32 value; linear probing, at most half full. */
typedef struct bpe_pair_map {
    uint64_t *keys;   /* (cap) BPE_PAIR_EMPTY where free */
    int32_t *vals;    /* (cap) */
    size_t cap, n;    /* cap is a power of two */
} bpe_pair_map;
#define BPE_PAIR_EMPTY UINT64_MAX

static inline uint64_t bpe_pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }
static inline size_t bpe_hash64(uint64_t k, size_t mask) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & mask;
}
/* Sizes the map for at least n entries; VTTT_ENOMEM. */
int bpe_pair_map_init(bpe_pair_map *m, size_t n);
void bpe_pair_map_free(bpe_pair_map *m);
/* The value for key, or -1. */
static inline int32_t bpe_pair_map_get(const bpe_pair_map *m, uint64_t key) {
    size_t mask = m->cap - 1;
    for (size_t i = bpe_hash64(key, mask);; i = (i + 1) & mask) {
        if (m->keys[i] == key) return m->vals[i];
        if (m->keys[i] == BPE_PAIR_EMPTY) return -1;
    }
}
/* Inserts key -> val (growing the map as needed). *slot_val is set to the
 * value stored for key: val if it was new, the old value if it existed
 * (then nothing changes). VTTT_ENOMEM. */
int bpe_pair_map_put(bpe_pair_map *m, uint64_t key, int32_t val, int32_t *slot_val);

struct vttt_bpe {
    int n_merges;         /* M */
    int vocab_size;       /* 256 + M + 1 */
    int32_t *merges;      /* (M, 2) */
    uint32_t *tok_off;    /* (vocab_size + 1) offsets into tok_bytes */
    uint8_t *tok_bytes;   /* every token's bytes, concatenated */
    bpe_pair_map ranks;   /* (a, b) -> merge index i (token 256 + i) */
};

/* Cuts text into pre-tokenizer pieces across calls. `pend` keeps the
 * unfinished tail of the stream (always < BPE_PEND_CAP bytes). */
#define BPE_PEND_CAP (2 * VTTT_BPE_MAX_PIECE + 2)
typedef int (*bpe_piece_fn)(void *ctx, const uint8_t *piece, size_t len);
typedef struct bpe_cutter {
    uint8_t pend[BPE_PEND_CAP];
    size_t len;
} bpe_cutter;
/* Length of the first piece of s[0..n) (n > 0), or 0 when it depends on
 * bytes not seen yet (only when !final). */
size_t bpe_piece_len(const uint8_t *s, size_t n, int final);
/* Calls fn on every piece completed by data[0..n); the first error fn
 * returns stops the walk and is returned. */
int bpe_cutter_feed(bpe_cutter *c, const uint8_t *data, size_t n, bpe_piece_fn fn, void *ctx);
/* Calls fn on the pieces of the held-back tail and empties the cutter. */
int bpe_cutter_finish(bpe_cutter *c, bpe_piece_fn fn, void *ctx);

/* FNV-1a 64 of n bytes, continuing from h (start with BPE_FNV_OFFSET). */
#define BPE_FNV_OFFSET 0xcbf29ce484222325ULL
uint64_t bpe_fnv1a(uint64_t h, const void *p, size_t n);

#endif
