/* BPE encoding: pieces from the pre-tokenizer, merges applied by rank. */
#include <stdlib.h>
#include <string.h>

#include "bpe_internal.h"

#define NO_RANK INT32_MAX

struct vttt_bpe_encoder {
    const vttt_bpe *bpe;
    bpe_cutter cut;
    vttt_token_buf *out;                 /* where the current call appends */
    int32_t sym[VTTT_BPE_MAX_PIECE];     /* the piece's tokens */
    int32_t rank[VTTT_BPE_MAX_PIECE];    /* rank of (sym[i], sym[i+1]) */
};

static inline int32_t rank_of(const vttt_bpe *b, int32_t x, int32_t y) {
    int32_t r = bpe_pair_map_get(&b->ranks, bpe_pair_key(x, y));
    return r < 0 ? NO_RANK : r;
}

/* Encodes one piece: starting from its bytes, repeatedly joins every
 * occurrence (left to right) of the adjacent pair with the lowest rank.
 * rk[i] is the rank of (sym[i], sym[i+1]); the last entry is NO_RANK, and
 * -1 flags a token made by the current pass. */
static int encode_piece(void *ctx, const uint8_t *s, size_t n) {
    vttt_bpe_encoder *e = ctx;
    int32_t *sym = e->sym, *rk = e->rank;
    for (size_t i = 0; i < n; i++) sym[i] = s[i];
    for (size_t i = 0; i + 1 < n; i++) rk[i] = rank_of(e->bpe, sym[i], sym[i + 1]);
    rk[n - 1] = NO_RANK;
    while (n > 1) {
        int32_t best = NO_RANK;
        for (size_t i = 0; i + 1 < n; i++)
            if (rk[i] < best) best = rk[i];
        if (best == NO_RANK) break;
        size_t j = 0;
        for (size_t i = 0; i < n; j++) {
            if (i + 1 < n && rk[i] == best) {
                sym[j] = 256 + best;
                rk[j] = -1;   /* marks a new token */
                i += 2;
            } else {
                sym[j] = sym[i];
                rk[j] = rk[i];
                i++;
            }
        }
        n = j;
        /* two old tokens still side by side keep their pair's rank; pairs
         * with a new token are looked up (in place: rk[i+1] is still the
         * flag when pair i is done) */
        for (size_t i = 0; i + 1 < n; i++)
            if (rk[i] == -1 || rk[i + 1] == -1) rk[i] = rank_of(e->bpe, sym[i], sym[i + 1]);
        rk[n - 1] = NO_RANK;
    }
    return vttt_token_buf_append(e->out, sym, n);
}

int vttt_bpe_encoder_init(vttt_bpe_encoder **out, const vttt_bpe *bpe) {
    *out = calloc(1, sizeof **out);
    if (!*out) return VTTT_ENOMEM;
    (*out)->bpe = bpe;
    return VTTT_OK;
}

void vttt_bpe_encoder_free(vttt_bpe_encoder **enc) {
    if (!enc) return;
    free(*enc);
    *enc = NULL;
}

int vttt_bpe_encoder_feed(vttt_bpe_encoder *enc, const void *data, size_t n, vttt_token_buf *out) {
    enc->out = out;
    return bpe_cutter_feed(&enc->cut, data, n, encode_piece, enc);
}

int vttt_bpe_encoder_finish(vttt_bpe_encoder *enc, vttt_token_buf *out) {
    enc->out = out;
    return bpe_cutter_finish(&enc->cut, encode_piece, enc);
}

int vttt_bpe_encode(const vttt_bpe *bpe, const void *text, size_t n, vttt_token_buf *out) {
    vttt_bpe_encoder *e;
    int err = vttt_bpe_encoder_init(&e, bpe);
    if (!err) err = vttt_bpe_encoder_feed(e, text, n, out);
    if (!err) err = vttt_bpe_encoder_finish(e, out);
    vttt_bpe_encoder_free(&e);
    return err;
}
