/* A model's training step on a device (vttt_model_dev, ttt/model_dev.c)
 * on the CPU backend against the CPU model's train forward and backward:
 * the loss and the gradient of every parameter tensor (the model's and its
 * TTT layers'), for TTT-Linear and TTT-MLP, the Transformer and the Mamba
 * backbone (pre-conv, shared q/k, gate), tied and untied heads, ignored
 * targets, a video model's in-frame position embedding, and two steps in
 * a row (gradients accumulate on the device until copied out). On the CPU
 * backend the device path runs its own sequence of steps with the CPU
 * kernels behind them, so this checks the wiring; tests/test_ttt_cuda.c
 * runs the same comparison on a GPU.
 *
 * Tolerance 1e-5 relative (max |dev - CPU| / max |CPU| per tensor): the
 * same ops in a different order in two places (the mean loss's weight
 * applied inside the cross-entropy's backward instead of after it, the LM
 * head's gradient accumulated directly instead of through a scratch). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "testutil.h"
#include "ttt.h"

#define TOL 1e-5

typedef struct {
    vttt_layer_kind kind;
    const char *backbone;
    int tied, frame, B, T;
} model_case;

static const model_case cases[] = {
    {VTTT_LAYER_TTT_MLP, "transformer", 1, 0, 2, 21},
    {VTTT_LAYER_TTT_LINEAR, "mamba", 0, 0, 1, 32},
    {VTTT_LAYER_TTT_MLP, "mamba", 1, 8, 2, 24}, /* video: 8 tokens per frame, target shift 8 */
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static vttt_model *make_model(const model_case *c) {
    vttt_model_config cfg = vttt_model_default_config();
    vttt_logger quiet = tu_log_quiet();
    ck_assert_int_eq(vttt_model_config_preset(&cfg, "test", &quiet), VTTT_OK);
    ck_assert_int_eq(vttt_model_config_backbone(&cfg, c->backbone, &quiet), VTTT_OK);
    cfg.vocab_size = 61;
    cfg.seq_kind = c->kind;
    cfg.mini_batch_size = 8;
    cfg.tie_word_embeddings = c->tied;
    cfg.tokens_per_frame = c->frame;
    vttt_model *m = NULL;
    ck_assert_int_eq(vttt_model_init(&m, &cfg, NULL), VTTT_OK);
    vttt_model_init_weights(m, 11);
    /* the reference init leaves biases, norms and token offsets at 0 / 1:
     * move every tensor off them so that each gradient is exercised */
    int n = 0;
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    tu_rng r;
    tu_seed(&r, 3);
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < t[i].numel; j++) t[i].data[j] += 0.05f * tu_normal(&r);
    return m;
}

/* Copies of every tensor's gradient (in vttt_model_tensors order). */
static float **grads_copy(vttt_model *m) {
    int n = 0;
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    float **g = calloc((size_t)n, sizeof *g);
    ck_assert_ptr_nonnull(g);
    for (int i = 0; i < n; i++) {
        g[i] = malloc((size_t)t[i].numel * sizeof(float));
        ck_assert_ptr_nonnull(g[i]);
        memcpy(g[i], t[i].grad, (size_t)t[i].numel * sizeof(float));
    }
    return g;
}

START_TEST(test_step_against_cpu_model) {
    const model_case *c = &cases[_i];
    vttt_model *m = make_model(c);
    int N = c->B * c->T, n = 0;
    int32_t *tok = malloc((size_t)N * sizeof(int32_t)), *tgt = malloc((size_t)N * sizeof(int32_t));
    ck_assert(tok && tgt);
    for (int i = 0; i < N; i++) tok[i] = (i * 37 + 5) % 61, tgt[i] = i % 7 == 3 ? -1 : (i * 13 + 2) % 61;
    /* CPU: two steps (different targets), gradients accumulated */
    float l_cpu[2], l_dev[2];
    vttt_model_zero_grads(m);
    for (int s = 0; s < 2; s++) {
        ck_assert_int_eq(vttt_model_forward(m, tok, s ? tgt : NULL, c->B, c->T, 1, &l_cpu[s], NULL), VTTT_OK);
        ck_assert_int_eq(vttt_model_backward(m, 1.0f), VTTT_OK);
    }
    float **ref = grads_copy(m);
    /* the device */
    vttt_model_zero_grads(m);
    vttt_model_dev *d = NULL;
    ck_assert_int_eq(vttt_model_dev_init(&d, m, vttt_backend_cpu(), c->B, c->T), VTTT_OK);
    for (int s = 0; s < 2; s++)
        ck_assert_int_eq(vttt_model_dev_step(d, tok, s ? tgt : NULL, c->B, c->T, &l_dev[s]), VTTT_OK);
    ck_assert_int_eq(vttt_model_dev_grads_to_host(d), VTTT_OK);
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < n; i++) {
        double e = tu_rel_err(t[i].grad, ref[i], (size_t)t[i].numel);
        if (e > worst || !isfinite(e)) worst = e, worst_name = t[i].name;
        ck_assert_msg(tu_max_abs(ref[i], (size_t)t[i].numel) > 0.0, "%s: zero reference gradient", t[i].name);
    }
    printf("case %d: loss %.6f / %.6f (cpu %.6f / %.6f), worst gradient %s %.2g over %d tensors\n", _i, l_dev[0],
           l_dev[1], l_cpu[0], l_cpu[1], worst_name, worst, n);
    for (int s = 0; s < 2; s++)
        ck_assert_msg(fabs(l_dev[s] - l_cpu[s]) <= TOL * fabs(l_cpu[s]), "step %d: loss %g vs %g", s, l_dev[s],
                      l_cpu[s]);
    ck_assert_msg(worst <= TOL, "case %d: gradient of %s: rel err %g", _i, worst_name, worst);
    vttt_model_dev_free(&d);
    ck_assert_ptr_null(d);
    for (int i = 0; i < n; i++) free(ref[i]);
    free(ref), free(tok), free(tgt);
    vttt_model_free(&m);
}
END_TEST

/* Generation: a prefill with every position's logits, decode steps
 * across a mini-batch boundary, then a prefill of the rest with the last
 * position's logits, on both sides; B = 2. */
START_TEST(test_generation_against_cpu_model) {
    const model_case *c = &cases[_i];
    vttt_model *m = make_model(c);
    int B = 2, T = 29, V = 61, t1 = 9, nd = 7, N = B * T;
    int32_t *tok = malloc((size_t)N * sizeof(int32_t)), col[2];
    float *lc = malloc((size_t)N * V * sizeof(float)), *ld = malloc((size_t)N * V * sizeof(float));
    ck_assert(tok && lc && ld);
    for (int i = 0; i < N; i++) tok[i] = (i * 29 + 3) % V;
    vttt_model_state *cs = NULL;
    vttt_model_dev *d = NULL;
    vttt_model_dev_state *ds = NULL;
    ck_assert_int_eq(vttt_model_state_init(&cs, m, B, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_dev_init(&d, m, vttt_backend_cpu(), B, 8), VTTT_OK); /* prefills in chunks of 8 */
    ck_assert_int_eq(vttt_model_dev_state_init(&ds, d, B), VTTT_OK);
    /* (B, t1) prefill: the first t1 columns */
    int32_t *first = malloc((size_t)B * t1 * sizeof(int32_t)), *rest = malloc((size_t)N * sizeof(int32_t));
    ck_assert(first && rest);
    for (int b = 0; b < B; b++) memcpy(first + b * t1, tok + b * T, t1 * sizeof(int32_t));
    ck_assert_int_eq(vttt_model_prefill(m, cs, first, t1, lc, 1), VTTT_OK);
    ck_assert_int_eq(vttt_model_dev_prefill(d, ds, first, t1, ld, 1), VTTT_OK);
    double worst = tu_rel_err(ld, lc, (size_t)B * t1 * V);
    for (int k = 0; k < nd; k++) {
        for (int b = 0; b < B; b++) col[b] = tok[b * T + t1 + k];
        ck_assert_int_eq(vttt_model_decode(m, cs, col, lc), VTTT_OK);
        ck_assert_int_eq(vttt_model_dev_decode(d, ds, col, ld), VTTT_OK);
        worst = fmax(worst, tu_rel_err(ld, lc, (size_t)B * V));
    }
    int t2 = T - t1 - nd;
    for (int b = 0; b < B; b++) memcpy(rest + b * t2, tok + b * T + t1 + nd, t2 * sizeof(int32_t));
    ck_assert_int_eq(vttt_model_prefill(m, cs, rest, t2, lc, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_dev_prefill(d, ds, rest, t2, ld, 0), VTTT_OK);
    worst = fmax(worst, tu_rel_err(ld, lc, (size_t)B * V));
    ck_assert_int_eq(vttt_model_dev_state_position(ds), T);
    printf("generation %d: worst logits rel err %.2g\n", _i, worst);
    ck_assert_msg(worst <= TOL, "case %d: logits rel err %g", _i, worst);
    ck_assert_int_eq(vttt_model_dev_state_reset(ds), VTTT_OK);
    ck_assert_int_eq(vttt_model_dev_state_position(ds), 0);
    vttt_model_dev_state_free(&ds);
    ck_assert_ptr_null(ds);
    vttt_model_dev_free(&d);
    vttt_model_state_free(&cs);
    free(tok), free(lc), free(ld), free(first), free(rest);
    vttt_model_free(&m);
}
END_TEST

START_TEST(test_errors) {
    model_case c = {VTTT_LAYER_TTT_LINEAR, "transformer", 1, 0, 1, 16};
    vttt_model *m = make_model(&c);
    vttt_model_dev *d = NULL;
    ck_assert_int_eq(vttt_model_dev_init(&d, m, vttt_backend_cpu(), 0, 16), VTTT_EINVAL);
    ck_assert_int_eq(vttt_model_dev_init(&d, m, vttt_backend_cpu(), 1, 16), VTTT_OK);
    int32_t tok[17] = {0};
    ck_assert_int_eq(vttt_model_dev_step(d, tok, NULL, 1, 17, NULL), VTTT_EINVAL); /* T > max_T */
    tok[0] = 61; /* a token outside the vocabulary (not a target: the shift is 1) */
    ck_assert_int_eq(vttt_model_dev_step(d, tok, NULL, 1, 16, NULL), VTTT_EINVAL);
    tok[0] = 0, tok[4] = 61; /* ... and a target */
    ck_assert_int_eq(vttt_model_dev_step(d, tok, NULL, 1, 16, NULL), VTTT_EINVAL);
    vttt_model_dev_free(&d);
    vttt_model_free(&m);
    vttt_model_config cfg = vttt_model_default_config();
    ck_assert_int_eq(vttt_model_config_preset(&cfg, "test", NULL), VTTT_OK);
    cfg.seq_kind = VTTT_LAYER_ATTENTION;
    cfg.vocab_size = 61;
    ck_assert_int_eq(vttt_model_init(&m, &cfg, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_model_dev_init(&d, m, vttt_backend_cpu(), 1, 16), VTTT_ENOTSUP);
    vttt_model_free(&m);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("model_dev");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_step_against_cpu_model, 0, NCASES);
    tcase_add_loop_test(tc, test_generation_against_cpu_model, 0, NCASES);
    tcase_add_test(tc, test_errors);
    return tu_run("model_dev", tc, CK_FORK);
}
