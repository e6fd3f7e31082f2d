/* The BPE pre-tokenizer (bpe.h describes the rules) and its streaming
 * piece cutter. */
#include <assert.h>
#include <string.h>

#include "bpe_internal.h"

enum { CLS_WS = 0, CLS_LETTER = 1, CLS_DIGIT = 2, CLS_OTHER = 3 };

static int byte_class(uint8_t c) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') return CLS_WS;
    if (c >= '0' && c <= '9') return CLS_DIGIT;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return CLS_LETTER;
    return CLS_OTHER;
}

/* End of the run of class k that starts at s[from], capped at the piece
 * limit: the first index i >= from with s[i] not of class k, or n, or
 * VTTT_BPE_MAX_PIECE. */
static size_t run_end(const uint8_t *s, size_t n, size_t from, int k) {
    size_t i = from;
    while (i < n && i < VTTT_BPE_MAX_PIECE && byte_class(s[i]) == k) i++;
    return i;
}

/* Every decision below looks at most at s[0..VTTT_BPE_MAX_PIECE], so the
 * cut does not depend on how a stream was split into buffers. */
size_t bpe_piece_len(const uint8_t *s, size_t n, int final) {
    int k0 = byte_class(s[0]);
    if (s[0] == ' ') {
        if (n == 1 && !final) return 0;
        if (n > 1 && byte_class(s[1]) != CLS_WS) {
            size_t i = run_end(s, n, 1, byte_class(s[1]));
            if (i == n && i < VTTT_BPE_MAX_PIECE && !final) return 0;
            return i;
        }
    }
    size_t i = run_end(s, n, 1, k0);
    if (i == VTTT_BPE_MAX_PIECE) return i;
    if (i == n) return final ? i : 0;
    /* whitespace before a non-space: leave a final space to the next piece */
    if (k0 == CLS_WS && i > 1 && s[i - 1] == ' ') return i - 1;
    return i;
}

/* Hands the pieces of s[0..n) that start before `limit` to fn; *used is
 * where the first piece not handed over starts. */
static int walk(const uint8_t *s, size_t n, int final, size_t limit, size_t *used, bpe_piece_fn fn, void *ctx) {
    size_t p = 0;
    int err = 0;
    while (p < n && p < limit) {
        size_t k = bpe_piece_len(s + p, n - p, final);
        if (!k) break;
        if ((err = fn(ctx, s + p, k))) break;
        p += k;
    }
    *used = p;
    return err;
}

/* Pieces that start in the held-back bytes are finished in `pend` (topped
 * up from data); the rest of data is cut in place, and its unfinished tail
 * (shorter than one piece) is held back. */
int bpe_cutter_feed(bpe_cutter *c, const uint8_t *data, size_t n, bpe_piece_fn fn, void *ctx) {
    size_t used;
    int err;
    if (n == 0) return 0;
    if (c->len > 0) {
        size_t old = c->len;
        size_t take = n < BPE_PEND_CAP - old ? n : BPE_PEND_CAP - old;
        memcpy(c->pend + old, data, take);
        c->len += take;
        if ((err = walk(c->pend, c->len, 0, old, &used, fn, ctx))) return err;
        if (used < old) {
            /* a piece starting in the held bytes still needs more input,
             * which can only be when data is used up (a piece is decided
             * within VTTT_BPE_MAX_PIECE + 1 bytes of its start) */
            assert(take == n);
            memmove(c->pend, c->pend + used, c->len - used);
            c->len -= used;
            return 0;
        }
        data += used - old;
        n -= used - old;
        c->len = 0;
    }
    if ((err = walk(data, n, 0, SIZE_MAX, &used, fn, ctx))) return err;
    assert(n - used < BPE_PEND_CAP);
    memcpy(c->pend, data + used, n - used);
    c->len = n - used;
    return 0;
}

int bpe_cutter_finish(bpe_cutter *c, bpe_piece_fn fn, void *ctx) {
    size_t used;
    int err = walk(c->pend, c->len, 1, SIZE_MAX, &used, fn, ctx);
    c->len = 0;
    return err;
}

uint64_t bpe_fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
