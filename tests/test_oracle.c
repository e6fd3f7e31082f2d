/*
 * Layer outputs and every gradient against the dumps of the independent
 * PyTorch autograd oracle (tools/ttt_oracle.py, float64). The dumps hold
 * the config (metadata), x, every parameter under its reference name, dy,
 * y, grad.x and grad.<param>.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "testutil.h"
#include "ttt.h"

/* fp32 against the float64 oracle, relative to each tensor's largest value
 * (the oracle run in fp32 differs from its float64 self by ~1.3e-6). */
#define ORACLE_TOL 2e-5

static int meta_int(const vttt_st *st, const char *k) {
    const char *v = vttt_st_meta(st, k);
    ck_assert_msg(v != NULL, "dump lacks metadata %s", k);
    return atoi(v);
}

static void check_against(const vttt_st *st, const char *name, const float *got, size_t n, const char *file) {
    float *want = malloc(n * sizeof(float));
    vttt_st_tensor t;
    ck_assert_int_eq(vttt_st_find(st, name, &t), VTTT_OK);
    ck_assert_int_eq(vttt_st_read_f32(st, name, want, t.ndim, t.shape), VTTT_OK);
    double e = tu_rel_err(got, want, n);
    ck_assert_msg(e <= ORACLE_TOL, "%s: %s differs from the oracle: rel err %.3e", file, name, e);
    free(want);
}

static void run_dump(const char *file) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", VTTT_TEST_DATA, file);
    vttt_st *st = NULL;
    ck_assert_msg(vttt_st_open(&st, path, NULL) == VTTT_OK, "cannot open %s", path);
    const char *kind = vttt_st_meta(st, "kind");
    ck_assert_ptr_nonnull(kind);
    vttt_layer_kind k = !strcmp(kind, "ttt_linear") ? VTTT_LAYER_TTT_LINEAR
                        : !strcmp(kind, "ttt_mlp")  ? VTTT_LAYER_TTT_MLP
                                                    : VTTT_LAYER_ATTENTION;
    int B = meta_int(st, "B"), T = meta_int(st, "T"), D = meta_int(st, "width");
    vttt_layer_config cfg = vttt_layer_default_config(k, D, meta_int(st, "num_heads"));
    if (k != VTTT_LAYER_ATTENTION) {
        cfg.mini_batch = meta_int(st, "mini_batch");
        cfg.base_lr = (float)atof(vttt_st_meta(st, "base_lr"));
        cfg.share_qk = meta_int(st, "share_qk");
        cfg.use_gate = meta_int(st, "use_gate");
        cfg.conv_kernel = meta_int(st, "conv_kernel");
    }
    cfg.rope_theta = (float)atof(vttt_st_meta(st, "rope_theta"));
    vttt_layer *l = NULL;
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, NULL), VTTT_OK);
    vttt_param_info p[32], g[32];
    int np = vttt_layer_param_list(l, 0, p, 32);
    vttt_layer_param_list(l, 1, g, 32);
    for (int i = 0; i < np; i++)
        ck_assert_msg(vttt_st_read_f32(st, p[i].name, p[i].data, p[i].ndim, p[i].shape) == VTTT_OK,
                      "%s: parameter %s missing or misshapen", file, p[i].name);
    size_t n = (size_t)B * T * D;
    int64_t shape[3] = {B, T, D};
    float *x = malloc(n * 4), *dy = malloc(n * 4), *y = malloc(n * 4), *dx = malloc(n * 4);
    ck_assert_int_eq(vttt_st_read_f32(st, "x", x, 3, shape), VTTT_OK);
    ck_assert_int_eq(vttt_st_read_f32(st, "dy", dy, 3, shape), VTTT_OK);
    vttt_layer_zero_grads(l);
    ck_assert_int_eq(vttt_layer_forward(l, y, x, B, T, VTTT_FORM_DUAL, 1), VTTT_OK);
    check_against(st, "y", y, n, file);
    ck_assert_int_eq(vttt_layer_backward(l, dx, dy), VTTT_OK);
    check_against(st, "grad.x", dx, n, file);
    for (int i = 0; i < np; i++) {
        char gname[128];
        snprintf(gname, sizeof gname, "grad.%s", g[i].name);
        check_against(st, gname, g[i].data, (size_t)g[i].numel, file);
    }
    if (k != VTTT_LAYER_ATTENTION) { /* the primal form against the oracle too */
        ck_assert_int_eq(vttt_layer_forward(l, y, x, B, T, VTTT_FORM_PRIMAL, 0), VTTT_OK);
        check_against(st, "y", y, n, file);
    }
    free(x), free(dy), free(y), free(dx);
    vttt_layer_free(&l);
    vttt_st_close(&st);
}

static const char *const dumps[] = {
    "oracle_ttt_linear_a.safetensors", "oracle_ttt_linear_b.safetensors", "oracle_ttt_linear_c.safetensors",
    "oracle_ttt_mlp_a.safetensors",    "oracle_ttt_mlp_b.safetensors",    "oracle_ttt_mlp_c.safetensors",
    "oracle_attention.safetensors",
};

START_TEST(test_oracle_dump) { run_dump(dumps[_i]); }
END_TEST

int main(void) {
    TCase *tc = tcase_create("dumps");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_oracle_dump, 0, (int)(sizeof dumps / sizeof dumps[0]));
    return tu_run("oracle", tc, CK_FORK_GETENV);
}
