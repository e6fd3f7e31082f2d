/*
 * The causal attention baseline layer: forward against a plain O(T^2)
 * reference, gradients against finite differences, prefill in chunks and
 * token-by-token decode against one full forward, and its error returns.
 */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "ttt.h"

/* An attention layer with weights large enough (std `wstd`) that the
 * softmax is far from uniform. */
static vttt_layer *make_layer(int D, int H, float wstd, uint64_t seed) {
    vttt_layer_config cfg = vttt_layer_default_config(VTTT_LAYER_ATTENTION, D, H);
    vttt_layer *l = NULL;
    vttt_logger quiet = tu_log_quiet();
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, &quiet), VTTT_OK);
    vttt_param_info info[8];
    int n = vttt_layer_param_list(l, 0, info, 8);
    ck_assert_int_eq(n, 4);
    tu_rng r;
    tu_seed(&r, seed);
    for (int i = 0; i < n; i++) tu_fill_normal(&r, info[i].data, (size_t)info[i].numel, wstd);
    return l;
}

static float *rand_buf(size_t n, float scale, uint64_t seed) {
    tu_rng r;
    tu_seed(&r, seed);
    return tu_alloc_normal(&r, n, scale);
}

/* ---- plain reference ---------------------------------------------------- */

/* out (N, D) = in (N, D) . w (D, D)^T in double. */
static void ref_linear(double *out, const double *in, const float *w, int N, int D) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < D; o++) {
            double s = 0;
            for (int i = 0; i < D; i++) s += in[(size_t)n * D + i] * w[(size_t)o * D + i];
            out[(size_t)n * D + o] = s;
        }
}

/* Rotates interleaved pairs of every head of row x (D) for position p. */
static void ref_rotary(double *x, int D, int H, double p) {
    int f = D / H;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < f / 2; i++) {
            double ang = p * pow(10000.0, -2.0 * i / f), c = cos(ang), s = sin(ang);
            double *e = x + h * f + 2 * i, x0 = e[0], x1 = e[1];
            e[0] = x0 * c - x1 * s;
            e[1] = x0 * s + x1 * c;
        }
}

/* y (B,T,D): the layer's math written out in double, one query at a time. */
static void ref_forward(vttt_layer *l, float *y, const float *x, int B, int T, int D, int H) {
    const vttt_layer_params *p = vttt_layer_get_params(l);
    size_t N = (size_t)B * T;
    int f = D / H;
    double *xd = malloc(N * D * sizeof(double)), *q = malloc(N * D * sizeof(double));
    double *k = malloc(N * D * sizeof(double)), *v = malloc(N * D * sizeof(double));
    double *o = malloc(N * D * sizeof(double)), *yd = malloc(N * D * sizeof(double));
    double *w = malloc((size_t)T * sizeof(double));
    for (size_t i = 0; i < N * D; i++) xd[i] = x[i];
    ref_linear(q, xd, p->wq, (int)N, D);
    ref_linear(k, xd, p->wk, (int)N, D);
    ref_linear(v, xd, p->wv, (int)N, D);
    for (size_t n = 0; n < N; n++) {
        ref_rotary(q + n * D, D, H, (double)(n % T));
        ref_rotary(k + n * D, D, H, (double)(n % T));
    }
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const double *qr = q + ((size_t)b * T + t) * D + h * f;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    const double *kr = k + ((size_t)b * T + j) * D + h * f;
                    double s = 0;
                    for (int d = 0; d < f; d++) s += qr[d] * kr[d];
                    w[j] = s / sqrt((double)f);
                    mx = fmax(mx, w[j]);
                }
                for (int j = 0; j <= t; j++) sum += (w[j] = exp(w[j] - mx));
                double *orow = o + ((size_t)b * T + t) * D + h * f;
                for (int d = 0; d < f; d++) {
                    double s = 0;
                    for (int j = 0; j <= t; j++) s += w[j] * v[((size_t)b * T + j) * D + h * f + d];
                    orow[d] = s / sum;
                }
            }
    ref_linear(yd, o, p->wo, (int)N, D);
    for (size_t i = 0; i < N * D; i++) y[i] = (float)yd[i];
    free(xd), free(q), free(k), free(v), free(o), free(yd), free(w);
}

START_TEST(test_forward_matches_reference) {
    /* T around the 64-token tile; D=128,H=2 gives the benchmark's f=64. */
    const int Ts[] = {1, 63, 64, 65, 130};
    const int Ds[][2] = {{16, 2}, {128, 2}};
    for (size_t di = 0; di < 2; di++)
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
            int B = 2, T = Ts[ti], D = Ds[di][0], H = Ds[di][1];
            size_t n = (size_t)B * T * D;
            vttt_layer *l = make_layer(D, H, 0.6f / sqrtf((float)D) * 4.0f, 11 + ti);
            float *x = rand_buf(n, 1.0f, 100 + ti), *y = malloc(n * sizeof(float)), *yr = malloc(n * sizeof(float));
            ck_assert_int_eq(vttt_layer_forward(l, y, x, B, T, VTTT_FORM_DUAL, 0), VTTT_OK);
            ref_forward(l, yr, x, B, T, D, H);
            double e = tu_rel_err(y, yr, n);
            ck_assert_msg(e <= 2e-5, "D=%d T=%d: rel err %g vs reference", D, T, e);
            free(x), free(y), free(yr);
            vttt_layer_free(&l);
        }
}
END_TEST

/* ---- gradients ---------------------------------------------------------- */

/* L = sum(y * R) in double, after a non-training forward. */
static double loss_of(vttt_layer *l, const float *x, const float *R, float *y, int B, int T, int D) {
    ck_assert_int_eq(vttt_layer_forward(l, y, x, B, T, VTTT_FORM_DUAL, 0), VTTT_OK);
    double s = 0;
    for (size_t i = 0; i < (size_t)B * T * D; i++) s += (double)y[i] * R[i];
    return s;
}

/* loss_of's arguments, for tu_central_diff. */
typedef struct {
    vttt_layer *l;
    const float *x, *R;
    float *y;
    int B, T, D;
} loss_ctx;

static double ctx_loss(void *p) {
    loss_ctx *c = p;
    return loss_of(c->l, c->x, c->R, c->y, c->B, c->T, c->D);
}

/* Analytic gradients: dx (B,T,D) and the layer's accumulated grads. */
static void analytic_grads(vttt_layer *l, float *dx, const float *x, const float *R, int B, int T, int D) {
    float *y = malloc((size_t)B * T * D * sizeof(float));
    vttt_layer_zero_grads(l);
    ck_assert_int_eq(vttt_layer_forward(l, y, x, B, T, VTTT_FORM_DUAL, 1), VTTT_OK);
    ck_assert_int_eq(vttt_layer_backward(l, dx, R), VTTT_OK);
    free(y);
}

/* Every entry of dx and of the four weight gradients against central
 * differences with eps 1e-2 in fp32. Tolerance: the max deviation over a
 * tensor must be <= 2e-3 of that tensor's largest gradient (fp32 rounding of
 * L over eps=1e-2 is ~1e-5 here; truncation error O(eps^2) ~1e-4). */
START_TEST(test_gradients_fd) {
    int B = 2, T = 7, D = 16, H = 2;
    size_t n = (size_t)B * T * D;
    vttt_layer *l = make_layer(D, H, 0.5f, 7);
    float *x = rand_buf(n, 1.0f, 8), *R = rand_buf(n, 1.0f, 9), *y = malloc(n * sizeof(float));
    float *dx = malloc(n * sizeof(float)), *fd = malloc(n * sizeof(float));
    analytic_grads(l, dx, x, R, B, T, D);
    loss_ctx ctx = {l, x, R, y, B, T, D};
    for (size_t i = 0; i < n; i++) fd[i] = (float)tu_central_diff(&x[i], 1e-2f, ctx_loss, &ctx);
    double e = tu_rel_err(dx, fd, n);
    ck_assert_msg(e <= 2e-3, "dx: rel err %g vs finite differences", e);
    vttt_param_info p[4], g[4];
    vttt_layer_param_list(l, 0, p, 4);
    vttt_layer_param_list(l, 1, g, 4);
    float *fdw = malloc((size_t)D * D * sizeof(float));
    for (int t = 0; t < 4; t++) {
        for (int64_t i = 0; i < p[t].numel; i++) fdw[i] = (float)tu_central_diff(&p[t].data[i], 1e-2f, ctx_loss, &ctx);
        double ew = tu_rel_err(g[t].data, fdw, (size_t)p[t].numel);
        ck_assert_msg(ew <= 2e-3, "%s: rel err %g vs finite differences", p[t].name, ew);
    }
    free(x), free(R), free(y), free(dx), free(fd), free(fdw);
    vttt_layer_free(&l);
}
END_TEST

/* Several tiles (T=150 > 2*64): directional derivatives of L along random
 * directions u of x and of every weight against <grad, u>. Seen: relative
 * deviations 1e-5 .. 1.5e-3 (fp32 noise of L over eps = 1e-3); a wrong
 * gradient is off by O(1), so the bound is 1e-2. */
START_TEST(test_gradients_directional_multi_tile) {
    int B = 1, T = 150, D = 32, H = 2;
    size_t n = (size_t)B * T * D, nw = (size_t)D * D;
    vttt_layer *l = make_layer(D, H, 0.35f, 21);
    float *x = rand_buf(n, 1.0f, 22), *R = rand_buf(n, 1.0f, 23), *y = malloc(n * sizeof(float));
    float *dx = malloc(n * sizeof(float));
    analytic_grads(l, dx, x, R, B, T, D);
    vttt_param_info p[4], g[4];
    vttt_layer_param_list(l, 0, p, 4);
    vttt_layer_param_list(l, 1, g, 4);
    for (int t = -1; t < 4; t++) { /* -1: x */
        float *val = t < 0 ? x : p[t].data;
        const float *grad = t < 0 ? dx : g[t].data;
        size_t m = t < 0 ? n : nw;
        float *u = rand_buf(m, 1.0f, 40 + t), *keep = malloc(m * sizeof(float));
        memcpy(keep, val, m * sizeof(float));
        double an = 0, eps = 1e-3;
        for (size_t i = 0; i < m; i++) an += (double)grad[i] * u[i];
        for (size_t i = 0; i < m; i++) val[i] = keep[i] + (float)eps * u[i];
        double lp = loss_of(l, x, R, y, B, T, D);
        for (size_t i = 0; i < m; i++) val[i] = keep[i] - (float)eps * u[i];
        double lm = loss_of(l, x, R, y, B, T, D);
        memcpy(val, keep, m * sizeof(float));
        double num = (lp - lm) / (2 * eps);
        ck_assert_msg(fabs(num - an) <= 1e-2 * fabs(an) + 1e-3, "%s: directional %g vs analytic %g",
                      t < 0 ? "x" : p[t].name, num, an);
        free(u), free(keep);
    }
    free(x), free(R), free(y), free(dx);
    vttt_layer_free(&l);
}
END_TEST

/* Backward accumulates into the weight gradients and writes dx. */
START_TEST(test_backward_accumulates) {
    int B = 1, T = 9, D = 16, H = 2;
    size_t n = (size_t)B * T * D, nw = (size_t)D * D;
    vttt_layer *l = make_layer(D, H, 0.3f, 3);
    float *x = rand_buf(n, 1.0f, 4), *R = rand_buf(n, 1.0f, 5), *y = malloc(n * sizeof(float));
    float *dx1 = malloc(n * sizeof(float)), *dx2 = malloc(n * sizeof(float)), *g1 = malloc(nw * sizeof(float));
    analytic_grads(l, dx1, x, R, B, T, D);
    memcpy(g1, vttt_layer_get_grads(l)->wq, nw * sizeof(float));
    for (size_t i = 0; i < n; i++) dx2[i] = 1e6f;
    ck_assert_int_eq(vttt_layer_backward(l, dx2, R), VTTT_OK);
    ck_assert(tu_rel_err(dx2, dx1, n) == 0.0);
    for (size_t i = 0; i < nw; i++) g1[i] *= 2.0f;
    ck_assert(tu_rel_err(vttt_layer_get_grads(l)->wq, g1, nw) <= 1e-6);
    free(x), free(R), free(y), free(dx1), free(dx2), free(g1);
    vttt_layer_free(&l);
}
END_TEST

/* ---- generation --------------------------------------------------------- */

/* Feeds x (B,T,D) to a fresh state in the given chunk sizes and returns the
 * relative error of the concatenated outputs against one full forward. */
static double chunked_vs_forward(vttt_layer *l, const float *x, int B, int T, int D, const int *chunks, int nchunks) {
    size_t n = (size_t)B * T * D;
    float *y = malloc(n * sizeof(float)), *yc = malloc(n * sizeof(float));
    ck_assert_int_eq(vttt_layer_forward(l, y, x, B, T, VTTT_FORM_DUAL, 0), VTTT_OK);
    vttt_state *s = NULL;
    ck_assert_int_eq(vttt_state_init(&s, l, B, T), VTTT_OK);
    int t0 = 0;
    for (int c = 0; c < nchunks; c++) {
        int m = chunks[c];
        float *xin = malloc((size_t)B * m * D * sizeof(float)), *yout = malloc((size_t)B * m * D * sizeof(float));
        for (int b = 0; b < B; b++)
            memcpy(xin + (size_t)b * m * D, x + ((size_t)b * T + t0) * D, (size_t)m * D * sizeof(float));
        int err = m == 1 ? vttt_layer_decode(l, s, yout, xin) : vttt_layer_prefill(l, s, yout, xin, m);
        ck_assert_int_eq(err, VTTT_OK);
        for (int b = 0; b < B; b++)
            memcpy(yc + ((size_t)b * T + t0) * D, yout + (size_t)b * m * D, (size_t)m * D * sizeof(float));
        t0 += m;
        ck_assert_int_eq(vttt_state_position(s), t0);
        free(xin), free(yout);
    }
    ck_assert_int_eq(t0, T);
    double e = tu_rel_err(yc, y, n);
    vttt_state_free(&s);
    free(y), free(yc);
    return e;
}

START_TEST(test_prefill_chunks) {
    int B = 2, T = 27, D = 32, H = 2;
    vttt_layer *l = make_layer(D, H, 0.3f, 31);
    float *x = rand_buf((size_t)B * T * D, 1.0f, 32);
    const int chunks[] = {5, 1, 1, 20};
    double e = chunked_vs_forward(l, x, B, T, D, chunks, 4);
    ck_assert_msg(e <= 1e-5, "prefill 5+1+1+20: rel err %g vs forward", e);
    free(x);
    vttt_layer_free(&l);
}
END_TEST

START_TEST(test_decode_token_by_token) {
    int B = 2, T = 27, D = 32, H = 2;
    vttt_layer *l = make_layer(D, H, 0.3f, 41);
    float *x = rand_buf((size_t)B * T * D, 1.0f, 42);
    int ones[27];
    for (int i = 0; i < T; i++) ones[i] = 1;
    double e = chunked_vs_forward(l, x, B, T, D, ones, T);
    ck_assert_msg(e <= 1e-5, "decode: rel err %g vs forward", e);
    free(x);
    vttt_layer_free(&l);
}
END_TEST

/* Short chunks after a long prefill, with many threads and few heads, take
 * the kernel's split-over-keys paths (both the few-query path, chunks < 8,
 * and the tiled one, the 16-token chunk); they must agree as well. */
START_TEST(test_decode_long_cache_split) {
    int B = 1, T = 1021, D = 32, H = 2;
    int nth = omp_get_max_threads();
    omp_set_num_threads(8);
    vttt_layer *l = make_layer(D, H, 0.3f, 51);
    float *x = rand_buf((size_t)B * T * D, 1.0f, 52);
    const int chunks[] = {1000, 1, 2, 16, 1, 1};
    double e = chunked_vs_forward(l, x, B, T, D, chunks, 6);
    omp_set_num_threads(nth);
    ck_assert_msg(e <= 1e-5, "decode over a 1000-token cache: rel err %g vs forward", e);
    free(x);
    vttt_layer_free(&l);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(test_errors) {
    int B = 1, T = 4, D = 16, H = 2;
    size_t n = (size_t)B * T * D;
    vttt_layer *l = make_layer(D, H, 0.3f, 61);
    float *x = rand_buf(n, 1.0f, 62), *y = malloc(n * sizeof(float));
    /* backward before any training forward */
    ck_assert_int_eq(vttt_layer_backward(l, y, x), VTTT_EINVAL);
    ck_assert_int_eq(vttt_layer_forward(l, y, x, B, 0, VTTT_FORM_DUAL, 0), VTTT_EINVAL);
    x[5] = NAN;
    ck_assert_int_eq(vttt_layer_forward(l, y, x, B, T, VTTT_FORM_DUAL, 1), VTTT_ENAN);
    vttt_state *s = NULL;
    ck_assert_int_eq(vttt_state_init(&s, l, B, 6), VTTT_OK);
    ck_assert_int_eq(vttt_layer_prefill(l, s, y, x, T), VTTT_ENAN);
    ck_assert_int_eq(vttt_state_position(s), 0);
    x[5] = 0.5f;
    ck_assert_int_eq(vttt_layer_prefill(l, s, y, x, 0), VTTT_EINVAL);
    ck_assert_int_eq(vttt_layer_prefill(l, s, y, x, T), VTTT_OK);
    /* 4 cached + 4 new > max_T 6: refused, state unchanged */
    ck_assert_int_eq(vttt_layer_prefill(l, s, y, x, T), VTTT_EINVAL);
    ck_assert_int_eq(vttt_state_position(s), 4);
    ck_assert_int_eq(vttt_layer_prefill(l, s, y, x, 2), VTTT_OK);
    ck_assert_int_eq(vttt_layer_decode(l, s, y, x), VTTT_EINVAL);
    ck_assert_int_eq(vttt_state_position(s), 6);
    vttt_state_reset(s);
    ck_assert_int_eq(vttt_layer_decode(l, s, y, x), VTTT_OK);
    vttt_state_free(&s);
    free(x), free(y);
    vttt_layer_free(&l);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_forward_matches_reference);
    tcase_add_test(tc, test_gradients_fd);
    tcase_add_test(tc, test_gradients_directional_multi_tile);
    tcase_add_test(tc, test_backward_accumulates);
    tcase_add_test(tc, test_prefill_chunks);
    tcase_add_test(tc, test_decode_token_by_token);
    tcase_add_test(tc, test_decode_long_cache_split);
    tcase_add_test(tc, test_errors);
    return tu_run("attention", tc, CK_FORK_GETENV);
}
