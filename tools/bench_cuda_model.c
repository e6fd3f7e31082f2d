/*
 * `vttt bench cuda --parts model`: a whole model's training step on the GPU
 * (vttt_model_dev: embedding, 12 blocks of TTT layer + SwiGLU, LM head and
 * loss, forward and backward) at the 125m preset, vocab 32000, Transformer
 * backbone, for TTT-Linear and TTT-MLP. First a small model's step is
 * checked against the CPU model (loss and every gradient), then each
 * context's step is timed with CUDA events (best of reps after a warm-up)
 * and printed as tokens/s, model TFLOP/s (3x vttt_model_forward_flops) and
 * model FLOP utilization against the fp32 and bf16 GEMM rates measured in
 * the same run. The path is fp32 throughout (cuBLAS without TF32, fp32
 * fused kernels), so the fp32 figure is its own ceiling. decode/s: tokens
 * per second of 64 single-token decode steps (logits copied to the host
 * each step) after a prefill of T - 80 tokens, through the layers' CUDA
 * graphs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_cuda.h"
#include "model.h"

/* A small model's device step against the CPU's. Returns 1 when they agree. */
static int model_check(const vttt_backend *be, vttt_layer_kind kind) {
    vttt_model_config cfg = vttt_model_default_config();
    vttt_model *m = NULL;
    int B = 2, T = 37, N = B * T, n = 0, ok = 0;
    float l_cpu = 0.0f, l_dev = 0.0f, **ref = NULL;
    int32_t *tok = malloc((size_t)N * sizeof(int32_t));
    vttt_model_dev *d = NULL;
    int err = tok ? vttt_model_config_preset(&cfg, "tiny", NULL) : VTTT_ENOMEM;
    cfg.seq_kind = kind, cfg.vocab_size = 1000;
    if (!err) err = vttt_model_init(&m, &cfg, NULL);
    if (!err) {
        vttt_model_init_weights(m, 5);
        for (int i = 0; i < N; i++) tok[i] = (i * 37 + 5) % 1000;
        vttt_model_zero_grads(m);
        err = vttt_model_forward(m, tok, NULL, B, T, 1, &l_cpu, NULL);
    }
    if (!err) err = vttt_model_backward(m, 1.0f);
    const vttt_model_tensor *t = m ? vttt_model_tensors(m, &n) : NULL;
    if (!err && !(ref = calloc((size_t)n, sizeof *ref))) err = VTTT_ENOMEM;
    for (int i = 0; !err && i < n; i++) {
        if (!(ref[i] = malloc((size_t)t[i].numel * sizeof(float)))) err = VTTT_ENOMEM;
        else memcpy(ref[i], t[i].grad, (size_t)t[i].numel * sizeof(float));
    }
    if (!err) vttt_model_zero_grads(m);
    if (!err) err = vttt_model_dev_init(&d, m, be, B, T);
    if (!err) err = vttt_model_dev_step(d, tok, NULL, B, T, &l_dev);
    if (!err) err = vttt_model_dev_grads_to_host(d);
    double worst = 0.0;
    for (int i = 0; !err && i < n; i++) {
        double diff = 0.0, mx = 0.0;
        for (int64_t j = 0; j < t[i].numel; j++) {
            diff = fmax(diff, fabs((double)t[i].grad[j] - ref[i][j]));
            mx = fmax(mx, fabs((double)ref[i][j]));
        }
        double e = diff > 0 ? diff / fmax(mx, 1e-30) : 0.0;
        worst = isfinite(e) ? fmax(worst, e) : INFINITY;
    }
    if (err) printf("model check: failed to run: %s\n", vttt_strerror(err));
    else {
        ok = fabs(l_dev - l_cpu) <= TTT_CUDA_TOL_FWD * fabs(l_cpu) && worst <= TTT_CUDA_TOL_PARAM;
        printf("model check (%s, tiny preset, B=%d T=%d vs CPU): loss %.6f vs %.6f, worst gradient rel. err. %.1e: "
               "%s\n",
               kind == VTTT_LAYER_TTT_MLP ? "ttt_mlp" : "ttt_linear", B, T, l_dev, l_cpu, worst, ok ? "ok" : "FAILED");
    }
    for (int i = 0; ref && i < n; i++) free(ref[i]);
    free(ref), free(tok);
    vttt_model_dev_free(&d);
    vttt_model_free(&m);
    return ok;
}

/* Best ms of reps training steps at (B, T) after one warm-up. */
static int time_steps(vttt_model_dev *d, ttt_cuda_timer *tm, const int32_t *tok, int B, int T, int reps,
                      double *best, float *loss) {
    int err = VTTT_OK;
    *best = INFINITY;
    for (int r = 0; r <= reps && !err; r++) {
        double ms = 0.0;
        err = ttt_cuda_timer_start(tm);
        if (!err) err = vttt_model_dev_step(d, tok, NULL, B, T, loss);
        if (!err) err = ttt_cuda_timer_stop(tm, &ms);
        if (!err && r > 0 && ms < *best) *best = ms;
    }
    return err;
}

/* ms of `steps` decode steps (one token per sequence, logits to the host)
 * after a prefill of T tokens, from a fresh device state. */
static int time_decode(vttt_model_dev *d, ttt_cuda_timer *tm, const int32_t *tok, int B, int T, int steps,
                       float *logits, double *ms) {
    vttt_model_dev_state *s = NULL;
    int err = vttt_model_dev_state_init(&s, d, B);
    if (!err) err = vttt_model_dev_prefill(d, s, tok, T, NULL, 0);
    for (int t = 0; t < 16 && !err; t++) err = vttt_model_dev_decode(d, s, tok + t, logits); /* captures the graphs */
    if (!err) err = ttt_cuda_timer_start(tm);
    for (int t = 0; t < steps && !err; t++) err = vttt_model_dev_decode(d, s, tok + t, logits);
    if (!err) err = ttt_cuda_timer_stop(tm, ms);
    vttt_model_dev_state_free(&s);
    return err;
}

static int model_row(const vttt_backend *be, ttt_cuda_timer *tm, vttt_layer_kind kind, int B, int T, int reps,
                     const double rate[2]) {
    vttt_model_config cfg = vttt_model_default_config();
    vttt_model *m = NULL;
    vttt_model_dev *d = NULL;
    int N = B * T;
    int32_t *tok = malloc((size_t)N * sizeof(int32_t));
    double ms = NAN, dec_ms = NAN;
    float loss = NAN;
    int err = vttt_model_config_preset(&cfg, "125m", NULL);
    cfg.seq_kind = kind;
    float *logits = malloc((size_t)B * cfg.vocab_size * sizeof(float));
    if (!err && (!tok || !logits)) err = VTTT_ENOMEM;
    if (!err) err = vttt_model_init(&m, &cfg, NULL);
    if (!err) {
        vttt_model_init_weights(m, 1);
        for (int i = 0; i < N; i++) tok[i] = (int32_t)((i * 2654435761u) % (unsigned)cfg.vocab_size);
        err = vttt_model_dev_init(&d, m, be, B, T);
    }
    if (!err) err = time_steps(d, tm, tok, B, T, reps, &ms, &loss);
    if (!err && T > 80) err = time_decode(d, tm, tok, B, T - 80, 64, logits, &dec_ms);
    const char *name = kind == VTTT_LAYER_TTT_MLP ? "ttt_mlp" : "ttt_linear";
    if (err) printf("%-10s %6d | failed: %s\n", name, T, vttt_strerror(err));
    else {
        double tf = 3.0 * vttt_model_forward_flops(&cfg, B, T) / (ms * 1e-3) / 1e12;
        printf("%-10s %6d | %9.1f %10.0f %8.2f %6.1f%% %6.1f%% | %9.0f | %.4f\n", name, T, ms, N / (ms * 1e-3), tf,
               100 * tf / rate[0], 100 * tf / rate[1], B * 64 / (dec_ms * 1e-3), loss);
    }
    fflush(stdout);
    vttt_model_dev_free(&d);
    vttt_model_free(&m);
    free(tok), free(logits);
    return err ? 1 : 0;
}

int bench_cuda_model(const vttt_backend *be, ttt_cuda_timer *tm, const int kinds[2], int B, const int *Ts, int nT,
                     int reps, const double rate[2]) {
    printf("\nwhole model, training step (forward + backward), 125m preset, vocab 32000, Transformer backbone, B=%d; "
           "MFU = model TFLOP/s (3x forward) over the measured GEMM rate\n", B);
    int failed = 0;
    for (int k = 0; k < 2; k++) {
        if (!kinds[k]) continue;
        vttt_layer_kind kind = k ? VTTT_LAYER_TTT_MLP : VTTT_LAYER_TTT_LINEAR;
        if (!model_check(be, kind)) {
            failed = 1;
            continue;
        }
        printf("%-10s %6s | %9s %10s %8s %7s %7s | %9s | %s\n", "layer", "T", "step ms", "tokens/s", "TFLOP/s",
               "%fp32", "%bf16", "decode/s", "loss");
        for (int i = 0; i < nT; i++) failed |= model_row(be, tm, kind, B, Ts[i], reps, rate);
    }
    return failed;
}
