#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
#include "testutil.h"

#include "layer_dev.h"
#include "model.h"

#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- random data and error measures ------------------------------------- */

void tu_seed(tu_rng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull; }

static uint64_t next_u64(tu_rng *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float tu_uniform(tu_rng *r) { return (float)((next_u64(r) >> 40) * (1.0 / 16777216.0)); }

float tu_normal(tu_rng *r) {
    double u1 = ((next_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (next_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void tu_fill_normal(tu_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * tu_normal(r);
}

float *tu_alloc_normal(tu_rng *r, size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    tu_fill_normal(r, p, n, scale);
    return p;
}

double tu_max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

double tu_rel_err(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return INFINITY;
        m = fmax(m, d);
    }
    double s = tu_max_abs(b, n);
    return m / (s > 1e-30 ? s : 1e-30);
}

double tu_central_diff(float *p, float eps, double (*loss)(void *ctx), void *ctx) {
    float keep = *p;
    *p = keep + eps;
    double lp = loss(ctx);
    *p = keep - eps;
    double lm = loss(ctx);
    *p = keep;
    return (lp - lm) / (2.0 * eps);
}

float *tu_alloc_fill(size_t n, float v) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++) p[i] = v;
    return p;
}

double tu_dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

void tu_check_fd(const char *what, double (*loss)(void *ctx), void *ctx, float *p, const float *grad, size_t n,
                 const tu_fd_opts *o) {
    float *fd = tu_alloc_fill(n, 0.0f), *g = tu_alloc_fill(n, 0.0f);
    for (size_t i = 0; i < n; i++) {
        fd[i] = (float)tu_central_diff(&p[i], o->eps, loss, ctx);
        g[i] = grad[i] - o->grad_fill;
    }
    double err = tu_rel_err(g, fd, n);
    ck_assert_msg(err < o->tol, "%s: finite-difference rel err %.3g (max|fd| %.3g)", what, err, tu_max_abs(fd, n));
    if (o->nonzero) ck_assert_msg(tu_max_abs(fd, n) > 0.0, "%s: gradient identically zero", what);
    free(fd);
    free(g);
}

/* ---- layers ------------------------------------------------------------- */

void tu_layer_randomize(vttt_layer *l, uint64_t seed, float proj_gain) {
    int D = vttt_layer_get_config(l)->width;
    tu_rng r;
    tu_seed(&r, seed);
    vttt_param_info info[32];
    int n = vttt_layer_param_list(l, 0, info, 32);
    ck_assert_int_le(n, 32);
    for (int i = 0; i < n; i++) {
        const char *nm = info[i].name;
        float scale = strstr(nm, "proj") ? proj_gain / sqrtf((float)D) : 0.1f;
        if (!strcmp(nm, "W1") || !strcmp(nm, "W2")) scale = 0.15f;
        if (!strcmp(nm, "learnable_ttt_lr_bias")) scale = 0.5f;
        tu_fill_normal(&r, info[i].data, (size_t)info[i].numel, scale);
        if (strstr(nm, "norm_weight") || !strcmp(nm, "post_norm.weight"))
            for (int64_t j = 0; j < info[i].numel; j++) info[i].data[j] += 1.0f;
    }
}

vttt_param_info tu_layer_param(vttt_layer *l, const char *name) {
    vttt_param_info info[32];
    int n = vttt_layer_param_list(l, 0, info, 32);
    for (int i = 0; i < n && i < 32; i++)
        if (!strcmp(info[i].name, name)) return info[i];
    ck_abort_msg("the layer has no parameter %s", name);
}

vttt_layer *tu_layer_clamped(vttt_layer_kind kind, int D, int H, int b, int group, uint64_t seed) {
    vttt_layer_config cfg = vttt_layer_default_config(kind, D, H);
    cfg.mini_batch = b;
    cfg.ckpt_group = group;
    vttt_layer *l = NULL;
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, NULL), VTTT_OK);
    tu_layer_randomize(l, seed, 1.0f);
    tu_layer_param(l, "learnable_token_idx").data[b / 2] = -1.0f; /* s_i clamped to 0 */
    return l;
}

double tu_model_dev_step_check(vttt_model *m, const vttt_backend *be, const ttt_dev_ops *ops, int B, int T, int vocab,
                               const char *log_msg, float *l_cpu, float *l_dev, const char **worst_name,
                               int *n_tensors) {
    const char *why = log_msg ? log_msg : "";
    int n = 0, N = B * T;
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    tu_rng r;
    tu_seed(&r, 3);
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < t[i].numel; j++) t[i].data[j] += 0.05f * tu_normal(&r);
    int32_t *tok = malloc((size_t)N * sizeof(int32_t));
    float **ref = calloc((size_t)n, sizeof *ref);
    ck_assert(tok && ref);
    for (int i = 0; i < N; i++) tok[i] = (i * 37 + 5) % vocab;
    *l_cpu = *l_dev = 0.0f;
    vttt_model_zero_grads(m);
    ck_assert_int_eq(vttt_model_forward(m, tok, NULL, B, T, 1, l_cpu, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_model_backward(m, 1.0f), VTTT_OK);
    for (int i = 0; i < n; i++) {
        ref[i] = malloc((size_t)t[i].numel * sizeof(float));
        ck_assert_ptr_nonnull(ref[i]);
        memcpy(ref[i], t[i].grad, (size_t)t[i].numel * sizeof(float));
    }
    vttt_model_zero_grads(m);
    vttt_model_dev *d = NULL;
    int err = ops ? ttt_model_dev_init_ops(&d, m, be, ops, B, T) : vttt_model_dev_init(&d, m, be, B, T);
    ck_assert_msg(err == VTTT_OK, "vttt_model_dev_init: %s (%s)", vttt_strerror(err), why);
    err = vttt_model_dev_step(d, tok, NULL, B, T, l_dev);
    ck_assert_msg(err == VTTT_OK, "vttt_model_dev_step: %s (%s)", vttt_strerror(err), why);
    ck_assert_int_eq(vttt_model_dev_grads_to_host(d), VTTT_OK);
    double worst = 0.0;
    *worst_name = "";
    for (int i = 0; i < n; i++) {
        double e = tu_rel_err(t[i].grad, ref[i], (size_t)t[i].numel);
        if (e > worst || !isfinite(e)) worst = e, *worst_name = t[i].name;
        free(ref[i]);
    }
    vttt_model_dev_free(&d);
    free(ref), free(tok);
    *n_tensors = n;
    return worst;
}

/* ---- logs ------------------------------------------------------------- */

static void capture_fn(void *user, int level, const char *msg) {
    tu_log *c = user;
    size_t n = c->append ? strlen(c->text) : 0;
    (void)level;
    snprintf(c->text + n, sizeof c->text - n, c->append ? "%s\n" : "%s", msg);
    c->count++;
}

vttt_logger tu_log_capture(tu_log *c, int level, int append) {
    memset(c, 0, sizeof *c);
    c->append = append;
    vttt_logger lg = {capture_fn, c, level};
    return lg;
}

static void quiet_fn(void *user, int level, const char *msg) { (void)user, (void)level, (void)msg; }

vttt_logger tu_log_quiet(void) {
    vttt_logger lg = {quiet_fn, NULL, VTTT_LOG_ERROR};
    return lg;
}

/* ---- files ------------------------------------------------------------ */

void tu_tmpdir(char *dir, size_t size, const char *tag) {
    const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int len = snprintf(dir, size, "%s/vttt_%s_XXXXXX", base, tag);
    if (len < 0 || (size_t)len >= size || !mkdtemp(dir)) {
        fprintf(stderr, "cannot create a temporary directory vttt_%s_* under %s (set TMPDIR to a short, "
                "writable path)\n", tag, base);
        exit(1);
    }
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void tu_rm_rf(const char *dir) {
    if (dir && strstr(dir, "/vttt_")) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int tu_count_entries(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open the directory %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

void tu_write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

void *tu_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    ck_assert_int_ge(len, 0);
    char *p = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    p[len] = 0;
    if (n) *n = (size_t)len;
    return p;
}

/* ---- running ---------------------------------------------------------- */

int tu_run(const char *name, TCase *tc, enum fork_status fork) {
    Suite *s = suite_create(name);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, fork);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

int tu_cuda_open(vttt_backend **gpu, const vttt_logger *lg, const char *last_msg, const char *what) {
    int err = vttt_backend_cuda_open(gpu, 0, lg);
    if (err == VTTT_ENODEV) {
        printf("SKIP: no CUDA device (%s); %s not run\n", last_msg[0] ? last_msg : vttt_strerror(err), what);
        return 77;
    }
    if (err) {
        fprintf(stderr, "vttt_backend_cuda_open: %s (%s)\n", vttt_strerror(err), last_msg);
        return 1;
    }
    return 0;
}
