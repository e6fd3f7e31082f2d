/*
 * Stream snapshots: a header (magic, version, the predictor model's
 * fingerprint, frames seen, the length of the state bytes) and the model
 * state's own snapshot (ttt/model_state_io.c, which carries its checksum).
 * The header's fields are checked against the predictor and the state.
 */
#include <stdlib.h>
#include <string.h>

#include "infer_internal.h"

#define STREAM_MAGIC "VTTTSTRM"
#define STREAM_VERSION 1u
#define STREAM_HEADER 40 /* magic 8, version 4, reserved 4, fingerprint 8, frames 8, state bytes 8 */

int vttt_stream_snapshot(const vttt_stream *s, uint8_t **out, size_t *n) {
    if (!s || !out || !n) return VTTT_EINVAL;
    uint8_t *st = NULL;
    size_t ns = 0;
    int err = vttt_model_state_save(s->st, &st, &ns);
    if (err) return err;
    uint8_t *buf = malloc(STREAM_HEADER + ns);
    if (!buf) {
        free(st);
        return VTTT_ENOMEM;
    }
    uint32_t ver = STREAM_VERSION, zero = 0;
    uint64_t nst = ns;
    memcpy(buf, STREAM_MAGIC, 8);
    memcpy(buf + 8, &ver, 4);
    memcpy(buf + 12, &zero, 4);
    memcpy(buf + 16, &s->p->fingerprint, 8);
    memcpy(buf + 24, &s->frames, 8);
    memcpy(buf + 32, &nst, 8);
    memcpy(buf + STREAM_HEADER, st, ns);
    free(st);
    *out = buf;
    *n = STREAM_HEADER + ns;
    return VTTT_OK;
}

static int refuse(const vttt_predictor *p, const char *why) {
    vttt_log(&p->log, VTTT_LOG_ERROR, "stream snapshot: %s", why);
    return VTTT_EFORMAT;
}

/* Header checks; *frames receives the frames seen. */
static int check_header(const vttt_predictor *p, const uint8_t *d, size_t n, int64_t *frames) {
    if (n < STREAM_HEADER || memcmp(d, STREAM_MAGIC, 8)) return refuse(p, "not a vttt stream snapshot");
    uint32_t ver;
    uint64_t fp, nst;
    memcpy(&ver, d + 8, 4);
    memcpy(&fp, d + 16, 8);
    memcpy(frames, d + 24, 8);
    memcpy(&nst, d + 32, 8);
    if (ver != STREAM_VERSION) return refuse(p, "unsupported version (made by another vttt version?)");
    if (nst != n - STREAM_HEADER) return refuse(p, "truncated or padded (the length does not match its header)");
    if (fp != p->fingerprint) return refuse(p, "it was taken with another model (configuration or weights differ)");
    if (*frames < 0) return refuse(p, "negative frame count");
    return VTTT_OK;
}

int vttt_stream_restore(vttt_stream **out, vttt_predictor *p, const uint8_t *data, size_t n) {
    if (!out || !p || !data) return VTTT_EINVAL;
    *out = NULL;
    int64_t frames;
    int err = check_header(p, data, n, &frames);
    if (err) return err;
    vttt_stream *s = NULL;
    if ((err = vttt_stream_open(&s, p))) return err;
    if ((err = vttt_model_state_load(s->st, data + STREAM_HEADER, n - STREAM_HEADER))) {
        vttt_stream_free(&s);
        return err;
    }
    if (vttt_model_state_position(s->st) != frames * p->P) {
        vttt_stream_free(&s);
        return refuse(p, "the state's position does not match its frame count");
    }
    s->frames = frames;
    *out = s;
    return VTTT_OK;
}
