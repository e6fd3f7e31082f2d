/*
 * Streams (infer/): small random video models and tokenizers saved to a
 * temporary directory and loaded as a predictor. Checks that
 *  - a stream fed one frame at a time predicts the argmax of a one-shot
 *    vttt_model_forward over the same tokens, and its predicted frames are
 *    the tokenizer's decoding of those tokens;
 *  - the encoded path (push_tokens, what `vttt predict` runs) equals push;
 *  - a horizon K rolls forward on a copy: its frames are the argmax of a
 *    forward over the true frames followed by the predicted ones, and the
 *    stream itself continues as if the horizon had been 1;
 *  - push_batch over streams at different frame counts equals separate
 *    pushes;
 *  - snapshot -> restore continues exactly; snapshots of another model,
 *    damaged or truncated bytes are refused;
 *  - the state (and snapshot) size does not grow over many frames;
 *  - a model and tokenizer that disagree are refused with both names.
 * Greedy tokens are compared where the top-2 logit margin of the oracle
 * exceeds MARGIN (batched BLAS may round differently), and at least
 * MIN_DECIDED of the positions must be that clear for a test to count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "infer.h"
#include "testutil.h"
#include "video_fixture.h"

#define S 32          /* frame size: a 4 x 4 grid, 16 tokens per frame */
#define MARGIN 1e-4f
#define MIN_DECIDED 0.9

typedef struct {
    char dir[512], model[600], model2[600], enc[600];
    int P, V;
} fixture;

/* A tokenizer (levels 5,5,5: vocab 125) and two video TTT-MLP models of the
 * same configuration with different weights, saved under a tmp dir. */
static void make_fixture(fixture *f, vttt_layer_kind kind) {
    tu_tmpdir(f->dir, sizeof f->dir, "infer");
    snprintf(f->model, sizeof f->model, "%s/model", f->dir);
    snprintf(f->model2, sizeof f->model2, "%s/model2", f->dir);
    snprintf(f->enc, sizeof f->enc, "%s/enc", f->dir);
    ck_assert_int_eq(vf_save_tokenizer(f->enc, S, &f->P, &f->V), VTTT_OK);
    /* initializer_range 0.2: clear argmax margins */
    ck_assert_int_eq(vf_save_model(f->model, f->P, f->V, kind, 0.2f, 100), VTTT_OK);
    ck_assert_int_eq(vf_save_model(f->model2, f->P, f->V, kind, 0.2f, 101), VTTT_OK);
}

/* n frames (n, S, S, 3) of a moving pattern (seeded). */
static uint8_t *make_video(int n, uint64_t seed) {
    uint8_t *v = malloc((size_t)n * S * S * 3);
    tu_rng r;
    tu_seed(&r, seed);
    int dx = 1 + (int)(tu_uniform(&r) * 3), base = (int)(tu_uniform(&r) * 255);
    for (int t = 0; t < n; t++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                for (int ch = 0; ch < 3; ch++)
                    v[(((size_t)t * S + y) * S + x) * 3 + ch] =
                        (uint8_t)(base + 8 * ((x + dx * t) % S) + 5 * y * (ch + 1) + (int)(tu_uniform(&r) * 20));
    return v;
}

/* Oracle: argmax and top-2 margin of every position of a one-shot forward
 * over tokens (T). */
static void oracle(vttt_model *m, const int32_t *tokens, int T, int V, int32_t *arg, float *margin) {
    float *lg = malloc((size_t)T * V * sizeof(float));
    ck_assert_int_eq(vttt_model_forward(m, tokens, NULL, 1, T, 0, NULL, lg), VTTT_OK);
    for (int t = 0; t < T; t++) {
        const float *r = lg + (size_t)t * V;
        int b = 0;
        for (int v = 1; v < V; v++)
            if (r[v] > r[b]) b = v;
        float second = -1e30f;
        for (int v = 0; v < V; v++)
            if (v != b && r[v] > second) second = r[v];
        arg[t] = b, margin[t] = r[b] - second;
    }
    free(lg);
}

/* got (n) equals want (n) wherever margin > MARGIN; returns the share of
 * positions that were decided. */
static double compare(const int32_t *got, const int32_t *want, const float *margin, int n, const char *what) {
    int decided = 0;
    for (int i = 0; i < n; i++) {
        if (margin[i] <= MARGIN) continue;
        decided++;
        ck_assert_msg(got[i] == want[i], "%s: token %d is %d, the oracle says %d (margin %g)", what, i, got[i], want[i],
                      (double)margin[i]);
    }
    return (double)decided / n;
}

static vttt_predictor *open_pred(const fixture *f, const char *model) {
    vttt_predictor *p = NULL;
    ck_assert_int_eq(vttt_predictor_open(&p, model, f->enc, NULL), VTTT_OK);
    /* these tests compare predicted pixels with the decoding of the greedy tokens */
    ck_assert_int_eq(vttt_predictor_set_decoding(p, VTTT_DECODE_ARGMAX), VTTT_OK);
    return p;
}

START_TEST(test_stream_matches_forward) {
    fixture f;
    make_fixture(&f, _i ? VTTT_LAYER_TTT_LINEAR : VTTT_LAYER_TTT_MLP);
    vttt_predictor *p = open_pred(&f, f.model);
    ck_assert_int_eq(vttt_predictor_frame_size(p), S);
    int F = 6, P = f.P, V = f.V;
    uint8_t *video = make_video(F, 1);
    int32_t *tok = malloc((size_t)F * P * sizeof(int32_t)), *arg = malloc((size_t)F * P * sizeof(int32_t));
    float *margin = malloc((size_t)F * P * sizeof(float));
    ck_assert_int_eq(vttt_encoder_encode(vttt_predictor_encoder(p), NULL, video, F, tok), VTTT_OK);
    oracle(vttt_predictor_model(p), tok, F * P, V, arg, margin);
    vttt_stream *s = NULL, *s2 = NULL;
    ck_assert_int_eq(vttt_stream_open(&s, p), VTTT_OK);
    ck_assert_int_eq(vttt_stream_open(&s2, p), VTTT_OK);
    int32_t *pt = malloc((size_t)P * sizeof(int32_t)), *pt2 = malloc((size_t)P * sizeof(int32_t));
    uint8_t *pred = malloc((size_t)S * S * 3), *dec = malloc((size_t)S * S * 3);
    double decided = 0;
    for (int t = 0; t < F; t++) {
        ck_assert_int_eq(vttt_stream_push(s, video + (size_t)t * S * S * 3, 1, pred, pt), VTTT_OK);
        decided += compare(pt, arg + (size_t)t * P, margin + (size_t)t * P, P, "stream vs forward") / F;
        ck_assert_int_eq(vttt_encoder_decode(vttt_predictor_encoder(p), NULL, pt, 1, dec), VTTT_OK);
        ck_assert_msg(!memcmp(pred, dec, (size_t)S * S * 3), "frame %d: predicted frame is not the decoding", t);
        /* the encoded path (vttt predict's) gives the same tokens */
        ck_assert_int_eq(vttt_stream_push_tokens(s2, tok + (size_t)t * P, 1, pt2), VTTT_OK);
        ck_assert_msg(!memcmp(pt, pt2, (size_t)P * sizeof(int32_t)), "frame %d: push_tokens differs from push", t);
    }
    ck_assert_msg(decided >= MIN_DECIDED, "only %.0f%% of the positions have a clear argmax", 100 * decided);
    ck_assert_int_eq(vttt_stream_frames(s), F);
    vttt_stream_free(&s), vttt_stream_free(&s2);
    ck_assert_ptr_null(s);
    free(video), free(tok), free(arg), free(margin), free(pt), free(pt2), free(pred), free(dec);
    vttt_predictor_close(&p);
    tu_rm_rf(f.dir);
}
END_TEST

START_TEST(test_horizon) {
    fixture f;
    make_fixture(&f, VTTT_LAYER_TTT_MLP);
    vttt_predictor *p = open_pred(&f, f.model);
    int F = 4, K = 3, P = f.P, V = f.V;
    uint8_t *video = make_video(F + 1, 2);
    int32_t *tok = malloc((size_t)(F + K) * P * sizeof(int32_t)), *arg = malloc((size_t)(F + K) * P * sizeof(int32_t));
    float *margin = malloc((size_t)(F + K) * P * sizeof(float));
    ck_assert_int_eq(vttt_encoder_encode(vttt_predictor_encoder(p), NULL, video, F + 1, tok), VTTT_OK);
    vttt_stream *s = NULL, *ref = NULL;
    ck_assert_int_eq(vttt_stream_open(&s, p), VTTT_OK);
    ck_assert_int_eq(vttt_stream_open(&ref, p), VTTT_OK);
    int32_t *pk = malloc((size_t)K * P * sizeof(int32_t)), *p1 = malloc((size_t)P * sizeof(int32_t));
    uint8_t *frames = malloc((size_t)K * S * S * 3);
    for (int t = 0; t < F; t++) {
        ck_assert_int_eq(vttt_stream_push(s, video + (size_t)t * S * S * 3, t == F - 1 ? K : 1,
                                          t == F - 1 ? frames : NULL, pk), VTTT_OK);
        ck_assert_int_eq(vttt_stream_push(ref, video + (size_t)t * S * S * 3, 1, NULL, p1), VTTT_OK);
    }
    /* the oracle sees the true frames, then the predicted frames 1..K-1 */
    memcpy(tok + (size_t)F * P, pk, (size_t)(K - 1) * P * sizeof(int32_t));
    oracle(vttt_predictor_model(p), tok, (F + K - 1) * P, V, arg, margin);
    double d = 0;
    for (int k = 0; k < K; k++)
        d += compare(pk + (size_t)k * P, arg + (size_t)(F - 1 + k) * P, margin + (size_t)(F - 1 + k) * P, P,
                     "horizon step") / K;
    ck_assert_msg(d >= MIN_DECIDED, "only %.0f%% clear", 100 * d);
    ck_assert_msg(!memcmp(pk, p1, (size_t)P * sizeof(int32_t)), "the horizon's first frame differs from horizon 1");
    /* the stream's own state saw only true frames */
    int32_t *a = malloc((size_t)P * sizeof(int32_t)), *b = malloc((size_t)P * sizeof(int32_t));
    ck_assert_int_eq(vttt_stream_push(s, video + (size_t)F * S * S * 3, 1, NULL, a), VTTT_OK);
    ck_assert_int_eq(vttt_stream_push(ref, video + (size_t)F * S * S * 3, 1, NULL, b), VTTT_OK);
    ck_assert_msg(!memcmp(a, b, (size_t)P * sizeof(int32_t)), "a horizon push changed the stream's state");
    uint8_t *dec = malloc((size_t)K * S * S * 3);
    ck_assert_int_eq(vttt_encoder_decode(vttt_predictor_encoder(p), NULL, pk, K, dec), VTTT_OK);
    ck_assert(!memcmp(dec, frames, (size_t)K * S * S * 3));
    ck_assert_int_eq(vttt_stream_push(s, video, 0, NULL, NULL), VTTT_EINVAL);
    vttt_stream_free(&s), vttt_stream_free(&ref);
    free(video), free(tok), free(arg), free(margin), free(pk), free(p1), free(frames), free(a), free(b), free(dec);
    vttt_predictor_close(&p);
    tu_rm_rf(f.dir);
}
END_TEST

START_TEST(test_push_batch) {
    fixture f;
    make_fixture(&f, _i ? VTTT_LAYER_ATTENTION : VTTT_LAYER_TTT_MLP);
    vttt_predictor *p = open_pred(&f, f.model);
    enum { N = 3, F = 4 };
    int P = f.P, V = f.V;
    size_t fb = (size_t)S * S * 3;
    uint8_t *video[N];
    int32_t *tok[N];
    vttt_stream *s[N], *ref[N];
    for (int i = 0; i < N; i++) {
        video[i] = make_video(F + 1, 10 + i);
        tok[i] = malloc((size_t)(F + 1) * P * sizeof(int32_t));
        ck_assert_int_eq(vttt_encoder_encode(vttt_predictor_encoder(p), NULL, video[i], F + 1, tok[i]), VTTT_OK);
        ck_assert_int_eq(vttt_stream_open(&s[i], p), VTTT_OK);
        ck_assert_int_eq(vttt_stream_open(&ref[i], p), VTTT_OK);
    }
    /* stream i has seen F - i frames (separately), then two batched pushes */
    int32_t *pb = malloc((size_t)N * P * sizeof(int32_t)), *pr = malloc((size_t)P * sizeof(int32_t));
    int32_t *arg = malloc((size_t)(F + 1) * P * sizeof(int32_t));
    float *margin = malloc((size_t)(F + 1) * P * sizeof(float));
    uint8_t *rgb = malloc(N * fb), *pred = malloc(N * fb), *pred1 = malloc(fb);
    for (int i = 0; i < N; i++)
        for (int t = 0; t < F - 1 - i; t++) {
            ck_assert_int_eq(vttt_stream_push(s[i], video[i] + t * fb, 1, NULL, NULL), VTTT_OK);
            ck_assert_int_eq(vttt_stream_push(ref[i], video[i] + t * fb, 1, NULL, NULL), VTTT_OK);
        }
    double d = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) memcpy(rgb + i * fb, video[i] + (F - 1 - i + round) * fb, fb);
        ck_assert_int_eq(vttt_stream_push_batch(s, N, rgb, pred, pb), VTTT_OK);
        for (int i = 0; i < N; i++) {
            int t = F - 1 - i + round;
            ck_assert_int_eq(vttt_stream_push(ref[i], rgb + i * fb, 1, pred1, pr), VTTT_OK);
            ck_assert_int_eq(vttt_stream_frames(s[i]), t + 1);
            oracle(vttt_predictor_model(p), tok[i], (t + 1) * P, V, arg, margin);
            d += compare(pb + (size_t)i * P, arg + (size_t)t * P, margin + (size_t)t * P, P, "batched") / (2 * N);
            compare(pr, arg + (size_t)t * P, margin + (size_t)t * P, P, "separate");
        }
    }
    ck_assert_msg(d >= MIN_DECIDED, "only %.0f%% clear", 100 * d);
    vttt_stream *dup[2] = {s[0], s[0]};
    ck_assert_int_eq(vttt_stream_push_batch(dup, 2, rgb, NULL, NULL), VTTT_EINVAL);
    for (int i = 0; i < N; i++) {
        vttt_stream_free(&s[i]), vttt_stream_free(&ref[i]);
        free(video[i]), free(tok[i]);
    }
    free(pb), free(pr), free(arg), free(margin), free(rgb), free(pred), free(pred1);
    vttt_predictor_close(&p);
    tu_rm_rf(f.dir);
}
END_TEST

START_TEST(test_snapshot) {
    fixture f;
    make_fixture(&f, VTTT_LAYER_TTT_MLP);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    vttt_predictor *p = NULL, *p2 = NULL;
    ck_assert_int_eq(vttt_predictor_open(&p, f.model, f.enc, &lg), VTTT_OK);
    ck_assert_int_eq(vttt_predictor_open(&p2, f.model2, f.enc, &lg), VTTT_OK);
    int F = 40, P = f.P;
    size_t fb = (size_t)S * S * 3;
    uint8_t *video = make_video(F, 3);
    vttt_stream *s = NULL, *r = NULL, *x = NULL;
    ck_assert_int_eq(vttt_stream_open(&s, p), VTTT_OK);
    size_t bytes0 = vttt_stream_state_bytes(s), snap0 = 0;
    uint8_t *snap = NULL;
    size_t n = 0;
    for (int t = 0; t < F - 1; t++) {
        ck_assert_int_eq(vttt_stream_push(s, video + t * fb, 1, NULL, NULL), VTTT_OK);
        ck_assert_uint_eq(vttt_stream_state_bytes(s), bytes0); /* constant memory */
        if (t == 1 || t == F - 2) {
            free(snap);
            ck_assert_int_eq(vttt_stream_snapshot(s, &snap, &n), VTTT_OK);
            if (t == 1) snap0 = n;
        }
    }
    ck_assert_uint_eq(n, snap0); /* snapshot size does not grow either */
    ck_assert_int_eq(vttt_stream_restore(&r, p, snap, n), VTTT_OK);
    ck_assert_int_eq(vttt_stream_frames(r), F - 1);
    int32_t *a = malloc((size_t)P * sizeof(int32_t)), *b = malloc((size_t)P * sizeof(int32_t));
    ck_assert_int_eq(vttt_stream_push(s, video + (F - 1) * fb, 1, NULL, a), VTTT_OK);
    ck_assert_int_eq(vttt_stream_push(r, video + (F - 1) * fb, 1, NULL, b), VTTT_OK);
    ck_assert_msg(!memcmp(a, b, (size_t)P * sizeof(int32_t)), "a restored stream predicts differently");
    /* another model (same configuration, other weights) */
    ck_assert_int_eq(vttt_stream_restore(&x, p2, snap, n), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "another model"));
    ck_assert_ptr_null(x);
    /* damaged, truncated */
    uint8_t *bad = malloc(n);
    memcpy(bad, snap, n);
    bad[n - 100] ^= 1;
    ck_assert_int_eq(vttt_stream_restore(&x, p, bad, n), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "checksum"));
    ck_assert_int_eq(vttt_stream_restore(&x, p, snap, n - 9), VTTT_EFORMAT);
    ck_assert_int_eq(vttt_stream_restore(&x, p, snap, 10), VTTT_EFORMAT);
    memcpy(bad, snap, n);
    int64_t frames = 5;
    memcpy(bad + 24, &frames, 8); /* frame count that does not match the state */
    ck_assert_int_eq(vttt_stream_restore(&x, p, bad, n), VTTT_EFORMAT);
    ck_assert_ptr_null(x);
    vttt_stream_free(&s), vttt_stream_free(&r);
    free(video), free(snap), free(bad), free(a), free(b);
    vttt_predictor_close(&p), vttt_predictor_close(&p2);
    tu_rm_rf(f.dir);
}
END_TEST

/* A stream of predictor p after F frames of video seed 3, and its snapshot. */
static uint8_t *snapshot_after(vttt_predictor *p, int F, size_t *n) {
    uint8_t *video = make_video(F, 3), *snap = NULL;
    vttt_stream *s = NULL;
    ck_assert_int_eq(vttt_stream_open(&s, p), VTTT_OK);
    for (int t = 0; t < F; t++) ck_assert_int_eq(vttt_stream_push(s, video + (size_t)t * S * S * 3, 1, NULL, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_stream_snapshot(s, &snap, n), VTTT_OK);
    vttt_stream_free(&s);
    free(video);
    return snap;
}

/* Recomputes an unsigned snapshot's trailing SHA-256, as anyone can. */
static void reseal(uint8_t *d, size_t n) {
    SHA256(d, n - 32, d + n - 32);
}

/* Restoring d must fail with VTTT_EFORMAT and a message containing what. */
static void expect_restore_refused(vttt_predictor *p, const uint8_t *d, size_t n, tu_log *cap, const char *what) {
    vttt_stream *x = NULL;
    cap->text[0] = 0;
    ck_assert_int_eq(vttt_stream_restore(&x, p, d, n), VTTT_EFORMAT);
    ck_assert_msg(strstr(cap->text, what), "expected '%s' in '%s'", what, cap->text);
    ck_assert_ptr_null(x);
}

/* Every byte of a stream snapshot is covered: a flipped bit anywhere (the
 * frame count's high bits 56..63 each, which used to be accepted when the
 * overflowing frames x tokens-per-frame wrapped back onto the position) is
 * refused; a forged frame count, or a position near INT64_MAX, with a
 * recomputed checksum is refused; version 1 is refused by name. */
START_TEST(test_snapshot_every_byte) {
    fixture f;
    make_fixture(&f, VTTT_LAYER_TTT_MLP);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    vttt_predictor *p = NULL;
    ck_assert_int_eq(vttt_predictor_open(&p, f.model, f.enc, &lg), VTTT_OK);
    size_t n = 0;
    uint8_t *snap = snapshot_after(p, 3, &n), *bad = malloc(n);
    vttt_stream *x = NULL;
    for (size_t i = 0; i < n; i++) {
        memcpy(bad, snap, n);
        bad[i] ^= (uint8_t)(1u << (i % 8));
        ck_assert_msg(vttt_stream_restore(&x, p, bad, n) == VTTT_EFORMAT, "a flip in byte %zu of %zu was accepted", i, n);
    }
    for (int bit = 56; bit < 64; bit++) {
        memcpy(bad, snap, n);
        bad[24 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ck_assert_msg(vttt_stream_restore(&x, p, bad, n) == VTTT_EFORMAT, "frame count bit %d flip accepted", bit);
    }
    /* forged, checksum recomputed: frames + 2^58 (x 16 tokens wraps to the same position), near INT64_MAX */
    int64_t frames[] = {3 + ((int64_t)1 << 58), INT64_MAX, ((int64_t)1 << 40) / f.P + 1, -1};
    for (size_t k = 0; k < sizeof frames / sizeof frames[0]; k++) {
        memcpy(bad, snap, n);
        memcpy(bad + 24, &frames[k], 8);
        reseal(bad, n);
        expect_restore_refused(p, bad, n, &cap, "frame count is out of range");
    }
    memcpy(bad, snap, n);
    int64_t big = INT64_MAX / f.P;
    memcpy(bad + 24, &big, 8);
    int64_t pos = big * f.P;
    memcpy(bad + 40 + 24, &pos, 8); /* the model state's position */
    reseal(bad, n);
    expect_restore_refused(p, bad, n, &cap, "out of range");
    memcpy(bad, snap, n);
    uint32_t v1 = 1;
    memcpy(bad + 8, &v1, 4);
    expect_restore_refused(p, bad, n, &cap, "version 1");
    free(snap), free(bad);
    vttt_predictor_close(&p);
    tu_rm_rf(f.dir);
}
END_TEST

/* HMAC-signed snapshots: a keyed predictor's snapshot restores with the
 * same key; unsigned ones, one-bit changes, another key's, and a signed
 * one where no key is set are refused; key files are read strictly. */
START_TEST(test_snapshot_signed) {
    fixture f;
    make_fixture(&f, VTTT_LAYER_TTT_MLP);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    vttt_predictor *p = NULL, *q = NULL;
    ck_assert_int_eq(vttt_predictor_open(&p, f.model, f.enc, &lg), VTTT_OK);
    ck_assert_int_eq(vttt_predictor_open(&q, f.model, f.enc, &lg), VTTT_OK);
    const uint8_t key[] = "0123456789abcdef0123456789abcdef", key2[] = "0123456789abcdef0123456789abcdeF";
    size_t un = 0, sn = 0, wn = 0;
    uint8_t *unsigned_snap = snapshot_after(p, 2, &un);
    ck_assert_int_eq(vttt_predictor_set_snapshot_key(p, key, 32), VTTT_OK);
    ck_assert_int_eq(vttt_predictor_set_snapshot_key(q, key2, 32), VTTT_OK);
    uint8_t *signed_snap = snapshot_after(p, 2, &sn), *wrong = snapshot_after(q, 2, &wn);
    vttt_stream *x = NULL;
    ck_assert_int_eq(vttt_stream_restore(&x, p, signed_snap, sn), VTTT_OK);
    ck_assert_int_eq(vttt_stream_frames(x), 2);
    vttt_stream_free(&x);
    expect_restore_refused(p, unsigned_snap, un, &cap, "not signed");
    expect_restore_refused(p, wrong, wn, &cap, "signature does not match");
    uint8_t *bad = malloc(sn);
    for (size_t i = 0; i < sn; i += 7) {
        memcpy(bad, signed_snap, sn);
        bad[i] ^= (uint8_t)(1u << (i % 8));
        ck_assert_msg(vttt_stream_restore(&x, p, bad, sn) == VTTT_EFORMAT, "a flip in byte %zu was accepted", i);
    }
    memcpy(bad, signed_snap, sn);
    bad[sn / 2] ^= 4;
    expect_restore_refused(p, bad, sn, &cap, "signature does not match");
    /* clearing the key flag and resealing with a plain SHA-256 */
    memcpy(bad, signed_snap, sn);
    bad[12] &= (uint8_t)~1u; /* the signed bit only (bit 1 says a last frame follows) */
    reseal(bad, sn);
    expect_restore_refused(p, bad, sn, &cap, "not signed");
    ck_assert_int_eq(vttt_predictor_set_snapshot_key(p, NULL, 0), VTTT_OK);
    expect_restore_refused(p, signed_snap, sn, &cap, "no snapshot key");
    ck_assert_int_eq(vttt_stream_restore(&x, p, unsigned_snap, un), VTTT_OK);
    vttt_stream_free(&x);
    ck_assert_int_eq(vttt_predictor_set_snapshot_key(p, key, 15), VTTT_EINVAL);
    /* key files */
    char path[700];
    snprintf(path, sizeof path, "%s/key", f.dir);
    uint8_t *k = NULL;
    size_t kn = 0;
    const struct { const char *bytes; size_t n; int err; } files[] = {
        {"", 0, VTTT_EINVAL}, {"short", 5, VTTT_EINVAL}, {"0123456789abcdef\n", 17, VTTT_OK}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        FILE *fp = fopen(path, "wb");
        ck_assert_ptr_nonnull(fp);
        fwrite(files[i].bytes, 1, files[i].n, fp);
        fclose(fp);
        ck_assert_int_eq(vttt_snapshot_key_read(path, &k, &kn, &lg), files[i].err);
        if (!files[i].err) ck_assert(kn == files[i].n && !memcmp(k, files[i].bytes, kn));
        else ck_assert_ptr_null(k);
        free(k), k = NULL;
    }
    ck_assert_ptr_null(strstr(cap.text, "0123456789abcdef")); /* never logged */
    FILE *fp = fopen(path, "wb");
    for (int i = 0; i < 4097; i++) fputc('k', fp);
    fclose(fp);
    ck_assert_int_eq(vttt_snapshot_key_read(path, &k, &kn, &lg), VTTT_EFORMAT);   /* larger than the limit */
    ck_assert_int_eq(vttt_snapshot_key_read(f.dir, &k, &kn, &lg), VTTT_EIO);      /* a directory */
    snprintf(path, sizeof path, "%s/missing", f.dir);
    ck_assert_int_eq(vttt_snapshot_key_read(path, &k, &kn, &lg), VTTT_EIO);
    free(unsigned_snap), free(signed_snap), free(wrong), free(bad);
    vttt_predictor_close(&p), vttt_predictor_close(&q);
    tu_rm_rf(f.dir);
}
END_TEST

/* A model whose logits overflow (final norm weights of 3e38: finite, so
 * it loads) makes a push fail with VTTT_ENAN and a message, instead of
 * predicting token 0 everywhere. */
START_TEST(test_nonfinite_logits_refused) {
    fixture f;
    make_fixture(&f, VTTT_LAYER_TTT_MLP);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    vttt_predictor *p = NULL;
    ck_assert_int_eq(vttt_predictor_open(&p, f.model, f.enc, &lg), VTTT_OK);
    int n = 0;
    const vttt_model_tensor *t = vttt_model_tensors(vttt_predictor_model(p), &n);
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, "model.norm.weight"))
            for (int64_t k = 0; k < t[i].numel; k++) t[i].data[k] = 3e38f;
    uint8_t *video = make_video(2, 3);
    int32_t *tok = malloc((size_t)f.P * sizeof *tok);
    vttt_stream *s = NULL, *b[1];
    ck_assert_int_eq(vttt_stream_open(&s, p), VTTT_OK);
    ck_assert_int_eq(vttt_stream_push(s, video, 1, NULL, tok), VTTT_ENAN);
    ck_assert_msg(strstr(cap.text, "not finite"), "message: %s", cap.text);
    b[0] = s;
    ck_assert_int_eq(vttt_stream_push_batch(b, 1, video, NULL, tok), VTTT_ENAN);
    vttt_stream_free(&s);
    free(video), free(tok);
    vttt_predictor_close(&p);
    tu_rm_rf(f.dir);
}
END_TEST

START_TEST(test_mismatch_refused) {
    fixture f;
    make_fixture(&f, VTTT_LAYER_TTT_MLP);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    /* a tokenizer of another frame size: 64 tokens per frame */
    char enc64[700], text[700];
    snprintf(enc64, sizeof enc64, "%s/enc64", f.dir);
    snprintf(text, sizeof text, "%s/text", f.dir);
    vttt_encoder_config ec = vttt_encoder_default_config();
    ec.channels = 8, ec.num_groups = 4;
    ck_assert_int_eq(vttt_encoder_levels_parse(&ec, "5,5,5", NULL), VTTT_OK);
    vttt_encoder *e = NULL;
    ck_assert_int_eq(vttt_encoder_init(&e, &ec, 1, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_encoder_save(e, enc64), VTTT_OK);
    vttt_encoder_free(&e);
    vttt_predictor *p = NULL;
    ck_assert_int_eq(vttt_predictor_open(&p, f.model, enc64, &lg), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, f.model));
    ck_assert_ptr_nonnull(strstr(cap.text, enc64));
    ck_assert_ptr_null(p);
    vttt_model_config c = vttt_model_default_config();
    ck_assert_int_eq(vttt_model_config_preset(&c, "test", NULL), VTTT_OK);
    c.vocab_size = f.V;
    vttt_model *m = NULL;
    ck_assert_int_eq(vttt_model_init(&m, &c, NULL), VTTT_OK);
    vttt_model_init_weights(m, 1);
    ck_assert_int_eq(vttt_model_save(m, text), VTTT_OK);
    vttt_model_free(&m);
    ck_assert_int_eq(vttt_predictor_open(&p, text, f.enc, &lg), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "text model"));
    tu_rm_rf(f.dir);
}
END_TEST

/* A DELTA tokenizer (vf_save_delta_tokenizer) and a TTT-MLP model for it
 * in f's new directory, opened. */
static vttt_predictor *open_delta(fixture *f, int motion) {
    tu_tmpdir(f->dir, sizeof f->dir, "infer_delta");
    snprintf(f->model, sizeof f->model, "%s/model", f->dir);
    snprintf(f->enc, sizeof f->enc, "%s/enc", f->dir);
    ck_assert_int_eq(vf_save_delta_tokenizer(f->enc, S, motion, &f->P, &f->V), VTTT_OK);
    ck_assert_int_eq(vf_save_model(f->model, f->P, f->V, VTTT_LAYER_TTT_MLP, 0.2f, 100), VTTT_OK);
    vttt_predictor *p = NULL;
    ck_assert_int_eq(vttt_predictor_open(&p, f->model, f->enc, NULL), VTTT_OK);
    return p;
}

/* A DELTA tokenizer's stream: each frame is coded against the frame before
 * (the first against mid-grey), the EXPECT prediction is the expected
 * latent decoded on the pushed frame, a snapshot carries the last frame
 * (a restored stream continues exactly), and push_batch equals separate
 * pushes. */
START_TEST(test_delta_stream) {
    fixture f;
    vttt_predictor *p = open_delta(&f, 0);
    ck_assert_int_eq(vttt_predictor_decoding(p), VTTT_DECODE_MIXTURE); /* AUTO with a DELTA tokenizer */
    ck_assert_int_eq(vttt_predictor_set_decoding(p, VTTT_DECODE_EXPECT), VTTT_OK);
    vttt_encoder *e = vttt_predictor_encoder(p);
    vttt_model *m = vttt_predictor_model(p);
    int F = 5, P = f.P, V = f.V, d = vttt_encoder_latent_dim(e);
    size_t fb = (size_t)S * S * 3;
    uint8_t *video = make_video(F + 1, 3), *pred = malloc(fb), *want = malloc(fb), *pred2 = malloc(fb);
    int32_t *tok = malloc((size_t)(F + 1) * P * sizeof *tok), *pt = malloc((size_t)P * sizeof *pt);
    int32_t *pt2 = malloc((size_t)P * sizeof *pt2);
    float *lg = malloc((size_t)P * V * sizeof *lg), *q = malloc((size_t)d * P * sizeof *q);
    float *pz = malloc((size_t)P * sizeof *pz);
    ck_assert_int_eq(vttt_encoder_encode_video(e, NULL, video, F + 1, tok), VTTT_OK);
    vttt_model_state *st = NULL;
    ck_assert_int_eq(vttt_model_state_init(&st, m, 1, 0), VTTT_OK);
    vttt_stream *s = NULL, *r = NULL;
    ck_assert_int_eq(vttt_stream_open(&s, p), VTTT_OK);
    ck_assert_ptr_null(vttt_stream_last_frame(s));
    uint8_t *snap = NULL;
    size_t sn = 0;
    for (int t = 0; t < F; t++) {
        const uint8_t *rgb = video + t * fb;
        ck_assert_int_eq(vttt_stream_push(s, rgb, 1, pred, pt), VTTT_OK);
        ck_assert_mem_eq(vttt_stream_last_frame(s), rgb, fb);
        /* the oracle: the model on the tokens of frame t (coded against frame t-1), the expected latent */
        ck_assert_int_eq(vttt_model_prefill(m, st, tok + (size_t)t * P, P, lg, 1), VTTT_OK);
        vttt_encoder_expected_latent(e, lg, P, vttt_encoder_vocab_size(e), q, pz);
        ck_assert_int_eq(vttt_encoder_decode_latent(e, rgb, q, 1, want), VTTT_OK);
        vttt_encoder_blend_unchanged(e, rgb, pz, 1, want);
        ck_assert_msg(!memcmp(pred, want, fb), "frame %d: the prediction is not the expected latent decoded", t);
        if (t == 2) ck_assert_int_eq(vttt_stream_snapshot(s, &snap, &sn), VTTT_OK);
    }
    /* a stream restored after frame 2 continues as the original did */
    ck_assert_int_eq(vttt_stream_restore(&r, p, snap, sn), VTTT_OK);
    ck_assert_mem_eq(vttt_stream_last_frame(r), video + 2 * fb, fb);
    vttt_stream *s3 = NULL;
    ck_assert_int_eq(vttt_stream_open(&s3, p), VTTT_OK);
    for (int t = 0; t < 3; t++) ck_assert_int_eq(vttt_stream_push(s3, video + t * fb, 1, NULL, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_stream_push(r, video + 3 * fb, 1, pred, pt), VTTT_OK);
    ck_assert_int_eq(vttt_stream_push(s3, video + 3 * fb, 1, pred2, pt2), VTTT_OK);
    ck_assert_mem_eq(pred, pred2, fb);
    ck_assert_mem_eq(pt, pt2, (size_t)P * sizeof *pt);
    /* push_batch: r and s3 are at the same frame with the same last frame; a fresh stream (intra) beside them */
    vttt_stream *fresh = NULL, *fresh2 = NULL, *b[3];
    ck_assert_int_eq(vttt_stream_open(&fresh, p), VTTT_OK);
    ck_assert_int_eq(vttt_stream_open(&fresh2, p), VTTT_OK);
    ck_assert_int_eq(vttt_stream_push(fresh, video, 1, NULL, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_stream_push(fresh2, video, 1, NULL, NULL), VTTT_OK);
    b[0] = r, b[1] = fresh;
    uint8_t *in = malloc(2 * fb), *out = malloc(2 * fb);
    memcpy(in, video + 4 * fb, fb), memcpy(in + fb, video + 1 * fb, fb);
    ck_assert_int_eq(vttt_stream_push_batch(b, 2, in, out, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_stream_push(s3, video + 4 * fb, 1, pred2, NULL), VTTT_OK);
    ck_assert_mem_eq(out, pred2, fb);
    ck_assert_int_eq(vttt_stream_push(fresh2, video + 1 * fb, 1, pred2, NULL), VTTT_OK);
    ck_assert_mem_eq(out + fb, pred2, fb);
    (void)b[2];
    vttt_model_state_free(&st);
    vttt_stream_free(&s), vttt_stream_free(&r), vttt_stream_free(&s3), vttt_stream_free(&fresh);
    vttt_stream_free(&fresh2);
    free(video), free(pred), free(want), free(pred2), free(tok), free(pt), free(pt2), free(lg), free(q), free(snap), free(pz);
    free(in), free(out);
    vttt_predictor_close(&p);
    tu_rm_rf(f.dir);
}
END_TEST

/* MIXTURE: the prediction is, cell by cell, the average of the last frame
 * (weight: "no change"'s probability) and the decodings of each rank of
 * the cells' most likely other tokens (weights: their probabilities),
 * renormalized; computed here from the model's logits with the public
 * calls. FRAME tokenizers refuse the mode. */
START_TEST(test_mixture) {
    /* _i 1: a tokenizer with motion: the frame's first 16 outputs choose the motion tokens (argmax over their
     * range), the reference is the expectation over each region's likeliest motions, and the cells' softmax
     * runs over the cell tokens alone */
    fixture f;
    vttt_predictor *p = open_delta(&f, _i ? 2 : 0);
    ck_assert_int_eq(vttt_predictor_set_decoding(p, VTTT_DECODE_MIXTURE), VTTT_OK);
    vttt_encoder *e = vttt_predictor_encoder(p);
    int P = f.P, V = f.V, d = vttt_encoder_latent_dim(e), z = vttt_encoder_zero_token(e), T = VTTT_DECODE_TOP;
    int M = vttt_encoder_motion_tokens(e), Vc = vttt_encoder_cell_vocab(e), C = P - M;
    ck_assert_int_eq(M, _i ? 32 : 0);
    ck_assert_int_eq(V, Vc + (_i ? 18 : 0)); /* motion 2: 4*2 + 1 motion tokens per axis */
    size_t fb = (size_t)S * S * 3;
    uint8_t *video = make_video(3, 9), *pred = malloc(fb), *dec = malloc((size_t)T * fb), *mref = malloc(fb);
    int32_t tok[96], rk[VTTT_DECODE_TOP][64], mt[32], pt[96];
    float *lg = malloc((size_t)P * V * sizeof *lg), *q = malloc((size_t)d * P * sizeof *q), pz[64], pr[VTTT_DECODE_TOP][64];
    ck_assert_int_le(P, 96);
    ck_assert_int_eq(C, 64);
    vttt_model_state *st = NULL;
    ck_assert_int_eq(vttt_model_state_init(&st, vttt_predictor_model(p), 1, 0), VTTT_OK);
    vttt_stream *s = NULL;
    ck_assert_int_eq(vttt_stream_open(&s, p), VTTT_OK);
    int moved = 0;
    for (int t = 0; t < 3; t++) {
        const uint8_t *rgb = video + t * fb;
        ck_assert_int_eq(vttt_encoder_encode(e, t ? rgb - fb : NULL, rgb, 1, tok), VTTT_OK);
        for (int i = 0; i < M; i++) {
            int l0, n0;
            vttt_encoder_motion_token_range(e, i & 1, &l0, &n0);
            ck_assert(tok[i] >= l0 && tok[i] < l0 + n0);
            moved += tok[i] != l0 + 4; /* motion 0: 2R half pixels above the axis's first token */
        }
        ck_assert_int_eq(vttt_stream_push(s, rgb, 1, pred, pt), VTTT_OK);
        ck_assert_int_eq(vttt_model_prefill(vttt_predictor_model(p), st, tok, P, lg, 1), VTTT_OK);
        /* the motion: the tokens handed back are the argmax over each axis's motion tokens; the reference is
         * each region moved by the 4 combinations of the two likeliest of each axis, averaged with the
         * products of their probabilities */
        int bs = S / VTTT_ENCODER_MOTION_GRID, mlo[2], mn;
        vttt_encoder_motion_token_range(e, 0, &mlo[0], &mn);
        vttt_encoder_motion_token_range(e, 1, &mlo[1], &mn);
        int32_t rk2[2][32], combo[32];
        double wk[2][32], acc[S * S * 3] = {0};
        for (int i = 0; i < M; i++) {
            const float *r = lg + (size_t)i * V;
            int l = mlo[i & 1];
            mt[i] = l;
            for (int v = l; v < l + mn; v++) mt[i] = r[v] > r[mt[i]] ? v : mt[i];
            ck_assert_int_eq(pt[i], mt[i]);
            int b1 = -1;
            for (int v = l; v < l + mn; v++)
                if (v != mt[i] && (b1 < 0 || r[v] > r[b1])) b1 = v;
            double sum = 0;
            for (int v = l; v < l + mn; v++) sum += exp(r[v] - r[mt[i]]);
            rk2[0][i] = mt[i], rk2[1][i] = b1, wk[0][i] = 1.0 / sum, wk[1][i] = exp(r[b1] - r[mt[i]]) / sum;
        }
        for (int c = 0; c < 4 && M; c++) {
            for (int q2 = 0; q2 < 16; q2++) combo[2 * q2] = rk2[c & 1][2 * q2], combo[2 * q2 + 1] = rk2[c >> 1][2 * q2 + 1];
            ck_assert_int_eq(vttt_encoder_motion_ref(e, rgb, combo, mref), VTTT_OK);
            for (size_t i = 0; i < fb; i++) {
                int g = (int)((i / 3 / S / bs) * 4 + (i / 3 % S) / bs);
                acc[i] += wk[c & 1][2 * g] * wk[c >> 1][2 * g + 1] * mref[i];
            }
        }
        for (size_t i = 0; i < fb && M; i++) {
            int g = (int)((i / 3 / S / bs) * 4 + (i / 3 % S) / bs);
            mref[i] = (uint8_t)lrint(acc[i] / ((wk[0][2 * g] + wk[1][2 * g]) * (wk[0][2 * g + 1] + wk[1][2 * g + 1])));
        }
        if (!M) memcpy(mref, rgb, fb);
        for (int c = 0; c < C; c++) { /* softmax over the cell tokens, "no change", the ranks */
            const float *r = lg + (size_t)(M + c) * V;
            double mx = r[0], sum = 0;
            for (int v = 1; v < Vc; v++) mx = r[v] > mx ? r[v] : mx;
            for (int v = 0; v < Vc; v++) sum += exp(r[v] - mx);
            pz[c] = (float)(exp(r[z] - mx) / sum);
            for (int k = 0; k < T; k++) {
                int b = -1;
                for (int v = 0; v < Vc; v++) {
                    int taken = v == z;
                    for (int j = 0; j < k; j++) taken |= rk[j][c] == v;
                    if (!taken && (b < 0 || r[v] > r[b])) b = v;
                }
                rk[k][c] = b, pr[k][c] = (float)(exp(r[b] - mx) / sum);
            }
        }
        for (int k = 0; k < T; k++) {
            ck_assert_int_eq(vttt_encoder_token_latent(e, rk[k], 1, q), VTTT_OK);
            ck_assert_int_eq(vttt_encoder_decode_latent(e, mref, q, 1, dec + k * fb), VTTT_OK);
        }
        int off = 0;
        for (size_t i = 0; i < fb; i++) {
            int y = (int)(i / 3 / S), x = (int)(i / 3 % S), c = (y / 4) * (S / 4) + x / 4;
            double num = pz[c] * mref[i], den = pz[c];
            for (int k = 0; k < T; k++) num += pr[k][c] * dec[k * fb + i], den += pr[k][c];
            off += abs((int)pred[i] - (int)lrint(num / den)) > 1; /* float summation order: one level at most */
        }
        ck_assert_msg(off == 0, "frame %d: %d pixels differ from the mixture", t, off);
    }
    if (_i) ck_assert_msg(moved > 0, "the moving pattern was coded without motion");
    free(mref);
    vttt_stream_free(&s);
    vttt_model_state_free(&st);
    free(video), free(pred), free(dec), free(lg), free(q);
    vttt_predictor_close(&p);
    tu_rm_rf(f.dir);
    /* a FRAME tokenizer has no "no change" token */
    make_fixture(&f, VTTT_LAYER_TTT_MLP);
    tu_log lg2;
    vttt_logger l = tu_log_capture(&lg2, VTTT_LOG_ERROR, 0);
    ck_assert_int_eq(vttt_predictor_open(&p, f.model, f.enc, &l), VTTT_OK);
    ck_assert_int_eq(vttt_predictor_set_decoding(p, VTTT_DECODE_MIXTURE), VTTT_EINVAL);
    ck_assert(strstr(lg2.text, "DELTA") != NULL);
    vttt_predictor_close(&p);
    tu_rm_rf(f.dir);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("infer");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_stream_matches_forward, 0, 2);
    tcase_add_test(tc, test_horizon);
    tcase_add_loop_test(tc, test_push_batch, 0, 2);
    tcase_add_test(tc, test_delta_stream);
    tcase_add_loop_test(tc, test_mixture, 0, 2);
    tcase_add_test(tc, test_snapshot);
    tcase_add_test(tc, test_snapshot_every_byte);
    tcase_add_test(tc, test_snapshot_signed);
    tcase_add_test(tc, test_nonfinite_logits_refused);
    tcase_add_test(tc, test_mismatch_refused);
    return tu_run("infer", tc, CK_FORK_GETENV);
}
