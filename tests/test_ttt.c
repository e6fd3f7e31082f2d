/*
 * TTT-Linear / TTT-MLP layer tests: the three forward computations agree
 * (dual-form prefill, primal form, decode token by token, and chunked
 * prefill), every gradient agrees with central finite differences, the
 * checkpoint group size does not change gradients, decode memory is
 * constant, and bad input gets an error code.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "ttt.h"

/* Forms must agree to this relative error (max abs diff / max abs) in fp32. */
#define FORM_TOL 1e-5

typedef struct {
    vttt_layer_kind kind;
    int D, H, b, share_qk, use_gate;
} layer_case;

static const layer_case cases[] = {
    {VTTT_LAYER_TTT_LINEAR, 32, 4, 16, 0, 0}, {VTTT_LAYER_TTT_MLP, 32, 4, 16, 0, 0},
    {VTTT_LAYER_TTT_LINEAR, 32, 2, 16, 1, 1}, {VTTT_LAYER_TTT_MLP, 32, 2, 16, 1, 1},
    {VTTT_LAYER_TTT_MLP, 48, 3, 8, 1, 0},     {VTTT_LAYER_TTT_LINEAR, 16, 1, 4, 0, 1},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* A layer with random parameters at a general point (nonzero biases and
 * token offsets, non-unit norms) so every gradient path is exercised. */
static vttt_layer *make_layer(const layer_case *c, uint64_t seed) {
    vttt_layer_config cfg = vttt_layer_default_config(c->kind, c->D, c->H);
    cfg.mini_batch = c->b;
    cfg.share_qk = c->share_qk;
    cfg.use_gate = c->use_gate;
    vttt_layer *l = NULL;
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, NULL), VTTT_OK);
    tu_layer_randomize(l, seed, 0.3f);
    vttt_param_info idx = tu_layer_param(l, "learnable_token_idx");
    for (int64_t j = 0; j < idx.numel; j++) idx.data[j] *= 0.2f;
    return l;
}

START_TEST(test_forms_agree) {
    const int Ts[] = {1, 5, 16, 17, 37, 64};
    for (int ci = 0; ci < NCASES; ci++) {
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
            const layer_case *c = &cases[ci];
            int T = Ts[ti], B = 2, D = c->D;
            vttt_layer *l = make_layer(c, 100 + ci);
            tu_rng r;
            tu_seed(&r, 7 + ti);
            size_t n = (size_t)B * T * D;
            float *x = tu_alloc_normal(&r, n, 1.0f);
            float *yd = calloc(n, 4), *yp = calloc(n, 4), *yt = calloc(n, 4), *yc = calloc(n, 4), *ytr = calloc(n, 4);
            ck_assert_int_eq(vttt_layer_forward(l, yd, x, B, T, VTTT_FORM_DUAL, 0), VTTT_OK);
            ck_assert_int_eq(vttt_layer_forward(l, yp, x, B, T, VTTT_FORM_PRIMAL, 0), VTTT_OK);
            ck_assert_int_eq(vttt_layer_forward(l, ytr, x, B, T, VTTT_FORM_DUAL, 1), VTTT_OK);
            /* decode one token at a time, both sequences in one batch */
            vttt_state *st = NULL;
            ck_assert_int_eq(vttt_state_init(&st, l, B, 0), VTTT_OK);
            float *xt = malloc((size_t)B * D * 4), *ot = malloc((size_t)B * D * 4);
            for (int t = 0; t < T; t++) {
                for (int bi = 0; bi < B; bi++) memcpy(xt + bi * D, x + ((size_t)bi * T + t) * D, D * 4);
                ck_assert_int_eq(vttt_layer_decode(l, st, ot, xt), VTTT_OK);
                for (int bi = 0; bi < B; bi++) memcpy(yt + ((size_t)bi * T + t) * D, ot + bi * D, D * 4);
            }
            /* prefill in uneven chunks, continuing mid mini-batch */
            vttt_state_reset(st);
            int chunks[] = {3, 14, 1, 20, 100};
            for (int t = 0, k = 0; t < T; k++) {
                int len = chunks[k] < T - t ? chunks[k] : T - t;
                float *xc = malloc((size_t)B * len * D * 4), *oc = malloc((size_t)B * len * D * 4);
                for (int bi = 0; bi < B; bi++) memcpy(xc + (size_t)bi * len * D, x + ((size_t)bi * T + t) * D, (size_t)len * D * 4);
                ck_assert_int_eq(vttt_layer_prefill(l, st, oc, xc, len), VTTT_OK);
                for (int bi = 0; bi < B; bi++) memcpy(yc + ((size_t)bi * T + t) * D, oc + (size_t)bi * len * D, (size_t)len * D * 4);
                free(xc);
                free(oc);
                t += len;
            }
            ck_assert_int_eq((int)vttt_state_position(st), T);
            double e1 = tu_rel_err(yd, yp, n), e2 = tu_rel_err(yt, yp, n), e3 = tu_rel_err(yc, yp, n),
                   e4 = tu_rel_err(ytr, yp, n);
            if (e1 > FORM_TOL || e2 > FORM_TOL || e3 > FORM_TOL || e4 > FORM_TOL)
                ck_abort_msg("case %d T=%d: dual %.2e decode %.2e chunked %.2e train %.2e vs primal", ci, T, e1, e2,
                             e3, e4);
            vttt_state_free(&st);
            free(xt), free(ot), free(x), free(yd), free(yp), free(yt), free(yc), free(ytr);
            vttt_layer_free(&l);
        }
    }
}
END_TEST

/* L = sum(y * r) in double, for finite differences. */
static double loss_of(vttt_layer *l, const float *x, const float *r, float *y, int B, int T) {
    ck_assert_int_eq(vttt_layer_forward(l, y, x, B, T, VTTT_FORM_DUAL, 0), VTTT_OK);
    size_t n = (size_t)B * T * vttt_layer_get_config(l)->width;
    double L = 0;
    for (size_t i = 0; i < n; i++) L += (double)y[i] * r[i];
    return L;
}

/* loss_of's arguments, for tu_central_diff. */
typedef struct {
    vttt_layer *l;
    const float *x, *r;
    float *y;
    int B, T;
} loss_ctx;

static double ctx_loss(void *p) {
    loss_ctx *c = p;
    return loss_of(c->l, c->x, c->r, c->y, c->B, c->T);
}

/* Central differences on a few entries of every parameter and of x. fp32
 * forward, so eps is large-ish and the tolerance is relative to the
 * largest analytic gradient of that tensor (fp32 FD noise ~1e-3). */
#define FD_EPS 2e-3f
#define FD_TOL 2e-2

static void fd_check(float *v, const float *g, size_t n, loss_ctx *ctx, const char *name) {
    double gmax = tu_max_abs(g, n);
    if (gmax == 0) return;
    size_t step = n > 12 ? n / 12 : 1;
    for (size_t i = 0; i < n; i += step) {
        double fd = tu_central_diff(&v[i], FD_EPS, ctx_loss, ctx);
        if (fabs(fd - g[i]) > FD_TOL * gmax)
            ck_abort_msg("%s[%zu]: analytic %.6g, finite difference %.6g (max |grad| %.3g)", name, i, g[i], fd, gmax);
    }
}

START_TEST(test_grad_fd) {
    for (int ci = 0; ci < NCASES; ci++) {
        const layer_case *c = &cases[ci];
        int B = 2, T = 21, D = c->D;
        vttt_layer *l = make_layer(c, 200 + ci);
        tu_rng rg;
        tu_seed(&rg, 31);
        size_t n = (size_t)B * T * D;
        float *x = tu_alloc_normal(&rg, n, 1.0f), *r = tu_alloc_normal(&rg, n, 1.0f);
        float *y = malloc(n * 4), *dx = malloc(n * 4);
        vttt_layer_zero_grads(l);
        ck_assert_int_eq(vttt_layer_forward(l, y, x, B, T, VTTT_FORM_DUAL, 1), VTTT_OK);
        ck_assert_int_eq(vttt_layer_backward(l, dx, r), VTTT_OK);
        loss_ctx ctx = {l, x, r, y, B, T};
        fd_check(x, dx, n, &ctx, "x");
        vttt_param_info p[32], g[32];
        int np = vttt_layer_param_list(l, 0, p, 32);
        vttt_layer_param_list(l, 1, g, 32);
        for (int i = 0; i < np; i++) fd_check(p[i].data, g[i].data, (size_t)p[i].numel, &ctx, p[i].name);
        free(x), free(r), free(y), free(dx);
        vttt_layer_free(&l);
    }
}
END_TEST

/* Gradients do not depend on how many mini-batches share a checkpoint. */
START_TEST(test_ckpt_groups) {
    const layer_case *c = &cases[3];
    int B = 1, T = 150, D = c->D;
    tu_rng rg;
    tu_seed(&rg, 5);
    size_t n = (size_t)B * T * D;
    float *x = tu_alloc_normal(&rg, n, 1.0f), *r = tu_alloc_normal(&rg, n, 1.0f);
    float *y = malloc(n * 4), *dx = malloc(n * 4), *dx0 = malloc(n * 4);
    const int groups[] = {0, 1, 2, 5, 100};
    float *g0 = NULL;
    size_t np = 0;
    for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
        vttt_layer *l = make_layer(c, 9);
        vttt_layer_config cfg = *vttt_layer_get_config(l);
        cfg.ckpt_group = groups[gi];
        vttt_layer *l2 = NULL;
        ck_assert_int_eq(vttt_layer_init(&l2, &cfg, NULL), VTTT_OK);
        vttt_param_info a[32], b2[32], gg[32];
        int k = vttt_layer_param_list(l, 0, a, 32);
        vttt_layer_param_list(l2, 0, b2, 32);
        for (int i = 0; i < k; i++) memcpy(b2[i].data, a[i].data, a[i].numel * 4);
        ck_assert_int_eq(vttt_layer_forward(l2, y, x, B, T, VTTT_FORM_DUAL, 1), VTTT_OK);
        ck_assert_int_eq(vttt_layer_backward(l2, dx, r), VTTT_OK);
        k = vttt_layer_param_list(l2, 1, gg, 32);
        if (!g0) {
            for (int i = 0; i < k; i++) np += gg[i].numel;
            g0 = malloc(np * 4);
            size_t o = 0;
            for (int i = 0; i < k; i++) memcpy(g0 + o, gg[i].data, gg[i].numel * 4), o += gg[i].numel;
            memcpy(dx0, dx, n * 4);
        } else {
            size_t o = 0;
            for (int i = 0; i < k; i++) {
                ck_assert_msg(tu_rel_err(gg[i].data, g0 + o, gg[i].numel) < 1e-6, "group %d: %s differs", groups[gi],
                              gg[i].name);
                o += gg[i].numel;
            }
            ck_assert(tu_rel_err(dx, dx0, n) < 1e-6);
        }
        vttt_layer_free(&l);
        vttt_layer_free(&l2);
    }
    free(g0), free(x), free(r), free(y), free(dx), free(dx0);
}
END_TEST

/* A prefill longer than the internal chunk (2048 tokens) with B > 1, where
 * each chunk is gathered from strided sequences, equals the unchunked
 * training forward. */
START_TEST(test_long_prefill_chunks) {
    layer_case c = {VTTT_LAYER_TTT_MLP, 16, 2, 16, 1, 1};
    vttt_layer *l = make_layer(&c, 11);
    int B = 2, T = 4100;
    size_t n = (size_t)B * T * c.D;
    tu_rng r;
    tu_seed(&r, 12);
    float *x = tu_alloc_normal(&r, n, 1.0f), *y1 = malloc(n * 4), *y2 = malloc(n * 4);
    ck_assert_int_eq(vttt_layer_forward(l, y1, x, B, T, VTTT_FORM_DUAL, 0), VTTT_OK);
    ck_assert_int_eq(vttt_layer_forward(l, y2, x, B, T, VTTT_FORM_DUAL, 1), VTTT_OK);
    ck_assert_msg(tu_rel_err(y1, y2, n) <= FORM_TOL, "chunked prefill differs: %.2e", tu_rel_err(y1, y2, n));
    free(x), free(y1), free(y2);
    vttt_layer_free(&l);
}
END_TEST

START_TEST(test_decode_memory_constant) {
    vttt_layer *l = make_layer(&cases[1], 3);
    vttt_state *st = NULL;
    ck_assert_int_eq(vttt_state_init(&st, l, 1, 0), VTTT_OK);
    size_t b0 = vttt_state_bytes(st);
    float x[32], y[32];
    for (int t = 0; t < 1000; t++) {
        for (int i = 0; i < 32; i++) x[i] = sinf(0.1f * t + i);
        ck_assert_int_eq(vttt_layer_decode(l, st, y, x), VTTT_OK);
        ck_assert_uint_eq(vttt_state_bytes(st), b0);
    }
    vttt_state_free(&st);
    vttt_layer_free(&l);
}
END_TEST

START_TEST(test_bad_input) {
    vttt_logger lg = tu_log_quiet();
    vttt_layer_config cfg = vttt_layer_default_config(VTTT_LAYER_TTT_MLP, 30, 4);
    vttt_layer *l = NULL;
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, &lg), VTTT_EINVAL); /* 30 % 4 */
    ck_assert_ptr_null(l);
    cfg = vttt_layer_default_config(VTTT_LAYER_TTT_MLP, 32, 4);
    cfg.mini_batch = 0;
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, &lg), VTTT_EINVAL);
    cfg.mini_batch = 16;
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, &lg), VTTT_OK);
    float x[64 * 32], y[64 * 32], dx[64 * 32];
    for (int i = 0; i < 64 * 32; i++) x[i] = 0.01f * i;
    ck_assert_int_eq(vttt_layer_forward(l, y, x, 1, 0, VTTT_FORM_DUAL, 0), VTTT_EINVAL);
    ck_assert_int_eq(vttt_layer_forward(l, y, x, 0, 5, VTTT_FORM_DUAL, 0), VTTT_EINVAL);
    ck_assert_int_eq(vttt_layer_backward(l, dx, y), VTTT_EINVAL); /* no train forward yet */
    x[77] = NAN;
    ck_assert_int_eq(vttt_layer_forward(l, y, x, 1, 64, VTTT_FORM_DUAL, 0), VTTT_ENAN);
    x[77] = INFINITY;
    ck_assert_int_eq(vttt_layer_forward(l, y, x, 1, 64, VTTT_FORM_DUAL, 1), VTTT_ENAN);
    x[77] = 0;
    ck_assert_int_eq(vttt_layer_forward(l, y, x, 1, 64, VTTT_FORM_PRIMAL, 1), VTTT_ENOTSUP);
    vttt_state *st = NULL;
    ck_assert_int_eq(vttt_state_init(&st, l, 0, 0), VTTT_EINVAL);
    ck_assert_int_eq(vttt_state_init(&st, l, 1, 0), VTTT_OK);
    ck_assert_int_eq(vttt_layer_prefill(l, st, y, x, 0), VTTT_EINVAL);
    x[3] = NAN;
    ck_assert_int_eq(vttt_layer_decode(l, st, y, x), VTTT_ENAN);
    ck_assert_int_eq((int)vttt_state_position(st), 0);
    vttt_state_free(&st);
    vttt_layer_free(&l);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_forms_agree);
    tcase_add_test(tc, test_grad_fd);
    tcase_add_test(tc, test_ckpt_groups);
    tcase_add_test(tc, test_long_prefill_chunks);
    tcase_add_test(tc, test_decode_memory_constant);
    tcase_add_test(tc, test_bad_input);
    return tu_run("ttt", tc, CK_FORK_GETENV);
}
