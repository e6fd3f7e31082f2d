/*
 * `vttt bench cuda`, the whole layer and the projection GEMM (see
 * bench_cuda.h). Every figure comes after a check of the same code path
 * against the CPU reference; times are CUDA events on the backend's
 * stream, best of `reps` after one warm-up run. FLOPs are model FLOPs
 * (vttt_layer_forward_flops; a training step counts 3x the forward), so
 * TFLOP/s and the fraction of the bf16 GEMM rate measured in the same run
 * compare directly with the paper's MFU-style figures.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench_cuda.h"
#include "layer_dev.h"

/* Host data of n floats in [-1.7, 1.7) scaled, by a cheap LCG. */
static void fill(float *x, size_t n, float scale, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = scale * ((float)(seed >> 40) / 16777216.0f - 0.5f) * 3.4f;
    }
}

/* n random floats uploaded into a new device buffer. */
static float *dev_random(const vttt_backend *be, size_t n, float scale, uint64_t seed) {
    float *h = malloc(n * sizeof(float));
    void *d = NULL;
    if (h && !be->alloc(be->ctx, &d, n * sizeof(float))) {
        fill(h, n, scale, seed);
        if (be->to_device(be->ctx, d, h, n * sizeof(float)) || be->sync(be->ctx)) {
            be->free(be->ctx, d);
            d = NULL;
        }
    }
    free(h);
    return d;
}

/* ---- the whole layer --------------------------------------------------------------- */

static int layer_check(const vttt_backend *be, vttt_layer *l) {
    int B = 2, T = 2 * 16 + 5;
    size_t n = (size_t)B * T * BENCH_D;
    float *x = malloc(n * sizeof(float)), *dy = malloc(n * sizeof(float));
    ttt_layer_dev_check r;
    int err = x && dy ? VTTT_OK : VTTT_ENOMEM;
    if (!err) {
        fill(x, n, 1.0f, 5), fill(dy, n, 1.0f, 6);
        err = ttt_layer_dev_check_run(l, be, x, dy, B, T, 7, 20, &r);
    }
    free(x), free(dy);
    if (err) {
        printf("layer check: failed to run: %s\n", vttt_strerror(err));
        return 0;
    }
    int ok = r.y <= TTT_CUDA_TOL_FWD && r.dx <= TTT_CUDA_TOL_BWD && r.dparams <= TTT_CUDA_TOL_PARAM &&
             r.gen_y <= TTT_CUDA_TOL_FWD && r.gen_state <= TTT_CUDA_TOL_FWD && r.bf16_y <= 2e-2;
    printf("layer check (B=%d T=%d vs CPU, rel. err.): y %.1e dx %.1e params %.1e (%s) | prefill/decode %.1e state "
           "%.1e | bf16 y %.1e | graphs %d captured, %ld replays: %s\n",
           B, T, r.y, r.dx, r.dparams, r.worst, r.gen_y, r.gen_state, r.bf16_y, r.captured, r.replays,
           ok ? "ok" : "FAILED");
    return ok;
}

typedef struct {
    double prefill_ms, train_ms, decode_graph_ms, decode_direct_ms;
} layer_times;

/* Best time (ms) of reps runs of the prefill (what 0) or the training
 * step (what 1) after one warm-up. */
static int time_layer(vttt_layer_dev *d, ttt_cuda_timer *tm, float *y, float *x, float *dx, int B, int T, int what,
                      int reps, double *best) {
    int err = VTTT_OK;
    *best = INFINITY;
    for (int r = 0; r <= reps && !err; r++) {
        double ms = 0.0;
        err = ttt_cuda_timer_start(tm);
        if (!err) err = vttt_layer_dev_forward(d, y, x, B, T, what == 1);
        if (!err && what == 1) err = vttt_layer_dev_backward(d, dx, y); /* dy: any (B,T,D) data */
        if (!err) err = ttt_cuda_timer_stop(tm, &ms);
        if (!err && r > 0 && ms < *best) *best = ms;
    }
    return err;
}

/* ms for `steps` decode steps from a fresh state, graphs on or off. */
static int time_decode(vttt_layer_dev *d, ttt_cuda_timer *tm, float *y, float *x, int B, int steps, int graphs,
                       double *ms) {
    vttt_state_dev *s = NULL;
    int err = vttt_state_dev_init(&s, d, B);
    if (err) return err;
    ttt_state_dev_set_graphs(s, graphs);
    for (int t = 0; t < 16 && !err; t++) err = vttt_layer_dev_decode(d, s, y, x); /* captures every index */
    if (!err) err = ttt_cuda_timer_start(tm);
    for (int t = 0; t < steps && !err; t++) err = vttt_layer_dev_decode(d, s, y, x);
    if (!err) err = ttt_cuda_timer_stop(tm, ms);
    vttt_state_dev_free(&s);
    return err;
}

void bench_cuda_layer_header(void) {
    printf("\nwhole layer (vttt_layer_dev: projections + fused inner loop + post-norm + o_proj), D=%d, H=%d; model "
           "FLOPs; %%bf16 = fraction of the measured bf16 GEMM rate\n",
           BENCH_D, BENCH_H);
    printf("%-10s %6s %5s | %10s %7s %6s | %10s %7s %6s | %9s %9s\n", "layer", "T", "proj", "prefill/s", "TFLOP/s",
           "%bf16", "train/s", "TFLOP/s", "%bf16", "dec/s gr", "dec/s dir");
}

/* One row: prefill, training step and decode of one layer at T tokens. */
static int layer_row(const vttt_backend *be, ttt_cuda_timer *tm, vttt_layer *l, int B, int T, int reps, int train,
                     int bf16, double rate) {
    vttt_layer_dev *d = NULL;
    size_t ND = (size_t)B * T * BENCH_D;
    float *x = dev_random(be, ND, 1.0f, 21), *y = dev_random(be, ND, 1.0f, 22), *dx = dev_random(be, ND, 0.0f, 23);
    layer_times lt = {NAN, NAN, NAN, NAN};
    int err = x && y && dx ? vttt_layer_dev_init(&d, l, be, B, T) : VTTT_ENOMEM;
    if (!err && bf16) err = ttt_layer_dev_set_bf16(d, 1);
    if (!err) err = time_layer(d, tm, y, x, dx, B, T, 0, reps, &lt.prefill_ms);
    if (!err && train) err = time_layer(d, tm, y, x, dx, B, T, 1, reps, &lt.train_ms);
    if (!err) err = time_decode(d, tm, y, x, B, 64, 1, &lt.decode_graph_ms);
    if (!err) err = time_decode(d, tm, y, x, B, 64, 0, &lt.decode_direct_ms);
    vttt_layer_dev_free(&d);
    float *bufs[] = {x, y, dx};
    for (int i = 0; i < 3; i++)
        if (bufs[i]) be->free(be->ctx, bufs[i]);
    const vttt_layer_config *cfg = vttt_layer_get_config(l);
    const char *name = cfg->kind == VTTT_LAYER_TTT_MLP ? "ttt_mlp" : "ttt_linear";
    if (err) {
        printf("%-10s %6d %5s | failed: %s\n", name, T, bf16 ? "bf16" : "fp32", vttt_strerror(err));
        return 1;
    }
    double tok = (double)B * T, fl = vttt_layer_forward_flops(cfg, B, T);
    double pf = fl / (lt.prefill_ms * 1e-3) / 1e12, tr = 3 * fl / (lt.train_ms * 1e-3) / 1e12;
    printf("%-10s %6d %5s | %10.0f %7.2f %5.1f%% | %10.0f %7.2f %5.1f%% | %9.0f %9.0f\n", name, T, bf16 ? "bf16" : "fp32",
           tok / (lt.prefill_ms * 1e-3), pf, 100 * pf / rate, tok / (lt.train_ms * 1e-3), tr, 100 * tr / rate,
           B * 64 / (lt.decode_graph_ms * 1e-3), B * 64 / (lt.decode_direct_ms * 1e-3));
    fflush(stdout);
    return 0;
}

int bench_cuda_layer_row(const vttt_backend *be, ttt_cuda_timer *tm, int mlp, int B, int T, int reps, int train,
                         double bf16_rate, int check) {
    vttt_layer_config cfg = vttt_layer_default_config(mlp ? VTTT_LAYER_TTT_MLP : VTTT_LAYER_TTT_LINEAR, BENCH_D,
                                                      BENCH_H);
    vttt_layer *l = NULL;
    if (vttt_layer_init(&l, &cfg, NULL)) return 1;
    vttt_layer_init_weights(l, 3);
    int failed = check && !layer_check(be, l);
    for (int bf16 = 0; bf16 < 2 && !failed; bf16++) failed = layer_row(be, tm, l, B, T, reps, train, bf16, bf16_rate);
    vttt_layer_free(&l);
    return failed;
}

/* ---- the projection GEMM ------------------------------------------------------------- */

/* bf16 vs the CPU's fp32 linear on the same bf16-rounded data, N = 256. */
static int gemm_check(const vttt_backend *be) {
    int N = 256, C = BENCH_D, OC = BENCH_D;
    size_t nx = (size_t)N * C, nw = (size_t)OC * C, ny = (size_t)N * OC;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *y = malloc(ny * 4), *yg = malloc(ny * 4);
    uint16_t *wb = malloc(nw * 2);
    void *xd = NULL, *wd = NULL, *yd = NULL, *xbd = NULL;
    int err = x && w && y && yg && wb ? VTTT_OK : VTTT_ENOMEM;
    if (!err) {
        fill(x, nx, 1.0f, 31), fill(w, nw, 0.05f, 32);
        for (size_t i = 0; i < nx; i++) x[i] = vttt_bf16_to_f32(vttt_f32_to_bf16(x[i]));
        for (size_t i = 0; i < nw; i++) wb[i] = vttt_f32_to_bf16(w[i]), w[i] = vttt_bf16_to_f32(wb[i]);
        err = vttt_backend_cpu()->linear_forward(NULL, y, x, w, NULL, N, C, OC);
    }
    if (!err) err = be->alloc(be->ctx, &xd, nx * 4);
    if (!err) err = be->alloc(be->ctx, &wd, nw * 2);
    if (!err) err = be->alloc(be->ctx, &yd, ny * 4);
    if (!err) err = be->alloc(be->ctx, &xbd, nx * 2);
    if (!err) err = be->to_device(be->ctx, xd, x, nx * 4);
    if (!err) err = be->to_device(be->ctx, wd, wb, nw * 2);
    if (!err) err = ttt_cuda_linear_bf16(be, yd, xd, wd, xbd, N, C, OC);
    if (!err) err = be->to_host(be->ctx, yg, yd, ny * 4);
    double diff = 0, ref = 0;
    for (size_t i = 0; !err && i < ny; i++) diff = fmax(diff, fabs(yg[i] - y[i])), ref = fmax(ref, fabs(y[i]));
    void *dev[] = {xd, wd, yd, xbd};
    for (int i = 0; i < 4; i++)
        if (dev[i]) be->free(be->ctx, dev[i]);
    free(x), free(w), free(y), free(yg), free(wb);
    int ok = !err && diff <= 1e-4 * ref;
    printf("gemm check (bf16 cuBLASLt vs CPU fp32 on bf16 data, %dx%dx%d): rel. err. %.1e: %s\n", N, C, OC,
           err ? NAN : diff / ref, ok ? "ok" : "FAILED");
    return ok;
}

/* Best ms of reps runs of 8 GEMMs: fp32 cuBLAS (bf16 == 0) or bf16. */
static int time_gemm(const vttt_backend *be, ttt_cuda_timer *tm, int bf16, int N, float *x, void *w, float *y,
                     uint16_t *xb, int reps, double *best) {
    int err = VTTT_OK, C = BENCH_D;
    *best = INFINITY;
    if (bf16) err = ttt_cuda_to_bf16(be, xb, x, (size_t)N * C);
    for (int r = 0; r <= reps && !err; r++) {
        double ms = 0.0;
        err = ttt_cuda_timer_start(tm);
        for (int k = 0; k < 8 && !err; k++)
            err = bf16 ? ttt_cuda_gemm_bf16(be, y, xb, w, N, C, C)
                       : be->linear_forward(be->ctx, y, x, w, NULL, N, C, C);
        if (!err) err = ttt_cuda_timer_stop(tm, &ms);
        if (!err && r > 0 && ms / 8 < *best) *best = ms / 8;
    }
    return err;
}

int bench_cuda_gemm(const vttt_backend *be, ttt_cuda_timer *tm, const int *Ns, int nN, int reps, double bf16_rate) {
    printf("\nprojection GEMM y (N,%d) = x (N,%d) W^T: cuBLAS fp32 (no TF32) and cuBLASLt bf16 inputs / fp32 "
           "accumulation and output\n", BENCH_D, BENCH_D);
    if (!gemm_check(be)) return 1;
    printf("%8s | %9s %8s %7s | %9s %8s %7s %6s\n", "N", "fp32 ms", "TFLOP/s", "GB/s", "bf16 ms", "TFLOP/s", "GB/s",
           "%bf16");
    int C = BENCH_D, failed = 0;
    float *w = dev_random(be, (size_t)C * C, 0.05f, 41);
    void *wb = NULL;
    int err = w ? be->alloc(be->ctx, &wb, (size_t)C * C * 2) : VTTT_ENOMEM;
    if (!err) err = ttt_cuda_to_bf16(be, wb, w, (size_t)C * C);
    for (int i = 0; i < nN && !err; i++) {
        int N = Ns[i];
        float *x = dev_random(be, (size_t)N * C, 1.0f, 42), *y = dev_random(be, (size_t)N * C, 0.0f, 43);
        void *xb = NULL;
        double t32 = NAN, t16 = NAN;
        int e = x && y ? be->alloc(be->ctx, &xb, (size_t)N * C * 2) : VTTT_ENOMEM;
        if (!e) e = time_gemm(be, tm, 0, N, x, w, y, xb, reps, &t32);
        if (!e) e = time_gemm(be, tm, 1, N, x, wb, y, xb, reps, &t16);
        void *bufs[] = {x, y, xb};
        for (int k = 0; k < 3; k++)
            if (bufs[k]) be->free(be->ctx, bufs[k]);
        if (e) {
            printf("%8d | failed: %s\n", N, vttt_strerror(e));
            failed = 1;
            continue;
        }
        double fl = 2.0 * N * C * (double)C;
        double b32 = 4.0 * ((double)N * C * 2 + (double)C * C), b16 = 2.0 * ((double)N * C + C * C) + 4.0 * N * C;
        printf("%8d | %9.4f %8.2f %7.0f | %9.4f %8.2f %7.0f %5.1f%%\n", N, t32, fl / (t32 * 1e9),
               b32 / (t32 * 1e6), t16, fl / (t16 * 1e9), b16 / (t16 * 1e6), 100 * fl / (t16 * 1e9) / bf16_rate);
    }
    if (w) be->free(be->ctx, w);
    if (wb) be->free(be->ctx, wb);
    return err || failed;
}
