/* CPU reference ops: every backward against central finite differences,
 * plus the properties each op promises (rotary orthogonality and position
 * modulus, conv1d state carry, id range checks, xent ignore/stability,
 * linear against a naive loop).
 *
 * Finite differences: the ops are fp32 only, so the scalar loss
 * L = sum(out * r) (r random) is accumulated in double from fp32 outputs and
 * differentiated with a central difference of step FD_EPS = 1e-2. The
 * truncation error (~eps^2) and fp32 rounding (~1e-7 |L| / eps) are both
 * around 1e-4 of the gradient's scale, so FD_TOL = 1e-2 (max abs error
 * over max |gradient|) leaves a wide margin yet catches any wrong term.
 * Gradient buffers are pre-filled with GRAD_FILL to check that backward
 * accumulates (+=) instead of overwriting. */
#include <cblas.h>
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "par.h"
#include "testutil.h"
#include "ttt.h"

#define FD_EPS 1e-2f
#define FD_TOL 1e-2
#define GRAD_FILL 0.5f
#define EXACT_TOL 1e-5

/* ---- harness ------------------------------------------------------------ */

typedef double (*loss_fn)(void *ctx);

/* Compares grad (n, pre-filled with GRAD_FILL before backward) with the
 * central difference of loss over every element of p. */
static void check_fd(const char *what, loss_fn loss, void *ctx, float *p, const float *grad, size_t n) {
    const tu_fd_opts o = {.eps = FD_EPS, .tol = FD_TOL, .grad_fill = GRAD_FILL, .nonzero = 0};
    tu_check_fd(what, loss, ctx, p, grad, n, &o);
}

/* ---- linear ------------------------------------------------------------- */

typedef struct { float *out, *inp, *w, *bias, *r; int N, C, OC; } lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    ttt_linear_forward(c->out, c->inp, c->w, c->bias, c->N, c->C, c->OC);
    return tu_dot(c->out, c->r, (size_t)c->N * c->OC);
}

START_TEST(test_linear) {
    tu_rng rng;
    tu_seed(&rng, 1);
    lin_ctx c = {.N = 5, .C = 7, .OC = 6};
    size_t ni = (size_t)c.N * c.C, nw = (size_t)c.OC * c.C, no = (size_t)c.N * c.OC;
    c.inp = tu_alloc_normal(&rng, ni, 1.0f);
    c.w = tu_alloc_normal(&rng, nw, 0.5f);
    c.bias = tu_alloc_normal(&rng, c.OC, 1.0f);
    c.r = tu_alloc_normal(&rng, no, 1.0f);
    c.out = tu_alloc_fill(no, 0.0f);
    float *ref = tu_alloc_fill(no, 0.0f);
    for (int pass = 0; pass < 2; pass++) { /* with and without bias */
        const float *b = pass ? NULL : c.bias;
        for (int n = 0; n < c.N; n++)
            for (int o = 0; o < c.OC; o++) {
                double s = b ? b[o] : 0.0;
                for (int i = 0; i < c.C; i++) s += (double)c.inp[n * c.C + i] * c.w[o * c.C + i];
                ref[n * c.OC + o] = (float)s;
            }
        memset(c.out, 0xff, no * sizeof(float)); /* NaN: forward must overwrite */
        ttt_linear_forward(c.out, c.inp, c.w, b, c.N, c.C, c.OC);
        ck_assert_double_lt(tu_rel_err(c.out, ref, no), EXACT_TOL);
    }
    float *dinp = tu_alloc_fill(ni, GRAD_FILL), *dw = tu_alloc_fill(nw, GRAD_FILL), *db = tu_alloc_fill(c.OC, GRAD_FILL);
    ttt_linear_backward(dinp, dw, db, c.r, c.inp, c.w, c.N, c.C, c.OC);
    check_fd("linear dinp", lin_loss, &c, c.inp, dinp, ni);
    check_fd("linear dw", lin_loss, &c, c.w, dw, nw);
    check_fd("linear dbias", lin_loss, &c, c.bias, db, c.OC);
    ttt_linear_backward(NULL, NULL, NULL, c.r, c.inp, c.w, c.N, c.C, c.OC); /* all NULL: no-op */
    free(c.inp), free(c.w), free(c.bias), free(c.r), free(c.out), free(ref), free(dinp), free(dw), free(db);
}
END_TEST

/* ---- norms -------------------------------------------------------------- */

typedef struct { float *out, *mean, *rstd, *inp, *w, *b, *r; int N, C, layer; } norm_ctx;

static double norm_loss(void *p) {
    norm_ctx *c = p;
    if (c->layer)
        ttt_layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, 1e-5f);
    else
        ttt_rmsnorm_forward(c->out, c->rstd, c->inp, c->w, c->N, c->C, 1e-5f);
    return tu_dot(c->out, c->r, (size_t)c->N * c->C);
}

static void run_norm(int layer) {
    tu_rng rng;
    tu_seed(&rng, 2 + layer);
    norm_ctx c = {.N = 4, .C = 16, .layer = layer};
    size_t n = (size_t)c.N * c.C;
    c.inp = tu_alloc_normal(&rng, n, 1.0f);
    for (size_t i = 0; i < n; i++) c.inp[i] += 0.5f; /* a non-zero mean */
    c.w = tu_alloc_normal(&rng, c.C, 0.3f);
    for (int i = 0; i < c.C; i++) c.w[i] += 1.0f;
    c.b = tu_alloc_normal(&rng, c.C, 0.3f);
    c.r = tu_alloc_normal(&rng, n, 1.0f);
    c.out = tu_alloc_fill(n, 0.0f);
    c.mean = tu_alloc_fill(c.N, 0.0f);
    c.rstd = tu_alloc_fill(c.N, 0.0f);
    norm_loss(&c);
    /* forward against the definition, row 0 */
    double m = 0, v = 0, ms = 0;
    for (int i = 0; i < c.C; i++) m += c.inp[i], ms += (double)c.inp[i] * c.inp[i];
    m /= c.C, ms /= c.C;
    for (int i = 0; i < c.C; i++) v += (c.inp[i] - m) * (c.inp[i] - m);
    v /= c.C;
    for (int i = 0; i < c.C; i++) {
        double want = layer ? (c.inp[i] - m) / sqrt(v + 1e-5) * c.w[i] + c.b[i] : c.inp[i] / sqrt(ms + 1e-5) * c.w[i];
        ck_assert_double_lt(fabs(c.out[i] - want), 1e-5 * (1 + fabs(want)));
    }
    float *dinp = tu_alloc_fill(n, GRAD_FILL), *dw = tu_alloc_fill(c.C, GRAD_FILL), *db = tu_alloc_fill(c.C, GRAD_FILL);
    float *mean = tu_alloc_fill(c.N, 0.0f), *rstd = tu_alloc_fill(c.N, 0.0f);
    memcpy(mean, c.mean, c.N * sizeof(float));
    memcpy(rstd, c.rstd, c.N * sizeof(float));
    if (layer)
        ttt_layernorm_backward(dinp, dw, db, c.r, c.inp, c.w, mean, rstd, c.N, c.C);
    else
        ttt_rmsnorm_backward(dinp, dw, c.r, c.inp, c.w, rstd, c.N, c.C);
    check_fd(layer ? "layernorm dinp" : "rmsnorm dinp", norm_loss, &c, c.inp, dinp, n);
    check_fd(layer ? "layernorm dw" : "rmsnorm dw", norm_loss, &c, c.w, dw, c.C);
    if (layer) check_fd("layernorm db", norm_loss, &c, c.b, db, c.C);
    free(c.inp), free(c.w), free(c.b), free(c.r), free(c.out), free(c.mean), free(c.rstd);
    free(dinp), free(dw), free(db), free(mean), free(rstd);
}

START_TEST(test_rmsnorm) { run_norm(0); }
END_TEST

START_TEST(test_layernorm) { run_norm(1); }
END_TEST

START_TEST(test_layernorm_null_stats) {
    float x[6] = {1, 2, 3, 4, 5, 6}, w[3] = {1, 1, 1}, b[3] = {0, 0, 0}, y[6];
    ttt_layernorm_forward(y, NULL, NULL, x, w, b, 2, 3, 0.0f);
    ck_assert_double_lt(fabs(y[0] + sqrt(1.5)), 1e-5); /* (1-2)/sqrt(2/3) */
    ck_assert_double_lt(fabs(y[4]), 1e-6);
}
END_TEST

/* ---- elementwise activations ------------------------------------------ */

enum { ACT_GELU, ACT_SILU, ACT_SIGMOID, ACT_SWIGLU_GATE, ACT_SWIGLU_UP };
typedef struct { float *out, *x, *up, *r; size_t n; int kind; } act_ctx;

static double act_loss(void *p) {
    act_ctx *c = p;
    switch (c->kind) {
    case ACT_GELU: ttt_gelu_forward(c->out, c->x, c->n); break;
    case ACT_SILU: ttt_silu_forward(c->out, c->x, c->n); break;
    case ACT_SIGMOID: ttt_sigmoid_forward(c->out, c->x, c->n); break;
    default: ttt_swiglu_forward(c->out, c->x, c->up, c->n); break;
    }
    return tu_dot(c->out, c->r, c->n);
}

/* Scalar definitions in double, for the forward check. */
static double act_ref(int kind, double x, double up) {
    double sg = 1.0 / (1.0 + exp(-x));
    switch (kind) {
    case ACT_GELU: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
    case ACT_SILU: return x * sg;
    case ACT_SIGMOID: return sg;
    default: return x * sg * up;
    }
}

START_TEST(test_activations) {
    static const char *names[] = {"gelu", "silu", "sigmoid", "swiglu dgate", "swiglu dup"};
    int kind = _i;
    tu_rng rng;
    tu_seed(&rng, 10 + kind);
    act_ctx c = {.n = 97, .kind = kind};
    c.x = tu_alloc_normal(&rng, c.n, 2.0f);
    c.up = tu_alloc_normal(&rng, c.n, 1.0f);
    c.r = tu_alloc_normal(&rng, c.n, 1.0f);
    c.out = tu_alloc_fill(c.n, 0.0f);
    act_loss(&c);
    for (size_t i = 0; i < c.n; i++) {
        double want = act_ref(kind, c.x[i], c.up[i]);
        ck_assert_double_lt(fabs(c.out[i] - want), 1e-5 * (1 + fabs(want)));
    }
    float *g = tu_alloc_fill(c.n, GRAD_FILL), *g2 = tu_alloc_fill(c.n, GRAD_FILL);
    switch (kind) {
    case ACT_GELU: ttt_gelu_backward(g, c.r, c.x, c.n); break;
    case ACT_SILU: ttt_silu_backward(g, c.r, c.x, c.n); break;
    case ACT_SIGMOID: ttt_sigmoid_backward(g, c.r, c.out, c.n); break;
    case ACT_SWIGLU_GATE: ttt_swiglu_backward(g, NULL, c.r, c.x, c.up, c.n); break;
    default: ttt_swiglu_backward(g2, g, c.r, c.x, c.up, c.n); break;
    }
    check_fd(names[kind], act_loss, &c, kind == ACT_SWIGLU_UP ? c.up : c.x, g, c.n);
    if (kind == ACT_SWIGLU_UP) check_fd("swiglu dgate (both)", act_loss, &c, c.x, g2, c.n);
    free(c.x), free(c.up), free(c.r), free(c.out), free(g), free(g2);
}
END_TEST

/* The scalar gelu derivatives in ops.h against differences of ttt_gelu. */
START_TEST(test_gelu_scalar_derivs) {
    for (float x = -5.0f; x <= 5.0f; x += 0.37f) {
        double h = 1e-3;
        double d1 = (ttt_gelu((float)(x + h)) - ttt_gelu((float)(x - h))) / (2 * h);
        double d2 = (ttt_gelu_d1((float)(x + h)) - ttt_gelu_d1((float)(x - h))) / (2 * h);
        ck_assert_double_lt(fabs(d1 - ttt_gelu_d1(x)), 2e-3);
        ck_assert_double_lt(fabs(d2 - ttt_gelu_d2(x)), 2e-3);
    }
}
END_TEST

/* ---- rotary ------------------------------------------------------------- */

typedef struct { float *out, *x, *r; int B, T, H, f, pos_mod; int64_t pos0; } rot_ctx;
#define ROT_THETA 10000.0f

static double rot_loss(void *p) {
    rot_ctx *c = p;
    ttt_rotary_forward(c->out, c->x, c->B, c->T, c->H, c->f, c->pos0, c->pos_mod, ROT_THETA);
    return tu_dot(c->out, c->r, (size_t)c->B * c->T * c->H * c->f);
}

START_TEST(test_rotary_grad) {
    tu_rng rng;
    tu_seed(&rng, 20);
    rot_ctx c = {.B = 2, .T = 5, .H = 2, .f = 8, .pos0 = 3, .pos_mod = 4};
    size_t n = (size_t)c.B * c.T * c.H * c.f;
    c.x = tu_alloc_normal(&rng, n, 1.0f);
    c.r = tu_alloc_normal(&rng, n, 1.0f);
    c.out = tu_alloc_fill(n, 0.0f);
    float *g = tu_alloc_fill(n, GRAD_FILL);
    ttt_rotary_backward(g, c.r, c.B, c.T, c.H, c.f, c.pos0, c.pos_mod, ROT_THETA);
    check_fd("rotary dinp", rot_loss, &c, c.x, g, n);
    free(c.x), free(c.r), free(c.out), free(g);
}
END_TEST

/* Forward against the stated angles, in place, then backward of the result
 * (the inverse rotation) gives the input back. */
START_TEST(test_rotary_values_inverse) {
    tu_rng rng;
    tu_seed(&rng, 21);
    int B = 2, T = 7, H = 3, f = 6;
    int64_t pos0 = 100;
    size_t n = (size_t)B * T * H * f;
    float *x = tu_alloc_normal(&rng, n, 1.0f), *y = tu_alloc_fill(n, 0.0f), *back = tu_alloc_fill(n, 0.0f);
    memcpy(y, x, n * sizeof(float));
    ttt_rotary_forward(y, y, B, T, H, f, pos0, 0, ROT_THETA);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < f / 2; i++) {
                    size_t j = (((size_t)b * T + t) * H + h) * f + 2 * i;
                    double a = (double)(pos0 + t) * pow(ROT_THETA, -2.0 * i / f);
                    double y0 = x[j] * cos(a) - x[j + 1] * sin(a), y1 = x[j] * sin(a) + x[j + 1] * cos(a);
                    ck_assert_double_lt(fabs(y[j] - y0), 1e-4);
                    ck_assert_double_lt(fabs(y[j + 1] - y1), 1e-4);
                }
    ttt_rotary_backward(back, y, B, T, H, f, pos0, 0, ROT_THETA);
    ck_assert_double_lt(tu_rel_err(back, x, n), 1e-5);
    free(x), free(y), free(back);
}
END_TEST

/* pos_mod = 16: each time step equals a one-step call at (pos0 + t) % 16. */
START_TEST(test_rotary_pos_mod) {
    tu_rng rng;
    tu_seed(&rng, 22);
    int T = 40, H = 2, f = 8, row = H * f;
    int64_t pos0 = 1000003;
    float *x = tu_alloc_normal(&rng, (size_t)T * row, 1.0f), *y = tu_alloc_fill((size_t)T * row, 0.0f);
    float *y1 = tu_alloc_fill(row, 0.0f);
    ttt_rotary_forward(y, x, 1, T, H, f, pos0, 16, ROT_THETA);
    for (int t = 0; t < T; t++) {
        ttt_rotary_forward(y1, x + (size_t)t * row, 1, 1, H, f, (pos0 + t) % 16, 0, ROT_THETA);
        ck_assert_double_lt(tu_rel_err(y + (size_t)t * row, y1, row), 1e-6);
    }
    free(x), free(y), free(y1);
}
END_TEST

/* ---- conv1d ------------------------------------------------------------- */

typedef struct { float *out, *x, *w, *bias, *state, *r; int B, T, C, K; } conv_ctx;

static double conv_loss(void *p) {
    conv_ctx *c = p;
    ttt_conv1d_forward(c->out, c->x, c->w, c->bias, c->state, c->B, c->T, c->C, c->K);
    return tu_dot(c->out, c->r, (size_t)c->B * c->T * c->C);
}

/* out by the definition, over the concatenation [state; inp]. */
static void conv_naive(float *out, const conv_ctx *c) {
    int P = c->K - 1;
    for (int b = 0; b < c->B; b++)
        for (int t = 0; t < c->T; t++)
            for (int ch = 0; ch < c->C; ch++) {
                double s = c->bias ? c->bias[ch] : 0.0;
                for (int k = 0; k < c->K; k++) {
                    int u = t - P + k;
                    float xv = u >= 0 ? c->x[((size_t)b * c->T + u) * c->C + ch]
                                      : (c->state ? c->state[((size_t)b * P + P + u) * c->C + ch] : 0.0f);
                    s += (double)c->w[ch * c->K + k] * xv;
                }
                out[((size_t)b * c->T + t) * c->C + ch] = (float)s;
            }
}

START_TEST(test_conv1d_grad) {
    tu_rng rng;
    tu_seed(&rng, 30 + _i);
    conv_ctx c = {.B = 2, .T = 6, .C = 5, .K = 4};
    size_t n = (size_t)c.B * c.T * c.C, nw = (size_t)c.C * c.K;
    c.x = tu_alloc_normal(&rng, n, 1.0f);
    c.w = tu_alloc_normal(&rng, nw, 0.5f);
    c.bias = tu_alloc_normal(&rng, c.C, 1.0f);
    c.r = tu_alloc_normal(&rng, n, 1.0f);
    c.state = _i ? tu_alloc_normal(&rng, (size_t)c.B * (c.K - 1) * c.C, 1.0f) : NULL; /* _i = 0: no state */
    c.out = tu_alloc_fill(n, 0.0f);
    float *ref = tu_alloc_fill(n, 0.0f);
    conv_loss(&c);
    conv_naive(ref, &c);
    ck_assert_double_lt(tu_rel_err(c.out, ref, n), EXACT_TOL);
    float *dx = tu_alloc_fill(n, GRAD_FILL), *dw = tu_alloc_fill(nw, GRAD_FILL), *db = tu_alloc_fill(c.C, GRAD_FILL);
    ttt_conv1d_backward(dx, dw, db, c.r, c.x, c.w, c.state, c.B, c.T, c.C, c.K);
    check_fd("conv1d dinp", conv_loss, &c, c.x, dx, n);
    check_fd("conv1d dw", conv_loss, &c, c.w, dw, nw);
    check_fd("conv1d dbias", conv_loss, &c, c.bias, db, c.C);
    free(c.x), free(c.w), free(c.bias), free(c.r), free(c.state), free(c.out), free(ref), free(dx), free(dw), free(db);
}
END_TEST

/* Chunks of 2, 1 and 7 steps (two shorter than K-1) with the state carried
 * by state_update equal one run over all 10 steps, and the final state holds
 * the last K-1 inputs. */
START_TEST(test_conv1d_chunks) {
    tu_rng rng;
    tu_seed(&rng, 33);
    int B = 2, T = 10, C = 3, K = 4, P = K - 1, chunks[] = {2, 1, 7};
    size_t n = (size_t)B * T * C;
    float *x = tu_alloc_normal(&rng, n, 1.0f), *w = tu_alloc_normal(&rng, (size_t)C * K, 1.0f);
    float *bias = tu_alloc_normal(&rng, C, 1.0f), *state0 = tu_alloc_normal(&rng, (size_t)B * P * C, 1.0f);
    float *state = tu_alloc_fill((size_t)B * P * C, 0.0f), *full = tu_alloc_fill(n, 0.0f);
    memcpy(state, state0, (size_t)B * P * C * sizeof(float));
    ttt_conv1d_forward(full, x, w, bias, state0, B, T, C, K);
    int t0 = 0;
    for (int i = 0; i < 3; i++) {
        int tc = chunks[i];
        float *xc = tu_alloc_fill((size_t)B * tc * C, 0.0f), *yc = tu_alloc_fill((size_t)B * tc * C, 0.0f);
        for (int b = 0; b < B; b++)
            memcpy(xc + (size_t)b * tc * C, x + ((size_t)b * T + t0) * C, (size_t)tc * C * sizeof(float));
        ttt_conv1d_forward(yc, xc, w, bias, state, B, tc, C, K);
        ttt_conv1d_state_update(state, xc, B, tc, C, K);
        for (int b = 0; b < B; b++)
            ck_assert_double_lt(tu_rel_err(yc + (size_t)b * tc * C, full + ((size_t)b * T + t0) * C, (size_t)tc * C),
                                EXACT_TOL);
        t0 += tc;
        free(xc), free(yc);
    }
    for (int b = 0; b < B; b++)
        ck_assert_mem_eq(state + (size_t)b * P * C, x + ((size_t)b * T + T - P) * C, (size_t)P * C * sizeof(float));
    free(x), free(w), free(bias), free(state0), free(state), free(full);
}
END_TEST

/* ---- embedding ---------------------------------------------------------- */

typedef struct { float *out, *table, *r; const int32_t *ids; int N, V, C; } emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    ck_assert_int_eq(ttt_embedding_forward(c->out, c->ids, c->table, c->N, c->V, c->C), VTTT_OK);
    return tu_dot(c->out, c->r, (size_t)c->N * c->C);
}

START_TEST(test_embedding) {
    tu_rng rng;
    tu_seed(&rng, 40);
    const int32_t ids[] = {3, 0, 3, 4, 1, 3};
    emb_ctx c = {.ids = ids, .N = 6, .V = 5, .C = 4};
    size_t nt = (size_t)c.V * c.C, no = (size_t)c.N * c.C;
    c.table = tu_alloc_normal(&rng, nt, 1.0f);
    c.r = tu_alloc_normal(&rng, no, 1.0f);
    c.out = tu_alloc_fill(no, 0.0f);
    emb_loss(&c);
    for (int i = 0; i < c.N; i++) ck_assert_mem_eq(c.out + i * c.C, c.table + ids[i] * c.C, c.C * sizeof(float));
    float *g = tu_alloc_fill(nt, GRAD_FILL);
    ttt_embedding_backward(g, c.r, ids, c.N, c.C);
    check_fd("embedding dtable", emb_loss, &c, c.table, g, nt);
    /* out-of-range ids: EINVAL and out untouched */
    const int32_t bad_hi[] = {0, 5}, bad_lo[] = {-1, 0};
    float *keep = tu_alloc_fill(no, 7.0f);
    memcpy(c.out, keep, no * sizeof(float));
    ck_assert_int_eq(ttt_embedding_forward(c.out, bad_hi, c.table, 2, c.V, c.C), VTTT_EINVAL);
    ck_assert_int_eq(ttt_embedding_forward(c.out, bad_lo, c.table, 2, c.V, c.C), VTTT_EINVAL);
    ck_assert_mem_eq(c.out, keep, no * sizeof(float));
    free(c.table), free(c.r), free(c.out), free(g), free(keep);
}
END_TEST

/* ---- cross-entropy ------------------------------------------------------ */

typedef struct { float *losses, *logits, *r; const int32_t *tg; int N, V; } xent_ctx;

static double xent_loss(void *p) {
    xent_ctx *c = p;
    ck_assert_int_eq(ttt_xent_forward(c->losses, c->logits, c->tg, c->N, c->V), VTTT_OK);
    return tu_dot(c->losses, c->r, c->N);
}

START_TEST(test_xent) {
    tu_rng rng;
    tu_seed(&rng, 50);
    const int32_t tg[] = {2, -1, 0, 9, 5, -1};
    xent_ctx c = {.tg = tg, .N = 6, .V = 10};
    size_t n = (size_t)c.N * c.V;
    c.logits = tu_alloc_normal(&rng, n, 2.0f);
    c.r = tu_alloc_normal(&rng, c.N, 1.0f);
    c.losses = tu_alloc_fill(c.N, 9.0f);
    xent_loss(&c);
    for (int i = 0; i < c.N; i++) {
        if (tg[i] < 0) {
            ck_assert_float_eq(c.losses[i], 0.0f);
            continue;
        }
        double s = 0;
        for (int v = 0; v < c.V; v++) s += exp(c.logits[i * c.V + v]);
        double want = log(s) - c.logits[i * c.V + tg[i]];
        ck_assert_double_lt(fabs(c.losses[i] - want), 1e-5 * (1 + want));
    }
    float *g = tu_alloc_fill(n, GRAD_FILL);
    ttt_xent_backward(g, c.r, c.logits, tg, c.N, c.V);
    check_fd("xent dlogits", xent_loss, &c, c.logits, g, n);
    for (int v = 0; v < c.V; v++) ck_assert_float_eq(g[1 * c.V + v], GRAD_FILL); /* ignored row */
    /* target >= V */
    const int32_t bad[] = {0, 10};
    ck_assert_int_eq(ttt_xent_forward(c.losses, c.logits, bad, 2, c.V), VTTT_EINVAL);
    free(c.logits), free(c.r), free(c.losses), free(g);
}
END_TEST

/* Huge logits: the loss stays finite and shift-invariant, gradients sum to 0. */
START_TEST(test_xent_stable) {
    enum { V = 8 };
    float z[V], zs[V], g[V] = {0};
    int32_t y = 3;
    for (int i = 0; i < V; i++) z[i] = 0.5f * i, zs[i] = z[i] + 1000.0f;
    float l, ls;
    ck_assert_int_eq(ttt_xent_forward(&l, z, &y, 1, V), VTTT_OK);
    ck_assert_int_eq(ttt_xent_forward(&ls, zs, &y, 1, V), VTTT_OK);
    ck_assert(isfinite(ls));
    ck_assert_double_lt(fabs(l - ls), 1e-4);
    ttt_xent_backward(g, NULL, zs, &y, 1, V);
    double s = 0;
    for (int i = 0; i < V; i++) s += g[i], ck_assert(isfinite(g[i]));
    ck_assert_double_lt(fabs(s), 1e-6);
    ck_assert(g[y] < 0);
}
END_TEST

/* ---- threading ---------------------------------------------------------- */

/* Runs every parameter-gradient reduction and row-parallel backward at a
 * size above the ops' OpenMP thresholds, once on 1 thread and once on 4:
 * the work split is by rows or channel blocks, independent of the thread
 * count, so the results must be bitwise equal (a race would break this). */
static void grads_big(float *const g[6], const float *x, const float *dy, const float *w, const float *stat, int N,
                      int C) {
    int K = 4, T = 64;
    ttt_rmsnorm_backward(g[0], g[1], dy, x, w, stat, N, C);
    ttt_layernorm_backward(g[0], g[1], g[2], dy, x, w, stat + N, stat, N, C);
    ttt_conv1d_backward(g[3], g[4], g[5], dy, x, w, x, N / T, T, C, K);
    ttt_linear_backward(NULL, NULL, g[5], dy, x, w, N, C, C);
}

START_TEST(test_threads_consistent) {
    tu_rng rng;
    tu_seed(&rng, 60);
    int N = 512, C = 96;
    size_t n = (size_t)N * C;
    float *x = tu_alloc_normal(&rng, n, 1.0f), *dy = tu_alloc_normal(&rng, n, 1.0f),
          *w = tu_alloc_normal(&rng, n, 1.0f);
    float *stat = tu_alloc_normal(&rng, 2 * (size_t)N, 0.1f);
    float *g[2][6];
    int saved = omp_get_max_threads();
    for (int run = 0; run < 2; run++) {
        for (int i = 0; i < 6; i++) g[run][i] = tu_alloc_fill(n, 0.0f);
        omp_set_num_threads(run ? 4 : 1);
        grads_big(g[run], x, dy, w, stat, N, C);
    }
    omp_set_num_threads(saved);
    for (int i = 0; i < 6; i++) {
        ck_assert_msg(memcmp(g[0][i], g[1][i], n * sizeof(float)) == 0, "gradient %d differs across threads", i);
        free(g[0][i]), free(g[1][i]);
    }
    free(x), free(dy), free(w), free(stat);
}
END_TEST

/* ttt_blas_serial_begin/end and ttt_sgemm leave the calling thread's
 * OpenMP and OpenBLAS settings as they found them, even where OpenBLAS's
 * global count differs (another thread set it): the end used to restore
 * the global count, which OpenBLAS's OpenMP build writes into the calling
 * thread's OpenMP setting. */
START_TEST(test_blas_threads_restored) {
    int saved = omp_get_max_threads();
    float a[4 * 8], b[8 * 3], c[4 * 3], r[4 * 3];
    for (int i = 0; i < 32; i++) a[i] = (float)(i % 5) - 2.0f;
    for (int i = 0; i < 24; i++) b[i] = (float)(i % 7) * 0.5f - 1.0f;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) {
            double acc = 0.0;
            for (int k = 0; k < 8; k++) acc += (double)a[i * 8 + k] * b[k * 3 + j];
            r[i * 3 + j] = (float)acc;
        }
    for (int want = 1; want <= 3; want++) {
        openblas_set_num_threads(4); /* OpenBLAS's global count, as another thread may leave it */
        omp_set_num_threads(want);
        int n = ttt_blas_serial_begin();
        ttt_sgemm(0, 0, 4, 3, 8, 1.0f, a, 8, b, 3, 0.0f, c, 3);
        ttt_blas_serial_end(n);
        ck_assert_int_eq(omp_get_max_threads(), want);
        ttt_sgemm(0, 0, 4, 3, 8, 1.0f, a, 8, b, 3, 0.0f, c, 3); /* small: held serial inside */
        ttt_sgemm(0, 1, 1, 4, 8, 1.0f, a, 8, a, 8, 0.0f, c, 4); /* one row: sgemv */
        ck_assert_int_eq(omp_get_max_threads(), want);
    }
    ttt_sgemm(0, 0, 4, 3, 8, 1.0f, a, 8, b, 3, 0.0f, c, 3);
    for (int i = 0; i < 12; i++) ck_assert_float_eq_tol(c[i], r[i], 1e-5f);
    omp_set_num_threads(saved);
    openblas_set_num_threads(saved);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("cpu");
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_rmsnorm);
    tcase_add_test(tc, test_layernorm);
    tcase_add_test(tc, test_layernorm_null_stats);
    tcase_add_loop_test(tc, test_activations, ACT_GELU, ACT_SWIGLU_UP + 1);
    tcase_add_test(tc, test_gelu_scalar_derivs);
    tcase_add_test(tc, test_rotary_grad);
    tcase_add_test(tc, test_rotary_values_inverse);
    tcase_add_test(tc, test_rotary_pos_mod);
    tcase_add_loop_test(tc, test_conv1d_grad, 0, 2);
    tcase_add_test(tc, test_conv1d_chunks);
    tcase_add_test(tc, test_embedding);
    tcase_add_test(tc, test_xent);
    tcase_add_test(tc, test_xent_stable);
    tcase_add_test(tc, test_threads_consistent);
    tcase_add_test(tc, test_blas_threads_restored);
    return tu_run("ops", tc, CK_FORK_GETENV);
}
