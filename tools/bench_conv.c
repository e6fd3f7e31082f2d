/*
 * `vttt bench conv`: the 2D image ops of the frame tokenizer on the CPU
 * backend at the tokenizer's layer shapes (encoder/encoder_model.c: S×S
 * frames, widths c, c, 2c, 2c, 3x3 convs, stride 2 on the way down, nearest
 * 2x upsampling on the way up). Per layer: conv2d forward and backward
 * (input, weight and bias gradients) in ms and GFLOP/s next to this
 * machine's sgemm rate measured in the same run, then GroupNorm and
 * upsample2x in GB/s, and the whole tokenizer's conv time per frame.
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli.h"
#include "ttt.h"

typedef struct {
    const char *name;
    int cin, cout, k, stride, h; /* input h = w; the conv sees h << up */
    int up, norm;
} conv_layer;

static float *alloc_rand(size_t n, uint64_t seed) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x) return NULL;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 40) / 16777216.0 - 0.5);
    }
    return x;
}

typedef struct {
    double fwd_s, bwd_s, gn_s, up_s, flops;
} layer_times;

/* The buffers of one layer's measurement. */
typedef struct {
    const conv_layer *L;
    int N, H, pad, groups;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db, *gw, *gb, *gdw, *gdb, *mean, *rstd, *gy, *gdx;
} layer_bufs;

enum { OP_FWD, OP_BWD, OP_GN, OP_UP };

static void run_op(const layer_bufs *B, int op) {
    const vttt_backend *cpu = vttt_backend_cpu();
    const conv_layer *L = B->L;
    int hw = L->h * L->h;
    switch (op) {
    case OP_FWD:
        cpu->conv2d_forward(NULL, B->y, B->x, B->w, B->b, B->N, L->cin, B->H, B->H, L->cout, L->k, L->k, L->stride,
                            B->pad);
        break;
    case OP_BWD:
        cpu->conv2d_backward(NULL, B->dx, B->dw, B->db, B->dy, B->x, B->w, B->N, L->cin, B->H, B->H, L->cout, L->k,
                             L->k, L->stride, B->pad);
        break;
    case OP_GN:
        cpu->groupnorm_forward(B->gy, B->mean, B->rstd, B->x, B->gw, B->gb, B->N, L->cin, hw, B->groups, 1e-5f);
        cpu->groupnorm_backward(B->gdx, B->gdw, B->gdb, B->gy, B->x, B->gw, B->mean, B->rstd, B->N, L->cin, hw,
                                B->groups);
        break;
    default:
        cpu->upsample2x_forward(B->x, B->gy, B->N, L->cin, L->h, L->h);
        cpu->upsample2x_backward(B->gdx, B->x, B->N, L->cin, L->h, L->h);
    }
}

/* The best of reps runs of op after one warm-up run, seconds. */
static double best_of(const layer_bufs *B, int op, int reps) {
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t = cli_now_s();
        run_op(B, op);
        t = cli_now_s() - t;
        if (r > 0 && t < best) best = t;
    }
    return best;
}

/* Times one layer's ops at batch N; 0 or VTTT_ENOMEM. */
static int time_layer(const conv_layer *L, int N, int reps, int groups, layer_times *t) {
    layer_bufs B = {.L = L, .N = N, .H = L->h << L->up, .pad = L->k / 2, .groups = groups};
    int OH = (B.H + 2 * B.pad - L->k) / L->stride + 1;
    size_t nin = (size_t)N * L->cin * B.H * B.H, nout = (size_t)N * L->cout * OH * OH;
    size_t nw = (size_t)L->cout * L->cin * L->k * L->k, nsmall = (size_t)N * L->cin * L->h * L->h;
    float **bufs[] = {&B.x, &B.w, &B.b, &B.y, &B.dy, &B.dx, &B.dw, &B.db, &B.gw, &B.gb, &B.gdw, &B.gdb, &B.mean,
                      &B.rstd, &B.gy, &B.gdx};
    size_t sizes[] = {nin, nw, L->cout, nout, nout, nin, nw, L->cout, L->cin, L->cin, L->cin, L->cin,
                      (size_t)N * groups, (size_t)N * groups, nsmall, nsmall};
    int err = VTTT_OK, nb = (int)(sizeof sizes / sizeof sizes[0]);
    for (int i = 0; i < nb; i++)
        if (!(*bufs[i] = alloc_rand(sizes[i], 1 + i))) err = VTTT_ENOMEM;
    if (!err) {
        t->flops = 2.0 * L->cout * (double)(L->cin * L->k * L->k) * OH * OH * N;
        t->fwd_s = best_of(&B, OP_FWD, reps);
        t->bwd_s = best_of(&B, OP_BWD, reps);
        t->gn_s = L->norm ? best_of(&B, OP_GN, reps) : 0.0;
        t->up_s = L->up ? best_of(&B, OP_UP, reps) : 0.0;
    }
    for (int i = 0; i < nb; i++) free(*bufs[i]);
    return err;
}

static void usage(void) {
    fprintf(stderr, "usage: vttt bench conv [--batch N] [--channels C] [--size S] [--groups G] [--reps R]\n"
                    "  the frame tokenizer's conv2d/groupnorm/upsample2x on the CPU at its layer shapes\n"
                    "  (defaults: batch 16, channels 32, size 64, groups 8, reps 5)\n");
}

/* The layer table of encoder/encoder_model.c for widths c and frame size S. */
static int tokenizer_layers(conv_layer *L, int c, int S, int d) {
    int G = S / 8;
    conv_layer t[] = {
        {"encoder.conv_in", 3, c, 3, 1, S, 0, 0},      {"encoder.down.0", c, c, 3, 2, S, 0, 1},
        {"encoder.down.1", c, 2 * c, 3, 2, S / 2, 0, 1}, {"encoder.down.2", 2 * c, 2 * c, 3, 2, S / 4, 0, 1},
        {"encoder.mid", 2 * c, 2 * c, 3, 1, G, 0, 1},    {"encoder.conv_out", 2 * c, d, 1, 1, G, 0, 1},
        {"decoder.conv_in", d, 2 * c, 1, 1, G, 0, 0},    {"decoder.mid", 2 * c, 2 * c, 3, 1, G, 0, 1},
        {"decoder.up.0", 2 * c, 2 * c, 3, 1, G, 1, 1},   {"decoder.up.1", 2 * c, c, 3, 1, S / 4, 1, 1},
        {"decoder.up.2", c, c, 3, 1, S / 2, 1, 1},       {"decoder.conv_out", c, 3, 3, 1, S, 0, 1},
    };
    int n = (int)(sizeof t / sizeof t[0]);
    memcpy(L, t, sizeof t);
    return n;
}

int cli_bench_conv(int argc, char **argv) {
    int N = 16, c = 32, S = 64, groups = 8, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        }
        int *dst = !strcmp(argv[i], "--batch")      ? &N
                   : !strcmp(argv[i], "--channels") ? &c
                   : !strcmp(argv[i], "--size")     ? &S
                   : !strcmp(argv[i], "--groups")   ? &groups
                   : !strcmp(argv[i], "--reps")     ? &reps
                                                    : NULL;
        if (!dst || i + 1 >= argc || (*dst = atoi(argv[++i])) <= 0) {
            usage();
            return 2;
        }
    }
    if (S % 8 || c % groups) {
        fprintf(stderr, "vttt bench conv: size must be a multiple of 8 and channels a multiple of groups\n");
        return 2;
    }
    double peak = cli_sgemm_rate(1024);
    printf("sgemm: 1024^3 OpenBLAS on %d threads: %.1f GFLOP/s (OpenMP threads %d)\n", openblas_get_num_threads(),
           peak, omp_get_max_threads());
    printf("tokenizer convs: batch %d, %dx%d frames, widths %d/%d, GroupNorm %d groups; best of %d runs\n", N, S, S,
           c, 2 * c, groups, reps);
    printf("%-17s %-19s | %8s %8s %6s | %8s %8s %6s | %8s %8s\n", "layer", "cin->cout k s HxW", "fwd ms", "GFLOP/s",
           "%sgemm", "bwd ms", "GFLOP/s", "%sgemm", "gn f+b ms", "up f+b ms");
    conv_layer L[16];
    int n = tokenizer_layers(L, c, S, 4);
    double fwd = 0, bwd = 0, other = 0, flops = 0;
    for (int l = 0; l < n; l++) {
        layer_times t;
        if (time_layer(&L[l], N, reps, groups, &t)) {
            printf("%-17s out of memory\n", L[l].name);
            return 1;
        }
        char shape[40];
        int H = L[l].h << L[l].up;
        snprintf(shape, sizeof shape, "%d->%d %dx%d s%d %dx%d", L[l].cin, L[l].cout, L[l].k, L[l].k, L[l].stride, H,
                 H);
        double gf = t.flops / t.fwd_s / 1e9, gb = 2 * t.flops / t.bwd_s / 1e9;
        printf("%-17s %-19s | %8.3f %8.1f %5.1f%% | %8.3f %8.1f %5.1f%% | %8.3f %8.3f\n", L[l].name, shape,
               1e3 * t.fwd_s, gf, 100 * gf / peak, 1e3 * t.bwd_s, gb, 100 * gb / peak, 1e3 * t.gn_s, 1e3 * t.up_s);
        fflush(stdout);
        fwd += t.fwd_s, bwd += t.bwd_s, other += t.gn_s + t.up_s, flops += t.flops;
    }
    printf("total: forward %.1f ms (%.1f GFLOP/s), backward %.1f ms (%.1f GFLOP/s), groupnorm+upsample %.1f ms;\n"
           "       %.2f ms per frame for a training step's image ops (%.0f frames/s)\n",
           1e3 * fwd, flops / fwd / 1e9, 1e3 * bwd, 2 * flops / bwd / 1e9, 1e3 * other,
           1e3 * (fwd + bwd + other) / N, N / (fwd + bwd + other));
    return 0;
}
