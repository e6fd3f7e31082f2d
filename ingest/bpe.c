/* The BPE tokenizer object: construction from merges, the pair map, token
 * bytes and decoding. */
#include <stdlib.h>
#include <string.h>

#include "bpe_internal.h"

/* ---- token buffers ------------------------------------------------------ */

int vttt_token_buf_append(vttt_token_buf *buf, const int32_t *ids, size_t n) {
    if (buf->n + n > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 256;
        while (cap < buf->n + n) cap *= 2;
        int32_t *p = realloc(buf->ids, cap * sizeof *p);
        if (!p) return VTTT_ENOMEM;
        buf->ids = p;
        buf->cap = cap;
    }
    if (n) memcpy(buf->ids + buf->n, ids, n * sizeof *ids);
    buf->n += n;
    return VTTT_OK;
}

void vttt_token_buf_free(vttt_token_buf *buf) {
    free(buf->ids);
    memset(buf, 0, sizeof *buf);
}

/* ---- pair map ----------------------------------------------------------- */

int bpe_pair_map_init(bpe_pair_map *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    m->keys = malloc(cap * sizeof *m->keys);
    m->vals = malloc(cap * sizeof *m->vals);
    if (!m->keys || !m->vals) {
        bpe_pair_map_free(m);
        return VTTT_ENOMEM;
    }
    memset(m->keys, 0xff, cap * sizeof *m->keys);
    m->cap = cap;
    m->n = 0;
    return VTTT_OK;
}

void bpe_pair_map_free(bpe_pair_map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static void insert_new(bpe_pair_map *m, uint64_t key, int32_t val) {
    size_t mask = m->cap - 1, i = bpe_hash64(key, mask);
    while (m->keys[i] != BPE_PAIR_EMPTY) i = (i + 1) & mask;
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
}

static int grow(bpe_pair_map *m) {
    bpe_pair_map big;
    int err = bpe_pair_map_init(&big, m->cap);
    if (err) return err;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] != BPE_PAIR_EMPTY) insert_new(&big, m->keys[i], m->vals[i]);
    bpe_pair_map_free(m);
    *m = big;
    return VTTT_OK;
}

int bpe_pair_map_put(bpe_pair_map *m, uint64_t key, int32_t val, int32_t *slot_val) {
    int32_t old = bpe_pair_map_get(m, key);
    if (old >= 0) {
        *slot_val = old;
        return VTTT_OK;
    }
    if (2 * (m->n + 1) > m->cap) {
        int err = grow(m);
        if (err) return err;
    }
    insert_new(m, key, val);
    *slot_val = val;
    return VTTT_OK;
}

/* ---- the tokenizer ------------------------------------------------------ */

/* Fills tok_off/tok_bytes: bytes, then each merge as the concatenation of
 * its parts, then the special token's text. A token longer than a
 * pre-tokenizer piece could never be produced, and is VTTT_EFORMAT. */
static int build_token_bytes(vttt_bpe *b, const vttt_logger *lg) {
    const size_t eot_len = sizeof VTTT_BPE_EOT_TEXT - 1;
    b->tok_off = malloc(((size_t)b->vocab_size + 1) * sizeof *b->tok_off);
    if (!b->tok_off) return VTTT_ENOMEM;
    uint64_t total = 256 + eot_len;
    b->tok_off[0] = 0;
    for (int i = 0; i < 256; i++) b->tok_off[i + 1] = (uint32_t)(i + 1);
    for (int i = 0; i < b->n_merges; i++) {
        int32_t x = b->merges[2 * i], y = b->merges[2 * i + 1];
        uint64_t len = (uint64_t)(b->tok_off[x + 1] - b->tok_off[x]) + (b->tok_off[y + 1] - b->tok_off[y]);
        if (len > VTTT_BPE_MAX_PIECE) {
            vttt_log(lg, VTTT_LOG_ERROR, "tokenizer: merge %d makes a %llu-byte token, longer than the %d-byte "
                     "pieces it is learnt from", i, (unsigned long long)len, VTTT_BPE_MAX_PIECE);
            return VTTT_EFORMAT;
        }
        total += len;
        b->tok_off[256 + i + 1] = b->tok_off[256 + i] + (uint32_t)len;
    }
    b->tok_off[b->vocab_size] = (uint32_t)total;
    b->tok_bytes = malloc(total);
    if (!b->tok_bytes) return VTTT_ENOMEM;
    for (int i = 0; i < 256; i++) b->tok_bytes[i] = (uint8_t)i;
    for (int i = 0; i < b->n_merges; i++) {
        int32_t x = b->merges[2 * i], y = b->merges[2 * i + 1];
        uint8_t *dst = b->tok_bytes + b->tok_off[256 + i];
        uint32_t lx = b->tok_off[x + 1] - b->tok_off[x];
        memcpy(dst, b->tok_bytes + b->tok_off[x], lx);
        memcpy(dst + lx, b->tok_bytes + b->tok_off[y], b->tok_off[y + 1] - b->tok_off[y]);
    }
    memcpy(b->tok_bytes + b->tok_off[b->vocab_size - 1], VTTT_BPE_EOT_TEXT, eot_len);
    return VTTT_OK;
}

/* Checks every merge and fills the rank map. */
static int index_merges(vttt_bpe *b, const vttt_logger *lg) {
    int err = bpe_pair_map_init(&b->ranks, (size_t)b->n_merges);
    for (int i = 0; !err && i < b->n_merges; i++) {
        int32_t x = b->merges[2 * i], y = b->merges[2 * i + 1], prev;
        if (x < 0 || y < 0 || x >= 256 + i || y >= 256 + i) {
            vttt_log(lg, VTTT_LOG_ERROR, "tokenizer: merge %d joins ids %d and %d, but only ids below %d exist then", i,
                     (int)x, (int)y, 256 + i);
            return VTTT_EFORMAT;
        }
        err = bpe_pair_map_put(&b->ranks, bpe_pair_key(x, y), i, &prev);
        if (!err && prev != i) {
            vttt_log(lg, VTTT_LOG_ERROR, "tokenizer: merge %d repeats the pair (%d, %d) of merge %d", i, (int)x,
                     (int)y, (int)prev);
            return VTTT_EFORMAT;
        }
    }
    return err;
}

int vttt_bpe_from_merges(vttt_bpe **out, const int32_t *merges, int n_merges, const vttt_logger *lg) {
    *out = NULL;
    if (n_merges < 0 || n_merges > VTTT_BPE_MAX_VOCAB - 257 || (n_merges > 0 && !merges)) {
        vttt_log(lg, VTTT_LOG_ERROR, "tokenizer: %d merges is outside 0..%d", n_merges, VTTT_BPE_MAX_VOCAB - 257);
        return VTTT_EINVAL;
    }
    vttt_bpe *b = calloc(1, sizeof *b);
    if (!b) return VTTT_ENOMEM;
    b->n_merges = n_merges;
    b->vocab_size = 256 + n_merges + 1;
    b->merges = malloc((size_t)(n_merges ? n_merges : 1) * 2 * sizeof *b->merges);
    int err = b->merges ? VTTT_OK : VTTT_ENOMEM;
    if (!err) {
        if (n_merges) memcpy(b->merges, merges, (size_t)n_merges * 2 * sizeof *merges);
        err = index_merges(b, lg);
    }
    if (!err) err = build_token_bytes(b, lg);
    if (err == VTTT_ENOMEM) vttt_log(lg, VTTT_LOG_ERROR, "tokenizer: out of memory for %d merges", n_merges);
    if (err) vttt_bpe_free(&b);
    *out = b;
    return err;
}

void vttt_bpe_free(vttt_bpe **bpe) {
    if (!bpe || !*bpe) return;
    vttt_bpe *b = *bpe;
    free(b->merges);
    free(b->tok_off);
    free(b->tok_bytes);
    bpe_pair_map_free(&b->ranks);
    free(b);
    *bpe = NULL;
}

int vttt_bpe_vocab_size(const vttt_bpe *bpe) { return bpe->vocab_size; }
int vttt_bpe_num_merges(const vttt_bpe *bpe) { return bpe->n_merges; }
int vttt_bpe_eot(const vttt_bpe *bpe) { return bpe->vocab_size - 1; }

void vttt_bpe_merge(const vttt_bpe *bpe, int i, int32_t *a, int32_t *b) {
    *a = bpe->merges[2 * i];
    *b = bpe->merges[2 * i + 1];
}

int vttt_bpe_token_bytes(const vttt_bpe *bpe, int32_t id, const uint8_t **bytes, size_t *len) {
    if (id < 0 || id >= bpe->vocab_size) return VTTT_EINVAL;
    *bytes = bpe->tok_bytes + bpe->tok_off[id];
    *len = bpe->tok_off[id + 1] - bpe->tok_off[id];
    return VTTT_OK;
}

int vttt_bpe_decode(const vttt_bpe *bpe, const int32_t *ids, size_t n, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= bpe->vocab_size) return VTTT_EINVAL;
        total += bpe->tok_off[ids[i] + 1] - bpe->tok_off[ids[i]];
    }
    uint8_t *p = malloc(total + 1);
    if (!p) return VTTT_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t o = bpe->tok_off[ids[i]], l = bpe->tok_off[ids[i] + 1] - o;
        memcpy(p + k, bpe->tok_bytes + o, l);
        k += l;
    }
    p[k] = 0;
    *out = p;
    *len = k;
    return VTTT_OK;
}
