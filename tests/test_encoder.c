/*
 * The frame tokenizer (encoder/): FSQ codes and the straight-through rule,
 * finite differences of the whole tokenizer's parameter and input
 * gradients (FSQ bypassed by the test hook), the torch oracle dump
 * (tools/encoder_oracle.py), encode/decode round trips, tokenizer
 * directories (save/load, malformed files), the data set of the trainer.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "encoder_internal.h"
#include "encoder_train_internal.h"
#include "safetensors.h"
#include "testutil.h"

/* ---- FSQ ---------------------------------------------------------------- */

static vttt_encoder_config cfg_levels(const char *levels) {
    vttt_encoder_config c = vttt_encoder_default_config();
    ck_assert_int_eq(vttt_encoder_levels_parse(&c, levels, NULL), 0);
    return c;
}

/* Every code decodes to values on its channels' level grids, and the
 * quantizer applied to a pre-image of those values gives the code back. */
static void check_codes(const char *levels) {
    vttt_encoder_config c = cfg_levels(levels);
    int V = enc_fsq_vocab(&c), d = c.num_levels, prod = 1;
    for (int i = 0; i < d; i++) prod *= c.levels[i];
    ck_assert_int_eq(V, prod);
    int32_t *codes = malloc((size_t)V * sizeof *codes), *back = malloc((size_t)V * sizeof *back);
    float *q = malloc((size_t)V * d * sizeof *q), *z = malloc((size_t)V * d * sizeof *z);
    float *q2 = malloc((size_t)V * d * sizeof *q2);
    for (int v = 0; v < V; v++) codes[v] = v;
    /* one "frame" of V cells: q (1, d, V) */
    ck_assert_int_eq(enc_fsq_codes_to_q(&c, q, codes, 1, V), 0);
    for (int i = 0; i < d; i++) {
        int L = c.levels[i], hw = L / 2;
        float hl = (float)(L - 1) * (1.0f + ENC_FSQ_EPS) / 2.0f, off = L % 2 ? 0.0f : 0.5f;
        for (int v = 0; v < V; v++) {
            float val = q[(size_t)i * V + v] * hw; /* the integer level */
            ck_assert_float_eq(val, rintf(val));
            ck_assert(val >= -hw && val <= L - 1 - hw);
            z[(size_t)i * V + v] = atanhf((val + off) / hl) - atanhf(off / hl);
        }
    }
    enc_fsq_forward(&c, q2, back, z, 1, V, 0);
    for (int v = 0; v < V; v++) ck_assert_int_eq(back[v], v);
    for (int k = 0; k < V * d; k++) ck_assert_float_eq(q2[k], q[k]);
    /* out of range */
    int32_t badc[2] = {0, V};
    ck_assert_int_eq(enc_fsq_codes_to_q(&c, q, badc, 1, 2), VTTT_EINVAL);
    badc[1] = -1;
    ck_assert_int_eq(enc_fsq_codes_to_q(&c, q, badc, 1, 2), VTTT_EINVAL);
    free(codes), free(back), free(q), free(z), free(q2);
}

START_TEST(fsq_codes_roundtrip) {
    check_codes("8,5,5,5");
    check_codes("3,4");
    check_codes("2,7,6");
}
END_TEST

/* Codes stay in [0, V) for any z, extremes included, and q in [-1, 1]. */
START_TEST(fsq_range) {
    vttt_encoder_config c = cfg_levels("8,5,5,5");
    int P = 64, d = 4;
    float z[4 * 64], q[4 * 64];
    int32_t codes[64];
    tu_rng r;
    tu_seed(&r, 3);
    for (int k = 0; k < d * P; k++) z[k] = 10.0f * tu_normal(&r);
    z[0] = 1e30f, z[1] = -1e30f;
    enc_fsq_forward(&c, q, codes, z, 1, P, 0);
    for (int p = 0; p < P; p++) ck_assert(codes[p] >= 0 && codes[p] < 1000);
    for (int k = 0; k < d * P; k++) ck_assert(q[k] >= -1.0f && q[k] <= 1.0f);
}
END_TEST

/* The straight-through rule: dz = dq * d(bound(z) / hw)/dz, i.e. the
 * derivative of the bypassed (unrounded) path, checked by differences. */
START_TEST(fsq_straight_through) {
    vttt_encoder_config c = cfg_levels("8,5,3");
    int P = 5, d = 3, n = d * P;
    double z[15];
    float zf[15], dq[15], dz[15], qp[15], qm[15];
    tu_rng r;
    tu_seed(&r, 5);
    for (int k = 0; k < n; k++) z[k] = 1.5 * tu_normal(&r), zf[k] = (float)z[k], dq[k] = tu_normal(&r);
    enc_fsq_backward(&c, dz, dq, zf, 1, P);
    for (int k = 0; k < n; k++) {
        float zp[15], zm[15];
        memcpy(zp, zf, sizeof zp), memcpy(zm, zf, sizeof zm);
        zp[k] += 1e-2f, zm[k] -= 1e-2f;
        enc_fsq_forward(&c, qp, NULL, zp, 1, P, 1);
        enc_fsq_forward(&c, qm, NULL, zm, 1, P, 1);
        double fd = dq[k] * (qp[k] - qm[k]) / 2e-2;
        ck_assert_msg(fabs(fd - dz[k]) < 2e-3 * (1 + fabs(fd)), "dz[%d] %g vs differences %g", k, dz[k], fd);
    }
    /* with rounding, q is on the grid and moves only across a level boundary */
    enc_fsq_forward(&c, qp, NULL, zf, 1, P, 0);
    for (int k = 0; k < n; k++) ck_assert_float_eq(qp[k] * (c.levels[k / P] / 2), rintf(qp[k] * (c.levels[k / P] / 2)));
}
END_TEST

START_TEST(levels_parse_rejects) {
    vttt_encoder_config c = vttt_encoder_default_config();
    tu_log lg;
    vttt_logger l = tu_log_capture(&lg, VTTT_LOG_ERROR, 0);
    const char *bad[] = {"", "8,,5", "8,5,", "1,5", "8,5,x", "300", "8,8,8,8,8,8,8,8,8", "256,256,2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(vttt_encoder_levels_parse(&c, bad[i], &l) == VTTT_EINVAL, "accepted '%s'", bad[i]);
        ck_assert(strstr(lg.text, "levels") != NULL);
    }
    ck_assert_int_eq(c.num_levels, 4); /* unchanged */
    ck_assert_int_eq(vttt_encoder_levels_parse(&c, "7,5,5,5,3", &l), 0);
    ck_assert_int_eq(c.num_levels, 5);
    ck_assert_int_eq(c.levels[4], 3);
}
END_TEST

/* ---- finite differences -------------------------------------------------- */

static vttt_encoder_config tiny_cfg(void) {
    vttt_encoder_config c = vttt_encoder_default_config();
    c.image_size = 16, c.channels = 4, c.num_groups = 2;
    c.num_levels = 2, c.levels[0] = 3, c.levels[1] = 4, c.levels[2] = c.levels[3] = 0;
    return c;
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
    return loss;
}

/* A general point: GroupNorm weights and biases away from 1 and 0. */
static void perturb_norms(vttt_encoder *e, uint64_t seed) {
    tu_rng r;
    tu_seed(&r, seed);
    int n;
    const vttt_model_tensor *ts = vttt_encoder_tensors(e, &n);
    for (int i = 0; i < n; i++)
        if (strstr(ts[i].name, ".norm."))
            for (int64_t k = 0; k < ts[i].numel; k++) ts[i].data[k] += 0.2f * tu_normal(&r);
}

START_TEST(fd_params_and_input) {
    vttt_encoder_config cfg = tiny_cfg();
    vttt_encoder *e = NULL;
    ck_assert_int_eq(vttt_encoder_init(&e, &cfg, 42, NULL), 0);
    perturb_norms(e, 9);
    e->fsq_bypass = 1, e->want_dx = 1;
    int N = 2, S = 16;
    size_t ni = (size_t)N * 3 * S * S;
    tu_rng r;
    tu_seed(&r, 1);
    float *img = malloc(ni * sizeof *img), *dx = malloc(ni * sizeof *dx);
    for (size_t i = 0; i < ni; i++) img[i] = tu_uniform(&r);
    fd_ctx c = {e, img, N};
    vttt_encoder_zero_grads(e);
    float loss;
    ck_assert_int_eq(enc_forward_f(e, img, N, &loss), 0);
    ck_assert_int_eq(vttt_encoder_backward(e, 1.0f), 0);
    ck_assert_int_eq(enc_get_dx(e, dx, N), 0);
    int n;
    const vttt_model_tensor *ts = vttt_encoder_tensors(e, &n);
    double worst = 0.0;
    for (int i = 0; i < n; i++) { /* three entries of every tensor */
        for (int j = 0; j < 3; j++) {
            int64_t k = (int64_t)(tu_uniform(&r) * (float)ts[i].numel);
            double fd = tu_central_diff(&ts[i].data[k], 1e-2f, fd_loss, &c), g = ts[i].grad[k];
            double err = fabs(fd - g) / (fabs(fd) + fabs(g) + 1e-4);
            ck_assert_msg(err < 3e-2, "%s[%lld]: backward %.6g, differences %.6g", ts[i].name, (long long)k, g, fd);
            if (err > worst) worst = err;
        }
    }
    for (int j = 0; j < 12; j++) {
        size_t k = (size_t)(tu_uniform(&r) * (float)ni);
        double fd = tu_central_diff(&img[k], 1e-2f, fd_loss, &c);
        ck_assert_msg(fabs(fd - dx[k]) <= 3e-2 * (fabs(fd) + fabs(dx[k])) + 1e-6, "dx[%zu]: backward %.6g, "
                      "differences %.6g", k, dx[k], fd);
    }
    free(img), free(dx);
    vttt_encoder_free(&e);
    ck_assert_ptr_null(e);
}
END_TEST

/* Backward accumulates: twice the same backward doubles the gradients;
 * dloss scales them; a backward without a forward is refused. */
START_TEST(backward_accumulates) {
    vttt_encoder_config cfg = tiny_cfg();
    vttt_encoder *e = NULL;
    ck_assert_int_eq(vttt_encoder_init(&e, &cfg, 1, NULL), 0);
    uint8_t fr[2 * 16 * 16 * 3];
    for (size_t i = 0; i < sizeof fr; i++) fr[i] = (uint8_t)(i * 37 + 11);
    tu_log lg;
    vttt_logger l = tu_log_capture(&lg, VTTT_LOG_ERROR, 0);
    e->log = l;
    ck_assert_int_eq(vttt_encoder_backward(e, 1.0f), VTTT_EINVAL);
    size_t np = vttt_encoder_num_params(e);
    float *g1 = malloc(np * sizeof *g1);
    vttt_encoder_zero_grads(e);
    ck_assert_int_eq(vttt_encoder_forward(e, NULL, fr, 2, 1, NULL, NULL), 0);
    ck_assert_int_eq(vttt_encoder_backward(e, 1.0f), 0);
    memcpy(g1, e->grads, np * sizeof *g1);
    ck_assert_int_eq(vttt_encoder_backward(e, 1.0f), VTTT_EINVAL); /* the forward was used */
    ck_assert_int_eq(vttt_encoder_forward(e, NULL, fr, 2, 1, NULL, NULL), 0);
    ck_assert_int_eq(vttt_encoder_backward(e, 0.5f), 0);
    for (size_t i = 0; i < np; i++) ck_assert_float_eq_tol(e->grads[i], 1.5f * g1[i], 1e-5f * (1 + fabsf(g1[i])));
    free(g1);
    vttt_encoder_free(&e);
}
END_TEST

/* ---- the torch oracle --------------------------------------------------- */

static float *dump_get(vttt_st *st, const char *name, size_t *n) {
    vttt_st_tensor t;
    ck_assert_msg(vttt_st_find(st, name, &t) == 0, "oracle dump lacks %s", name);
    float *buf = malloc(t.nbytes);
    ck_assert_int_eq(vttt_st_read_f32(st, name, buf, t.ndim, t.shape), 0);
    *n = t.nbytes / sizeof(float);
    return buf;
}

/* max |a - b| over max |b|, named in the failure. */
static void match(const char *what, const float *a, const float *b, size_t n, double tol) {
    double err = tu_rel_err(a, b, n);
    ck_assert_msg(err < tol, "%s: relative error %.3g (tolerance %.3g)", what, err, tol);
}

/* Named tolerances: float32 C against float64 torch from the same values. */
#define TOL_Y 1e-5
#define TOL_LOSS 1e-5
#define TOL_GRAD 2e-4

static void oracle_case(vttt_encoder *e, vttt_st *st, const char *cs) {
    char name[160];
    size_t n, nf;
    float *frames = dump_get(st, "frames", &nf);
    int S = e->cfg.image_size, N = (int)(nf / ((size_t)S * S * 3));
    uint8_t *fr = malloc(nf);
    for (size_t i = 0; i < nf; i++) fr[i] = (uint8_t)frames[i];
    float *img = malloc(nf * sizeof *img), *dx = malloc(nf * sizeof *dx);
    enc_frames_to_img(img, fr, N, S);
    e->fsq_bypass = !strcmp(cs, "bypass"), e->want_dx = 1;
    vttt_encoder_zero_grads(e);
    float loss;
    ck_assert_int_eq(enc_forward_f(e, img, N, &loss), 0);
    /* y, z, q, codes */
    int G = S / 8, P = G * G, d = e->cfg.num_levels;
    snprintf(name, sizeof name, "%s.y", cs);
    float *want = dump_get(st, name, &n);
    match(name, e->h_y, want, n, TOL_Y);
    free(want);
    snprintf(name, sizeof name, "%s.z", cs);
    want = dump_get(st, name, &n);
    match(name, e->h_z, want, n, TOL_Y);
    free(want);
    snprintf(name, sizeof name, "%s.q", cs);
    want = dump_get(st, name, &n);
    match(name, e->h_q, want, n, TOL_Y);
    free(want);
    snprintf(name, sizeof name, "%s.loss", cs);
    want = dump_get(st, name, &n);
    ck_assert_msg(fabs(loss - want[0]) < TOL_LOSS * want[0], "%s: %.8g vs torch %.8g", name, loss, want[0]);
    free(want);
    int32_t *codes = malloc((size_t)N * P * sizeof *codes);
    float *q = malloc((size_t)N * d * P * sizeof *q);
    enc_fsq_forward(&e->cfg, q, codes, e->h_z, N, P, 0);
    snprintf(name, sizeof name, "%s.codes", cs);
    want = dump_get(st, name, &n);
    for (size_t i = 0; i < n; i++) ck_assert_int_eq(codes[i], (int32_t)want[i]);
    free(want);
    /* gradients */
    ck_assert_int_eq(vttt_encoder_backward(e, 1.0f), 0);
    ck_assert_int_eq(enc_get_dx(e, dx, N), 0);
    /* the dump's dx is NCHW like img */
    snprintf(name, sizeof name, "%s.dx", cs);
    want = dump_get(st, name, &n);
    match(name, dx, want, n, TOL_GRAD);
    free(want);
    int nt;
    const vttt_model_tensor *ts = vttt_encoder_tensors(e, &nt);
    for (int i = 0; i < nt; i++) {
        snprintf(name, sizeof name, "%s.grad.%s", cs, ts[i].name);
        want = dump_get(st, name, &n);
        ck_assert_int_eq((int64_t)n, ts[i].numel);
        match(name, ts[i].grad, want, n, TOL_GRAD);
        free(want);
    }
    free(frames), free(fr), free(img), free(dx), free(codes), free(q);
}

START_TEST(oracle_dump) {
    vttt_encoder *e = NULL;
    ck_assert_int_eq(vttt_encoder_load(&e, VTTT_TEST_DATA "/encoder_oracle", NULL), 0);
    vttt_st *st = NULL;
    ck_assert_int_eq(vttt_st_open(&st, VTTT_TEST_DATA "/encoder_oracle.safetensors", NULL), 0);
    oracle_case(e, st, "st");
    oracle_case(e, st, "bypass");
    vttt_st_close(&st);
    vttt_encoder_free(&e);
}
END_TEST

/* ---- encode / decode ------------------------------------------------------ */

static uint8_t *smooth_frames(int N, int S, uint64_t seed) {
    uint8_t *f = malloc((size_t)N * S * S * 3);
    tu_rng r;
    tu_seed(&r, seed);
    for (int n = 0; n < N; n++) {
        float a = tu_uniform(&r) * 6.0f, b = tu_uniform(&r) * 6.0f;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                for (int c = 0; c < 3; c++)
                    f[(((size_t)n * S + y) * S + x) * 3 + c] =
                        (uint8_t)(127.5f + 120.0f * sinf(a * x / S + b * y / S + 2.0f * c));
    }
    return f;
}

/* decode(encode(x)) is the forward's reconstruction, byte for byte; tokens
 * are in [0, V); decode rejects tokens outside. */
START_TEST(encode_decode_roundtrip) {
    vttt_encoder_config cfg = tiny_cfg();
    cfg.levels[0] = 8, cfg.levels[1] = 5; /* vocab 40 */
    vttt_encoder *e = NULL;
    ck_assert_int_eq(vttt_encoder_init(&e, &cfg, 3, NULL), 0);
    perturb_norms(e, 4);
    int N = 5, S = 16, P = vttt_encoder_tokens_per_frame(e), V = vttt_encoder_vocab_size(e);
    ck_assert_int_eq(P, 4);
    ck_assert_int_eq(V, 40);
    uint8_t *fr = smooth_frames(N, S, 8), *rec = malloc((size_t)N * S * S * 3), *dec = malloc((size_t)N * S * S * 3);
    int32_t *tok = malloc((size_t)N * P * sizeof *tok), *tok2 = malloc((size_t)N * P * sizeof *tok2);
    float loss;
    ck_assert_int_eq(vttt_encoder_forward(e, NULL, fr, N, 0, &loss, rec), 0);
    ck_assert_int_eq(vttt_encoder_encode(e, NULL, fr, N, tok), 0);
    for (int i = 0; i < N * P; i++) ck_assert(tok[i] >= 0 && tok[i] < V);
    ck_assert_int_eq(vttt_encoder_decode(e, NULL, tok, N, dec), 0);
    ck_assert_mem_eq(dec, rec, (size_t)N * S * S * 3);
    /* frame by frame: the same tokens (no batch effects) */
    for (int n = 0; n < N; n++) {
        ck_assert_int_eq(vttt_encoder_encode(e, NULL, fr + (size_t)n * S * S * 3, 1, tok2), 0);
        ck_assert_mem_eq(tok2, tok + n * P, (size_t)P * sizeof *tok2);
    }
    tu_log lg;
    e->log = tu_log_capture(&lg, VTTT_LOG_ERROR, 0);
    tok[3] = V;
    ck_assert_int_eq(vttt_encoder_decode(e, NULL, tok, N, dec), VTTT_EINVAL);
    ck_assert(strstr(lg.text, "outside") != NULL);
    tok[3] = -1;
    ck_assert_int_eq(vttt_encoder_decode(e, NULL, tok, N, dec), VTTT_EINVAL);
    free(fr), free(rec), free(dec), free(tok), free(tok2);
    vttt_encoder_free(&e);
}
END_TEST

/* Sets every value of the first (last: which < 0) conv.weight to v. */
static void poison_conv(vttt_encoder *e, int which, float v) {
    int n;
    const vttt_model_tensor *ts = vttt_encoder_tensors(e, &n), *t = NULL;
    for (int i = 0; i < n; i++)
        if (strstr(ts[i].name, "conv.weight") && (!t || which < 0)) t = &ts[i];
    ck_assert_ptr_nonnull(t);
    for (int64_t k = 0; k < t->numel; k++) t->data[k] = v;
}

/* Weights that overflow (finite: they load) make non-finite latents or
 * pixels: encode, decode and an evaluation forward refuse with VTTT_ENAN
 * and a message instead of quantizing NaN or writing black pixels. */
START_TEST(nonfinite_outputs_refused) {
    vttt_encoder_config cfg = tiny_cfg();
    vttt_encoder *e = NULL;
    tu_log lg;
    vttt_logger cap = tu_log_capture(&lg, VTTT_LOG_ERROR, 1);
    ck_assert_int_eq(vttt_encoder_init(&e, &cfg, 3, &cap), 0);
    int N = 2, S = 16, P = vttt_encoder_tokens_per_frame(e);
    uint8_t *fr = smooth_frames(N, S, 8), *rec = malloc((size_t)N * S * S * 3);
    int32_t *tok = malloc((size_t)N * P * sizeof *tok);
    float loss;
    ck_assert_int_eq(vttt_encoder_encode(e, NULL, fr, N, tok), 0);
    poison_conv(e, -1, 3e38f); /* the decoder's last conv */
    ck_assert_int_eq(vttt_encoder_decode(e, NULL, tok, N, rec), VTTT_ENAN);
    ck_assert_msg(strstr(lg.text, "decoder's output holds a non-finite value"), "message: %s", lg.text);
    ck_assert_int_eq(vttt_encoder_forward(e, NULL, fr, N, 0, &loss, rec), VTTT_ENAN);
    ck_assert_int_eq(vttt_encoder_forward(e, NULL, fr, N, 1, &loss, NULL), VTTT_OK); /* the trainer checks the loss */
    ck_assert(!isfinite(loss));
    poison_conv(e, 0, 3e38f); /* the encoder's first conv */
    lg.text[0] = 0;
    ck_assert_int_eq(vttt_encoder_encode(e, NULL, fr, N, tok), VTTT_ENAN);
    ck_assert_msg(strstr(lg.text, "latents"), "message: %s", lg.text);
    free(fr), free(rec), free(tok);
    vttt_encoder_free(&e);
}
END_TEST

/* ---- the non-CPU path on a stand-in device ------------------------------ */

/* "Device" memory that starts as NaN bytes, so that a buffer used before
 * it is written shows up in the results. */
static int poison_alloc(void *ctx, void **p, size_t bytes) {
    (void)ctx;
    *p = malloc(bytes ? bytes : 1);
    if (*p) memset(*p, 0xff, bytes);
    return *p ? VTTT_OK : VTTT_ENOMEM;
}

static void plain_free(void *ctx, void *p) { (void)ctx, free(p); }

/* The CPU table posing as a device: the tokenizer then keeps its weights
 * in a device copy, stages FSQ and the loss through to_host/to_device,
 * clears buffers by copies and gathers the gradients, as on CUDA. The ops
 * are the CPU's, so the results must equal the CPU path's bit for bit. */
START_TEST(device_path_matches_cpu) {
    vttt_backend dev = *vttt_backend_cpu();
    dev.name = "stand-in device", dev.device = VTTT_DEVICE_CUDA;
    dev.alloc = poison_alloc, dev.free = plain_free;
    vttt_encoder_config cfg = tiny_cfg();
    if (_i) { /* DELTA: factor 4 on 16x16 frames, 4x4 cells; odd levels */
        cfg.kind = VTTT_ENCODER_DELTA, cfg.factor = 4, cfg.levels[1] = 3;
    }
    vttt_encoder *a = NULL, *b = NULL;
    ck_assert_int_eq(vttt_encoder_init(&a, &cfg, 21, NULL), 0);
    ck_assert_int_eq(vttt_encoder_init(&b, &cfg, 21, NULL), 0);
    perturb_norms(a, 2), perturb_norms(b, 2);
    ck_assert_int_eq(vttt_encoder_set_backend(b, &dev), 0);
    ck_assert_ptr_nonnull(b->dparams);
    enum { N = 3, S = 16, PMAX = 16 };
    int P = vttt_encoder_tokens_per_frame(a);
    ck_assert_int_eq(P, _i ? 16 : 4);
    /* prev: DELTA's references (the frames of another seed), ignored by FRAME */
    uint8_t *fr = smooth_frames(N, S, 17), *prev = smooth_frames(N, S, 5), ra[N * S * S * 3], rb[N * S * S * 3];
    float la, lb;
    size_t np = vttt_encoder_num_params(a);
    for (int step = 0; step < 2; step++) { /* the second forward sees updated host weights */
        vttt_encoder_zero_grads(a), vttt_encoder_zero_grads(b);
        ck_assert_int_eq(vttt_encoder_forward(a, prev, fr, N, 1, &la, ra), 0);
        ck_assert_int_eq(vttt_encoder_forward(b, prev, fr, N, 1, &lb, rb), 0);
        ck_assert_float_eq(la, lb);
        ck_assert_mem_eq(ra, rb, sizeof ra);
        ck_assert_int_eq(vttt_encoder_backward(a, 1.0f), 0);
        ck_assert_int_eq(vttt_encoder_backward(b, 1.0f), 0);
        ck_assert_mem_eq(a->grads, b->grads, np * sizeof(float));
        for (size_t i = 0; i < np; i++) ck_assert(isfinite(b->grads[i]));
        for (size_t i = 0; i < np; i++) a->params[i] -= 0.01f * a->grads[i], b->params[i] -= 0.01f * b->grads[i];
    }
    int32_t ta[N * PMAX], tb[N * PMAX];
    ck_assert_int_eq(vttt_encoder_encode(a, prev, fr, N, ta), 0);
    ck_assert_int_eq(vttt_encoder_encode(b, prev, fr, N, tb), 0);
    ck_assert_mem_eq(ta, tb, (size_t)N * P * sizeof *ta);
    ck_assert_int_eq(vttt_encoder_decode(a, NULL, ta, N, ra), 0);
    ck_assert_int_eq(vttt_encoder_decode(b, NULL, ta, N, rb), 0);
    ck_assert_mem_eq(ra, rb, sizeof ra);
    /* back to the CPU */
    ck_assert_int_eq(vttt_encoder_set_backend(b, NULL), 0);
    ck_assert_ptr_null(b->dparams);
    ck_assert_int_eq(vttt_encoder_decode(b, NULL, ta, N, rb), 0);
    ck_assert_mem_eq(ra, rb, sizeof ra);
    /* a backend without the 2D ops is refused, and the tokenizer stays usable */
    dev.conv2d_backward = NULL;
    tu_log lg;
    b->log = tu_log_capture(&lg, VTTT_LOG_ERROR, 0);
    ck_assert_int_eq(vttt_encoder_set_backend(b, &dev), VTTT_ENOTSUP);
    ck_assert(strstr(lg.text, "stand-in device") != NULL);
    ck_assert_int_eq(vttt_encoder_decode(b, NULL, ta, N, rb), 0);
    ck_assert_mem_eq(ra, rb, sizeof ra);
    free(fr), free(prev);
    vttt_encoder_free(&a), vttt_encoder_free(&b);
}
END_TEST

/* ---- tokenizer directories ----------------------------------------------- */

START_TEST(save_load_roundtrip) {
    char dir[256], sub[300];
    tu_tmpdir(dir, sizeof dir, "enc");
    snprintf(sub, sizeof sub, "%s/tok", dir);
    vttt_encoder_config cfg = tiny_cfg();
    vttt_encoder *a = NULL, *b = NULL;
    ck_assert_int_eq(vttt_encoder_init(&a, &cfg, 5, NULL), 0);
    perturb_norms(a, 6);
    ck_assert_int_eq(vttt_encoder_save(a, sub), 0);
    ck_assert_int_eq(vttt_encoder_load(&b, sub, NULL), 0);
    ck_assert_mem_eq(vttt_encoder_get_config(a), vttt_encoder_get_config(b), sizeof cfg);
    ck_assert_mem_eq(a->params, b->params, a->n_params * sizeof(float));
    vttt_encoder_free(&a), vttt_encoder_free(&b);
    tu_rm_rf(dir);
}
END_TEST

/* Writes dir/config.json with text. */
static void put_config(const char *dir, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    tu_write_file(p, text, strlen(text));
}

static void expect_load_error(const char *dir, int code, const char *needle) {
    vttt_encoder *e = NULL;
    tu_log lg;
    vttt_logger l = tu_log_capture(&lg, VTTT_LOG_ERROR, 1);
    int err = vttt_encoder_load(&e, dir, &l);
    ck_assert_msg(err == code, "load gave %d, want %d (%s)", err, code, lg.text);
    ck_assert_ptr_null(e);
    ck_assert_msg(strstr(lg.text, needle) != NULL, "message '%s' lacks '%s'", lg.text, needle);
}

START_TEST(load_rejects_bad_dirs) {
    char dir[256], sub[300], path[400];
    tu_tmpdir(dir, sizeof dir, "enc");
    snprintf(sub, sizeof sub, "%s/tok", dir);
    vttt_encoder_config cfg = tiny_cfg();
    vttt_encoder *a = NULL;
    ck_assert_int_eq(vttt_encoder_init(&a, &cfg, 5, NULL), 0);
    ck_assert_int_eq(vttt_encoder_save(a, sub), 0);
    size_t cn;
    char *good = tu_read_file((snprintf(path, sizeof path, "%s/config.json", sub), path), &cn);
    expect_load_error(dir, VTTT_EIO, "config.json"); /* no tokenizer here */
    put_config(sub, "{\"model_type\": \"vttt_fsq_tokenizer\", \"image_size\": 16, \"channels\": 4, \"num_groups\": 2, "
                    "\"levels\": [3, 4], \"colour\": 1}");
    expect_load_error(sub, VTTT_EFORMAT, "unknown key colour");
    put_config(sub, "{\"model_type\": \"vttt_fsq_tokenizer\", \"image_size\": \"16\", \"channels\": 4, "
                    "\"num_groups\": 2, \"levels\": [3, 4]}");
    expect_load_error(sub, VTTT_EFORMAT, "image_size");
    put_config(sub, "{\"model_type\": \"vttt_fsq_tokenizer\", \"image_size\": 16, \"channels\": 4, \"num_groups\": 2, "
                    "\"levels\": [3, 4], \"num_levels\": 3}");
    expect_load_error(sub, VTTT_EFORMAT, "num_levels");
    put_config(sub, "[1, 2]");
    expect_load_error(sub, VTTT_EFORMAT, "object");
    put_config(sub, "{\"model_type\": \"vttt_fsq_tokenizer\"");
    expect_load_error(sub, VTTT_EFORMAT, "JSON");
    /* one document: anything after the config is refused */
    char *twice = malloc(2 * cn + 1);
    sprintf(twice, "%s%s", good, good);
    put_config(sub, twice);
    expect_load_error(sub, VTTT_EFORMAT, "not valid JSON");
    /* the same parse from memory (the fuzzing entry point) */
    vttt_encoder_config back;
    ck_assert_int_eq(enc_config_parse(&back, good, cn, "mem", NULL), VTTT_OK);
    ck_assert_int_eq(back.image_size, cfg.image_size);
    ck_assert_int_eq(back.num_levels, cfg.num_levels);
    ck_assert_int_eq(enc_config_parse(&back, twice, strlen(twice), "mem", NULL), VTTT_EFORMAT);
    free(twice);
    /* mismatched levels: the weights are for 2 FSQ channels */
    put_config(sub, "{\"model_type\": \"vttt_fsq_tokenizer\", \"image_size\": 16, \"channels\": 4, \"num_groups\": 2, "
                    "\"levels\": [8, 5, 5]}");
    expect_load_error(sub, VTTT_EFORMAT, "encoder.conv_out.conv.weight");
    /* wider channels: every conv misshapen */
    put_config(sub, "{\"model_type\": \"vttt_fsq_tokenizer\", \"image_size\": 16, \"channels\": 8, \"num_groups\": 2, "
                    "\"levels\": [3, 4]}");
    expect_load_error(sub, VTTT_EFORMAT, "shape");
    put_config(sub, good);
    /* a NaN weight */
    a->L[3].p[ENC_P_CONV_W][5] = NAN;
    ck_assert_int_eq(vttt_encoder_save(a, sub), 0);
    expect_load_error(sub, VTTT_EFORMAT, "non-finite");
    /* a truncated weights file */
    snprintf(path, sizeof path, "%s/model.safetensors", sub);
    size_t n;
    char *w = tu_read_file(path, &n);
    tu_write_file(path, w, n / 2);
    expect_load_error(sub, VTTT_EFORMAT, "model.safetensors");
    /* a tensor missing: the oracle's file has other names? use an LM-like file */
    vttt_st_tensor t = {.name = "encoder.conv_in.conv.weight", .dtype = VTTT_ST_F32, .ndim = 1, .shape = {4},
                        .data = w, .nbytes = 16};
    ck_assert_int_eq(vttt_st_write(path, &t, 1, NULL, 0, NULL), 0);
    expect_load_error(sub, VTTT_EFORMAT, "tensors");
    free(w), free(good);
    vttt_encoder_free(&a);
    tu_rm_rf(dir);
}
END_TEST

START_TEST(config_check) {
    vttt_encoder_config c = vttt_encoder_default_config();
    tu_log lg;
    vttt_logger l = tu_log_capture(&lg, VTTT_LOG_ERROR, 0);
    ck_assert_int_eq(vttt_encoder_config_check(&c, &l), 0);
    ck_assert_int_eq(c.image_size, 64);
    ck_assert_int_eq(enc_fsq_vocab(&c), 1000);
    c.image_size = 60;
    ck_assert_int_eq(vttt_encoder_config_check(&c, &l), VTTT_EINVAL);
    ck_assert(strstr(lg.text, "image_size") != NULL);
    c = vttt_encoder_default_config(), c.num_groups = 5;
    ck_assert_int_eq(vttt_encoder_config_check(&c, &l), VTTT_EINVAL);
    ck_assert(strstr(lg.text, "num_groups") != NULL);
    vttt_encoder *e = NULL;
    ck_assert_int_eq(vttt_encoder_init(&e, &c, 0, &l), VTTT_EINVAL);
    ck_assert_ptr_null(e);
    c = vttt_encoder_default_config();
    ck_assert(vttt_encoder_forward_flops(&c) > vttt_encoder_encode_flops(&c));
    ck_assert(vttt_encoder_encode_flops(&c) > 0);
}
END_TEST

/* ---- the trainer's data ---------------------------------------------------- */

static void write_shard(const char *path, int S, int frames, int channels) {
    vttt_frame_shard_info in = {.width = S, .height = S, .channels = channels, .fps_num = 25, .fps_den = 1};
    snprintf(in.source, sizeof in.source, "%s", path);
    vttt_frame_shard_writer *w = NULL;
    ck_assert_int_eq(vttt_frame_shard_writer_open(&w, path, &in, NULL), 0);
    uint8_t *f = malloc((size_t)S * S * channels);
    for (int i = 0; i < frames; i++) {
        memset(f, i, (size_t)S * S * channels);
        ck_assert_int_eq(vttt_frame_shard_writer_write(w, f, 1), 0);
    }
    ck_assert_int_eq(vttt_frame_shard_writer_finish(&w, 0), 0);
    free(f);
}

START_TEST(data_split_and_errors) {
    char dir[256], a[300], b[300], c[300], d[300];
    tu_tmpdir(dir, sizeof dir, "enc");
    snprintf(a, sizeof a, "%s/b.vfr", dir), snprintf(b, sizeof b, "%s/a.vfr", dir);
    write_shard(a, 16, 10, 3), write_shard(b, 16, 6, 3);
    char **paths = NULL;
    int n = 0;
    const char *args[] = {dir};
    ck_assert_int_eq(vttt_encoder_frames_list(args, 1, &paths, &n, NULL), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(paths[0], b); /* sorted by name */
    enc_data data;
    ck_assert_int_eq(enc_data_open(&data, paths, n, 2, NULL), 0);
    ck_assert_int_eq(enc_data_train(&data), 4 + 8);
    ck_assert_int_eq(enc_data_val(&data), 4);
    uint8_t f[16 * 16 * 3];
    ck_assert_int_eq(enc_data_read(&data, 0, 4, f), 0); /* the second shard's first */
    ck_assert_int_eq(f[0], 0);
    ck_assert_int_eq(enc_data_read(&data, 0, 3, f), 0);
    ck_assert_int_eq(f[0], 3);
    ck_assert_int_eq(enc_data_read(&data, 1, 0, f), 0); /* a.vfr's frame 4 */
    ck_assert_int_eq(f[0], 4);
    ck_assert_int_eq(enc_data_read(&data, 1, 3, f), 0); /* b.vfr's frame 9 */
    ck_assert_int_eq(f[0], 9);
    ck_assert_int_eq(enc_data_read(&data, 1, 4, f), VTTT_EINVAL);
    enc_data_close(&data);
    tu_log lg;
    vttt_logger l = tu_log_capture(&lg, VTTT_LOG_ERROR, 0);
    ck_assert_int_eq(enc_data_open(&data, paths, n, 6, &l), VTTT_EINVAL); /* a.vfr has only 6 */
    ck_assert(strstr(lg.text, "a.vfr") && strstr(lg.text, "--val-frames"));
    vttt_encoder_frames_free(&paths, n);
    ck_assert_ptr_null(paths);
    /* a shard of other size, of gray frames, a truncated one, a missing one */
    snprintf(c, sizeof c, "%s/c.vfr", dir), write_shard(c, 8, 4, 3);
    const char *mixed[] = {a, c};
    ck_assert_int_eq(vttt_encoder_frames_list(mixed, 2, &paths, &n, NULL), 0);
    ck_assert_int_eq(enc_data_open(&data, paths, n, 0, &l), VTTT_EINVAL);
    ck_assert(strstr(lg.text, "c.vfr") != NULL);
    vttt_encoder_frames_free(&paths, n);
    snprintf(d, sizeof d, "%s/gray.vfr", dir), write_shard(d, 16, 4, 1);
    const char *gray[] = {d};
    ck_assert_int_eq(vttt_encoder_frames_list(gray, 1, &paths, &n, NULL), 0);
    ck_assert_int_eq(enc_data_open(&data, paths, n, 0, &l), VTTT_EINVAL);
    ck_assert(strstr(lg.text, "RGB") != NULL);
    vttt_encoder_frames_free(&paths, n);
    size_t sz;
    char *raw = tu_read_file(a, &sz);
    tu_write_file(a, raw, sz - 100);
    free(raw);
    const char *trunc[] = {a};
    ck_assert_int_eq(vttt_encoder_frames_list(trunc, 1, &paths, &n, NULL), 0);
    ck_assert_int_eq(enc_data_open(&data, paths, n, 0, &l), VTTT_EFORMAT);
    vttt_encoder_frames_free(&paths, n);
    const char *missing[] = {"/nonexistent/x.vfr"};
    ck_assert_int_eq(vttt_encoder_frames_list(missing, 1, &paths, &n, &l), VTTT_EIO);
    ck_assert(strstr(lg.text, "/nonexistent/x.vfr") != NULL);
    tu_rm_rf(dir);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("encoder");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fsq_codes_roundtrip);
    tcase_add_test(tc, fsq_range);
    tcase_add_test(tc, fsq_straight_through);
    tcase_add_test(tc, levels_parse_rejects);
    tcase_add_test(tc, config_check);
    tcase_add_test(tc, fd_params_and_input);
    tcase_add_test(tc, backward_accumulates);
    tcase_add_test(tc, oracle_dump);
    tcase_add_test(tc, encode_decode_roundtrip);
    tcase_add_test(tc, nonfinite_outputs_refused);
    tcase_add_loop_test(tc, device_path_matches_cpu, 0, 2);
    tcase_add_test(tc, save_load_roundtrip);
    tcase_add_test(tc, load_rejects_bad_dirs);
    tcase_add_test(tc, data_split_and_errors);
    return tu_run("encoder", tc, CK_FORK_GETENV);
}
