/* The CUDA backend against the CPU backend, op by op: the same random
 * inputs through both tables, then every output and every gradient
 * compared. Gradient buffers are pre-filled with the same random values on
 * both sides (GRAD_FILL scale), so a backward that overwrote instead of
 * accumulating (+=) would differ by the fill. NULL gradients are passed to
 * check that they are skipped.
 *
 * Tolerances are tu_rel_err (max abs difference over max |CPU value|):
 * - TOL_POINTWISE 1e-5 for elementwise maps, where only libm and CUDA's
 *   expf/tanhf/sinf/cosf (a few ulp apart) and FMA contraction differ;
 * - TOL_REDUCE 1e-4 for everything that sums (row statistics, column sums,
 *   GEMMs, softmax), where the order of the additions differs (the CPU also
 *   sums some in double);
 * - exact for gathers (embedding forward).
 *
 * Without a GPU the program prints one SKIP line and exits 77, which ctest
 * reports as skipped. Check runs without fork: a CUDA context does not
 * survive fork, and the backend is opened once in main. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "testutil.h"
#include "ttt.h"

#define TOL_POINTWISE 1e-5
#define TOL_REDUCE 1e-4
#define GRAD_FILL 0.1f

static vttt_backend *g_gpu;
static char g_last_msg[512]; /* the last logged message (the reason for ENODEV) */
static int g_expect_error;   /* a test provokes an error: do not show its message */

static void test_log(void *user, int level, const char *msg) {
    (void)user;
    snprintf(g_last_msg, sizeof g_last_msg, "%s", msg);
    if (level <= VTTT_LOG_WARNING && !g_expect_error) fprintf(stderr, "vttt log: %s\n", msg);
}
static const vttt_backend *g_cpu;
static tu_rng g_rng;

/* ---- buffers on both sides ------------------------------------------------ */

/* The same n floats on the host (h, fed to the CPU table) and on the device
 * (d, fed to the CUDA table). Every buffer is released at teardown. */
typedef struct {
    float *h, *d;
    size_t n;
} buf2;

#define MAX_BUFS 1024
static void *g_host[MAX_BUFS], *g_dev[MAX_BUFS];
static int g_nhost, g_ndev;

static void *host_alloc(size_t bytes) {
    ck_assert_int_lt(g_nhost, MAX_BUFS);
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_ptr_nonnull(p);
    return g_host[g_nhost++] = p;
}

static void *dev_alloc(size_t bytes) {
    ck_assert_int_lt(g_ndev, MAX_BUFS);
    void *p = NULL;
    ck_assert_int_eq(g_gpu->alloc(g_gpu->ctx, &p, bytes), VTTT_OK);
    return g_dev[g_ndev++] = p;
}

static void release_all(void) {
    for (int i = 0; i < g_ndev; i++) g_gpu->free(g_gpu->ctx, g_dev[i]);
    for (int i = 0; i < g_nhost; i++) free(g_host[i]);
    g_ndev = g_nhost = 0;
}

static void *upload(const void *h, size_t bytes) {
    void *d = dev_alloc(bytes);
    ck_assert_int_eq(g_gpu->to_device(g_gpu->ctx, d, h, bytes), VTTT_OK);
    return d;
}

/* n floats N(0, scale^2), on both sides. */
static buf2 rand2(size_t n, float scale) {
    buf2 b = {host_alloc(n * sizeof(float)), NULL, n};
    tu_fill_normal(&g_rng, b.h, n, scale);
    b.d = upload(b.h, n * sizeof(float));
    return b;
}

/* n ids on both sides (the host copy is returned, the device one in *d). */
static int32_t *ids2(const int32_t *vals, size_t n, int32_t **d) {
    int32_t *h = host_alloc(n * sizeof(int32_t));
    memcpy(h, vals, n * sizeof(int32_t));
    *d = upload(h, n * sizeof(int32_t));
    return h;
}

/* Fetches the device side (after a sync that must succeed) and compares it
 * with the host side. */
static void expect_close(const char *what, buf2 b, double tol) {
    ck_assert_int_eq(g_gpu->sync(g_gpu->ctx), VTTT_OK);
    float *got = malloc(b.n * sizeof(float) + 1);
    ck_assert_ptr_nonnull(got);
    ck_assert_int_eq(g_gpu->to_host(g_gpu->ctx, got, b.d, b.n * sizeof(float)), VTTT_OK);
    double err = tu_rel_err(got, b.h, b.n);
    free(got);
    ck_assert_msg(err <= tol, "%s: CUDA vs CPU relative error %.3g > %.3g", what, err, tol);
}

/* The buffer's pointer on one side, or NULL when the gradient is not wanted. */
#define PH(b, on) ((on) ? (b).h : NULL)
#define PD(b, on) ((on) ? (b).d : NULL)

static void setup(void) { tu_seed(&g_rng, 1234); }
static void teardown(void) { release_all(); }

/* ---- memory ------------------------------------------------------------------ */

START_TEST(test_memory) {
    ck_assert_str_eq(g_gpu->name, "cuda");
    ck_assert_int_eq(g_gpu->device, VTTT_DEVICE_CUDA);
    buf2 a = rand2(1000, 1.0f);
    float *back = host_alloc(1000 * sizeof(float));
    ck_assert_int_eq(g_gpu->to_host(g_gpu->ctx, back, a.d, 1000 * sizeof(float)), VTTT_OK);
    ck_assert_mem_eq(back, a.h, 1000 * sizeof(float));
    ck_assert_int_eq(g_gpu->to_device(g_gpu->ctx, a.d, a.h, 0), VTTT_OK);
    /* An impossible allocation fails cleanly and leaves nothing pending. */
    void *p = (void *)1;
    g_expect_error = 1;
    ck_assert_int_eq(g_gpu->alloc(g_gpu->ctx, &p, (size_t)1 << 60), VTTT_ENOMEM);
    g_expect_error = 0;
    ck_assert_ptr_null(p);
    ck_assert_int_eq(g_gpu->sync(g_gpu->ctx), VTTT_OK);
    /* Tensors allocate through the table. */
    vttt_tensor t;
    int64_t shape[2] = {3, 5};
    ck_assert_int_eq(vttt_tensor_alloc(&t, g_gpu, VTTT_DTYPE_F32, 2, shape), VTTT_OK);
    ck_assert_int_eq(t.device, VTTT_DEVICE_CUDA);
    vttt_tensor_free(&t, g_gpu);
    ck_assert_ptr_null(t.data);
}
END_TEST

/* ---- matmul and linear ---------------------------------------------------- */

/* C (M,N) = alpha op(A) op(B) + beta C with padded leading dimensions. */
static void check_matmul(int ta, int tb) {
    const int M = 37, N = 45, K = 29, pad = 3;
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    buf2 A = rand2((size_t)(ta ? K : M) * lda, 1.0f), B = rand2((size_t)(tb ? N : K) * ldb, 1.0f);
    buf2 C = rand2((size_t)M * ldc, 1.0f);
    ck_assert_int_eq(g_cpu->matmul(NULL, ta, tb, M, N, K, 0.7f, A.h, lda, B.h, ldb, 0.3f, C.h, ldc), VTTT_OK);
    ck_assert_int_eq(g_gpu->matmul(g_gpu->ctx, ta, tb, M, N, K, 0.7f, A.d, lda, B.d, ldb, 0.3f, C.d, ldc), VTTT_OK);
    char what[32];
    snprintf(what, sizeof what, "matmul ta=%d tb=%d", ta, tb);
    expect_close(what, C, TOL_REDUCE);
}

START_TEST(test_matmul) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) check_matmul(ta, tb);
    buf2 C = rand2(4, 1.0f);
    ck_assert_int_eq(g_gpu->matmul(g_gpu->ctx, 0, 0, 0, 2, 2, 1.0f, C.d, 2, C.d, 2, 0.0f, C.d, 2), VTTT_OK);
    g_expect_error = 1;
    ck_assert_int_eq(g_gpu->matmul(g_gpu->ctx, 0, 0, -1, 2, 2, 1.0f, C.d, 2, C.d, 2, 0.0f, C.d, 2), VTTT_EINVAL);
    g_expect_error = 0;
    ck_assert_int_eq(g_gpu->sync(g_gpu->ctx), VTTT_OK);
}
END_TEST

/* Linear forward (with/without bias) and backward with the gradients
 * selected by the bits of `want` (1 dinp, 2 dw, 4 dbias). */
static void check_linear(int with_bias, int want) {
    const int N = 33, C = 70, OC = 45;
    buf2 x = rand2((size_t)N * C, 1.0f), w = rand2((size_t)OC * C, 0.2f), b = rand2(OC, 1.0f);
    buf2 y = rand2((size_t)N * OC, 1.0f), dy = rand2((size_t)N * OC, 1.0f);
    buf2 dx = rand2((size_t)N * C, GRAD_FILL), dw = rand2((size_t)OC * C, GRAD_FILL), db = rand2(OC, GRAD_FILL);
    ck_assert_int_eq(g_cpu->linear_forward(NULL, y.h, x.h, w.h, PH(b, with_bias), N, C, OC), VTTT_OK);
    ck_assert_int_eq(g_gpu->linear_forward(g_gpu->ctx, y.d, x.d, w.d, PD(b, with_bias), N, C, OC), VTTT_OK);
    expect_close("linear_forward out", y, TOL_REDUCE);
    ck_assert_int_eq(g_cpu->linear_backward(NULL, PH(dx, want & 1), PH(dw, want & 2), PH(db, want & 4), dy.h,
                                            x.h, w.h, N, C, OC),
                     VTTT_OK);
    ck_assert_int_eq(g_gpu->linear_backward(g_gpu->ctx, PD(dx, want & 1), PD(dw, want & 2), PD(db, want & 4),
                                            dy.d, x.d, w.d, N, C, OC),
                     VTTT_OK);
    expect_close("linear_backward dinp", dx, TOL_REDUCE);
    expect_close("linear_backward dw", dw, TOL_REDUCE);
    expect_close("linear_backward dbias", db, TOL_REDUCE);
}

START_TEST(test_linear) {
    check_linear(1, 7);
    check_linear(0, 7);
    check_linear(1, 2);
    check_linear(1, 5);
}
END_TEST

/* ---- norms -------------------------------------------------------------------- */

static void check_rmsnorm(int N, int C, int want) {
    buf2 x = rand2((size_t)N * C, 2.0f), w = rand2(C, 1.0f), y = rand2((size_t)N * C, 1.0f), r = rand2(N, 1.0f);
    buf2 dy = rand2((size_t)N * C, 1.0f), dx = rand2((size_t)N * C, GRAD_FILL), dw = rand2(C, GRAD_FILL);
    g_cpu->rmsnorm_forward(y.h, r.h, x.h, w.h, N, C, 1e-6f);
    g_gpu->rmsnorm_forward(y.d, r.d, x.d, w.d, N, C, 1e-6f);
    expect_close("rmsnorm_forward out", y, TOL_REDUCE);
    expect_close("rmsnorm_forward rstd", r, TOL_REDUCE);
    g_cpu->rmsnorm_backward(PH(dx, want & 1), PH(dw, want & 2), dy.h, x.h, w.h, r.h, N, C);
    g_gpu->rmsnorm_backward(PD(dx, want & 1), PD(dw, want & 2), dy.d, x.d, w.d, r.d, N, C);
    expect_close("rmsnorm_backward dinp", dx, TOL_REDUCE);
    expect_close("rmsnorm_backward dw", dw, TOL_REDUCE);
    /* rstd may be NULL in the forward. */
    g_gpu->rmsnorm_forward(y.d, NULL, x.d, w.d, N, C, 1e-6f);
    expect_close("rmsnorm_forward out (no rstd)", y, TOL_REDUCE);
}

START_TEST(test_rmsnorm) {
    check_rmsnorm(37, 64, 3);
    check_rmsnorm(13, 1000, 3);
    check_rmsnorm(5, 7, 3);
    check_rmsnorm(21, 100, 1);
    check_rmsnorm(21, 100, 2);
}
END_TEST

/* want bits: 1 dinp, 2 dw, 4 db. */
static void check_layernorm(int N, int C, int want) {
    buf2 x = rand2((size_t)N * C, 2.0f), w = rand2(C, 1.0f), b = rand2(C, 1.0f);
    buf2 y = rand2((size_t)N * C, 1.0f), m = rand2(N, 1.0f), r = rand2(N, 1.0f), dy = rand2((size_t)N * C, 1.0f);
    buf2 dx = rand2((size_t)N * C, GRAD_FILL), dw = rand2(C, GRAD_FILL), db = rand2(C, GRAD_FILL);
    for (size_t i = 0; i < x.n; i++) x.h[i] += 3.0f; /* a non-zero mean */
    ck_assert_int_eq(g_gpu->to_device(g_gpu->ctx, x.d, x.h, x.n * sizeof(float)), VTTT_OK);
    g_cpu->layernorm_forward(y.h, m.h, r.h, x.h, w.h, b.h, N, C, 1e-6f);
    g_gpu->layernorm_forward(y.d, m.d, r.d, x.d, w.d, b.d, N, C, 1e-6f);
    expect_close("layernorm_forward out", y, TOL_REDUCE);
    expect_close("layernorm_forward mean", m, TOL_REDUCE);
    expect_close("layernorm_forward rstd", r, TOL_REDUCE);
    g_cpu->layernorm_backward(PH(dx, want & 1), PH(dw, want & 2), PH(db, want & 4), dy.h, x.h, w.h, m.h, r.h, N, C);
    g_gpu->layernorm_backward(PD(dx, want & 1), PD(dw, want & 2), PD(db, want & 4), dy.d, x.d, w.d, m.d, r.d, N, C);
    expect_close("layernorm_backward dinp", dx, TOL_REDUCE);
    expect_close("layernorm_backward dw", dw, TOL_REDUCE);
    expect_close("layernorm_backward db", db, TOL_REDUCE);
    g_gpu->layernorm_forward(y.d, NULL, NULL, x.d, w.d, b.d, N, C, 1e-6f);
    expect_close("layernorm_forward out (no stats)", y, TOL_REDUCE);
}

START_TEST(test_layernorm) {
    check_layernorm(37, 64, 7);
    check_layernorm(13, 1000, 7);
    check_layernorm(5, 7, 7);
    check_layernorm(21, 100, 1);
    check_layernorm(21, 100, 6);
    check_layernorm(21, 100, 4);
}
END_TEST

/* ---- elementwise ---------------------------------------------------------- */

typedef void (*map_fwd)(float *out, const float *inp, size_t n);
typedef void (*map_bwd)(float *dinp, const float *dout, const float *inp, size_t n);

/* A unary op: forward, then backward fed with `saved` (the input, or the
 * output for sigmoid). */
static void check_unary(const char *name, map_fwd cf, map_fwd gf, map_bwd cb, map_bwd gb, int bwd_takes_out) {
    const size_t n = 10007;
    buf2 x = rand2(n, 3.0f), y = rand2(n, 1.0f), dy = rand2(n, 1.0f), dx = rand2(n, GRAD_FILL);
    char what[64];
    cf(y.h, x.h, n);
    gf(y.d, x.d, n);
    snprintf(what, sizeof what, "%s forward", name);
    expect_close(what, y, TOL_POINTWISE);
    buf2 saved = bwd_takes_out ? y : x;
    cb(dx.h, dy.h, saved.h, n);
    gb(dx.d, dy.d, saved.d, n);
    snprintf(what, sizeof what, "%s backward", name);
    expect_close(what, dx, TOL_POINTWISE);
}

START_TEST(test_pointwise) {
    check_unary("gelu", g_cpu->gelu_forward, g_gpu->gelu_forward, g_cpu->gelu_backward, g_gpu->gelu_backward, 0);
    check_unary("silu", g_cpu->silu_forward, g_gpu->silu_forward, g_cpu->silu_backward, g_gpu->silu_backward, 0);
    check_unary("sigmoid", g_cpu->sigmoid_forward, g_gpu->sigmoid_forward, g_cpu->sigmoid_backward,
                g_gpu->sigmoid_backward, 1);
}
END_TEST

START_TEST(test_swiglu) {
    const size_t n = 10007;
    buf2 g = rand2(n, 3.0f), u = rand2(n, 1.0f), y = rand2(n, 1.0f), dy = rand2(n, 1.0f);
    buf2 dg = rand2(n, GRAD_FILL), du = rand2(n, GRAD_FILL);
    g_cpu->swiglu_forward(y.h, g.h, u.h, n);
    g_gpu->swiglu_forward(y.d, g.d, u.d, n);
    expect_close("swiglu forward", y, TOL_POINTWISE);
    for (int want = 1; want <= 3; want++) {
        g_cpu->swiglu_backward(PH(dg, want & 1), PH(du, want & 2), dy.h, g.h, u.h, n);
        g_gpu->swiglu_backward(PD(dg, want & 1), PD(du, want & 2), dy.d, g.d, u.d, n);
        expect_close("swiglu backward dgate", dg, TOL_POINTWISE);
        expect_close("swiglu backward dup", du, TOL_POINTWISE);
    }
}
END_TEST

/* ---- rotary ------------------------------------------------------------------ */

/* Forward out of place and in place, backward accumulating. Positions stay
 * small (< 64) so that a 1-ulp difference between the two libms' powf or
 * sinf does not grow with the angle. */
static void check_rotary(int B, int T, int H, int f, int64_t pos0, int pos_mod) {
    size_t n = (size_t)B * T * H * f;
    buf2 x = rand2(n, 1.0f), y = rand2(n, 1.0f), dy = rand2(n, 1.0f), dx = rand2(n, GRAD_FILL);
    g_cpu->rotary_forward(y.h, x.h, B, T, H, f, pos0, pos_mod, 10000.0f);
    g_gpu->rotary_forward(y.d, x.d, B, T, H, f, pos0, pos_mod, 10000.0f);
    expect_close("rotary_forward", y, TOL_POINTWISE);
    g_cpu->rotary_backward(dx.h, dy.h, B, T, H, f, pos0, pos_mod, 10000.0f);
    g_gpu->rotary_backward(dx.d, dy.d, B, T, H, f, pos0, pos_mod, 10000.0f);
    expect_close("rotary_backward", dx, TOL_POINTWISE);
    g_cpu->rotary_forward(x.h, x.h, B, T, H, f, pos0, pos_mod, 10000.0f);
    g_gpu->rotary_forward(x.d, x.d, B, T, H, f, pos0, pos_mod, 10000.0f);
    expect_close("rotary_forward in place", x, TOL_POINTWISE);
}

START_TEST(test_rotary) {
    check_rotary(2, 20, 3, 16, 5, 16);
    check_rotary(2, 20, 3, 16, 3, 0);
    check_rotary(1, 40, 2, 64, 7, 16);
    check_rotary(3, 5, 2, 7, 9, 4); /* odd head dim: the last element passes through */
}
END_TEST

/* ---- conv1d ------------------------------------------------------------------ */

/* want bits: 1 dinp, 2 dw, 4 dbias. */
static void check_conv1d(int B, int T, int C, int K, int with_state, int with_bias, int want) {
    size_t n = (size_t)B * T * C;
    buf2 x = rand2(n, 1.0f), w = rand2((size_t)C * K, 0.5f), b = rand2(C, 1.0f), st = rand2((size_t)B * (K - 1) * C + 1, 1.0f);
    buf2 y = rand2(n, 1.0f), dy = rand2(n, 1.0f);
    buf2 dx = rand2(n, GRAD_FILL), dw = rand2((size_t)C * K, GRAD_FILL), db = rand2(C, GRAD_FILL);
    g_cpu->conv1d_forward(y.h, x.h, w.h, PH(b, with_bias), PH(st, with_state), B, T, C, K);
    g_gpu->conv1d_forward(y.d, x.d, w.d, PD(b, with_bias), PD(st, with_state), B, T, C, K);
    expect_close("conv1d_forward", y, TOL_REDUCE);
    g_cpu->conv1d_backward(PH(dx, want & 1), PH(dw, want & 2), PH(db, want & 4), dy.h, x.h, w.h,
                           PH(st, with_state), B, T, C, K);
    g_gpu->conv1d_backward(PD(dx, want & 1), PD(dw, want & 2), PD(db, want & 4), dy.d, x.d, w.d,
                           PD(st, with_state), B, T, C, K);
    expect_close("conv1d_backward dinp", dx, TOL_REDUCE);
    expect_close("conv1d_backward dw", dw, TOL_REDUCE);
    expect_close("conv1d_backward dbias", db, TOL_REDUCE);
}

START_TEST(test_conv1d) {
    check_conv1d(2, 9, 70, 4, 1, 1, 7);
    check_conv1d(2, 9, 70, 4, 0, 1, 7);
    check_conv1d(3, 2, 33, 4, 1, 0, 7); /* T < K-1: outputs read the state only */
    check_conv1d(1, 50, 16, 1, 0, 1, 7);
    check_conv1d(2, 9, 70, 4, 1, 1, 2);
    check_conv1d(2, 9, 70, 4, 1, 1, 5);
}
END_TEST

/* ---- embedding ----------------------------------------------------------- */

START_TEST(test_embedding) {
    enum { N = 40, V = 50, C = 33 };
    int32_t vals[N];
    for (int i = 0; i < N; i++) vals[i] = (int32_t)(tu_uniform(&g_rng) * 10) * 5 % V; /* repeats */
    int32_t *ids_d, *ids_h = ids2(vals, N, &ids_d);
    buf2 table = rand2((size_t)V * C, 1.0f), y = rand2((size_t)N * C, 1.0f), dy = rand2((size_t)N * C, 1.0f);
    buf2 dtab = rand2((size_t)V * C, GRAD_FILL);
    ck_assert_int_eq(g_cpu->embedding_forward(y.h, ids_h, table.h, N, V, C), VTTT_OK);
    ck_assert_int_eq(g_gpu->embedding_forward(y.d, ids_d, table.d, N, V, C), VTTT_OK);
    expect_close("embedding_forward", y, 0.0);
    g_cpu->embedding_backward(dtab.h, dy.h, ids_h, N, C);
    g_gpu->embedding_backward(dtab.d, dy.d, ids_d, N, C);
    expect_close("embedding_backward", dtab, TOL_REDUCE);
    /* Out-of-range ids: EINVAL, output untouched; backward skips negative ids. */
    int32_t bad_hi[N], bad_lo[N];
    memcpy(bad_hi, vals, sizeof vals);
    memcpy(bad_lo, vals, sizeof vals);
    bad_hi[N - 1] = V;
    bad_lo[3] = -1;
    int32_t *hi_d, *lo_d, *lo_h;
    ids2(bad_hi, N, &hi_d);
    lo_h = ids2(bad_lo, N, &lo_d);
    buf2 y2 = rand2((size_t)N * C, 1.0f);
    ck_assert_int_eq(g_gpu->embedding_forward(y2.d, hi_d, table.d, N, V, C), VTTT_EINVAL);
    ck_assert_int_eq(g_gpu->embedding_forward(y2.d, lo_d, table.d, N, V, C), VTTT_EINVAL);
    expect_close("embedding_forward untouched on EINVAL", y2, 0.0);
    g_cpu->embedding_backward(dtab.h, dy.h, lo_h, N, C);
    g_gpu->embedding_backward(dtab.d, dy.d, lo_d, N, C);
    expect_close("embedding_backward (negative id skipped)", dtab, TOL_REDUCE);
}
END_TEST

/* ---- cross-entropy ------------------------------------------------------- */

/* Targets: mostly valid, row 1 ignored (-1); row 2 has a -inf logit. */
static void check_xent(int N, int V) {
    buf2 z = rand2((size_t)N * V, 3.0f), loss = rand2(N, 1.0f), dloss = rand2(N, 1.0f);
    buf2 dz = rand2((size_t)N * V, GRAD_FILL);
    int32_t vals[64];
    ck_assert_int_le(N, 64);
    for (int i = 0; i < N; i++) vals[i] = (int32_t)(tu_uniform(&g_rng) * V);
    vals[1] = -1;
    z.h[2 * (size_t)V + (vals[2] + 1) % V] = -INFINITY;
    ck_assert_int_eq(g_gpu->to_device(g_gpu->ctx, z.d, z.h, z.n * sizeof(float)), VTTT_OK);
    int32_t *t_d, *t_h = ids2(vals, N, &t_d);
    ck_assert_int_eq(g_cpu->xent_forward(loss.h, z.h, t_h, N, V), VTTT_OK);
    ck_assert_int_eq(g_gpu->xent_forward(loss.d, z.d, t_d, N, V), VTTT_OK);
    expect_close("xent_forward", loss, TOL_REDUCE);
    g_cpu->xent_backward(dz.h, dloss.h, z.h, t_h, N, V);
    g_gpu->xent_backward(dz.d, dloss.d, z.d, t_d, N, V);
    expect_close("xent_backward", dz, TOL_REDUCE);
    g_cpu->xent_backward(dz.h, NULL, z.h, t_h, N, V);
    g_gpu->xent_backward(dz.d, NULL, z.d, t_d, N, V);
    expect_close("xent_backward (dloss NULL)", dz, TOL_REDUCE);
    /* A target >= V: EINVAL forward, losses untouched; skipped backward. */
    vals[0] = V;
    int32_t *bad_d, *bad_h = ids2(vals, N, &bad_d);
    buf2 loss2 = rand2(N, 1.0f);
    ck_assert_int_eq(g_gpu->xent_forward(loss2.d, z.d, bad_d, N, V), VTTT_EINVAL);
    expect_close("xent_forward untouched on EINVAL", loss2, 0.0);
    g_cpu->xent_backward(dz.h, dloss.h, z.h, bad_h, N, V);
    g_gpu->xent_backward(dz.d, dloss.d, z.d, bad_d, N, V);
    expect_close("xent_backward (invalid target skipped)", dz, TOL_REDUCE);
}

START_TEST(test_xent) {
    check_xent(19, 7);
    check_xent(19, 1000);
    check_xent(5, 50257);
}
END_TEST

/* ---- bf16 (ttt/cuda/bf16_cuda.cu) ------------------------------------------------
 * Tolerances per dtype: conversions are exact (the GPU's round-to-nearest-
 * even bits equal vttt_f32_to_bf16's, and bf16 -> fp32 is exact). A bf16
 * GEMM with fp32 accumulation is compared two ways: against the CPU's fp32
 * linear on the same bf16-rounded inputs, where every product is exact in
 * fp32 and only the order of the sums differs (TOL_REDUCE), and against
 * the fp32 linear on the unrounded inputs, where bf16's 8-bit significand
 * (relative rounding <= 2^-9 per input) shows: TOL_BF16_VS_F32. */
#define TOL_BF16_VS_F32 1e-2

#include "cuda/ttt_cuda.h"

/* Floats that exercise the rounding: random, ties (low half 0x8000) of
 * even and odd significands, the largest finite values, infinities. */
static void bf16_inputs(float *x, size_t n) {
    tu_fill_normal(&g_rng, x, n, 3.0f);
    uint32_t special[] = {0x3f808000u, 0x3f818000u, 0xbf808000u, 0x7f7fffffu, 0x7f800000u, 0xff800000u,
                          0x00000000u, 0x80000000u, 0x00008000u, 0x3f80ffffu};
    for (size_t i = 0; i < sizeof special / sizeof special[0] && i < n; i++) memcpy(&x[i * 7 % n], &special[i], 4);
}

START_TEST(test_bf16_convert) {
    size_t n = 10007;
    float *x = host_alloc(n * sizeof(float)), *back = host_alloc(n * sizeof(float));
    uint16_t *got = host_alloc(n * sizeof(uint16_t));
    bf16_inputs(x, n);
    float *xd = upload(x, n * sizeof(float)), *backd = dev_alloc(n * sizeof(float));
    uint16_t *bd = dev_alloc(n * sizeof(uint16_t));
    ck_assert_int_eq(ttt_cuda_to_bf16(g_gpu, bd, xd, n), VTTT_OK);
    ck_assert_int_eq(ttt_cuda_from_bf16(g_gpu, backd, bd, n), VTTT_OK);
    ck_assert_int_eq(g_gpu->to_host(g_gpu->ctx, got, bd, n * sizeof(uint16_t)), VTTT_OK);
    ck_assert_int_eq(g_gpu->to_host(g_gpu->ctx, back, backd, n * sizeof(float)), VTTT_OK);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(got[i] == vttt_f32_to_bf16(x[i]), "to_bf16(%a) = 0x%04x, host 0x%04x", (double)x[i], got[i],
                      vttt_f32_to_bf16(x[i]));
        float want = vttt_bf16_to_f32(got[i]);
        ck_assert_msg(memcmp(&back[i], &want, 4) == 0, "from_bf16(0x%04x) = %a, host %a", got[i], (double)back[i],
                      (double)want);
    }
}
END_TEST

static void check_gemm_bf16(int N, int C, int OC) {
    buf2 x = rand2((size_t)N * C, 1.0f), w = rand2((size_t)OC * C, 0.05f);
    buf2 y = rand2((size_t)N * OC, 1.0f);
    buf2 yr = {host_alloc(y.n * sizeof(float)), NULL, y.n};
    float *xr = host_alloc(x.n * sizeof(float)), *wr = host_alloc(w.n * sizeof(float));
    uint16_t *wbh = host_alloc(w.n * sizeof(uint16_t));
    for (size_t i = 0; i < x.n; i++) xr[i] = vttt_bf16_to_f32(vttt_f32_to_bf16(x.h[i]));
    for (size_t i = 0; i < w.n; i++) wbh[i] = vttt_f32_to_bf16(w.h[i]), wr[i] = vttt_bf16_to_f32(wbh[i]);
    uint16_t *wb = upload(wbh, w.n * sizeof(uint16_t)), *xb = dev_alloc(x.n * sizeof(uint16_t));
    ck_assert_int_eq(ttt_cuda_linear_bf16(g_gpu, y.d, x.d, wb, xb, N, C, OC), VTTT_OK);
    ck_assert_int_eq(g_cpu->linear_forward(NULL, yr.h, xr, wr, NULL, N, C, OC), VTTT_OK);
    ck_assert_int_eq(g_cpu->linear_forward(NULL, y.h, x.h, w.h, NULL, N, C, OC), VTTT_OK);
    /* yr.h: fp32 on the rounded inputs; y.h: fp32 on the originals */
    buf2 same = {yr.h, y.d, y.n};
    char what[96];
    snprintf(what, sizeof what, "bf16 linear %dx%dx%d vs fp32 on bf16 inputs", N, C, OC);
    expect_close(what, same, TOL_REDUCE);
    snprintf(what, sizeof what, "bf16 linear %dx%dx%d vs fp32", N, C, OC);
    expect_close(what, y, TOL_BF16_VS_F32);
}

START_TEST(test_gemm_bf16) {
    check_gemm_bf16(37, 128, 96);
    check_gemm_bf16(256, 768, 768);
    check_gemm_bf16(2048, 768, 12); /* the learning-rate gate's shape */
}
END_TEST

/* ---- 2D image ops (conv2d_cudnn.cu, image_cuda.cu) ----------------------------
 * cuDNN runs in FMA math (no TF32) with deterministic algorithms, so the
 * convolutions differ from im2col + sgemm only in the order of the sums:
 * TOL_REDUCE. Upsampling copies exactly; its backward adds four values. */

/* want bits: 1 dinp, 2 dw, 4 dbias. */
static void check_conv2d(int N, int C, int H, int W, int OC, int K, int stride, int pad, int with_bias, int want) {
    int OH = (H + 2 * pad - K) / stride + 1, OW = (W + 2 * pad - K) / stride + 1;
    size_t ni = (size_t)N * C * H * W, nw = (size_t)OC * C * K * K, no = (size_t)N * OC * OH * OW;
    buf2 x = rand2(ni, 1.0f), w = rand2(nw, 0.3f), b = rand2(OC, 1.0f), y = rand2(no, 1.0f), dy = rand2(no, 1.0f);
    buf2 dx = rand2(ni, GRAD_FILL), dw = rand2(nw, GRAD_FILL), db = rand2(OC, GRAD_FILL);
    char what[128];
    snprintf(what, sizeof what, "conv2d N%d C%d %dx%d OC%d k%d s%d p%d bias%d want%d", N, C, H, W, OC, K, stride, pad,
             with_bias, want);
    ck_assert_int_eq(g_cpu->conv2d_forward(NULL, y.h, x.h, w.h, PH(b, with_bias), N, C, H, W, OC, K, K, stride, pad),
                     VTTT_OK);
    ck_assert_int_eq(g_gpu->conv2d_forward(g_gpu->ctx, y.d, x.d, w.d, PD(b, with_bias), N, C, H, W, OC, K, K, stride,
                                           pad),
                     VTTT_OK);
    expect_close(what, y, TOL_REDUCE);
    ck_assert_int_eq(g_cpu->conv2d_backward(NULL, PH(dx, want & 1), PH(dw, want & 2), PH(db, want & 4), dy.h, x.h,
                                            w.h, N, C, H, W, OC, K, K, stride, pad),
                     VTTT_OK);
    ck_assert_int_eq(g_gpu->conv2d_backward(g_gpu->ctx, PD(dx, want & 1), PD(dw, want & 2), PD(db, want & 4), dy.d,
                                            x.d, w.d, N, C, H, W, OC, K, K, stride, pad),
                     VTTT_OK);
    expect_close(what, dx, TOL_REDUCE);
    expect_close(what, dw, TOL_REDUCE);
    expect_close(what, db, TOL_REDUCE);
}

START_TEST(test_conv2d) {
    /* the tokenizer's shapes (64x64 frames, widths 32/64) at batch 4 */
    check_conv2d(4, 3, 64, 64, 32, 3, 1, 1, 1, 7);
    check_conv2d(4, 32, 64, 64, 32, 3, 2, 1, 1, 7);
    check_conv2d(4, 64, 8, 8, 4, 1, 1, 0, 1, 7);
    check_conv2d(4, 64, 16, 16, 32, 3, 1, 1, 1, 7);
    /* odd sizes, kernel 4, stride 2 without padding, strided 1x1, N = 1 */
    check_conv2d(3, 5, 11, 10, 7, 4, 2, 1, 1, 7);
    check_conv2d(2, 4, 9, 7, 3, 3, 2, 0, 0, 7);
    check_conv2d(1, 6, 7, 9, 5, 1, 2, 0, 1, 7);
    /* each gradient alone; the same shapes again reuse their plans */
    check_conv2d(3, 5, 11, 10, 7, 4, 2, 1, 1, 1);
    check_conv2d(3, 5, 11, 10, 7, 4, 2, 1, 1, 2);
    check_conv2d(3, 5, 11, 10, 7, 4, 2, 1, 1, 4);
    check_conv2d(4, 3, 64, 64, 32, 3, 1, 1, 0, 3);
}
END_TEST

/* More shapes than the plan cache holds: the oldest plans are replaced and
 * rebuilt when their shapes come back. A bad shape is VTTT_EINVAL. */
START_TEST(test_conv2d_plan_cache) {
    for (int i = 0; i < 40; i++) check_conv2d(1, 2, 5 + i % 20, 6, 3, 3, 1 + i / 20, 1, 1, 7);
    check_conv2d(1, 2, 5, 6, 3, 3, 1, 1, 1, 7);
    buf2 x = rand2(16, 1.0f), w = rand2(9, 1.0f), y = rand2(16, 1.0f);
    g_expect_error = 1;
    ck_assert_int_eq(g_gpu->conv2d_forward(g_gpu->ctx, y.d, x.d, w.d, NULL, 1, 1, 2, 2, 1, 3, 3, 1, 0), VTTT_EINVAL);
    ck_assert_int_eq(g_gpu->conv2d_forward(g_gpu->ctx, y.d, x.d, w.d, NULL, 0, 1, 4, 4, 1, 3, 3, 1, 1), VTTT_EINVAL);
    g_expect_error = 0;
    ck_assert_int_eq(g_gpu->sync(g_gpu->ctx), VTTT_OK);
}
END_TEST

static void check_groupnorm(int N, int C, int HW, int G, int affine, int want) {
    size_t n = (size_t)N * C * HW;
    buf2 x = rand2(n, 2.0f), w = rand2(C, 1.0f), b = rand2(C, 1.0f), y = rand2(n, 1.0f), dy = rand2(n, 1.0f);
    buf2 mean = rand2((size_t)N * G, 1.0f), rstd = rand2((size_t)N * G, 1.0f);
    buf2 dx = rand2(n, GRAD_FILL), dw = rand2(C, GRAD_FILL), db = rand2(C, GRAD_FILL);
    char what[96];
    snprintf(what, sizeof what, "groupnorm N%d C%d HW%d G%d affine%d want%d", N, C, HW, G, affine, want);
    g_cpu->groupnorm_forward(y.h, mean.h, rstd.h, x.h, PH(w, affine), PH(b, affine), N, C, HW, G, 1e-5f);
    g_gpu->groupnorm_forward(y.d, mean.d, rstd.d, x.d, PD(w, affine), PD(b, affine), N, C, HW, G, 1e-5f);
    expect_close(what, y, TOL_REDUCE);
    expect_close(what, mean, TOL_REDUCE);
    expect_close(what, rstd, TOL_REDUCE);
    g_cpu->groupnorm_backward(PH(dx, want & 1), PH(dw, want & 2), PH(db, want & 4), dy.h, x.h, PH(w, affine), mean.h,
                              rstd.h, N, C, HW, G);
    g_gpu->groupnorm_backward(PD(dx, want & 1), PD(dw, want & 2), PD(db, want & 4), dy.d, x.d, PD(w, affine), mean.d,
                              rstd.d, N, C, HW, G);
    expect_close(what, dx, TOL_REDUCE);
    expect_close(what, dw, TOL_REDUCE);
    expect_close(what, db, TOL_REDUCE);
}

START_TEST(test_groupnorm) {
    check_groupnorm(4, 32, 64 * 64, 8, 1, 7);   /* the tokenizer's widest activation */
    check_groupnorm(3, 6, 35, 3, 1, 7);
    check_groupnorm(2, 4, 9, 1, 1, 7);
    check_groupnorm(2, 4, 9, 4, 0, 7);
    check_groupnorm(5, 64, 8 * 8, 8, 1, 1);
    check_groupnorm(5, 64, 8 * 8, 8, 1, 6);
}
END_TEST

START_TEST(test_upsample2x) {
    const int shapes[][4] = {{4, 64, 8, 8}, {3, 5, 7, 3}, {1, 1, 1, 1}};
    for (int s = 0; s < 3; s++) {
        int N = shapes[s][0], C = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
        size_t n = (size_t)N * C * H * W;
        buf2 x = rand2(n, 1.0f), y = rand2(4 * n, 1.0f), dy = rand2(4 * n, 1.0f), dx = rand2(n, GRAD_FILL);
        g_cpu->upsample2x_forward(y.h, x.h, N, C, H, W);
        g_gpu->upsample2x_forward(y.d, x.d, N, C, H, W);
        expect_close("upsample2x_forward", y, 0.0);
        g_cpu->upsample2x_backward(dx.h, dy.h, N, C, H, W);
        g_gpu->upsample2x_backward(dx.d, dy.d, N, C, H, W);
        expect_close("upsample2x_backward", dx, TOL_POINTWISE);
    }
}
END_TEST

/* ---- main ---------------------------------------------------------------------- */

int main(void) {
    vttt_logger lg = {test_log, NULL, VTTT_LOG_INFO};
    int status = tu_cuda_open(&g_gpu, &lg, g_last_msg, "CUDA op tests");
    if (status) return status;
    g_cpu = vttt_backend_cpu();
    TCase *tc = tcase_create("ops");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_memory);
    tcase_add_test(tc, test_matmul);
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_rmsnorm);
    tcase_add_test(tc, test_layernorm);
    tcase_add_test(tc, test_pointwise);
    tcase_add_test(tc, test_swiglu);
    tcase_add_test(tc, test_rotary);
    tcase_add_test(tc, test_conv1d);
    tcase_add_test(tc, test_embedding);
    tcase_add_test(tc, test_xent);
    tcase_add_test(tc, test_bf16_convert);
    tcase_add_test(tc, test_gemm_bf16);
    tcase_add_test(tc, test_conv2d);
    tcase_add_test(tc, test_conv2d_plan_cache);
    tcase_add_test(tc, test_groupnorm);
    tcase_add_test(tc, test_upsample2x);
    status = tu_run("cuda", tc, CK_NOFORK);
    vttt_backend_cuda_close(&g_gpu);
    return status;
}
