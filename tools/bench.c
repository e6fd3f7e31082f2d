/*
 * `vttt bench ttt`: throughput of TTT-Linear, TTT-MLP and causal attention
 * at the 125m layer shape (D=768, 12 heads, head dim 64) across context
 * lengths: prefill, decode and training-step tokens/s, achieved GFLOP/s and
 * its ratio to this machine's sgemm rate measured by the same program, and
 * peak resident memory of each measurement.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "ttt.h"

/* Peak RSS since the last reset, in MiB (Linux: VmHWM, reset through
 * /proc/self/clear_refs). */
static void peak_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static double peak_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb / 1024.0;
}

double cli_sgemm_rate(int n) {
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0.0;
    }
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t = cli_now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t = cli_now_s() - t;
        if (r > 0 && t < best) best = t;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

typedef struct {
    double prefill_tps, prefill_gflops, prefill_mib;
    double decode_tps, decode_mib_growth;
    double train_tps, train_gflops, train_mib;
} bench_row;

static void fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 40) / 16777216.0 - 0.5) * 2.0f;
    }
}

#define DECODE_TOKENS 64

static int bench_one(vttt_layer_kind kind, int T, int train, bench_row *row) {
    const int D = 768, H = 12;
    vttt_layer_config cfg = vttt_layer_default_config(kind, D, H);
    vttt_layer *l = NULL;
    vttt_state *st = NULL;
    int err = vttt_layer_init(&l, &cfg, NULL);
    if (err) return err;
    vttt_layer_init_weights(l, 7);
    size_t n = (size_t)T * D;
    float *x = malloc(n * 4), *y = malloc(n * 4), *dx = malloc(n * 4);
    if (!x || !y || !dx) {
        err = VTTT_ENOMEM;
        goto done;
    }
    fill(x, n, 1);
    double flops = vttt_layer_forward_flops(&cfg, 1, T);
    /* warm-up: first-touch of the layer's buffers and thread start-up are
     * not part of the figures */
    if ((err = vttt_layer_forward(l, y, x, 1, T < 2048 ? T : 2048, VTTT_FORM_DUAL, 0))) goto done;
    /* prefill through a state, then decode from there */
    if ((err = vttt_state_init(&st, l, 1, T + DECODE_TOKENS))) goto done;
    peak_reset();
    double t0 = cli_now_s();
    if ((err = vttt_layer_prefill(l, st, y, x, T))) goto done;
    double tp = cli_now_s() - t0;
    row->prefill_tps = T / tp;
    row->prefill_gflops = flops / tp / 1e9;
    row->prefill_mib = peak_mib();
    size_t bytes0 = vttt_state_bytes(st);
    t0 = cli_now_s();
    for (int i = 0; i < DECODE_TOKENS; i++)
        if ((err = vttt_layer_decode(l, st, y, x + (size_t)i * D))) goto done;
    row->decode_tps = DECODE_TOKENS / (cli_now_s() - t0);
    row->decode_mib_growth = ((double)vttt_state_bytes(st) - (double)bytes0) / (1024.0 * 1024.0);
    vttt_state_free(&st);
    row->train_tps = row->train_gflops = row->train_mib = NAN;
    if (train) {
        /* one untimed step first: a training loop's steady state reuses the
         * layer's buffers, so first-touch page faults are not counted */
        if ((err = vttt_layer_forward(l, y, x, 1, T, VTTT_FORM_DUAL, 1))) goto done;
        if ((err = vttt_layer_backward(l, dx, y))) goto done;
        vttt_layer_zero_grads(l);
        peak_reset();
        t0 = cli_now_s();
        if ((err = vttt_layer_forward(l, y, x, 1, T, VTTT_FORM_DUAL, 1))) goto done;
        fill(y, n, 2);
        if ((err = vttt_layer_backward(l, dx, y))) goto done;
        double tt = cli_now_s() - t0;
        row->train_tps = T / tt;
        row->train_gflops = 3.0 * flops / tt / 1e9; /* model FLOPs: backward counted as 2x forward */
        row->train_mib = peak_mib();
    }
done:
    vttt_state_free(&st);
    free(x), free(y), free(dx);
    vttt_layer_free(&l);
    return err;
}

/* Linear time: each TTT layer's prefill rate at its longest context against
 * its shortest; and the first context where TTT-MLP prefill beats
 * attention. */
static void print_summary(const char *const *names, const int *ctx, int nctx, double prefill[][32]) {
    if (nctx < 1) return;
    for (int k = 0; k < 2 && nctx > 1; k++)
        if (prefill[k][0] > 0 && prefill[k][nctx - 1] > 0)
            printf("%s prefill tokens/s at T=%d is %.1f%% of T=%d\n", names[k], ctx[nctx - 1],
                   100 * prefill[k][nctx - 1] / prefill[k][0], ctx[0]);
    if (prefill[1][0] <= 0 || prefill[2][0] <= 0) return;
    for (int ci = 0; ci < nctx; ci++) {
        if (prefill[1][ci] > prefill[2][ci]) {
            printf("TTT-MLP prefill is faster than attention from T=%d on (%.0f vs %.0f tokens/s)", ctx[ci],
                   prefill[1][ci], prefill[2][ci]);
            if (ci > 0)
                printf("; at T=%d attention was faster (%.0f vs %.0f)", ctx[ci - 1], prefill[2][ci - 1],
                       prefill[1][ci - 1]);
            printf("\n");
            return;
        }
    }
    printf("TTT-MLP prefill was slower than attention at every measured context\n");
}

static void usage(void) {
    fprintf(stderr, "usage: vttt bench ttt [--contexts 1024,2048,...] [--kinds ttt_linear,ttt_mlp,attention]\n"
                    "                      [--no-train] [--quick]\n");
}

int cli_bench(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "ttt") != 0) {
        usage();
        return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
    }
    char contexts[256] = "1024,2048,4096,8192,16384,32768,65536";
    char kinds[128] = "ttt_linear,ttt_mlp,attention";
    int train = 1;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--contexts") && i + 1 < argc) snprintf(contexts, sizeof contexts, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--kinds") && i + 1 < argc) snprintf(kinds, sizeof kinds, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--no-train")) train = 0;
        else if (!strcmp(argv[i], "--quick")) snprintf(contexts, sizeof contexts, "1024,4096");
        else {
            usage();
            return 2;
        }
    }
    printf("sgemm: 2048^3 OpenBLAS sgemm on %d threads, measured again before every row (the machine may be "
           "shared);\n%%sgemm is each row's GFLOP/s over that row's sgemm rate\n",
           openblas_get_num_threads());
    printf("layer: D=768, H=12, head dim 64, mini-batch 16, B=1; GFLOP/s counts model FLOPs (train = 3x forward)\n");
    printf("%-10s %7s %6s | %10s %7s %6s %8s | %10s %8s | %10s %7s %6s %8s\n", "layer", "T", "sgemm", "prefill/s",
           "GFLOP/s", "%sgemm", "peakMiB", "decode/s", "d.MiB", "train/s", "GFLOP/s", "%sgemm", "peakMiB");
    const char *names[] = {"ttt_linear", "ttt_mlp", "attention"};
    enum { MAX_CTX = 32 };
    int ctx[MAX_CTX], nctx = 0;
    double prefill[3][MAX_CTX] = {{0}};
    for (char *tok = strtok(contexts, ","); tok && nctx < MAX_CTX; tok = strtok(NULL, ","))
        if (atoi(tok) > 0) ctx[nctx++] = atoi(tok);
    for (int k = 0; k < 3; k++) {
        if (!strstr(kinds, names[k])) continue;
        for (int ci = 0; ci < nctx; ci++) {
            int T = ctx[ci];
            bench_row r = {0};
            double peak = cli_sgemm_rate(2048);
            int err = bench_one((vttt_layer_kind)k, T, train, &r);
            if (err) {
                printf("%-10s %7d %6.0f | failed: %s\n", names[k], T, peak, vttt_strerror(err));
                continue;
            }
            printf("%-10s %7d %6.0f | %10.0f %7.1f %5.1f%% %8.0f | %10.1f %8.2f | %10.0f %7.1f %5.1f%% %8.0f\n",
                   names[k], T, peak, r.prefill_tps, r.prefill_gflops, 100 * r.prefill_gflops / peak, r.prefill_mib, r.decode_tps,
                   r.decode_mib_growth, r.train_tps, r.train_gflops, 100 * r.train_gflops / peak, r.train_mib);
            fflush(stdout);
            prefill[k][ci] = r.prefill_tps;
        }
    }
    print_summary(names, ctx, nctx, prefill);
    return 0;
}
