/*
 * Stream snapshots, format version 2 (host byte order):
 *   header  "VTTTSTRM", u32 version, u32 flags (bit 0: signed), u64 the
 *           predictor model's fingerprint, i64 frames seen, u64 the length
 *           of the state bytes                                  (40 bytes)
 *   state   the model state's own snapshot (ttt/model_state_io.c)
 *   frame   flags bit 1 only: the stream's last frame (S*S*3 bytes), the
 *           reference a DELTA tokenizer codes the next frame against
 *   tag     32 bytes over everything before it: HMAC-SHA256 with the
 *           predictor's snapshot key when signed, else SHA-256
 * The tag covers every byte, so a flipped bit anywhere is refused; the
 * SHA-256 of an unsigned snapshot only catches damage (anyone can
 * recompute it), the HMAC of a signed one also forgery. A predictor with
 * a key signs what it writes and accepts only snapshots signed with that
 * key; one without a key writes and accepts unsigned ones. Every field is
 * bounded before it is used (frames <= VTTT_MAX_POSITION / tokens per
 * frame), so no arithmetic on it can overflow.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "infer_internal.h"

#define STREAM_MAGIC "VTTTSTRM"
#define STREAM_VERSION 2u
#define STREAM_HEADER 40 /* magic 8, version 4, flags 4, fingerprint 8, frames 8, state bytes 8 */
#define STREAM_TAG 32    /* SHA-256 or HMAC-SHA256 */
#define STREAM_SIGNED 1u /* flags: the tag is an HMAC */
#define STREAM_FRAME 2u  /* flags: the last frame follows the state */

/* tag (32) = HMAC-SHA256(key, d) when key_n > 0, else SHA-256(d). */
static int snapshot_tag(const uint8_t *key, size_t key_n, const uint8_t *d, size_t n, uint8_t *tag) {
    if (!key_n) return SHA256(d, n, tag) ? VTTT_OK : VTTT_ENOMEM;
    unsigned int len = 0;
    if (key_n > (size_t)VTTT_SNAPSHOT_KEY_MAX) return VTTT_EINVAL;
    if (!HMAC(EVP_sha256(), key, (int)key_n, d, n, tag, &len) || len != STREAM_TAG) return VTTT_ENOMEM;
    return VTTT_OK;
}

int vttt_stream_snapshot(const vttt_stream *s, uint8_t **out, size_t *n) {
    if (!s || !out || !n) return VTTT_EINVAL;
    const vttt_predictor *p = s->p;
    uint8_t *st = NULL;
    size_t ns = 0;
    int err = vttt_model_state_save(s->st, &st, &ns);
    if (err) return err;
    size_t fb = s->has_last ? (size_t)p->S * p->S * 3 : 0;
    size_t total = STREAM_HEADER + ns + fb + STREAM_TAG;
    uint8_t *buf = malloc(total);
    if (!buf) {
        free(st);
        return VTTT_ENOMEM;
    }
    uint32_t ver = STREAM_VERSION, flags = (p->key_n ? STREAM_SIGNED : 0) | (fb ? STREAM_FRAME : 0);
    uint64_t nst = ns;
    memcpy(buf, STREAM_MAGIC, 8);
    memcpy(buf + 8, &ver, 4);
    memcpy(buf + 12, &flags, 4);
    memcpy(buf + 16, &p->fingerprint, 8);
    memcpy(buf + 24, &s->frames, 8);
    memcpy(buf + 32, &nst, 8);
    memcpy(buf + STREAM_HEADER, st, ns);
    if (fb) memcpy(buf + STREAM_HEADER + ns, s->last, fb);
    free(st);
    if ((err = snapshot_tag(p->key, p->key_n, buf, total - STREAM_TAG, buf + total - STREAM_TAG))) {
        free(buf);
        return err;
    }
    *out = buf;
    *n = total;
    return VTTT_OK;
}

static int refuse(const vttt_predictor *p, const char *why) {
    vttt_log(&p->log, VTTT_LOG_ERROR, "stream snapshot: %s", why);
    return VTTT_EFORMAT;
}

/* The tag: signed with this predictor's key, or an intact unsigned one
 * where the predictor has no key. */
static int check_tag(const vttt_predictor *p, const uint8_t *d, size_t n, uint32_t flags) {
    if (p->key_n && !(flags & STREAM_SIGNED))
        return refuse(p, "not signed: this daemon has a snapshot key (--snapshot-key) and accepts only snapshots "
                         "it signed itself");
    if (!p->key_n && (flags & STREAM_SIGNED))
        return refuse(p, "signed, but no snapshot key is set here (--snapshot-key): it cannot be verified");
    uint8_t tag[STREAM_TAG];
    int err = snapshot_tag(p->key, p->key_n, d, n - STREAM_TAG, tag);
    if (err) return err;
    if (CRYPTO_memcmp(tag, d + n - STREAM_TAG, STREAM_TAG) == 0) return VTTT_OK;
    return refuse(p, p->key_n ? "the signature does not match (altered, or signed with another key)"
                              : "damaged: the checksum does not match");
}

/* Header and tag checks; *frames receives the frames seen, *nst the
 * state's bytes, *flags the flags. */
static int check_header(const vttt_predictor *p, const uint8_t *d, size_t n, int64_t *frames, uint64_t *nst_out,
                        uint32_t *flags_out) {
    if (n < 12 || memcmp(d, STREAM_MAGIC, 8)) return refuse(p, "not a vttt stream snapshot");
    uint32_t ver, flags;
    uint64_t fp, nst;
    memcpy(&ver, d + 8, 4);
    if (ver == 1)
        return refuse(p, "format version 1 (vttt before 2026-12-08) is no longer accepted: its frame count was "
                         "not covered by the checksum; take a new snapshot");
    if (ver != STREAM_VERSION) return refuse(p, "unsupported version (made by another vttt version?)");
    if (n < STREAM_HEADER + STREAM_TAG) return refuse(p, "truncated (shorter than its header and checksum)");
    memcpy(&flags, d + 12, 4);
    memcpy(&fp, d + 16, 8);
    memcpy(frames, d + 24, 8);
    memcpy(&nst, d + 32, 8);
    if (flags & ~(STREAM_SIGNED | STREAM_FRAME)) return refuse(p, "unknown flags");
    size_t fb = flags & STREAM_FRAME ? (size_t)p->S * p->S * 3 : 0;
    if (n - STREAM_HEADER - STREAM_TAG < fb || nst != n - STREAM_HEADER - STREAM_TAG - fb)
        return refuse(p, "truncated or padded (the length does not match its header)");
    *nst_out = nst, *flags_out = flags;
    int err = check_tag(p, d, n, flags);
    if (err) return err;
    if (fp != p->fingerprint) return refuse(p, "it was taken with another model (configuration or weights differ)");
    if (*frames < 0 || *frames > VTTT_MAX_POSITION / p->P) return refuse(p, "the frame count is out of range");
    return VTTT_OK;
}

int vttt_stream_restore(vttt_stream **out, vttt_predictor *p, const uint8_t *data, size_t n) {
    if (!out || !p || !data) return VTTT_EINVAL;
    *out = NULL;
    int64_t frames;
    uint64_t nst = 0;
    uint32_t flags = 0;
    int err = check_header(p, data, n, &frames, &nst, &flags);
    if (err) return err;
    vttt_stream *s = NULL;
    if ((err = vttt_stream_open(&s, p))) return err;
    if ((err = vttt_model_state_load(s->st, data + STREAM_HEADER, (size_t)nst))) {
        vttt_stream_free(&s);
        return err;
    }
    if (vttt_model_state_position(s->st) != frames * p->P) { /* frames * P <= VTTT_MAX_POSITION */
        vttt_stream_free(&s);
        return refuse(p, "the state's position does not match its frame count");
    }
    s->frames = frames;
    if (flags & STREAM_FRAME) memcpy(s->last, data + STREAM_HEADER + nst, (size_t)p->S * p->S * 3), s->has_last = 1;
    *out = s;
    return VTTT_OK;
}
