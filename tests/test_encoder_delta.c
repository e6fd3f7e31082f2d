/*
 * The DELTA frame tokenizer (encoder/encoder_delta.c): finite differences
 * of every parameter through the cells, the change mask and the reference
 * frame; the "no change" token decodes to the reference exactly (and the
 * intra mode to mid-grey); the forward's reconstruction is the decoding of
 * the encoded tokens on the same references; a video's sequence encode is
 * the per-frame encode on the frames before; decode chains frames; the
 * expected latent; motion (the warp, the search, the tokens); configuration
 * checks and a directory round trip.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "encoder_internal.h"
#include "testutil.h"

enum { S = 16 };

static vttt_encoder_config delta_cfg(void) {
    vttt_encoder_config c = vttt_encoder_delta_default_config();
    c.image_size = S, c.channels = 8, c.num_groups = 2;
    c.num_levels = 2, c.levels[0] = 5, c.levels[1] = 3, c.levels[2] = c.levels[3] = 0;
    return c;
}

static vttt_encoder *make_motion(uint64_t seed, int motion) {
    vttt_encoder_config c = delta_cfg();
    c.motion = motion;
    vttt_encoder *e = NULL;
    ck_assert_int_eq(vttt_encoder_init(&e, &c, seed, NULL), 0);
    /* GroupNorm away from 1/0 and a decoder output that is not tiny */
    tu_rng r;
    tu_seed(&r, seed + 1);
    int n;
    const vttt_model_tensor *ts = vttt_encoder_tensors(e, &n);
    for (int i = 0; i < n; i++)
        for (int64_t k = 0; k < ts[i].numel; k++)
            ts[i].data[k] += (strstr(ts[i].name, ".norm.") ? 0.2f : 0.05f) * tu_normal(&r);
    return e;
}

static vttt_encoder *make(uint64_t seed) { return make_motion(seed, 0); }

/* N frames: a smooth pattern moving by one pixel per frame. */
static uint8_t *moving(int N, uint64_t seed) {
    uint8_t *f = malloc((size_t)N * S * S * 3);
    tu_rng r;
    tu_seed(&r, seed);
    float a = 1.0f + tu_uniform(&r) * 4.0f, b = 1.0f + tu_uniform(&r) * 4.0f;
    for (int n = 0; n < N; n++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                for (int c = 0; c < 3; c++)
                    f[(((size_t)n * S + y) * S + x) * 3 + c] =
                        (uint8_t)(127.5f + 110.0f * sinf(a * (x + n) / S + b * y / S + 2.0f * c));
    return f;
}

typedef struct {
    vttt_encoder *e;
    float *img;
    int N;
} fd_ctx;

static double fd_loss(void *p) {
    fd_ctx *c = p;
    float loss;
    ck_assert_int_eq(enc_forward_f(c->e, c->img, c->N, &loss), 0);
    return loss + c->e->rate_weight * vttt_encoder_rate(c->e); /* the rate term is part of what backward follows */
}

START_TEST(fd_params) {
    vttt_encoder *e = make(3);
    e->fsq_bypass = 1; /* smooth: q = bound(z) / half-width, never exactly 0, so every cell is "changed" */
    vttt_encoder_set_rate_weight(e, 0.005f); /* and the rate term's gradient (|b| is smooth away from 0) */
    int N = 2;
    size_t ni = (size_t)N * 3 * S * S;
    uint8_t *fr = moving(N + 1, 4);
    float *img = malloc(ni * sizeof *img);
    ck_assert_int_eq(enc_buffers_reserve(e, N), 0);
    enc_frames_to_img(img, fr + S * S * 3, N, S);
    enc_delta_set_prev(e, fr, fr + S * S * 3, N); /* frame n+1 coded against frame n */
    fd_ctx c = {e, img, N};
    vttt_encoder_zero_grads(e);
    float loss;
    ck_assert_int_eq(enc_forward_f(e, img, N, &loss), 0);
    ck_assert_int_eq(vttt_encoder_backward(e, 1.0f), 0);
    int n;
    const vttt_model_tensor *ts = vttt_encoder_tensors(e, &n);
    ck_assert_int_eq(n, 10 * 4 - 2 * 2); /* 10 layers, the two conv_in layers without a norm */
    tu_rng r;
    tu_seed(&r, 11);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < 3; j++) {
            int64_t k = (int64_t)(tu_uniform(&r) * (float)ts[i].numel);
            double fd = tu_central_diff(&ts[i].data[k], 1e-2f, fd_loss, &c), g = ts[i].grad[k];
            double err = fabs(fd - g) / (fabs(fd) + fabs(g) + 1e-5);
            ck_assert_msg(err < 3e-2, "%s[%lld]: backward %.6g, differences %.6g", ts[i].name, (long long)k, g, fd);
        }
    }
    free(fr), free(img);
    vttt_encoder_free(&e);
}
END_TEST

/* The rate term's gradient against central differences, with latents
 * away from the kink at 0. */
typedef struct {
    vttt_encoder_config cfg;
    float *z;
    int P;
} rate_ctx;

static double rate_of(void *p) {
    rate_ctx *c = p;
    return enc_fsq_rate(&c->cfg, c->z, 1, c->P, 0.0f, NULL);
}

START_TEST(rate_grad) {
    rate_ctx c = {delta_cfg(), NULL, 7};
    int n = c.cfg.num_levels * c.P;
    float *z = malloc((size_t)n * sizeof *z), *dz = calloc((size_t)n, sizeof *dz);
    tu_rng r;
    tu_seed(&r, 13);
    for (int i = 0; i < n; i++) z[i] = (tu_uniform(&r) < 0.5f ? -1.0f : 1.0f) * (0.2f + 1.5f * tu_uniform(&r));
    c.z = z;
    enc_fsq_rate(&c.cfg, z, 1, c.P, 2.0f, dz);
    for (int i = 0; i < n; i++) {
        double fd = 2.0 * tu_central_diff(&z[i], 1e-3f, rate_of, &c);
        ck_assert_msg(fabs(fd - dz[i]) <= 1e-3 * (fabs(fd) + 1.0), "dz[%d] %g, differences %g", i, dz[i], fd);
    }
    /* the zero level costs nothing, the outer levels most */
    float zero[2] = {0.0f, 0.0f};
    ck_assert(enc_fsq_rate(&c.cfg, zero, 1, 1, 0.0f, NULL) == 0.0);
    free(z), free(dz);
}
END_TEST

START_TEST(no_change_token) {
    vttt_encoder *e = make(5);
    int P = vttt_encoder_tokens_per_frame(e), z = vttt_encoder_zero_token(e), N = 3;
    ck_assert_int_eq(P, (S / 4) * (S / 4));
    ck_assert_int_eq(z, 2 + 1 * 5); /* digits (2, 1) of levels (5, 3) */
    uint8_t *ref = moving(N, 6), *out = malloc((size_t)N * S * S * 3);
    int32_t *tok = malloc((size_t)N * P * sizeof *tok);
    for (int i = 0; i < N * P; i++) tok[i] = z;
    /* a chain of "no change" frames stays the reference, bit for bit */
    ck_assert_int_eq(vttt_encoder_decode(e, ref, tok, N, out), 0);
    for (int n = 0; n < N; n++) ck_assert_mem_eq(out + (size_t)n * S * S * 3, ref, (size_t)S * S * 3);
    /* intra: mid-grey */
    ck_assert_int_eq(vttt_encoder_decode(e, NULL, tok, 1, out), 0);
    for (int i = 0; i < S * S * 3; i++) ck_assert_int_eq(out[i], 128);
    /* one changed cell changes its own pixels only */
    tok[5] = 0;
    ck_assert_int_eq(vttt_encoder_decode(e, ref, tok, 1, out), 0);
    int G = S / 4, changed = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) {
                size_t i = ((size_t)y * S + x) * 3 + c;
                int cell = (y / 4) * G + x / 4;
                if (cell != 5) ck_assert_int_eq(out[i], ref[i]);
                else changed += out[i] != ref[i];
            }
    ck_assert_msg(changed > 0, "the changed cell's pixels are the reference's");
    /* the zero latent too */
    float *q = calloc((size_t)vttt_encoder_latent_dim(e) * P, sizeof *q);
    ck_assert_int_eq(vttt_encoder_decode_latent(e, ref, q, 1, out), 0);
    ck_assert_mem_eq(out, ref, (size_t)S * S * 3);
    free(ref), free(out), free(tok), free(q);
    vttt_encoder_free(&e);
}
END_TEST

START_TEST(encode_decode_consistent) {
    vttt_encoder *e = make(7);
    int P = vttt_encoder_tokens_per_frame(e), d = vttt_encoder_latent_dim(e), N = 5;
    size_t fb = (size_t)S * S * 3;
    uint8_t *v = moving(N + 1, 8), *rec = malloc(N * fb), *dec = malloc(N * fb);
    int32_t *t1 = malloc((size_t)N * P * sizeof *t1), *t2 = malloc((size_t)N * P * sizeof *t2);
    float *q = malloc((size_t)N * P * d * sizeof *q), loss;
    /* frames 1..N against frames 0..N-1 */
    ck_assert_int_eq(vttt_encoder_forward(e, v, v + fb, N, 0, &loss, rec), 0);
    ck_assert(loss > 0 && isfinite(loss));
    ck_assert_int_eq(vttt_encoder_encode(e, v, v + fb, N, t1), 0);
    ck_assert_int_eq(vttt_encoder_token_latent(e, t1, N, q), 0);
    ck_assert_int_eq(vttt_encoder_decode_latent(e, v, q, N, dec), 0);
    /* the mode decision: "no change" cells keep the reference exactly; a frame equal to its reference is
     * all "no change" (no code can beat an exact copy) */
    int z = vttt_encoder_zero_token(e), zeros = 0;
    for (int n = 0; n < N; n++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                if (t1[(size_t)n * P + (y / 4) * (S / 4) + x / 4] != z) continue;
                size_t i = n * fb + ((size_t)y * S + x) * 3;
                ck_assert_mem_eq(dec + i, v + i, 3);
                zeros++;
            }
    ck_assert_int_eq(vttt_encoder_encode(e, v, v, N, t2), 0);
    for (int i = 0; i < N * P; i++) ck_assert_int_eq(t2[i], z);
    (void)zeros;
    /* the video encode is the same as naming the frames before */
    ck_assert_int_eq(vttt_encoder_encode_video(e, v, v + fb, N, t2), 0);
    ck_assert_mem_eq(t1, t2, (size_t)N * P * sizeof *t1);
    /* and frame by frame */
    for (int n = 0; n < N; n++) {
        ck_assert_int_eq(vttt_encoder_encode(e, v + n * fb, v + (n + 1) * fb, 1, t2), 0);
        ck_assert_mem_eq(t2, t1 + n * P, (size_t)P * sizeof *t1);
    }
    /* decode chains: frame n on the decoded frame n-1 */
    ck_assert_int_eq(vttt_encoder_decode(e, v, t1, N, dec), 0);
    for (int n = 0; n < N; n++) {
        ck_assert_int_eq(vttt_encoder_decode_latent(e, n ? dec + (n - 1) * fb : v, q + (size_t)n * P * d, 1, rec), 0);
        ck_assert_mem_eq(rec, dec + n * fb, fb);
    }
    /* the intra mode is the reference mid-grey */
    uint8_t *grey = malloc(N * fb);
    memset(grey, 128, N * fb);
    ck_assert_int_eq(vttt_encoder_encode(e, NULL, v, N, t1), 0);
    ck_assert_int_eq(vttt_encoder_encode(e, grey, v, N, t2), 0);
    ck_assert_mem_eq(t1, t2, (size_t)N * P * sizeof *t1);
    free(v), free(rec), free(dec), free(t1), free(t2), free(q), free(grey);
    vttt_encoder_free(&e);
}
END_TEST

START_TEST(expected_latent) {
    vttt_encoder *e = make(9);
    int V = vttt_encoder_vocab_size(e), d = vttt_encoder_latent_dim(e), P = vttt_encoder_tokens_per_frame(e);
    float *lg = malloc((size_t)P * V * sizeof *lg), q[2 * 16], qt[2 * 16];
    int32_t tok[16];
    ck_assert_int_eq(P, 16);
    for (int p = 0; p < P; p++) tok[p] = (p * 7) % V;
    /* near one-hot rows: the tokens' latents */
    for (int p = 0; p < P; p++)
        for (int v = 0; v < V; v++) lg[p * V + v] = v == tok[p] ? 60.0f : 0.0f;
    vttt_encoder_expected_latent(e, lg, P, V, q, NULL);
    ck_assert_int_eq(vttt_encoder_token_latent(e, tok, 1, qt), 0);
    for (int i = 0; i < d * P; i++) ck_assert_msg(fabsf(q[i] - qt[i]) < 1e-6f, "%d: %g vs %g", i, q[i], qt[i]);
    /* uniform rows: the mean of each channel's symmetric level grid, 0 */
    for (int i = 0; i < P * V; i++) lg[i] = 1.5f;
    vttt_encoder_expected_latent(e, lg, P, V, q, NULL);
    for (int i = 0; i < d * P; i++) ck_assert_msg(fabsf(q[i]) < 1e-6f, "%d: %g", i, q[i]);
    /* two tokens at even odds: the midpoint */
    for (int i = 0; i < P * V; i++) lg[i] = -80.0f;
    lg[0] = lg[1] = 0.0f; /* codes 0 and 1 of row 0: channel 0 at -1 and -0.5 */
    vttt_encoder_expected_latent(e, lg, 1, V, q, NULL);
    ck_assert(fabsf(q[0] + 0.75f) < 1e-6f); /* channel 0 of cell 0 (q is (d, 1) for one row) */
    /* split off the "no change" token: its probability, and the expectation over the rest */
    int z = vttt_encoder_zero_token(e);
    float pz[16];
    for (int i = 0; i < P * V; i++) lg[i] = -80.0f;
    lg[z] = logf(3.0f), lg[0] = 0.0f; /* row 0: "no change" 3/4, code 0 1/4 */
    vttt_encoder_expected_latent(e, lg, 1, V, q, pz);
    ck_assert(fabsf(pz[0] - 0.75f) < 1e-6f);
    ck_assert(fabsf(q[0] + 1.0f) < 1e-6f && fabsf(q[1] + 1.0f) < 1e-6f); /* code 0: every channel at its lowest */
    /* blending: p_zero 1 keeps the reference, 0 the frame, 1/2 the rounded mean, cell by cell */
    size_t fb = (size_t)S * S * 3;
    uint8_t *ref = moving(1, 3), *fr = moving(1, 4), *out = malloc(fb);
    float w[16];
    for (int p = 0; p < 16; p++) w[p] = p == 0 ? 1.0f : p == 1 ? 0.0f : 0.5f;
    memcpy(out, fr, fb);
    vttt_encoder_blend_unchanged(e, ref, w, 1, out);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) {
                size_t i = ((size_t)y * S + x) * 3 + c;
                int cell = (y / 4) * 4 + x / 4;
                int want = cell == 0 ? ref[i] : cell == 1 ? fr[i] : (int)rintf(0.5f * ref[i] + 0.5f * fr[i]);
                ck_assert_int_eq(out[i], want);
            }
    free(ref), free(fr), free(out);
    free(lg);
    vttt_encoder_free(&e);
}
END_TEST

/* Motion (encoder/motion.c): the warp (zero motion copies, half pixels
 * average, edges clamp), the search recovers a known motion field, the
 * tokens carry it, and a tokenizer with motion codes each frame's cells
 * exactly as the same weights without motion code the frame against the
 * moved reference; "no change" with zero motion is the previous frame. */
START_TEST(motion) {
    enum { R = 2 };
    size_t fb = (size_t)S * S * 3;
    tu_rng r;
    tu_seed(&r, 21);
    uint8_t *a = malloc(fb), *b = malloc(fb), *c = malloc(fb);
    for (size_t i = 0; i < fb; i++) a[i] = (uint8_t)(tu_uniform(&r) * 256.0f);
    int mv[2 * ENC_MOTION_REGIONS] = {0}, got[2 * ENC_MOTION_REGIONS];
    enc_motion_warp(a, S, mv, b);
    ck_assert_mem_eq(a, b, fb);
    enc_motion_warp(NULL, S, mv, b);
    for (size_t i = 0; i < fb; i++) ck_assert_int_eq(b[i], 128);
    /* region 5 (row 1, column 1; pixels 4..7) moved by (+1, -0.5): pixel (y, x) from (y + 0.5, x - 1) */
    mv[10] = 2, mv[11] = -1;
    enc_motion_warp(a, S, mv, b);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int k = 0; k < 3; k++) {
                size_t i = ((size_t)y * S + x) * 3 + k;
                int want = a[i];
                if (y / 4 == 1 && x / 4 == 1)
                    want = (2 * a[((size_t)y * S + x - 1) * 3 + k] + 2 * a[((size_t)(y + 1) * S + x - 1) * 3 + k] + 2) >> 2;
                ck_assert_int_eq(b[i], want);
            }
    /* edges clamp: the top-left region moved right by 2 repeats column 0 */
    memset(mv, 0, sizeof mv);
    mv[0] = 4;
    enc_motion_warp(a, S, mv, b);
    for (int y = 0; y < 4; y++) ck_assert_mem_eq(b + (size_t)y * S * 3, a + (size_t)y * S * 3, 3);
    /* the search finds a random field on a random texture */
    for (int i = 0; i < 2 * ENC_MOTION_REGIONS; i++) mv[i] = (int)(tu_uniform(&r) * (4 * R + 1)) - 2 * R;
    enc_motion_warp(a, S, mv, b);
    enc_motion_estimate(a, b, S, R, got);
    ck_assert_mem_eq(got, mv, sizeof mv);
    enc_motion_estimate(a, a, S, R, got); /* no motion */
    for (int i = 0; i < 2 * ENC_MOTION_REGIONS; i++) ck_assert_int_eq(got[i], 0);
    /* the tokenizer */
    vttt_encoder *em = make_motion(5, R), *e0 = make(5);
    int M = vttt_encoder_motion_tokens(em), P = vttt_encoder_tokens_per_frame(e0), lo, n, loy;
    vttt_encoder_motion_token_range(em, 0, &lo, &n);
    vttt_encoder_motion_token_range(em, 1, &loy, &n);
    ck_assert_int_eq(M, 32);
    ck_assert_int_eq(vttt_encoder_motion_tokens(e0), 0);
    ck_assert_int_eq(vttt_encoder_tokens_per_frame(em), 32 + P);
    ck_assert_int_eq(lo, vttt_encoder_cell_vocab(em));
    ck_assert_int_eq(n, 4 * R + 1);
    ck_assert_int_eq(loy, lo + n);
    ck_assert_int_eq(vttt_encoder_vocab_size(em), lo + 2 * n);
    ck_assert_mem_eq(em->params, e0->params, em->n_params * sizeof(float)); /* the same weights */
    int N = 4, T = M + P;
    uint8_t *video = moving(N, 23), *dm = malloc((size_t)N * fb), *d0 = malloc(fb);
    int32_t *tm = malloc((size_t)N * T * sizeof *tm), *t0 = malloc((size_t)P * sizeof *t0);
    ck_assert_int_eq(vttt_encoder_encode_video(em, NULL, video, N, tm), 0);
    ck_assert_int_eq(vttt_encoder_decode(em, NULL, tm, N, dm), 0);
    int moved = 0;
    for (int f = 0; f < N; f++) {
        const int32_t *t = tm + (size_t)f * T;
        for (int i = 0; i < M; i++) {
            int l = i & 1 ? loy : lo; /* x, y of each region */
            ck_assert(t[i] >= l && t[i] < l + n);
            moved += t[i] != l + 2 * R;
        }
        const uint8_t *prev = f ? video + (size_t)(f - 1) * fb : NULL, *dprev = f ? dm + (size_t)(f - 1) * fb : NULL;
        ck_assert_int_eq(vttt_encoder_motion_ref(em, prev, t, c), 0);
        ck_assert_int_eq(vttt_encoder_encode(e0, f ? c : NULL, video + (size_t)f * fb, 1, t0), 0);
        ck_assert_mem_eq(t0, t + M, (size_t)P * sizeof *t0);
        ck_assert_int_eq(vttt_encoder_motion_ref(em, dprev, t, c), 0); /* decoding chains on the decoded frames */
        ck_assert_int_eq(vttt_encoder_decode(e0, f ? c : NULL, t + M, 1, d0), 0);
        ck_assert_mem_eq(d0, dm + (size_t)f * fb, fb);
    }
    ck_assert_msg(moved > 0, "the moving pattern was coded without motion");
    /* "no change" everywhere: zero motion is the previous frame; a motion is the moved one */
    int z = vttt_encoder_zero_token(em);
    for (int i = 0; i < T; i++) tm[i] = i < M ? (i & 1 ? loy : lo) + 2 * R : z;
    ck_assert_int_eq(vttt_encoder_decode(em, a, tm, 1, b), 0);
    ck_assert_mem_eq(b, a, fb);
    tm[6] += 1; /* region 3 moved by half a pixel to the right */
    ck_assert_int_eq(vttt_encoder_decode(em, a, tm, 1, b), 0);
    ck_assert_int_eq(vttt_encoder_motion_ref(em, a, tm, c), 0);
    ck_assert_mem_eq(b, c, fb);
    ck_assert(memcmp(b, a, fb) != 0);
    /* a motion token out of range, or a cell token where a motion token belongs, is refused */
    tu_log lg;
    vttt_logger l = tu_log_capture(&lg, VTTT_LOG_ERROR, 0);
    em->log = l;
    tm[0] = loy; /* a y token where x belongs */
    ck_assert_int_eq(vttt_encoder_decode(em, a, tm, 1, b), VTTT_EINVAL);
    ck_assert_int_eq(vttt_encoder_motion_ref(em, a, tm, c), VTTT_EINVAL);
    tm[0] = z;
    ck_assert_int_eq(vttt_encoder_decode(em, a, tm, 1, b), VTTT_EINVAL);
    ck_assert(strstr(lg.text, "motion token") != NULL);
    free(a), free(b), free(c), free(video), free(dm), free(d0), free(tm), free(t0);
    vttt_encoder_free(&em), vttt_encoder_free(&e0);
}
END_TEST

START_TEST(config_and_dir) {
    vttt_encoder_config c = delta_cfg();
    tu_log lg;
    vttt_logger l = tu_log_capture(&lg, VTTT_LOG_ERROR, 0);
    ck_assert_int_eq(vttt_encoder_config_check(&c, &l), 0);
    c.levels[1] = 4;
    ck_assert_int_eq(vttt_encoder_config_check(&c, &l), VTTT_EINVAL);
    ck_assert(strstr(lg.text, "odd") != NULL);
    c = delta_cfg(), c.factor = 5;
    ck_assert_int_eq(vttt_encoder_config_check(&c, &l), VTTT_EINVAL);
    c = vttt_encoder_default_config(), c.factor = 4; /* FRAME is 8x down */
    ck_assert_int_eq(vttt_encoder_config_check(&c, &l), VTTT_EINVAL);
    char dir[] = "/tmp/vttt_delta_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    vttt_encoder *a = make(12), *b = NULL;
    ck_assert_int_eq(vttt_encoder_save(a, dir), 0);
    ck_assert_int_eq(vttt_encoder_load(&b, dir, NULL), 0);
    ck_assert_int_eq(vttt_encoder_get_config(b)->kind, VTTT_ENCODER_DELTA);
    ck_assert_int_eq(vttt_encoder_get_config(b)->factor, 4);
    ck_assert_mem_eq(a->params, b->params, a->n_params * sizeof(float));
    ck_assert_int_eq(vttt_encoder_get_config(b)->motion, 0);
    vttt_encoder_free(&a), vttt_encoder_free(&b);
    /* motion: saved and loaded; only for DELTA, at most image_size / 8 */
    a = make_motion(12, 2);
    ck_assert_int_eq(vttt_encoder_save(a, dir), 0);
    ck_assert_int_eq(vttt_encoder_load(&b, dir, NULL), 0);
    ck_assert_int_eq(vttt_encoder_get_config(b)->motion, 2);
    ck_assert_int_eq(vttt_encoder_tokens_per_frame(b), 32 + (S / 4) * (S / 4));
    vttt_encoder_free(&a), vttt_encoder_free(&b);
    c = delta_cfg(), c.motion = S / 8 + 1;
    ck_assert_int_eq(vttt_encoder_config_check(&c, &l), VTTT_EINVAL);
    c = vttt_encoder_default_config(), c.motion = 1;
    ck_assert_int_eq(vttt_encoder_config_check(&c, &l), VTTT_EINVAL);
    ck_assert(strstr(lg.text, "motion needs a delta") != NULL);
    /* "kind" and "factor" given twice are refused like every other key */
    const char *twice[] = {"{\"model_type\": \"vttt_fsq_tokenizer\", \"kind\": \"delta\", \"kind\": \"frame\", "
                           "\"factor\": 4, \"image_size\": 16, \"channels\": 8, \"num_groups\": 2, \"levels\": [5, 3]}",
                           "{\"model_type\": \"vttt_fsq_tokenizer\", \"kind\": \"delta\", \"factor\": 4, \"factor\": 8, "
                           "\"image_size\": 16, \"channels\": 8, \"num_groups\": 2, \"levels\": [5, 3]}"};
    for (int i = 0; i < 2; i++) {
        vttt_encoder_config cc;
        lg.text[0] = 0;
        ck_assert_int_eq(enc_config_parse(&cc, twice[i], strlen(twice[i]), "twice.json", &l), VTTT_EFORMAT);
        ck_assert(strstr(lg.text, "twice") != NULL);
    }
    tu_rm_rf(dir);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("delta");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fd_params);
    tcase_add_test(tc, rate_grad);
    tcase_add_test(tc, no_change_token);
    tcase_add_test(tc, encode_decode_consistent);
    tcase_add_test(tc, expected_latent);
    tcase_add_test(tc, motion);
    tcase_add_test(tc, config_and_dir);
    return tu_run("encoder_delta", tc, CK_FORK_GETENV);
}
