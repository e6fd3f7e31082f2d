/* The device layer (vttt_layer_dev, ttt/layer_dev.c) on the CPU backend
 * against the CPU layer. On the CPU backend the device path runs the same
 * steps it runs on a GPU (backend-table ops, the layer_dev ops table, one
 * arena, state objects) with the CPU kernels behind them, so this checks
 * the wiring itself: buffer layouts, the order of the outer and inner
 * steps, the backward's accumulation into every parameter gradient,
 * positions and mini-batch boundaries in prefill/decode, the conv state of
 * share_qk, the gate. tests/test_ttt_cuda.c runs the same harness on a GPU.
 *
 * Tolerance: 1e-5 relative (max |dev - CPU| / max |CPU| per tensor). Both
 * sides are fp32 with the same kernels; they differ only where OpenBLAS
 * splits a product differently (the layer runs the inner loop with one
 * BLAS thread per head, the flat inner loop too, but the projections and
 * backward GEMMs see other shapes); observed: exactly 0 (the same ops in the
 * same order), and a dropped gradient term or a wrong position fails with
 * errors of 0.1-1. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "layer_dev.h"
#include "testutil.h"
#include "ttt.h"

#define TOL 1e-5

typedef struct {
    vttt_layer_kind kind;
    int D, H, b;
    int share_qk, gate;
    int B, T, n_prefill, n_decode;
} dev_case;

static const dev_case cases[] = {
    {VTTT_LAYER_TTT_LINEAR, 32, 4, 16, 0, 0, 2, 40, 13, 7}, /* prefill ends mid-mini-batch; decode crosses one */
    {VTTT_LAYER_TTT_MLP, 32, 4, 16, 0, 1, 2, 37, 16, 18},    /* gate; trailing partial mini-batch */
    {VTTT_LAYER_TTT_MLP, 32, 2, 8, 1, 0, 3, 30, 5, 12},      /* share_qk: conv state across calls */
    {VTTT_LAYER_TTT_LINEAR, 16, 2, 4, 1, 1, 1, 21, 0, 21},   /* decode only, share_qk and gate */
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static vttt_layer *make_layer(const dev_case *c, uint64_t seed) {
    vttt_layer_config cfg = vttt_layer_default_config(c->kind, c->D, c->H);
    cfg.mini_batch = c->b;
    cfg.share_qk = c->share_qk;
    cfg.use_gate = c->gate;
    vttt_layer *l = NULL;
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, NULL), VTTT_OK);
    tu_layer_randomize(l, seed, 1.0f);
    return l;
}

START_TEST(test_against_cpu_layer) {
    const dev_case *c = &cases[_i];
    vttt_layer *l = make_layer(c, 50 + (uint64_t)_i);
    size_t n = (size_t)c->B * c->T * c->D;
    tu_rng r;
    tu_seed(&r, 3 + (uint64_t)_i);
    float *x = tu_alloc_normal(&r, n, 1.0f), *dy = tu_alloc_normal(&r, n, 1.0f);
    ttt_layer_dev_check res;
    int err = ttt_layer_dev_check_run(l, vttt_backend_cpu(), x, dy, c->B, c->T, c->n_prefill, c->n_decode, &res);
    ck_assert_msg(err == VTTT_OK, "case %d: %s", _i, vttt_strerror(err));
    printf("case %d: y %.2g dx %.2g params %.2g (%s) gen y %.2g state %.2g\n", _i, res.y, res.dx, res.dparams,
           res.worst, res.gen_y, res.gen_state);
    ck_assert_msg(res.y <= TOL, "case %d: forward y rel err %g", _i, res.y);
    ck_assert_msg(res.dx <= TOL, "case %d: dx rel err %g", _i, res.dx);
    ck_assert_msg(res.dparams <= TOL, "case %d: gradient of %s rel err %g", _i, res.worst, res.dparams);
    ck_assert_msg(res.gen_y <= TOL, "case %d: prefill/decode outputs rel err %g", _i, res.gen_y);
    ck_assert_msg(res.gen_state <= TOL, "case %d: final W0/A rel err %g", _i, res.gen_state);
    ck_assert(isnan(res.bf16_y)); /* the CPU ops have no bf16 projections */
    ck_assert_int_eq(res.replays, 0); /* nor graphs */
    free(x), free(dy);
    vttt_layer_free(&l);
}
END_TEST

/* Misuse is an error code with a message, not a crash. */
START_TEST(test_errors) {
    const vttt_backend *cpu = vttt_backend_cpu();
    vttt_layer_config cfg = vttt_layer_default_config(VTTT_LAYER_ATTENTION, 16, 2);
    vttt_layer *l = NULL;
    vttt_layer_dev *d = NULL;
    vttt_logger quiet = tu_log_quiet();
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, &quiet), VTTT_OK);
    ck_assert_int_eq(vttt_layer_dev_init(&d, l, cpu, 1, 16), VTTT_ENOTSUP);
    ck_assert_ptr_null(d);
    vttt_layer_free(&l);
    cfg = vttt_layer_default_config(VTTT_LAYER_TTT_MLP, 16, 2);
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, &quiet), VTTT_OK);
    ck_assert_int_eq(vttt_layer_dev_init(&d, l, cpu, 0, 16), VTTT_EINVAL);
    ck_assert_int_eq(vttt_layer_dev_init(&d, l, cpu, 2, 16), VTTT_OK);
    float *buf = calloc((size_t)3 * 32 * 16, sizeof(float));
    ck_assert_int_eq(vttt_layer_dev_backward(d, buf, buf), VTTT_EINVAL);            /* no training forward */
    ck_assert_int_eq(vttt_layer_dev_forward(d, buf, buf, 3, 16, 1), VTTT_EINVAL);    /* B > max_B */
    ck_assert_int_eq(vttt_layer_dev_forward(d, buf, buf, 2, 17, 1), VTTT_EINVAL);    /* T > max_T */
    ck_assert_int_eq(vttt_layer_dev_forward(d, buf, buf, 2, 16, 1), VTTT_OK);
    vttt_state_dev *s = NULL;
    ck_assert_int_eq(vttt_state_dev_init(&s, d, 2), VTTT_OK);
    ck_assert_int_eq(vttt_layer_dev_prefill(d, s, buf, buf, 17), VTTT_EINVAL);       /* B=2 and T > max_T */
    ck_assert_int_eq(vttt_layer_dev_prefill(d, s, buf, buf, 5), VTTT_OK);
    ck_assert_int_eq(vttt_state_dev_position(s), 5);
    ck_assert_int_eq(vttt_layer_dev_backward(d, buf, buf), VTTT_EINVAL);            /* prefill overwrote it */
    ck_assert_int_eq(vttt_state_dev_reset(s), VTTT_OK);
    ck_assert_int_eq(vttt_state_dev_position(s), 0);
    vttt_state_dev_free(&s);
    ck_assert_ptr_null(s);
    vttt_layer_dev_free(&d);
    ck_assert_ptr_null(d);
    free(buf);
    vttt_layer_free(&l);
}
END_TEST

/* B = 1 prefills longer than max_T in chunks, with the same outputs as one
 * CPU prefill. */
START_TEST(test_long_prefill_chunks) {
    const dev_case c = {VTTT_LAYER_TTT_MLP, 16, 2, 4, 0, 0, 1, 45, 0, 0};
    vttt_layer *l = make_layer(&c, 9);
    int T = 45, D = 16;
    tu_rng r;
    tu_seed(&r, 1);
    float *x = tu_alloc_normal(&r, (size_t)T * D, 1.0f), *y = malloc((size_t)T * D * sizeof(float));
    float *yd = malloc((size_t)T * D * sizeof(float));
    vttt_state *cs = NULL;
    vttt_layer_dev *d = NULL;
    vttt_state_dev *ds = NULL;
    ck_assert_int_eq(vttt_state_init(&cs, l, 1, 0), VTTT_OK);
    ck_assert_int_eq(vttt_layer_prefill(l, cs, y, x, T), VTTT_OK);
    ck_assert_int_eq(vttt_layer_dev_init(&d, l, vttt_backend_cpu(), 1, 10), VTTT_OK); /* chunks of 10 tokens */
    ck_assert_int_eq(vttt_state_dev_init(&ds, d, 1), VTTT_OK);
    ck_assert_int_eq(vttt_layer_dev_prefill(d, ds, yd, x, T), VTTT_OK);
    double e = tu_rel_err(yd, y, (size_t)T * D);
    ck_assert_msg(e <= TOL, "chunked prefill rel err %g", e);
    vttt_state_dev_free(&ds);
    vttt_layer_dev_free(&d);
    vttt_state_free(&cs);
    free(x), free(y), free(yd);
    vttt_layer_free(&l);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("layer_dev");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_against_cpu_layer, 0, NCASES);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_long_prefill_chunks);
    return tu_run("layer_dev", tc, CK_FORK);
}
