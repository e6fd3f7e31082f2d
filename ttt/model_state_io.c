/*
 * Model-state snapshots: a vttt_model_state as bytes and back, so that a
 * stream can be branched, moved or resumed after a restart.
 *
 * Layout (host byte order, every field 8-byte aligned):
 *   header   "VTTTSTAT", u32 version, u32 B, u64 config fingerprint,
 *            i64 position, u64 total bytes
 *   layers   per layer: i64 position, then its floats — TTT: W0 and A
 *            (B, H, inner) each, plus the share_qk conv inputs (B, K-1, D);
 *            attention: the K and V caches' rows in use (B, pos, D) each
 *   conv     the pre-conv states (L, B, K-1, D) when pre_conv
 *   trailer  u64 FNV-1a of everything before it
 * Every length follows from the configuration and the positions, so a
 * snapshot is checked field by field before anything is copied.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "model_internal.h"

#define SNAP_MAGIC "VTTTSTAT"
#define SNAP_VERSION 1u
#define SNAP_HEADER 40 /* bytes */
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

static uint64_t fnv_int(uint64_t h, int64_t v) { return fnv1a(h, &v, sizeof v); }
static uint64_t fnv_float(uint64_t h, float v) { return fnv1a(h, &v, sizeof v); }

uint64_t vttt_model_config_fingerprint(const vttt_model_config *c) {
    uint64_t h = fnv1a(FNV_OFFSET, "vttt-model", 10);
    int64_t ints[] = {c->vocab_size, c->hidden_size,  c->intermediate_size, c->num_hidden_layers,
                      c->num_attention_heads, c->tie_word_embeddings, (int64_t)c->seq_kind, c->mini_batch_size,
                      c->pre_conv,   c->conv_kernel,  c->share_qk,          c->use_gate,
                      c->tokens_per_frame};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) h = fnv_int(h, ints[i]);
    h = fnv_float(h, c->rms_norm_eps);
    h = fnv_float(h, c->rope_theta);
    return fnv_float(h, c->ttt_base_lr);
}

/* Floats of one layer state's payload at position pos. */
static size_t layer_floats(const vttt_state *s, int64_t pos) {
    const vttt_layer *l = s->l;
    if (l->cfg.kind == VTTT_LAYER_ATTENTION) return 2 * (size_t)s->B * (size_t)pos * l->D;
    size_t n = 2 * (size_t)s->B * l->H * s->inner_numel;
    if (s->conv_state) n += (size_t)s->B * (l->cfg.conv_kernel - 1) * l->D;
    return n;
}

static size_t conv_floats(const vttt_model_state *s) {
    return s->conv ? (size_t)s->m->L * s->B * (s->m->K - 1) * s->m->D : 0;
}

/* Copies one layer state's payload at position pos into the bytes out, or
 * (out NULL) from the bytes in into the state. Returns the bytes used. */
static size_t layer_copy(vttt_state *s, int64_t pos, uint8_t *out, const uint8_t *in) {
    const vttt_layer *l = s->l;
    size_t off = 0;
#define PIECE(ptr, count)                                                        \
    do {                                                                         \
        size_t nb_ = (size_t)(count) * sizeof(float);                            \
        if (nb_) {                                                               \
            if (out) memcpy(out + off, (ptr), nb_);                              \
            else memcpy((ptr), in + off, nb_);                                   \
        }                                                                        \
        off += nb_;                                                              \
    } while (0)
    if (l->cfg.kind == VTTT_LAYER_ATTENTION) {
        for (int b = 0; b < s->B; b++) PIECE(s->k_cache + (size_t)b * s->max_T * l->D, (size_t)pos * l->D);
        for (int b = 0; b < s->B; b++) PIECE(s->v_cache + (size_t)b * s->max_T * l->D, (size_t)pos * l->D);
    } else {
        size_t w = (size_t)s->B * l->H * s->inner_numel;
        PIECE(s->W0, w);
        PIECE(s->A, w);
        if (s->conv_state) PIECE(s->conv_state, (size_t)s->B * (l->cfg.conv_kernel - 1) * l->D);
    }
#undef PIECE
    return off;
}

static size_t snapshot_bytes(const vttt_model_state *s) {
    size_t n = SNAP_HEADER + 8;
    for (int i = 0; i < s->m->L; i++) n += 8 + layer_floats(s->ls[i], s->ls[i]->pos) * sizeof(float);
    return n + conv_floats(s) * sizeof(float);
}

static uint8_t *put(uint8_t *w, const void *p, size_t n) {
    if (n) memcpy(w, p, n);
    return w + n;
}

int vttt_model_state_save(const vttt_model_state *s, uint8_t **out, size_t *n) {
    if (!s || !out || !n) return VTTT_EINVAL;
    const vttt_model *m = s->m;
    size_t total = snapshot_bytes(s);
    uint8_t *buf = malloc(total), *w = buf;
    if (!buf) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "state snapshot: cannot allocate %zu bytes", total);
        return VTTT_ENOMEM;
    }
    uint32_t ver = SNAP_VERSION, B = (uint32_t)s->B;
    uint64_t fp = vttt_model_config_fingerprint(&m->cfg), tot = total;
    int64_t pos = s->pos;
    w = put(w, SNAP_MAGIC, 8), w = put(w, &ver, 4), w = put(w, &B, 4), w = put(w, &fp, 8);
    w = put(w, &pos, 8), w = put(w, &tot, 8);
    for (int i = 0; i < m->L; i++) {
        vttt_state *ls = s->ls[i];
        w = put(w, &ls->pos, 8);
        w += layer_copy(ls, ls->pos, w, NULL);
    }
    w = put(w, s->conv, conv_floats(s) * sizeof(float));
    uint64_t sum = fnv1a(FNV_OFFSET, buf, (size_t)(w - buf));
    put(w, &sum, 8);
    *out = buf;
    *n = total;
    return VTTT_OK;
}

static int bad(const vttt_model *m, const char *what) {
    vttt_log(&m->log, VTTT_LOG_ERROR, "state snapshot: %s", what);
    return VTTT_EFORMAT;
}

/* Header checks: magic, version, model, batch, declared length. */
static int check_header(const vttt_model_state *s, const uint8_t *d, size_t n, int64_t *pos) {
    const vttt_model *m = s->m;
    if (n < SNAP_HEADER + 8 || memcmp(d, SNAP_MAGIC, 8))
        return bad(m, "not a vttt state snapshot (bad magic or shorter than its header)");
    uint32_t ver, B;
    uint64_t fp, tot;
    memcpy(&ver, d + 8, 4), memcpy(&B, d + 12, 4), memcpy(&fp, d + 16, 8);
    memcpy(pos, d + 24, 8), memcpy(&tot, d + 32, 8);
    if (ver != SNAP_VERSION) return bad(m, "unsupported snapshot version (made by another vttt version?)");
    if (tot != n) return bad(m, "truncated or padded: the length does not match the snapshot's header");
    uint64_t sum;
    memcpy(&sum, d + n - 8, 8);
    if (fnv1a(FNV_OFFSET, d, n - 8) != sum) return bad(m, "damaged: the checksum does not match");
    if (fp != vttt_model_config_fingerprint(&m->cfg))
        return bad(m, "the snapshot belongs to a model with another configuration");
    if (B != (uint32_t)s->B) return bad(m, "the snapshot's batch size differs from the state's");
    if (*pos < 0 || *pos > VTTT_MAX_POSITION) return bad(m, "the position is out of range (0..VTTT_MAX_POSITION)");
    return VTTT_OK;
}

/* Layer positions (each the model's) and the total length, before anything
 * is copied; every size is bounded first, so no sum can overflow. */
static int check_layers(const vttt_model_state *s, const uint8_t *d, size_t n, int64_t pos) {
    const vttt_model *m = s->m;
    size_t off = SNAP_HEADER;
    for (int i = 0; i < m->L; i++) {
        int64_t lp;
        if (off + 8 > n) return bad(m, "truncated layer states");
        memcpy(&lp, d + off, 8);
        const vttt_state *ls = s->ls[i];
        if (lp != pos) return bad(m, "a layer's position differs from the model's");
        if (ls->k_cache && lp > ls->max_T) return bad(m, "a layer position is past the state's KV cache");
        size_t bytes = layer_floats(ls, lp) * sizeof(float);
        if (bytes > n - off - 8) return bad(m, "truncated layer states");
        off += 8 + bytes;
    }
    if (conv_floats(s) * sizeof(float) + 8 != n - off) return bad(m, "the layer states do not fill the snapshot");
    return VTTT_OK;
}

/* The floats of n at bytes p (any alignment) are all finite. */
static int all_finite(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, p + i * sizeof v, sizeof v);
        if (!isfinite(v)) return 0;
    }
    return 1;
}

int vttt_model_state_load(vttt_model_state *s, const uint8_t *d, size_t n) {
    if (!s || !d) return VTTT_EINVAL;
    const vttt_model *m = s->m;
    int64_t pos;
    int err = check_header(s, d, n, &pos);
    if (!err) err = check_layers(s, d, n, pos);
    if (err) return err;
    /* every float finite, checked on the bytes before the state changes */
    size_t off = SNAP_HEADER;
    for (int i = 0; i < m->L; i++) {
        int64_t lp;
        memcpy(&lp, d + off, 8);
        size_t k = layer_floats(s->ls[i], lp);
        if (!all_finite(d + off + 8, k)) return bad(m, "non-finite values");
        off += 8 + k * sizeof(float);
    }
    if (!all_finite(d + off, conv_floats(s))) return bad(m, "non-finite values");
    off = SNAP_HEADER;
    for (int i = 0; i < m->L; i++) {
        vttt_state *ls = s->ls[i];
        memcpy(&ls->pos, d + off, 8);
        off += 8 + layer_copy(ls, ls->pos, NULL, d + off + 8);
    }
    if (s->conv) memcpy(s->conv, d + off, conv_floats(s) * sizeof(float));
    s->pos = pos;
    return VTTT_OK;
}
