/* The 2D image ops of ttt/ops.h (conv2d, groupnorm, upsample2x) on the CPU
 * backend: every gradient against central finite differences over several
 * shapes, the forward and every gradient against torch float64 autograd
 * dumps (tools/conv_oracle.py -> tests/data/oracle_*.safetensors), NULL
 * gradients, accumulation (+=), threaded against serial runs, and the
 * conv2d's scratch-free fallback under an address-space limit.
 *
 * Finite differences as in test_ops.c: L = sum(out * r) in double from the
 * fp32 outputs, step FD_EPS; the error is measured as max abs error over
 * max |gradient| (tu_rel_err). Conv and upsample are linear, so only fp32
 * rounding (~1e-7 |L| / eps) remains; groupnorm adds a truncation error of
 * order eps^2. FD_TOL = 1e-2 leaves a wide margin and still catches any
 * wrong or missing term. */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <malloc.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backend.h"
#include "ops.h"
#include "safetensors.h"
#include "testutil.h"

#define FD_EPS 1e-2f
#define FD_TOL 1e-2
#define ORACLE_TOL 2e-5   /* fp32 vs float64 torch, relative to each tensor's max */
#define SAME_TOL 1e-5     /* two fp32 computations of the same sum in another order */
#define GRAD_FILL 0.5f
#define GN_EPS 1e-5f

/* grad (pre-filled with GRAD_FILL before the backward) against the central
 * difference of loss over every element of p, which must not be all zero. */
static void check_fd(const char *what, double (*loss)(void *), void *ctx, float *p, const float *grad, size_t n) {
    const tu_fd_opts o = {.eps = FD_EPS, .tol = FD_TOL, .grad_fill = GRAD_FILL, .nonzero = 1};
    tu_check_fd(what, loss, ctx, p, grad, n, &o);
}

/* ---- conv2d: finite differences ------------------------------------------ */

typedef struct {
    int N, C, H, W, OC, KH, KW, stride, pad, bias;
} conv_case;

/* stride 1/2, pad 0..3, kernels 1/3/4 and non-square, odd sizes, N > 1 */
static const conv_case CONV_FD[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 1}, {1, 2, 9, 8, 3, 4, 4, 2, 1, 1}, {3, 5, 5, 5, 2, 1, 1, 1, 0, 1},
    {2, 4, 8, 7, 3, 3, 3, 2, 0, 0}, {1, 3, 6, 9, 2, 1, 3, 2, 1, 1}, {2, 3, 7, 5, 4, 1, 1, 2, 0, 1},
    {2, 2, 5, 6, 3, 4, 4, 2, 1, 1}, {1, 2, 3, 3, 2, 3, 3, 1, 1, 1}, {2, 3, 9, 7, 2, 3, 2, 1, 0, 1},
    /* stride 1 with every padding (the input gradient as a convolution up to pad K-1, col2im beyond) */
    {2, 3, 6, 7, 2, 4, 4, 1, 1, 1}, {1, 2, 6, 5, 3, 3, 3, 1, 0, 1}, {1, 2, 4, 5, 2, 3, 3, 1, 2, 1},
    {1, 2, 3, 4, 2, 3, 3, 1, 3, 1}, {2, 5, 6, 6, 2, 4, 4, 1, 2, 0},
};

typedef struct {
    const conv_case *k;
    int OH, OW;
    float *inp, *w, *b, *out, *r;
} conv_ctx;

static size_t conv_in_n(const conv_case *k) { return (size_t)k->N * k->C * k->H * k->W; }
static size_t conv_w_n(const conv_case *k) { return (size_t)k->OC * k->C * k->KH * k->KW; }

static double conv_loss(void *p) {
    conv_ctx *c = p;
    const conv_case *k = c->k;
    vttt_backend_cpu()->conv2d_forward(NULL, c->out, c->inp, c->w, k->bias ? c->b : NULL, k->N, k->C, k->H, k->W,
                                       k->OC, k->KH, k->KW, k->stride, k->pad);
    return tu_dot(c->out, c->r, (size_t)k->N * k->OC * c->OH * c->OW);
}

static void conv_ctx_init(conv_ctx *c, const conv_case *k, tu_rng *rng) {
    c->k = k;
    c->OH = (k->H + 2 * k->pad - k->KH) / k->stride + 1;
    c->OW = (k->W + 2 * k->pad - k->KW) / k->stride + 1;
    size_t no = (size_t)k->N * k->OC * c->OH * c->OW;
    c->inp = tu_alloc_normal(rng, conv_in_n(k), 1.0f);
    c->w = tu_alloc_normal(rng, conv_w_n(k), 0.5f);
    c->b = tu_alloc_normal(rng, k->OC, 0.5f);
    c->r = tu_alloc_normal(rng, no, 1.0f);
    c->out = tu_alloc_fill(no, 0.0f);
}

static void conv_ctx_free(conv_ctx *c) {
    free(c->inp), free(c->w), free(c->b), free(c->r), free(c->out);
}

START_TEST(test_conv2d_fd) {
    for (size_t t = 0; t < sizeof CONV_FD / sizeof CONV_FD[0]; t++) {
        const conv_case *k = &CONV_FD[t];
        tu_rng rng;
        tu_seed(&rng, 100 + t);
        conv_ctx c;
        conv_ctx_init(&c, k, &rng);
        size_t ni = conv_in_n(k), nw = conv_w_n(k);
        float *dinp = tu_alloc_fill(ni, GRAD_FILL), *dw = tu_alloc_fill(nw, GRAD_FILL), *db = tu_alloc_fill(k->OC, GRAD_FILL);
        conv_loss(&c);
        ck_assert_int_eq(vttt_backend_cpu()->conv2d_backward(NULL, dinp, dw, k->bias ? db : NULL, c.r, c.inp, c.w,
                                                             k->N, k->C, k->H, k->W, k->OC, k->KH, k->KW,
                                                             k->stride, k->pad),
                         0);
        char what[160];
        snprintf(what, sizeof what, "conv2d N%d C%d %dx%d OC%d k%dx%d s%d p%d", k->N, k->C, k->H, k->W, k->OC, k->KH,
                 k->KW, k->stride, k->pad);
        char wi[200];
        snprintf(wi, sizeof wi, "%s dinp", what);
        check_fd(wi, conv_loss, &c, c.inp, dinp, ni);
        snprintf(wi, sizeof wi, "%s dw", what);
        check_fd(wi, conv_loss, &c, c.w, dw, nw);
        if (k->bias) {
            snprintf(wi, sizeof wi, "%s dbias", what);
            check_fd(wi, conv_loss, &c, c.b, db, k->OC);
        }
        free(dinp), free(dw), free(db);
        conv_ctx_free(&c);
    }
}
END_TEST

/* ---- conv2d: a naive loop, NULL gradients, threads ---------------------- */

/* out (N, OC, OH, OW) by the definition, in double. */
static void conv_naive(float *out, const float *x, const float *w, const float *b, const conv_case *k, int OH,
                       int OW) {
    for (int n = 0; n < k->N; n++)
        for (int oc = 0; oc < k->OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = b ? b[oc] : 0.0;
                    for (int c = 0; c < k->C; c++)
                        for (int i = 0; i < k->KH; i++)
                            for (int j = 0; j < k->KW; j++) {
                                int ih = oh * k->stride - k->pad + i, iw = ow * k->stride - k->pad + j;
                                if (ih < 0 || ih >= k->H || iw < 0 || iw >= k->W) continue;
                                acc += (double)w[((oc * k->C + c) * k->KH + i) * k->KW + j] *
                                       x[((n * k->C + c) * k->H + ih) * k->W + iw];
                            }
                    out[((n * k->OC + oc) * OH + oh) * OW + ow] = (float)acc;
                }
}

/* Runs forward and backward (gradients pre-filled with GRAD_FILL; want_*
 * select which are passed) and returns them in g[0..3] = out, dinp, dw,
 * dbias. */
static void conv_run(const conv_ctx *c, int want_dx, int want_dw, int want_db, float *g[4]) {
    const conv_case *k = c->k;
    size_t no = (size_t)k->N * k->OC * c->OH * c->OW;
    g[0] = tu_alloc_fill(no, 0.0f);
    g[1] = tu_alloc_fill(conv_in_n(k), GRAD_FILL);
    g[2] = tu_alloc_fill(conv_w_n(k), GRAD_FILL);
    g[3] = tu_alloc_fill(k->OC, GRAD_FILL);
    ttt_conv2d_forward(g[0], c->inp, c->w, c->b, k->N, k->C, k->H, k->W, k->OC, k->KH, k->KW, k->stride, k->pad);
    ttt_conv2d_backward(want_dx ? g[1] : NULL, want_dw ? g[2] : NULL, want_db ? g[3] : NULL, c->r, c->inp, c->w,
                        k->N, k->C, k->H, k->W, k->OC, k->KH, k->KW, k->stride, k->pad);
}

static void conv_free4(float *g[4]) {
    for (int i = 0; i < 4; i++) free(g[i]);
}

/* Shapes big enough to be split over threads (and one that is not), each
 * against a naive loop, with each gradient alone, and with one thread. */
static const conv_case CONV_BIG[] = {
    {5, 16, 32, 32, 24, 3, 3, 1, 1, 1},   /* 35 MFLOP: split over threads (conv2d.c: above 20) */
    {4, 24, 34, 30, 32, 4, 4, 2, 1, 1},   /* 25 MFLOP */
    {6, 64, 32, 32, 40, 1, 1, 1, 0, 1},   /* 31 MFLOP */
    {1, 3, 20, 20, 8, 3, 3, 2, 1, 1},     /* small: one thread */
};

START_TEST(test_conv2d_naive_null_threads) {
    int max_t = omp_get_max_threads();
    for (size_t t = 0; t < sizeof CONV_BIG / sizeof CONV_BIG[0]; t++) {
        const conv_case *k = &CONV_BIG[t];
        tu_rng rng;
        tu_seed(&rng, 300 + t);
        conv_ctx c;
        conv_ctx_init(&c, k, &rng);
        size_t no = (size_t)k->N * k->OC * c.OH * c.OW, ni = conv_in_n(k), nw = conv_w_n(k);
        float *ref = tu_alloc_fill(no, 0.0f), *all[4], *one[4], *ser[4];
        conv_naive(ref, c.inp, c.w, c.b, k, c.OH, c.OW);
        conv_run(&c, 1, 1, 1, all);
        ck_assert_double_lt(tu_rel_err(all[0], ref, no), SAME_TOL);
        /* each gradient alone equals its value in the full backward */
        for (int which = 1; which <= 3; which++) {
            conv_run(&c, which == 1, which == 2, which == 3, one);
            size_t n = which == 1 ? ni : which == 2 ? nw : (size_t)k->OC;
            ck_assert_msg(tu_rel_err(one[which], all[which], n) < SAME_TOL, "case %zu grad %d alone differs", t,
                          which);
            for (int o = 1; o <= 3; o++) {   /* the others untouched */
                if (o == which) continue;
                size_t m = o == 1 ? ni : o == 2 ? nw : (size_t)k->OC;
                for (size_t i = 0; i < m; i++) ck_assert(one[o][i] == GRAD_FILL);
            }
            conv_free4(one);
        }
        /* one thread gives the same bits as several (fixed image blocks) */
        omp_set_num_threads(1);
        conv_run(&c, 1, 1, 1, ser);
        omp_set_num_threads(max_t);
        ck_assert_msg(!memcmp(ser[0], all[0], no * sizeof(float)), "case %zu: out differs with one thread", t);
        ck_assert_msg(!memcmp(ser[1], all[1], ni * sizeof(float)), "case %zu: dinp differs with one thread", t);
        ck_assert_msg(!memcmp(ser[2], all[2], nw * sizeof(float)), "case %zu: dw differs with one thread", t);
        ck_assert_msg(!memcmp(ser[3], all[3], k->OC * sizeof(float)), "case %zu: dbias differs with one thread", t);
        conv_free4(all);
        conv_free4(ser);
        free(ref);
        conv_ctx_free(&c);
    }
}
END_TEST

/* With the address space limited so that not even one chunk of columns
 * fits, conv2d takes its direct loops and still gives the same results. (ASan reserves
 * terabytes of shadow memory, so there the limit cannot be applied.) */
START_TEST(test_conv2d_no_scratch_fallback) {
#if defined(__SANITIZE_ADDRESS__)
    return;
#else
    /* one output row of columns is 4608 x 1024 floats (18 MiB), more than the limit leaves */
    static const conv_case k = {1, 512, 3, 1024, 2, 3, 3, 1, 1, 1};
    /* big blocks from mmap and freed memory returned at once, so that the
     * limit below governs them (glibc would otherwise reuse its heap) */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 20);
    tu_rng rng;
    tu_seed(&rng, 77);
    conv_ctx c;
    conv_ctx_init(&c, &k, &rng);
    float *ref[4], *lim[4];
    conv_run(&c, 1, 1, 1, ref);
    conv_run(&c, 1, 1, 1, lim);   /* buffers for the limited run, allocated now */
    for (size_t i = 0; i < conv_in_n(&k); i++) lim[1][i] = GRAD_FILL;
    for (size_t i = 0; i < conv_w_n(&k); i++) lim[2][i] = GRAD_FILL;
    for (int i = 0; i < k.OC; i++) lim[3][i] = GRAD_FILL;
    memset(lim[0], 0, sizeof(float) * (size_t)k.N * k.OC * c.OH * c.OW);
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    ck_assert(f && fscanf(f, "%lu", &pages) == 1);
    fclose(f);
    struct rlimit rl = {.rlim_cur = pages * 4096ul + (4ul << 20), .rlim_max = RLIM_INFINITY};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
    void *probe = malloc((size_t)4608 * 1024 * sizeof(float));
    ck_assert_msg(probe == NULL, "the address-space limit did not take");
    ttt_conv2d_forward(lim[0], c.inp, c.w, c.b, k.N, k.C, k.H, k.W, k.OC, k.KH, k.KW, k.stride, k.pad);
    ttt_conv2d_backward(lim[1], lim[2], lim[3], c.r, c.inp, c.w, k.N, k.C, k.H, k.W, k.OC, k.KH, k.KW, k.stride,
                        k.pad);
    rl.rlim_cur = RLIM_INFINITY;
    setrlimit(RLIMIT_AS, &rl);
    ck_assert_double_lt(tu_rel_err(lim[0], ref[0], (size_t)k.N * k.OC * c.OH * c.OW), SAME_TOL);
    ck_assert_double_lt(tu_rel_err(lim[1], ref[1], conv_in_n(&k)), SAME_TOL);
    ck_assert_double_lt(tu_rel_err(lim[2], ref[2], conv_w_n(&k)), SAME_TOL);
    ck_assert_double_lt(tu_rel_err(lim[3], ref[3], k.OC), SAME_TOL);
    conv_free4(ref);
    conv_free4(lim);
    conv_ctx_free(&c);
#endif
}
END_TEST

/* ---- oracle dumps -------------------------------------------------------- */

static vttt_st *open_dump(const char *op) {
    char path[512];
    snprintf(path, sizeof path, "%s/oracle_%s.safetensors", VTTT_TEST_DATA, op);
    vttt_st *st = NULL;
    int err = vttt_st_open(&st, path, NULL);
    ck_assert_msg(err == 0, "cannot open %s (regenerate with tools/conv_oracle.py)", path);
    return st;
}

/* Tensor case.name of the given shape, malloc'd fp32. */
static float *dump_read(const vttt_st *st, const char *cs, const char *name, int ndim, const int64_t *shape) {
    char key[64];
    snprintf(key, sizeof key, "%s.%s", cs, name);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *p = tu_alloc_fill(n, 0.0f);
    ck_assert_msg(vttt_st_read_f32(st, key, p, ndim, shape) == 0, "dump tensor %s", key);
    return p;
}

/* The meta string of dump case i, named "c<i>" into cs; NULL past the
 * last case. */
static const char *dump_case(const vttt_st *st, int i, char *cs, size_t n) {
    snprintf(cs, n, "c%d", i);
    return vttt_st_meta(st, cs);
}

/* got against the dump's tensor, reported as "<op> <case> <name>". */
static void expect_close(const char *op, const char *cs, const char *name, const float *got, const float *want,
                         size_t n) {
    double err = tu_rel_err(got, want, n);
    ck_assert_msg(err < ORACLE_TOL, "%s %s %s: rel err %.3g against torch", op, cs, name, err);
}

/* got was pre-filled with GRAD_FILL: subtract it before comparing. */
static void expect_grad(const char *op, const char *cs, const char *name, float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++) got[i] -= GRAD_FILL;
    expect_close(op, cs, name, got, want, n);
}

START_TEST(test_conv2d_oracle) {
    vttt_st *st = open_dump("conv2d");
    int cases = 0;
    char cs[16];
    for (const char *m; (m = dump_case(st, cases, cs, sizeof cs)); cases++) {
        conv_case k;
        ck_assert_int_eq(sscanf(m, "%d %d %d %d %d %d %d %d %d %d", &k.N, &k.C, &k.H, &k.W, &k.OC, &k.KH, &k.KW,
                                &k.stride, &k.pad, &k.bias),
                         10);
        int OH = (k.H + 2 * k.pad - k.KH) / k.stride + 1, OW = (k.W + 2 * k.pad - k.KW) / k.stride + 1;
        int64_t sx[4] = {k.N, k.C, k.H, k.W}, sw[4] = {k.OC, k.C, k.KH, k.KW}, so[4] = {k.N, k.OC, OH, OW},
                sb[1] = {k.OC};
        float *x = dump_read(st, cs, "inp", 4, sx), *w = dump_read(st, cs, "w", 4, sw);
        float *dout = dump_read(st, cs, "dout", 4, so), *out_ref = dump_read(st, cs, "out", 4, so);
        float *dx_ref = dump_read(st, cs, "dinp", 4, sx), *dw_ref = dump_read(st, cs, "dw", 4, sw);
        float *b = k.bias ? dump_read(st, cs, "b", 1, sb) : NULL, *db_ref = k.bias ? dump_read(st, cs, "db", 1, sb) : NULL;
        size_t no = (size_t)k.N * k.OC * OH * OW, ni = conv_in_n(&k), nw = conv_w_n(&k);
        float *out = tu_alloc_fill(no, 0.0f), *dx = tu_alloc_fill(ni, GRAD_FILL), *dw = tu_alloc_fill(nw, GRAD_FILL),
              *db = tu_alloc_fill(k.OC, GRAD_FILL);
        ttt_conv2d_forward(out, x, w, b, k.N, k.C, k.H, k.W, k.OC, k.KH, k.KW, k.stride, k.pad);
        ttt_conv2d_backward(dx, dw, b ? db : NULL, dout, x, w, k.N, k.C, k.H, k.W, k.OC, k.KH, k.KW, k.stride, k.pad);
        expect_close("conv2d", cs, "out", out, out_ref, no);
        expect_grad("conv2d", cs, "dinp", dx, dx_ref, ni);
        expect_grad("conv2d", cs, "dw", dw, dw_ref, nw);
        if (b) expect_grad("conv2d", cs, "db", db, db_ref, k.OC);
        free(x), free(w), free(dout), free(out_ref), free(dx_ref), free(dw_ref), free(b), free(db_ref);
        free(out), free(dx), free(dw), free(db);
    }
    ck_assert_int_ge(cases, 9);
    vttt_st_close(&st);
}
END_TEST

START_TEST(test_groupnorm_oracle) {
    vttt_st *st = open_dump("groupnorm");
    ck_assert_ptr_nonnull(vttt_st_meta(st, "eps"));
    ck_assert_double_eq_tol(atof(vttt_st_meta(st, "eps")), GN_EPS, 1e-12);
    int cases = 0;
    char cs[16];
    for (const char *m; (m = dump_case(st, cases, cs, sizeof cs)); cases++) {
        int N, C, HW, G;
        ck_assert_int_eq(sscanf(m, "%d %d %d %d", &N, &C, &HW, &G), 4);
        /* the dump's inputs are (N, C, H, W) with H*W = HW */
        int64_t sc[1] = {C}, sg[2] = {N, G};
        char key[32];
        snprintf(key, sizeof key, "%s.inp", cs);
        vttt_st_tensor t;
        ck_assert_int_eq(vttt_st_find(st, key, &t), 0);
        ck_assert_int_eq(t.ndim, 4);
        ck_assert_int_eq(t.shape[2] * t.shape[3], HW);
        int64_t s4[4] = {t.shape[0], t.shape[1], t.shape[2], t.shape[3]};
        float *x = dump_read(st, cs, "inp", 4, s4), *w = dump_read(st, cs, "w", 1, sc), *b = dump_read(st, cs, "b", 1, sc);
        float *dout = dump_read(st, cs, "dout", 4, s4), *out_ref = dump_read(st, cs, "out", 4, s4);
        float *mean_ref = dump_read(st, cs, "mean", 2, sg), *rstd_ref = dump_read(st, cs, "rstd", 2, sg);
        float *dx_ref = dump_read(st, cs, "dinp", 4, s4), *dw_ref = dump_read(st, cs, "dw", 1, sc),
              *db_ref = dump_read(st, cs, "db", 1, sc);
        size_t n = (size_t)N * C * HW;
        float *out = tu_alloc_fill(n, 0.0f), *mean = tu_alloc_fill((size_t)N * G, 0.0f), *rstd = tu_alloc_fill((size_t)N * G, 0.0f);
        float *dx = tu_alloc_fill(n, GRAD_FILL), *dw = tu_alloc_fill(C, GRAD_FILL), *db = tu_alloc_fill(C, GRAD_FILL);
        const vttt_backend *cpu = vttt_backend_cpu();
        cpu->groupnorm_forward(out, mean, rstd, x, w, b, N, C, HW, G, GN_EPS);
        cpu->groupnorm_backward(dx, dw, db, dout, x, w, mean, rstd, N, C, HW, G);
        expect_close("groupnorm", cs, "out", out, out_ref, n);
        expect_close("groupnorm", cs, "mean", mean, mean_ref, (size_t)N * G);
        expect_close("groupnorm", cs, "rstd", rstd, rstd_ref, (size_t)N * G);
        expect_grad("groupnorm", cs, "dinp", dx, dx_ref, n);
        expect_grad("groupnorm", cs, "dw", dw, dw_ref, C);
        expect_grad("groupnorm", cs, "db", db, db_ref, C);
        free(x), free(w), free(b), free(dout), free(out_ref), free(mean_ref), free(rstd_ref);
        free(dx_ref), free(dw_ref), free(db_ref), free(out), free(mean), free(rstd), free(dx), free(dw), free(db);
    }
    ck_assert_int_ge(cases, 4);
    vttt_st_close(&st);
}
END_TEST

START_TEST(test_upsample2x_oracle) {
    vttt_st *st = open_dump("upsample2x");
    int cases = 0;
    char cs[16];
    for (const char *m; (m = dump_case(st, cases, cs, sizeof cs)); cases++) {
        int N, C, H, W;
        ck_assert_int_eq(sscanf(m, "%d %d %d %d", &N, &C, &H, &W), 4);
        int64_t sx[4] = {N, C, H, W}, so[4] = {N, C, 2 * H, 2 * W};
        float *x = dump_read(st, cs, "inp", 4, sx), *dout = dump_read(st, cs, "dout", 4, so);
        float *out_ref = dump_read(st, cs, "out", 4, so), *dx_ref = dump_read(st, cs, "dinp", 4, sx);
        size_t ni = (size_t)N * C * H * W;
        float *out = tu_alloc_fill(4 * ni, 0.0f), *dx = tu_alloc_fill(ni, GRAD_FILL);
        vttt_backend_cpu()->upsample2x_forward(out, x, N, C, H, W);
        vttt_backend_cpu()->upsample2x_backward(dx, dout, N, C, H, W);
        ck_assert_mem_eq(out, out_ref, 4 * ni * sizeof(float));   /* copies: exact */
        expect_grad("upsample2x", cs, "dinp", dx, dx_ref, ni);
        free(x), free(dout), free(out_ref), free(dx_ref), free(out), free(dx);
    }
    ck_assert_int_ge(cases, 3);
    vttt_st_close(&st);
}
END_TEST

/* ---- groupnorm: finite differences, no affine ---------------------------- */

typedef struct {
    int N, C, HW, G;
    float *inp, *w, *b, *out, *mean, *rstd, *r;
} gn_ctx;

static double gn_loss(void *p) {
    gn_ctx *c = p;
    ttt_groupnorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, c->HW, c->G, GN_EPS);
    return tu_dot(c->out, c->r, (size_t)c->N * c->C * c->HW);
}

START_TEST(test_groupnorm_fd) {
    static const int shapes[][4] = {{2, 6, 5, 3}, {3, 4, 7, 1}, {1, 4, 9, 4}, {2, 8, 4, 2}, {1, 3, 1, 3}};
    for (int s = 0; s < 5; s++) {
        gn_ctx c = {.N = shapes[s][0], .C = shapes[s][1], .HW = shapes[s][2], .G = shapes[s][3]};
        tu_rng rng;
        tu_seed(&rng, 500 + s);
        size_t n = (size_t)c.N * c.C * c.HW;
        c.inp = tu_alloc_normal(&rng, n, 1.5f);
        c.w = tu_alloc_normal(&rng, c.C, 0.5f);
        for (int i = 0; i < c.C; i++) c.w[i] += 1.0f;
        c.b = tu_alloc_normal(&rng, c.C, 0.5f);
        c.r = tu_alloc_normal(&rng, n, 1.0f);
        c.out = tu_alloc_fill(n, 0.0f);
        c.mean = tu_alloc_fill((size_t)c.N * c.G, 0.0f);
        c.rstd = tu_alloc_fill((size_t)c.N * c.G, 0.0f);
        float *dx = tu_alloc_fill(n, GRAD_FILL), *dw = tu_alloc_fill(c.C, GRAD_FILL), *db = tu_alloc_fill(c.C, GRAD_FILL);
        gn_loss(&c);
        ttt_groupnorm_backward(dx, dw, db, c.r, c.inp, c.w, c.mean, c.rstd, c.N, c.C, c.HW, c.G);
        char what[96];
        snprintf(what, sizeof what, "groupnorm N%d C%d HW%d G%d dinp", c.N, c.C, c.HW, c.G);
        if (c.HW * (c.C / c.G) > 1) check_fd(what, gn_loss, &c, c.inp, dx, n);   /* one value per group: dinp = 0 */
        snprintf(what, sizeof what, "groupnorm N%d C%d HW%d G%d dw", c.N, c.C, c.HW, c.G);
        if (c.HW * (c.C / c.G) > 1) check_fd(what, gn_loss, &c, c.w, dw, c.C);
        snprintf(what, sizeof what, "groupnorm N%d C%d HW%d G%d db", c.N, c.C, c.HW, c.G);
        check_fd(what, gn_loss, &c, c.b, db, c.C);
        /* w, b NULL: the same as weight 1, bias 0 */
        float *one = tu_alloc_fill(c.C, 1.0f), *zero = tu_alloc_fill(c.C, 0.0f), *o2 = tu_alloc_fill(n, 0.0f);
        float *dx1 = tu_alloc_fill(n, 0.0f), *dx2 = tu_alloc_fill(n, 0.0f);
        ttt_groupnorm_forward(c.out, c.mean, c.rstd, c.inp, one, zero, c.N, c.C, c.HW, c.G, GN_EPS);
        ttt_groupnorm_backward(dx1, NULL, NULL, c.r, c.inp, one, c.mean, c.rstd, c.N, c.C, c.HW, c.G);
        ttt_groupnorm_forward(o2, c.mean, c.rstd, c.inp, NULL, NULL, c.N, c.C, c.HW, c.G, GN_EPS);
        ttt_groupnorm_backward(dx2, NULL, NULL, c.r, c.inp, NULL, c.mean, c.rstd, c.N, c.C, c.HW, c.G);
        ck_assert_mem_eq(o2, c.out, n * sizeof(float));
        ck_assert_mem_eq(dx2, dx1, n * sizeof(float));
        free(one), free(zero), free(o2), free(dx1), free(dx2);
        free(c.inp), free(c.w), free(c.b), free(c.r), free(c.out), free(c.mean), free(c.rstd);
        free(dx), free(dw), free(db);
    }
}
END_TEST

/* Shapes above the ops' thresholds for threads: the same bits with one
 * thread (each group and each row is computed the same way by any thread). */
START_TEST(test_groupnorm_upsample_threads) {
    enum { N = 5, C = 32, HW = 8192, G = 8 };   /* 1.3M values (groupnorm.c: threads above 1M) */
    size_t n = (size_t)N * C * HW;
    tu_rng rng;
    tu_seed(&rng, 700);
    float *x = tu_alloc_normal(&rng, n, 1.0f), *dy = tu_alloc_normal(&rng, 4 * n, 1.0f);
    float *w = tu_alloc_normal(&rng, C, 1.0f), *b = tu_alloc_normal(&rng, C, 1.0f);
    float *r[2][6];   /* per thread setting: out, mean, rstd, dinp, dw, db; then the upsample's */
    float *u[2][2];
    int max_t = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k ? max_t : 1);
        r[k][0] = tu_alloc_fill(n, 0.0f), r[k][1] = tu_alloc_fill(N * G, 0.0f), r[k][2] = tu_alloc_fill(N * G, 0.0f);
        r[k][3] = tu_alloc_fill(n, GRAD_FILL), r[k][4] = tu_alloc_fill(C, GRAD_FILL), r[k][5] = tu_alloc_fill(C, GRAD_FILL);
        ttt_groupnorm_forward(r[k][0], r[k][1], r[k][2], x, w, b, N, C, HW, G, GN_EPS);
        ttt_groupnorm_backward(r[k][3], r[k][4], r[k][5], dy, x, w, r[k][1], r[k][2], N, C, HW, G);
        u[k][0] = tu_alloc_fill(4 * n, 0.0f), u[k][1] = tu_alloc_fill(n, GRAD_FILL);
        ttt_upsample2x_forward(u[k][0], x, N, C, 64, HW / 64);
        ttt_upsample2x_backward(u[k][1], dy, N, C, 64, HW / 64);
    }
    omp_set_num_threads(max_t);
    size_t sizes[6] = {n, N * G, N * G, n, C, C};
    for (int i = 0; i < 6; i++) ck_assert_msg(!memcmp(r[0][i], r[1][i], sizes[i] * sizeof(float)), "groupnorm output %d", i);
    ck_assert(!memcmp(u[0][0], u[1][0], 4 * n * sizeof(float)));
    ck_assert(!memcmp(u[0][1], u[1][1], n * sizeof(float)));
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 6; i++) free(r[k][i]);
        free(u[k][0]), free(u[k][1]);
    }
    free(x), free(dy), free(w), free(b);
}
END_TEST

/* ---- upsample2x: finite differences and the layout ----------------------- */

typedef struct {
    int N, C, H, W;
    float *inp, *out, *r;
} up_ctx;

static double up_loss(void *p) {
    up_ctx *c = p;
    ttt_upsample2x_forward(c->out, c->inp, c->N, c->C, c->H, c->W);
    return tu_dot(c->out, c->r, (size_t)c->N * c->C * 4 * c->H * c->W);
}

START_TEST(test_upsample2x_fd) {
    up_ctx c = {.N = 2, .C = 3, .H = 3, .W = 5};
    tu_rng rng;
    tu_seed(&rng, 600);
    size_t ni = (size_t)c.N * c.C * c.H * c.W;
    c.inp = tu_alloc_normal(&rng, ni, 1.0f);
    c.r = tu_alloc_normal(&rng, 4 * ni, 1.0f);
    c.out = tu_alloc_fill(4 * ni, 0.0f);
    float *dx = tu_alloc_fill(ni, GRAD_FILL);
    up_loss(&c);
    for (int n = 0; n < c.N * c.C; n++)
        for (int y = 0; y < 2 * c.H; y++)
            for (int x = 0; x < 2 * c.W; x++)
                ck_assert(c.out[((size_t)n * 2 * c.H + y) * 2 * c.W + x] ==
                          c.inp[((size_t)n * c.H + y / 2) * c.W + x / 2]);
    ttt_upsample2x_backward(dx, c.r, c.N, c.C, c.H, c.W);
    check_fd("upsample2x dinp", up_loss, &c, c.inp, dx, ni);
    free(c.inp), free(c.r), free(c.out), free(dx);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("conv_ops");
    tcase_add_test(tc, test_conv2d_fd);
    tcase_add_test(tc, test_conv2d_naive_null_threads);
    tcase_add_test(tc, test_conv2d_no_scratch_fallback);
    tcase_add_test(tc, test_conv2d_oracle);
    tcase_add_test(tc, test_groupnorm_oracle);
    tcase_add_test(tc, test_upsample2x_oracle);
    tcase_add_test(tc, test_groupnorm_fd);
    tcase_add_test(tc, test_upsample2x_fd);
    tcase_add_test(tc, test_groupnorm_upsample_threads);
    return tu_run("conv_ops", tc, CK_FORK_GETENV);
}
