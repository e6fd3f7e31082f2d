/*
 * The language model (ttt/model.h): model directories written in the
 * reference layout by the independent PyTorch oracle (tools/model_oracle.py)
 * load and give its logits, losses and gradients; backward against central
 * finite differences; prefill + decode against the full forward; windows
 * with a carried state against the full sequence, and their truncated
 * gradient; save/load round trips; malformed directories rejected.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "safetensors.h"
#include "testutil.h"

#define REF_DIR VTTT_TEST_DATA "/model_ref"
/* fp32 against the float64 oracle, relative to the largest reference value */
#define REF_TOL 1e-5
/* two fp32 computations of the same thing (dual form vs token steps) */
#define SAME_TOL 1e-5
#define FD_EPS 2e-3f
#define FD_TOL 2e-2
#define FD_FLOOR 1e-3 /* gradient scale below which a tensor counts as zero */

/* ---- helpers ------------------------------------------------------------ */

/* A small configuration of the given kind and backbone. */
static vttt_model_config small_config(vttt_layer_kind kind, const char *backbone, int tied, int tpf) {
    vttt_model_config c = vttt_model_default_config();
    ck_assert_int_eq(vttt_model_config_preset(&c, "test", NULL), VTTT_OK);
    c.vocab_size = 16, c.hidden_size = 16, c.intermediate_size = 24, c.num_hidden_layers = 2;
    c.num_attention_heads = 2, c.mini_batch_size = 4, c.max_position_embeddings = 64;
    c.seq_kind = kind, c.tie_word_embeddings = tied, c.tokens_per_frame = tpf;
    ck_assert_int_eq(vttt_model_config_backbone(&c, backbone, NULL), VTTT_OK);
    if (kind == VTTT_LAYER_ATTENTION) c.share_qk = c.use_gate = 0;
    return c;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Parameters at a general point (not the near-zero initialisation), so
 * that every gradient is sizeable. Token scales stay positive. */
static void randomize(vttt_model *m, uint64_t seed) {
    tu_rng r;
    tu_seed(&r, seed);
    int n;
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    for (int i = 0; i < n; i++) {
        const char *nm = t[i].name;
        for (int64_t j = 0; j < t[i].numel; j++) {
            float z = tu_normal(&r), v;
            if (ends_with(nm, "norm.weight") || ends_with(nm, "ttt_norm_weight")) v = 1.0f + 0.1f * z;
            else if (ends_with(nm, "learnable_token_idx")) v = 0.05f * z;
            else if (t[i].ndim == 1 || ends_with(nm, "bias") || ends_with(nm, ".b1") || ends_with(nm, ".b2") ||
                     ends_with(nm, ".W1") || ends_with(nm, ".W2"))
                v = 0.1f * z;
            else if (strstr(nm, "conv")) v = 0.4f * z;
            else v = z / sqrtf((float)t[i].shape[t[i].ndim - 1]);
            t[i].data[j] = v;
        }
    }
}

static vttt_model *make_model(const vttt_model_config *c, uint64_t seed) {
    vttt_model *m = NULL;
    ck_assert_int_eq(vttt_model_init(&m, c, NULL), VTTT_OK);
    randomize(m, seed);
    return m;
}

static int32_t *rand_tokens(int n, int V, uint64_t seed) {
    tu_rng r;
    tu_seed(&r, seed);
    int32_t *t = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) t[i] = (int32_t)(tu_uniform(&r) * V) % V;
    return t;
}

/* Columns [t0, t0+n) of a (B, T) array, contiguous (B, n). */
static int32_t *cols(const int32_t *x, int B, int T, int t0, int n) {
    int32_t *o = malloc((size_t)B * n * sizeof(int32_t));
    for (int b = 0; b < B; b++) memcpy(o + (size_t)b * n, x + (size_t)b * T + t0, (size_t)n * sizeof(int32_t));
    return o;
}

/* Relative error of rows [t0, t0+n) of full (B, T, V) logits against
 * part (B, n, V). */
static double rows_err(const float *full, const float *part, int B, int T, int t0, int n, int V) {
    double e = 0;
    for (int b = 0; b < B; b++)
        e = fmax(e, tu_rel_err(part + (size_t)b * n * V, full + ((size_t)b * T + t0) * V, (size_t)n * V));
    return e;
}

/* ---- the oracle's model directories ------------------------------------ */

static const char *ref_cases[] = {"ttt_linear_transformer", "ttt_mlp_mamba", "ttt_linear_mamba_untied",
                                  "ttt_mlp_video", "attention_transformer"};

static void check_ref(const vttt_st *st, const char *name, const float *got, size_t n, const char *cs) {
    vttt_st_tensor t;
    ck_assert_msg(vttt_st_find(st, name, &t) == VTTT_OK, "%s: dump lacks %s", cs, name);
    float *want = malloc(n * sizeof(float));
    ck_assert_int_eq(vttt_st_read_f32(st, name, want, t.ndim, t.shape), VTTT_OK);
    double e = tu_rel_err(got, want, n);
    ck_assert_msg(e <= REF_TOL, "%s: %s differs from the oracle: rel err %.3e", cs, name, e);
    free(want);
}

START_TEST(test_reference_dirs) {
    const char *cs = ref_cases[_i];
    char dir[512], ref[512];
    snprintf(dir, sizeof dir, "%s/%s", REF_DIR, cs);
    snprintf(ref, sizeof ref, "%s/%s.safetensors", REF_DIR, cs);
    vttt_model *m = NULL;
    ck_assert_msg(vttt_model_load(&m, dir, NULL) == VTTT_OK, "cannot load %s", dir);
    vttt_st *st = NULL;
    ck_assert_int_eq(vttt_st_open(&st, ref, NULL), VTTT_OK);
    vttt_st_tensor tt;
    ck_assert_int_eq(vttt_st_find(st, "tokens", &tt), VTTT_OK);
    ck_assert(tt.dtype == VTTT_ST_I32 && tt.ndim == 2);
    int B = (int)tt.shape[0], T = (int)tt.shape[1], V = vttt_model_get_config(m)->vocab_size;
    int32_t *tok = malloc(tt.nbytes);
    memcpy(tok, tt.data, tt.nbytes);
    size_t NV = (size_t)B * T * V;
    float *logits = malloc(NV * sizeof(float)), loss = 0, want_loss;
    int64_t one = 1;
    ck_assert_int_eq(vttt_st_read_f32(st, "loss", &want_loss, 1, &one), VTTT_OK);

    vttt_model_zero_grads(m);
    ck_assert_int_eq(vttt_model_forward(m, tok, NULL, B, T, 1, &loss, logits), VTTT_OK);
    check_ref(st, "logits", logits, NV, cs);
    ck_assert_msg(fabs(loss - want_loss) <= REF_TOL * fmax(1.0, fabs(want_loss)), "%s: loss %.7f, oracle %.7f", cs,
                  loss, want_loss);
    check_ref(st, "losses", vttt_model_losses(m, NULL), (size_t)B * T, cs);
    ck_assert_int_eq(vttt_model_backward(m, 1.0f), VTTT_OK);
    int checked = 0;
    for (int i = 0; i < vttt_st_count(st); i++) {
        vttt_st_get(st, i, &tt);
        if (strncmp(tt.name, "grad.", 5)) continue;
        const vttt_model_tensor *t = vttt_model_find_tensor(m, tt.name + 5);
        ck_assert_msg(t != NULL, "%s: the model has no tensor %s", cs, tt.name + 5);
        check_ref(st, tt.name, t->grad, (size_t)t->numel, cs);
        checked++;
    }
    ck_assert_int_ge(checked, 6);
    /* the evaluation path (prefill in chunks) gives the same logits */
    memset(logits, 0, NV * sizeof(float));
    ck_assert_int_eq(vttt_model_forward(m, tok, NULL, B, T, 0, &loss, logits), VTTT_OK);
    check_ref(st, "logits", logits, NV, cs);
    ck_assert(fabs(loss - want_loss) <= REF_TOL * fmax(1.0, fabs(want_loss)));
    vttt_st_close(&st);
    free(tok), free(logits);
    vttt_model_free(&m);
}
END_TEST

/* ---- backward against finite differences -------------------------------- */

typedef struct {
    vttt_layer_kind kind;
    const char *backbone;
    int tied, tpf;
} model_case;

static const model_case cases[] = {
    {VTTT_LAYER_TTT_LINEAR, "transformer", 1, 0},
    {VTTT_LAYER_TTT_MLP, "mamba", 0, 0},
    {VTTT_LAYER_ATTENTION, "transformer", 1, 0},
    {VTTT_LAYER_TTT_MLP, "transformer", 1, 4},
    {VTTT_LAYER_TTT_LINEAR, "mamba", 1, 0},
};
#define NCASES (int)(sizeof cases / sizeof cases[0])

static vttt_model_config case_config(int i) {
    return small_config(cases[i].kind, cases[i].backbone, cases[i].tied, cases[i].tpf);
}

/* What loss_at runs: a plain forward of tok (B, T), or, when s is not
 * NULL, a window of T tokens from a copy of `from` in s. */
typedef struct {
    vttt_model *m;
    const int32_t *tok;
    int B, T;
    vttt_model_state *s;
    const vttt_model_state *from;
} loss_ctx;

/* Mean loss in double from the per-position losses of the run in ctx. */
static double loss_at(void *ctx) {
    const loss_ctx *c = ctx;
    if (c->s) {
        ck_assert_int_eq(vttt_model_state_copy(c->s, c->from), VTTT_OK);
        ck_assert_int_eq(vttt_model_forward_carry(c->m, c->s, c->tok, NULL, c->T, NULL, NULL), VTTT_OK);
    } else {
        ck_assert_int_eq(vttt_model_forward(c->m, c->tok, NULL, c->B, c->T, 1, NULL, NULL), VTTT_OK);
    }
    int64_t n;
    const float *l = vttt_model_losses(c->m, &n);
    double sum = 0;
    for (int i = 0; i < c->B * c->T; i++) sum += l[i];
    return sum / (double)n;
}

/* Central differences on a few entries of every tensor (its largest
 * gradient entry among them), against the analytic gradients held in the
 * model, with a tolerance relative to the tensor's largest gradient (an
 * all-zero gradient must be zero to FD_TOL * FD_FLOOR). Tensors named in
 * skip (NULL-terminated suffixes) are left out. */
static void fd_check(vttt_model *m, const int32_t *tok, int B, int T, vttt_model_state *s,
                     const vttt_model_state *from, const char *const *skip, const char *what) {
    loss_ctx ctx = {m, tok, B, T, s, from};
    int n;
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    for (int k = 0; k < n; k++) {
        int skipped = 0;
        for (int j = 0; skip && skip[j]; j++) skipped |= ends_with(t[k].name, skip[j]);
        double gmax = tu_max_abs(t[k].grad, (size_t)t[k].numel);
        if (skipped) continue;
        int64_t arg = 0;
        for (int64_t j = 0; j < t[k].numel; j++)
            if (fabs(t[k].grad[j]) == gmax) arg = j;
        int64_t idx[4] = {arg, 0, t[k].numel / 2, t[k].numel - 1};
        for (int j = 0; j < 4; j++) {
            float g = t[k].grad[idx[j]];
            double fd = tu_central_diff(&t[k].data[idx[j]], FD_EPS, loss_at, &ctx);
            ck_assert_msg(fabs(fd - g) <= FD_TOL * fmax(gmax, FD_FLOOR),
                          "%s: %s[%lld]: analytic %.6g, finite difference %.6g (max |grad| %.3g)", what, t[k].name,
                          (long long)idx[j], g, fd, gmax);
        }
    }
}

START_TEST(test_backward_fd) {
    vttt_model_config c = case_config(_i);
    vttt_model *m = make_model(&c, 100 + _i);
    int B = 2, T = 14;
    int32_t *tok = rand_tokens(B * T, c.vocab_size, 7 + _i);
    vttt_model_zero_grads(m);
    ck_assert_int_eq(vttt_model_forward(m, tok, NULL, B, T, 1, NULL, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_model_backward(m, 1.0f), VTTT_OK);
    char what[64];
    snprintf(what, sizeof what, "case %d", _i);
    fd_check(m, tok, B, T, NULL, NULL, NULL, what);
    /* backward scales by dloss and accumulates */
    int n;
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    float *g1 = malloc((size_t)t[0].numel * sizeof(float));
    memcpy(g1, t[0].grad, (size_t)t[0].numel * sizeof(float));
    ck_assert_int_eq(vttt_model_forward(m, tok, NULL, B, T, 1, NULL, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_model_backward(m, 0.5f), VTTT_OK);
    for (int64_t j = 0; j < t[0].numel; j++)
        ck_assert(fabsf(t[0].grad[j] - 1.5f * g1[j]) <= 1e-5f * (1 + fabsf(g1[j])));
    free(g1), free(tok);
    vttt_model_free(&m);
}
END_TEST

/* ---- generation -------------------------------------------------------- */

START_TEST(test_prefill_decode) {
    vttt_model_config c = case_config(_i);
    vttt_model *m = make_model(&c, 300 + _i);
    int B = 2, T = 23, P = 9, V = c.vocab_size;
    int32_t *tok = rand_tokens(B * T, V, 11 + _i);
    float *full = malloc((size_t)B * T * V * sizeof(float)), *part = malloc((size_t)B * T * V * sizeof(float));
    ck_assert_int_eq(vttt_model_forward(m, tok, NULL, B, T, 1, NULL, full), VTTT_OK);
    vttt_model_state *s = NULL, *s2 = NULL;
    ck_assert_int_eq(vttt_model_state_init(&s, m, B, T), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_init(&s2, m, B, T), VTTT_OK);
    int32_t *pre = cols(tok, B, T, 0, P);
    ck_assert_int_eq(vttt_model_prefill(m, s, pre, P, part, 1), VTTT_OK);
    double e = rows_err(full, part, B, T, 0, P, V);
    ck_assert_msg(e <= SAME_TOL, "case %d: prefill logits differ from the forward: %.3e", _i, e);
    size_t bytes0 = vttt_model_state_bytes(s);
    for (int t = P; t < T; t++) {
        int32_t *one = cols(tok, B, T, t, 1);
        if (t == 15) ck_assert_int_eq(vttt_model_state_copy(s2, s), VTTT_OK);
        ck_assert_int_eq(vttt_model_decode(m, s, one, part), VTTT_OK);
        e = rows_err(full, part, B, T, t, 1, V);
        ck_assert_msg(e <= SAME_TOL, "case %d: decode logits at %d differ from the forward: %.3e", _i, t, e);
        free(one);
    }
    ck_assert_int_eq((int)vttt_model_state_position(s), T);
    if (c.seq_kind != VTTT_LAYER_ATTENTION) ck_assert_uint_eq(vttt_model_state_bytes(s), bytes0);
    /* the copied state continues like the original (last-position logits) */
    int32_t *rest = cols(tok, B, T, 15, T - 15);
    ck_assert_int_eq(vttt_model_prefill(m, s2, rest, T - 15, part, 0), VTTT_OK);
    e = rows_err(full, part, B, T, T - 1, 1, V);
    ck_assert_msg(e <= SAME_TOL, "case %d: copied state: %.3e", _i, e);
    vttt_model_state_free(&s), vttt_model_state_free(&s2);
    free(pre), free(rest), free(tok), free(full), free(part);
    vttt_model_free(&m);
}
END_TEST

/* ---- windows with a carried state -------------------------------------- */

/* The carried-window cases: case 0 gets the pre-conv on a Transformer
 * backbone (carried pre-conv states, exact gradients). */
static vttt_model_config carry_config(int i) {
    vttt_model_config c = case_config(i);
    if (i == 0) c.pre_conv = 1;
    return c;
}

START_TEST(test_carry_windows) {
    vttt_model_config c = carry_config(_i);
    vttt_model *m = make_model(&c, 500 + _i);
    int B = 2, T = 24, W = 8, V = c.vocab_size, ttt = c.seq_kind != VTTT_LAYER_ATTENTION;
    int32_t *tok = rand_tokens(B * T, V, 21 + _i);
    float *full = malloc((size_t)B * T * V * sizeof(float)), *part = malloc((size_t)B * W * V * sizeof(float));
    ck_assert_int_eq(vttt_model_forward(m, tok, NULL, B, T, 1, NULL, full), VTTT_OK);
    vttt_model_state *s = NULL, *s1 = NULL;
    ck_assert_int_eq(vttt_model_state_init(&s, m, B, T), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_init(&s1, m, B, T), VTTT_OK);
    int32_t *win[3];
    for (int w = 0; w < 3; w++) { /* TTT windows continue the sequence exactly */
        win[w] = cols(tok, B, T, w * W, W);
        if (w == 1) ck_assert_int_eq(vttt_model_state_copy(s1, s), VTTT_OK);
        ck_assert_int_eq(vttt_model_forward_carry(m, s, win[w], NULL, W, NULL, part), VTTT_OK);
        double e = rows_err(full, part, B, T, w * W, W, V);
        if (ttt) ck_assert_msg(e <= SAME_TOL, "case %d: window %d logits differ from the full forward: %.3e", _i, w, e);
    }
    ck_assert_int_eq((int)vttt_model_state_position(s), T);
    /* window 1 from the carried state: the truncated gradient is the
     * gradient with the start state held fixed */
    vttt_model_zero_grads(m);
    ck_assert_int_eq(vttt_model_state_copy(s, s1), VTTT_OK);
    ck_assert_int_eq(vttt_model_forward_carry(m, s, win[1], NULL, W, NULL, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_model_backward(m, 1.0f), VTTT_OK);
    if (ttt) {
        const vttt_model_tensor *w1 = vttt_model_find_tensor(m, "model.layers.0.seq_modeling_block.W1");
        ck_assert_double_eq(tu_max_abs(w1->grad, (size_t)w1->numel), 0.0);
    }
    char what[64];
    snprintf(what, sizeof what, "carried window, case %d", _i);
    fd_check(m, win[1], B, W, s, s1, NULL, what);
    for (int w = 0; w < 3; w++) free(win[w]);
    vttt_model_state_free(&s), vttt_model_state_free(&s1);
    free(tok), free(full), free(part);
    vttt_model_free(&m);
}
END_TEST

/* A window at position 0 is the plain train forward, gradients included. */
START_TEST(test_carry_first_window) {
    vttt_model_config c = carry_config(_i);
    vttt_model *m = make_model(&c, 600 + _i);
    int B = 2, T = 12, n;
    int32_t *tok = rand_tokens(B * T, c.vocab_size, 31 + _i);
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    vttt_model_zero_grads(m);
    ck_assert_int_eq(vttt_model_forward(m, tok, NULL, B, T, 1, NULL, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_model_backward(m, 1.0f), VTTT_OK);
    float **g0 = malloc((size_t)n * sizeof(float *));
    for (int k = 0; k < n; k++) {
        g0[k] = malloc((size_t)t[k].numel * sizeof(float));
        memcpy(g0[k], t[k].grad, (size_t)t[k].numel * sizeof(float));
    }
    vttt_model_state *s = NULL;
    ck_assert_int_eq(vttt_model_state_init(&s, m, B, T), VTTT_OK);
    vttt_model_zero_grads(m);
    ck_assert_int_eq(vttt_model_forward_carry(m, s, tok, NULL, T, NULL, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_model_backward(m, 1.0f), VTTT_OK);
    for (int k = 0; k < n; k++) {
        double e = tu_rel_err(t[k].grad, g0[k], (size_t)t[k].numel);
        ck_assert_msg(e <= SAME_TOL, "case %d: %s: window at 0 vs plain forward: %.3e", _i, t[k].name, e);
        free(g0[k]);
    }
    free(g0), free(tok);
    vttt_model_state_free(&s);
    vttt_model_free(&m);
}
END_TEST

/* ---- model directories --------------------------------------------------- */

static int files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

START_TEST(test_save_load_roundtrip) {
    vttt_model_config c = case_config(_i);
    c.rms_norm_eps = 1e-5f, c.ttt_base_lr = 0.1f, c.rope_theta = 500000.0f, c.pad_token_id = 0, c.bos_token_id = -1;
    vttt_model *m = make_model(&c, 700 + _i);
    char root[256], a[512], b[512], fa[1100], fb[1100];
    tu_tmpdir(root, sizeof root, "test_model");
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(b, sizeof b, "%s/b", root);
    ck_assert_int_eq(vttt_model_save(m, a), VTTT_OK);
    vttt_model *m2 = NULL;
    ck_assert_int_eq(vttt_model_load(&m2, a, NULL), VTTT_OK);
    ck_assert_int_eq(memcmp(vttt_model_get_config(m), vttt_model_get_config(m2), sizeof(vttt_model_config)), 0);
    int n, n2;
    const vttt_model_tensor *t = vttt_model_tensors(m, &n), *t2 = vttt_model_tensors(m2, &n2);
    ck_assert_int_eq(n, n2);
    for (int k = 0; k < n; k++) {
        ck_assert_str_eq(t[k].name, t2[k].name);
        ck_assert_msg(!memcmp(t[k].data, t2[k].data, (size_t)t[k].numel * sizeof(float)), "%s differs", t[k].name);
    }
    ck_assert_int_eq(vttt_model_save(m2, b), VTTT_OK);
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(fa, sizeof fa, "%s/%s", a, files[i]);
        snprintf(fb, sizeof fb, "%s/%s", b, files[i]);
        ck_assert_msg(files_equal(fa, fb), "%s differs after a round trip", files[i]);
    }
    ck_assert_int_eq(vttt_model_save(m2, a), VTTT_OK); /* replacing an existing directory's files */
    tu_rm_rf(root);
    vttt_model_free(&m), vttt_model_free(&m2);
}
END_TEST

/* Tensors of a loaded model as safetensors entries, to write variants. */
static int st_list(const vttt_model *m, vttt_st_tensor *out) {
    int n;
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    for (int k = 0; k < n; k++) {
        memset(&out[k], 0, sizeof out[k]);
        out[k].name = t[k].name;
        out[k].dtype = VTTT_ST_F32;
        out[k].ndim = t[k].ndim;
        for (int d = 0; d < t[k].ndim; d++) out[k].shape[d] = t[k].shape[d];
        out[k].data = t[k].data;
        out[k].nbytes = (size_t)t[k].numel * sizeof(float);
    }
    return n;
}

static char *replace(const char *s, const char *from, const char *to) {
    const char *p = strstr(s, from);
    ck_assert_msg(p != NULL, "'%s' not in the config", from);
    char *o = malloc(strlen(s) + strlen(to) + 1);
    size_t k = (size_t)(p - s);
    memcpy(o, s, k);
    strcpy(o + k, to);
    strcat(o, p + strlen(from));
    return o;
}

/* Loads dir expecting err, with the message naming `needle`. */
static void expect_load(const char *dir, int err, const char *needle, const char *what) {
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    vttt_model *m = NULL;
    int got = vttt_model_load(&m, dir, &lg);
    ck_assert_msg(got == err, "%s: load returned %d (%s), expected %d", what, got, vttt_strerror(got), err);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(cap.text, needle) != NULL, "%s: message '%s' does not name '%s'", what, cap.text, needle);
}

START_TEST(test_malformed_config) {
    char good[512], cfgp[600];
    snprintf(good, sizeof good, "%s/ttt_linear_transformer", REF_DIR);
    snprintf(cfgp, sizeof cfgp, "%s/config.json", good);
    char *text = tu_read_file(cfgp, NULL), root[256], st_src[600], st_dst[600], path[600];
    tu_tmpdir(root, sizeof root, "test_model");
    snprintf(st_src, sizeof st_src, "%s/model.safetensors", good);
    snprintf(st_dst, sizeof st_dst, "%s/model.safetensors", root);
    ck_assert_int_eq(symlink(st_src, st_dst), 0);
    snprintf(path, sizeof path, "%s/config.json", root);
    expect_load(root, VTTT_EIO, "config.json", "missing config.json");
    struct { const char *from, *to, *needle, *what; } v[] = {
        {"\"ttt_layer_type\": \"linear\"", "\"ttt_layer_type\": \"conv\"", "ttt_layer_type", "unknown layer type"},
        {"{", "{\"frobnicate\": 1,", "frobnicate", "unknown key"},
        {"\"vocab_size\": 64", "\"vocab_size\": \"64\"", "vocab_size", "string for a number"},
        {"\"vocab_size\": 64", "\"vocab_size\": 64.5", "vocab_size", "fractional integer"},
        {"\"pre_conv\": false", "\"pre_conv\": 0", "pre_conv", "number for a boolean"},
        {"\"num_attention_heads\": 4", "\"num_attention_heads\": 5", "num_attention_heads", "heads not dividing"},
        {"\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act", "other activation"},
        {"\"vocab_size\": 64,", "\"vocab_size\": 64, \"vocab_size\": 64,", "twice", "duplicate key"},
        {"\"hidden_size\": 32", "\"hidden_size\": 48", "model.safetensors", "config sizes differ from the tensors"},
        {"\"use_cache\": false", "\"use_cache\": false, \"rope_scaling\": {\"type\": \"linear\"}", "rope_scaling",
         "RoPE scaling"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char *bad = replace(text, v[i].from, v[i].to);
        tu_write_file(path, bad, strlen(bad));
        expect_load(root, VTTT_EFORMAT, v[i].needle, v[i].what);
        free(bad);
    }
    /* truncated JSON */
    char *cut = strdup(text);
    cut[strlen(cut) / 2] = 0;
    tu_write_file(path, cut, strlen(cut));
    expect_load(root, VTTT_EFORMAT, "not valid JSON", "truncated JSON");
    tu_write_file(path, "[1, 2]", strlen("[1, 2]"));
    expect_load(root, VTTT_EFORMAT, "object", "JSON array");
    /* one document: a second one (an edit gone wrong) after it is refused */
    char *twice = malloc(2 * strlen(text) + 1);
    sprintf(twice, "%s%s", text, text);
    tu_write_file(path, twice, strlen(twice));
    expect_load(root, VTTT_EFORMAT, "not valid JSON", "two documents");
    free(twice);
    /* an attention config over TTT tensors */
    char *att = replace(text, "{", "{\"seq_modeling_block\": \"attention\",");
    tu_write_file(path, att, strlen(att));
    expect_load(root, VTTT_EFORMAT, "model.safetensors", "attention config, TTT tensors");
    char *unk = replace(text, "{", "{\"seq_modeling_block\": \"rnn\",");
    tu_write_file(path, unk, strlen(unk));
    expect_load(root, VTTT_EFORMAT, "seq_modeling_block", "unknown sequence block");
    /* Hugging Face's generic keys are accepted */
    char *hf = replace(text, "{", "{\"transformers_version\": \"4.41.0\", \"_name_or_path\": \"x\",");
    tu_write_file(path, hf, strlen(hf));
    vttt_model *m = NULL;
    ck_assert_int_eq(vttt_model_load(&m, root, NULL), VTTT_OK);
    vttt_model_free(&m);
    unlink(st_dst), unlink(path), rmdir(root);
    free(cut), free(att), free(unk), free(hf), free(text);
}
END_TEST

START_TEST(test_malformed_tensors) {
    char good[512], src[600];
    snprintf(good, sizeof good, "%s/ttt_linear_transformer", REF_DIR);
    vttt_model *m = NULL;
    ck_assert_int_eq(vttt_model_load(&m, good, NULL), VTTT_OK);
    char root[256], cfg[600], st[600];
    tu_tmpdir(root, sizeof root, "test_model");
    snprintf(src, sizeof src, "%s/config.json", good);
    snprintf(cfg, sizeof cfg, "%s/config.json", root);
    snprintf(st, sizeof st, "%s/model.safetensors", root);
    char *text = tu_read_file(src, NULL);
    tu_write_file(cfg, text, strlen(text));
    int n;
    vttt_model_tensors(m, &n);
    vttt_st_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    const char *victim = "model.layers.1.seq_modeling_block.W1";
    int vi = 0;
    n = st_list(m, ts);
    while (strcmp(ts[vi].name, victim)) vi++;
    const char *meta[] = {"format", "pt"};
    expect_load(root, VTTT_EIO, "model.safetensors", "missing model.safetensors");

    /* missing tensor */
    vttt_st_tensor keep = ts[vi];
    ts[vi] = ts[n - 1];
    ck_assert_int_eq(vttt_st_write(st, ts, n - 1, meta, 1, NULL), VTTT_OK);
    expect_load(root, VTTT_EFORMAT, victim, "missing tensor");
    ts[vi] = keep;
    /* wrong shape */
    ts[vi].shape[0] = 1, ts[vi].shape[1] = keep.shape[0] * keep.shape[1]; /* (1, H*f, f): same size */
    ck_assert_int_eq(vttt_st_write(st, ts, n, meta, 1, NULL), VTTT_OK);
    expect_load(root, VTTT_EFORMAT, victim, "wrong shape");
    ts[vi] = keep;
    /* extra tensor */
    ts[n] = ts[0];
    ts[n].name = "model.layers.2.seq_norm.weight";
    ck_assert_int_eq(vttt_st_write(st, ts, n + 1, meta, 1, NULL), VTTT_OK);
    expect_load(root, VTTT_EFORMAT, "model.layers.2.seq_norm.weight", "extra tensor");
    /* a tied lm_head that differs from the embedding */
    ts[n] = ts[0];
    ts[n].name = "lm_head.weight";
    float *head = malloc(ts[0].nbytes);
    memcpy(head, ts[0].data, ts[0].nbytes);
    head[3] += 1.0f;
    ts[n].data = head;
    ck_assert_int_eq(vttt_st_write(st, ts, n + 1, meta, 1, NULL), VTTT_OK);
    expect_load(root, VTTT_EFORMAT, "lm_head.weight", "differing tied head");
    /* ... and an equal one is accepted */
    memcpy(head, ts[0].data, ts[0].nbytes);
    ck_assert_int_eq(vttt_st_write(st, ts, n + 1, meta, 1, NULL), VTTT_OK);
    vttt_model *m2 = NULL;
    ck_assert_int_eq(vttt_model_load(&m2, root, NULL), VTTT_OK);
    vttt_model_free(&m2);
    /* non-finite value */
    float *nan = malloc(keep.nbytes);
    memcpy(nan, keep.data, keep.nbytes);
    nan[5] = NAN;
    ts[vi].data = nan;
    ck_assert_int_eq(vttt_st_write(st, ts, n, meta, 1, NULL), VTTT_OK);
    expect_load(root, VTTT_EFORMAT, victim, "NaN");
    ts[vi] = keep;
    /* an integer tensor */
    ts[vi].dtype = VTTT_ST_I32;
    ck_assert_int_eq(vttt_st_write(st, ts, n, meta, 1, NULL), VTTT_OK);
    expect_load(root, VTTT_EFORMAT, victim, "integer dtype");
    ts[vi] = keep;
    /* truncated file */
    ck_assert_int_eq(vttt_st_write(st, ts, n, meta, 1, NULL), VTTT_OK);
    struct stat sb;
    ck_assert_int_eq(stat(st, &sb), 0);
    ck_assert_int_eq(truncate(st, sb.st_size - 100), 0);
    expect_load(root, VTTT_EFORMAT, "model.safetensors", "truncated safetensors");
    ck_assert_int_eq(truncate(st, 5), 0);
    expect_load(root, VTTT_EFORMAT, "model.safetensors", "truncated header");
    tu_rm_rf(root);
    free(ts), free(head), free(nan), free(text);
    vttt_model_free(&m);
}
END_TEST

/* ---- configuration and API errors ---------------------------------------- */

START_TEST(test_config) {
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    vttt_model_config c = vttt_model_default_config();
    ck_assert_int_eq(c.hidden_size, 2048);
    ck_assert_int_eq(vttt_model_config_check(&c, NULL), VTTT_OK);
    const struct { const char *name; int D, I, L, H; } pr[] = {
        {"125m", 768, 2048, 12, 12},
        {"350m", 1024, 2736, 24, 16},
        {"760m", 1536, 4096, 24, 16},
        {"1b", 2048, 5504, 24, 32},
    };
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(vttt_model_config_preset(&c, pr[i].name, NULL), VTTT_OK);
        ck_assert(c.hidden_size == pr[i].D && c.intermediate_size == pr[i].I && c.num_hidden_layers == pr[i].L &&
                  c.num_attention_heads == pr[i].H);
        ck_assert_int_eq(vttt_model_config_check(&c, NULL), VTTT_OK);
    }
    ck_assert_int_eq(vttt_model_config_preset(&c, "7b", &lg), VTTT_EINVAL);
    ck_assert_int_eq(vttt_model_config_backbone(&c, "mamba", NULL), VTTT_OK);
    ck_assert(c.pre_conv && c.share_qk && c.use_gate);
    ck_assert_int_eq(vttt_model_config_backbone(&c, "transformer", NULL), VTTT_OK);
    ck_assert(!c.pre_conv && !c.share_qk && !c.use_gate);
    ck_assert_int_eq(vttt_model_config_backbone(&c, "rwkv", &lg), VTTT_EINVAL);
    ck_assert_int_eq(vttt_model_config_target_shift(&c), 1);
    c.tokens_per_frame = 64;
    ck_assert_int_eq(vttt_model_config_target_shift(&c), 64);
    ck_assert_int_eq(vttt_model_config_check(&c, NULL), VTTT_OK);
    c.tokens_per_frame = 40; /* not a multiple of the mini-batch */
    ck_assert_int_eq(vttt_model_config_check(&c, &lg), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "tokens_per_frame"));
    c = vttt_model_default_config();
    c.seq_kind = VTTT_LAYER_ATTENTION, c.share_qk = 1;
    ck_assert_int_eq(vttt_model_config_check(&c, &lg), VTTT_EINVAL);
    c = vttt_model_default_config();
    c.eos_token_id = c.vocab_size;
    ck_assert_int_eq(vttt_model_config_check(&c, &lg), VTTT_EINVAL);
    /* config.json round trip of unusual values */
    c = small_config(VTTT_LAYER_ATTENTION, "transformer", 0, 8);
    c.pre_conv = 1, c.rms_norm_eps = 3e-7f, c.initializer_range = 0.0125f, c.pad_token_id = -1, c.eos_token_id = 5;
    c.scan_checkpoint_group_size = 3, c.ttt_base_lr = 0.3f;
    char root[256], path[600];
    tu_tmpdir(root, sizeof root, "test_model");
    snprintf(path, sizeof path, "%s/config.json", root);
    ck_assert_int_eq(vttt_model_config_write(&c, path, NULL), VTTT_OK);
    vttt_model_config back;
    ck_assert_int_eq(vttt_model_config_read(&back, path, NULL), VTTT_OK);
    ck_assert_int_eq(memcmp(&c, &back, sizeof c), 0);
    unlink(path), rmdir(root);
}
END_TEST

START_TEST(test_api_errors) {
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    vttt_model_config c = small_config(VTTT_LAYER_TTT_LINEAR, "transformer", 1, 0);
    vttt_model *m = NULL;
    ck_assert_int_eq(vttt_model_init(&m, &c, &lg), VTTT_OK);
    vttt_model_init_weights(m, 1);
    ck_assert_int_eq(vttt_model_backward(m, 1.0f), VTTT_EINVAL);
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tgt[8] = {2, 3, 4, 5, 6, 7, 8, -1};
    float loss;
    ck_assert_int_eq(vttt_model_forward(m, tok, tgt, 1, 8, 1, &loss, NULL), VTTT_OK);
    ck_assert(loss > 0 && isfinite(loss));
    int64_t count;
    vttt_model_losses(m, &count);
    ck_assert_int_eq((int)count, 7);
    tok[3] = c.vocab_size;
    ck_assert_int_eq(vttt_model_forward(m, tok, tgt, 1, 8, 1, &loss, NULL), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "vocabulary"));
    ck_assert_int_eq(vttt_model_forward(m, tok, tgt, 1, 8, 0, &loss, NULL), VTTT_EINVAL);
    tok[3] = 4, tgt[2] = c.vocab_size + 3;
    ck_assert_int_eq(vttt_model_forward(m, tok, tgt, 1, 8, 1, &loss, NULL), VTTT_EINVAL);
    ck_assert_int_eq(vttt_model_forward(m, tok, NULL, 1, 0, 1, &loss, NULL), VTTT_EINVAL);
    for (int i = 0; i < 8; i++) tgt[i] = -1; /* no targets: loss 0, zero gradient */
    vttt_model_zero_grads(m);
    ck_assert_int_eq(vttt_model_forward(m, tok, tgt, 1, 8, 1, &loss, NULL), VTTT_OK);
    ck_assert(loss == 0.0f);
    ck_assert_int_eq(vttt_model_backward(m, 1.0f), VTTT_OK);
    vttt_model_block blk[8];
    int nb = vttt_model_blocks(m, blk, 8);
    ck_assert_int_eq(nb, c.num_hidden_layers + 1);
    size_t total = 0;
    for (int i = 0; i < nb; i++) {
        ck_assert_double_eq(tu_max_abs(blk[i].grads, blk[i].n), 0.0);
        total += blk[i].n;
    }
    ck_assert_uint_ge(total, vttt_model_num_params(m));
    /* init is deterministic and reference-like */
    const vttt_model_tensor *emb = vttt_model_find_tensor(m, "model.embed_tokens.weight");
    const vttt_model_tensor *nrm = vttt_model_find_tensor(m, "model.norm.weight");
    float e0 = emb->data[0];
    vttt_model_init_weights(m, 1);
    ck_assert(emb->data[0] == e0 && nrm->data[0] == 1.0f);
    double sd = 0;
    for (int64_t j = 0; j < emb->numel; j++) sd += (double)emb->data[j] * emb->data[j];
    sd = sqrt(sd / (double)emb->numel);
    ck_assert_msg(sd > 0.015 && sd < 0.025, "embedding std %.4f, expected about 0.02", sd);
    ck_assert_ptr_null(vttt_model_find_tensor(m, "lm_head.weight")); /* tied */
    /* the inner base lr can change during training */
    float l1, l2;
    ck_assert_int_eq(vttt_model_forward(m, tok, NULL, 1, 8, 0, &l1, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_model_set_ttt_base_lr(m, 0.0f), VTTT_OK);
    ck_assert(vttt_model_get_config(m)->ttt_base_lr == 0.0f);
    ck_assert_int_eq(vttt_model_forward(m, tok, NULL, 1, 8, 0, &l2, NULL), VTTT_OK);
    ck_assert(l1 != l2);
    ck_assert_int_eq(vttt_model_set_ttt_base_lr(m, -1.0f), VTTT_EINVAL);
    /* forward FLOPs: at least 2 per parameter and token */
    double fl = vttt_model_forward_flops(&c, 2, 64);
    ck_assert(fl >= 2.0 * 128 * (double)vttt_model_num_params(m) * 0.9 && fl < 1e12);
    /* carried windows must start at mini-batch boundaries */
    vttt_model_state *s = NULL;
    ck_assert_int_eq(vttt_model_state_init(&s, m, 1, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_prefill(m, s, tok, 3, NULL, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_forward_carry(m, s, tok, NULL, 8, NULL, NULL), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "mini-batch"));
    vttt_model_state_free(&s);
    vttt_model_free(&m);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 120);
    int nref = (int)(sizeof ref_cases / sizeof ref_cases[0]);
    tcase_add_loop_test(tc, test_reference_dirs, 0, nref);
    tcase_add_loop_test(tc, test_backward_fd, 0, NCASES);
    tcase_add_loop_test(tc, test_prefill_decode, 0, NCASES);
    tcase_add_loop_test(tc, test_carry_windows, 0, NCASES);
    tcase_add_loop_test(tc, test_carry_first_window, 0, NCASES);
    tcase_add_loop_test(tc, test_save_load_roundtrip, 0, NCASES);
    tcase_add_test(tc, test_malformed_config);
    tcase_add_test(tc, test_malformed_tensors);
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_api_errors);
    return tu_run("model", tc, CK_FORK_GETENV);
}
