/*
 * `vttt example`: the built-in example. Builds a TTT-MLP layer (and a
 * TTT-Linear one) at a small shape with random weights, runs a synthetic
 * sequence through it three ways — dual-form prefill, primal form, and
 * token-by-token decode — and prints how closely they agree, the decode
 * state size at several positions, and the time each took.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "ttt.h"

static double rel_err(const float *a, const float *b, size_t n) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return m / (s > 0 ? s : 1);
}

static int run_kind(vttt_layer_kind kind, const char *name, int T) {
    const int D = 128, H = 4, B = 1;
    vttt_layer_config cfg = vttt_layer_default_config(kind, D, H);
    cfg.share_qk = 1;
    cfg.use_gate = 1;
    vttt_layer *l = NULL;
    vttt_state *st = NULL;
    int err = vttt_layer_init(&l, &cfg, NULL);
    if (err) return err;
    vttt_layer_init_weights(l, 1);
    size_t n = (size_t)B * T * D;
    float *x = malloc(n * sizeof(float)), *yd = malloc(n * sizeof(float)), *yp = malloc(n * sizeof(float)),
          *yt = malloc(n * sizeof(float));
    if (!x || !yd || !yp || !yt) {
        err = VTTT_ENOMEM;
        goto done;
    }
    uint64_t s = 12345;
    for (size_t i = 0; i < n; i++) { /* a smooth signal plus noise */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = sinf(0.05f * (float)(i / D) + (float)(i % D)) + 0.3f * ((float)(s >> 40) / 16777216.0f - 0.5f);
    }
    double t0 = cli_now_s();
    if ((err = vttt_layer_forward(l, yd, x, B, T, VTTT_FORM_DUAL, 0))) goto done;
    double t1 = cli_now_s();
    if ((err = vttt_layer_forward(l, yp, x, B, T, VTTT_FORM_PRIMAL, 0))) goto done;
    double t2 = cli_now_s();
    if ((err = vttt_state_init(&st, l, B, 0))) goto done;
    size_t bytes0 = vttt_state_bytes(st), bytes_max = bytes0;
    for (int t = 0; t < T; t++) {
        if ((err = vttt_layer_decode(l, st, yt + (size_t)t * D, x + (size_t)t * D))) goto done;
        if (vttt_state_bytes(st) > bytes_max) bytes_max = vttt_state_bytes(st);
    }
    double t3 = cli_now_s();
    printf("%-10s T=%d D=%d H=%d: dual %.1f ms, primal %.1f ms, decode %.1f ms\n", name, T, D, H, (t1 - t0) * 1e3,
           (t2 - t1) * 1e3, (t3 - t2) * 1e3);
    printf("           max rel. difference: primal vs dual %.2e, decode vs dual %.2e\n", rel_err(yp, yd, n),
           rel_err(yt, yd, n));
    printf("           decode state: %zu bytes at position 0, %zu bytes at most up to position %d\n", bytes0,
           bytes_max, T);
done:
    if (err) fprintf(stderr, "vttt example: %s failed: %s\n", name, vttt_strerror(err));
    vttt_state_free(&st);
    free(x);
    free(yd);
    free(yp);
    free(yt);
    vttt_layer_free(&l);
    return err;
}

int cli_example(int argc, char **argv) {
    if (argc > 1) {
        int help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");
        fprintf(help ? stdout : stderr, "usage: vttt example   (no options)\n"
                "  runs one sequence through a TTT-MLP and a TTT-Linear layer three ways (dual, primal,\n"
                "  decode) and prints how well they agree\n");
        return help ? 0 : 2;
    }
    printf("vttt example: one sequence through a TTT layer three ways (dual, primal, decode)\n");
    if (run_kind(VTTT_LAYER_TTT_MLP, "ttt_mlp", 200) || run_kind(VTTT_LAYER_TTT_LINEAR, "ttt_linear", 200))
        return 1;
    return 0;
}
