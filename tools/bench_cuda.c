/*
 * `vttt bench cuda`: the fused CUDA TTT kernels (ttt/cuda/ttt_fused_*.cu) at
 * the 125m layer shape (D=768, 12 heads, head dim 64, mini-batch 16) for
 * TTT-Linear and TTT-MLP. First it checks the kernels against the CPU
 * reference on a short sequence (ttt_cuda_check_layer); then for each
 * context it times, with CUDA events, the prefill kernel, the backward
 * kernel and a training step of the inner loop (prefill with checkpoints
 * + backward), and prints tokens/s, achieved TFLOP/s and GB/s, and the
 * fraction of the device's fp32 and bf16 matrix rates measured by cuBLAS
 * GEMMs in the same run.
 *
 * What is timed is the inner loop alone: the kernels' inputs XQ/XK/XV/lr
 * (random here) come from the layer's projections, which are cuBLAS GEMMs
 * outside these kernels. FLOPs count the dual form's matrix products
 * (multiply-adds as 2); a training step counts 3x the forward (model
 * FLOPs, as `vttt bench ttt`). GB/s counts the compulsory traffic: the
 * activations read and written once, the state in and out, checkpoints.
 * Then (bench_cuda_layer.c, --parts layer,gemm) the whole layer on the GPU
 * (vttt_layer_dev) with fp32 and bf16 projections, and the projection
 * GEMM alone, and (bench_cuda_model.c, --parts model) a whole 125m model's
 * training step at the contexts up to 16384, each checked against the CPU
 * before it is timed.
 * Without a GPU it prints "no CUDA device" and exits 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli.h"
#include "bench_cuda.h"
#include "cuda/ttt_cuda.h"
#include "ttt.h"

#define MAX_CTX 32

typedef struct {
    int ctx[MAX_CTX], nctx;
    int kinds[2];   /* TTT-Linear, TTT-MLP wanted */
    int B, reps, train, decode_steps;
    int parts[4];   /* the fused kernels, the whole layer, the projection GEMM, the whole model */
} bench_opts;

static void usage(void) {
    fprintf(stderr, "usage: vttt bench cuda [--contexts 2048,4096,...] [--kinds ttt_linear,ttt_mlp] [--batch B]\n"
                    "                       [--reps N] [--no-train] [--quick] [--parts kernels,layer,gemm,model]\n");
}

static int parse_opts(int argc, char **argv, bench_opts *o) {
    char contexts[256] = "2048,4096,8192,16384,32768,65536";
    memset(o, 0, sizeof *o);
    o->kinds[0] = o->kinds[1] = 1;
    o->B = 1, o->reps = 3, o->train = 1, o->decode_steps = 64;
    o->parts[0] = o->parts[1] = o->parts[2] = o->parts[3] = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--contexts") && i + 1 < argc) snprintf(contexts, sizeof contexts, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--kinds") && i + 1 < argc) {
            const char *k = argv[++i];
            o->kinds[0] = strstr(k, "ttt_linear") != NULL, o->kinds[1] = strstr(k, "ttt_mlp") != NULL;
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) o->B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) o->reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-train")) o->train = 0;
        else if (!strcmp(argv[i], "--parts") && i + 1 < argc) {
            const char *k = argv[++i];
            o->parts[0] = strstr(k, "kernels") != NULL, o->parts[1] = strstr(k, "layer") != NULL;
            o->parts[2] = strstr(k, "gemm") != NULL, o->parts[3] = strstr(k, "model") != NULL;
        }
        else if (!strcmp(argv[i], "--quick")) snprintf(contexts, sizeof contexts, "2048,8192");
        else return -1;
    }
    for (char *t = strtok(contexts, ","); t && o->nctx < MAX_CTX; t = strtok(NULL, ","))
        if (atoi(t) > 0) o->ctx[o->nctx++] = atoi(t);
    return o->B >= 1 && o->reps >= 1 && o->nctx > 0 ? 0 : -1;
}

/* ---- counts ------------------------------------------------------------------ */

/* FLOPs of the dual form over one mini-batch of n tokens of one head. */
static double mb_flops(const ttt_cuda_shape *s, double n) {
    double f = s->f, h = s->h1;
    double fl = 2 * (2 * n) * f * h     /* [K;Q] W1 */
                + 2 * n * n * f         /* P1 = E (Q K^T + 1) */
                + 2 * n * n * h         /* P1 G1 */
                + 2 * n * f * h;        /* commit W1 */
    if (s->mlp)
        fl += 2 * n * h * f * 3         /* X2 W2, Gf W2^T, X2b W2 */
              + 2 * n * n * h           /* P2 = E (X2b X2^T + 1) */
              + 2 * n * n * f           /* P2 Gf */
              + 2 * n * h * f;          /* commit W2 */
    return fl;
}

/* FLOPs of a prefill of s->T tokens (from a boundary) over all heads. */
static double prefill_flops(const ttt_cuda_shape *s) {
    int full = s->T / s->b, rest = s->T % s->b;
    return (double)s->B * s->H * (full * mb_flops(s, s->b) + (rest ? mb_flops(s, rest) : 0.0));
}

/* ---- device buffers --------------------------------------------------------------- */

/* Everything one context needs on the device, in one allocation. */
typedef struct {
    float *XQ, *XK, *XV, *Z, *dZ, *dXQ, *dXK, *dXV; /* (B,T,D) */
    float *lr, *dlr;                                 /* (B,T,H) */
    float *W, *A, *ckpt;                             /* states, checkpoints */
    float *par[7], *grad[7];                         /* inner parameters and gradients */
    void *wsf, *wsb;                                 /* workspaces */
    size_t wsf_bytes, wsb_bytes;
    void *mem;
} dev_set;

/* Lays out (mem == NULL: only counts) the buffers; returns bytes. */
static size_t dev_layout(dev_set *d, const ttt_cuda_shape *s, int group, char *mem) {
    size_t ND = (size_t)s->B * s->T * s->H * s->f, NH = (size_t)s->B * s->T * s->H;
    size_t NS = (size_t)s->B * s->H * ttt_cuda_state_numel(s), nck = NS * ttt_cuda_num_groups(s->T, s->b, group);
    size_t H = s->H, f = s->f, h1 = s->h1;
    d->wsf_bytes = ttt_cuda_fwd_workspace(s), d->wsb_bytes = ttt_cuda_bwd_workspace(s, group);
    float **bufs[] = {&d->XQ, &d->XK, &d->XV, &d->Z, &d->dZ, &d->dXQ, &d->dXK, &d->dXV, &d->lr, &d->dlr,
                      &d->W, &d->A, &d->ckpt, (float **)&d->wsf, (float **)&d->wsb,
                      &d->par[0], &d->par[1], &d->par[2], &d->par[3], &d->par[4], &d->par[5], &d->par[6],
                      &d->grad[0], &d->grad[1], &d->grad[2], &d->grad[3], &d->grad[4], &d->grad[5], &d->grad[6]};
    size_t pn[7] = {H * f * h1, H * h1, H * h1 * f, H * f, H * f, H * f, (size_t)s->b};
    size_t sizes[] = {ND, ND, ND, ND, ND, ND, ND, ND, NH, NH, NS, NS, nck, d->wsf_bytes / 4, d->wsb_bytes / 4,
                      pn[0], pn[1], pn[2], pn[3], pn[4], pn[5], pn[6], pn[0], pn[1], pn[2], pn[3], pn[4], pn[5], pn[6]};
    size_t off = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *bufs[i] = mem ? (float *)(mem + off) : NULL;
        off += (sizes[i] * sizeof(float) + 255) & ~(size_t)255;
    }
    return off;
}

/* Random host data of n floats, N(0,1)-ish scaled, by a cheap LCG. */
static void fill(float *x, size_t n, float scale, float offset, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = offset + scale * ((float)(seed >> 40) / 16777216.0f - 0.5f) * 3.4f;
    }
}

/* Allocates and fills the buffers: q, k, v ~ unit scale, lr ~ 0.5/f, the
 * inner parameters as the reference's initialisation would roughly be. */
static int dev_setup(const vttt_backend *be, dev_set *d, const ttt_cuda_shape *s, int group) {
    size_t bytes = dev_layout(d, s, group, NULL);
    int err = be->alloc(be->ctx, &d->mem, bytes);
    if (err) return err;
    dev_layout(d, s, group, d->mem);
    size_t ND = (size_t)s->B * s->T * s->H * s->f, NH = (size_t)s->B * s->T * s->H;
    size_t pn[7] = {(size_t)s->H * s->f * s->h1, (size_t)s->H * s->h1, (size_t)s->H * s->h1 * s->f,
                    (size_t)s->H * s->f, (size_t)s->H * s->f, (size_t)s->H * s->f, (size_t)s->b};
    float *h = malloc((ND > pn[0] ? ND : pn[0]) * sizeof(float)); /* staging, for the largest upload */
    if (!h) return VTTT_ENOMEM;
    float *dst[] = {d->XQ, d->XK, d->XV, d->dZ, d->lr};
    for (int i = 0; i < 5 && !err; i++) {
        size_t n = i < 4 ? ND : NH;
        fill(h, n, i < 4 ? 1.0f : 0.2f / s->f, i < 4 ? 0.0f : 0.5f / s->f, 11 + i);
        err = be->to_device(be->ctx, dst[i], h, n * sizeof(float));
        if (!err) err = be->sync(be->ctx);
    }
    float scale[7] = {0.02f, 0.0f, 0.02f, 0.0f, 0.0f, 0.0f, 0.0f}, offs[7] = {0, 0, 0, 0, 1, 0, 0};
    for (int i = 0; i < 7 && !err; i++) {
        if (!s->mlp && (i == 2 || i == 3)) continue;
        fill(h, pn[i], scale[i], offs[i], 40 + i);
        err = be->to_device(be->ctx, d->par[i], h, pn[i] * sizeof(float));
        if (!err) err = be->sync(be->ctx);
    }
    free(h);
    return err;
}

/* ---- timing ------------------------------------------------------------------------- */

typedef struct {
    double prefill_ms, bwd_ms, train_ms, decode_ms; /* best of reps */
} bench_times;

enum { RUN_PREFILL, RUN_BACKWARD, RUN_TRAIN, RUN_DECODE };

/* The kernels' arguments over the buffers of d. */
typedef struct {
    ttt_cuda_params p;
    ttt_cuda_grads g;
    ttt_cuda_io io;
    ttt_cuda_shape s, s1; /* s1: one token per sequence, for decode */
    int group;
} run_args;

static run_args run_args_of(const dev_set *d, const ttt_cuda_shape *s, int group) {
    run_args a = {{d->par[0], d->par[1], s->mlp ? d->par[2] : NULL, s->mlp ? d->par[3] : NULL, d->par[4], d->par[5],
                   d->par[6]},
                  {d->grad[0], d->grad[1], s->mlp ? d->grad[2] : NULL, s->mlp ? d->grad[3] : NULL, d->grad[4],
                   d->grad[5], d->grad[6]},
                  {d->XQ, d->XK, d->XV, d->lr, d->Z}, *s, *s, group};
    a.s1.T = 1; /* decode reads the first B*D floats of q, k, v as (B,1,D) rows */
    return a;
}

/* What is timed: prefill from the learned state; the backward alone; a
 * training step (prefill with checkpoints, then backward); `steps` decode
 * steps. */
static int run_once(const vttt_backend *be, dev_set *d, run_args *a, int what, int steps) {
    int err = VTTT_OK;
    float *ck = what == RUN_TRAIN ? d->ckpt : NULL;
    if (what == RUN_PREFILL || what == RUN_TRAIN) {
        err = ttt_cuda_state_init(be, &a->s, &a->p, d->W, NULL);
        if (!err) err = ttt_cuda_prefill(be, &a->s, &a->p, &a->io, 0, d->W, NULL, ck, a->group, d->wsf, d->wsf_bytes);
    }
    if (!err && (what == RUN_BACKWARD || what == RUN_TRAIN))
        err = ttt_cuda_backward(be, &a->s, &a->p, &a->io, d->ckpt, a->group, d->dZ, d->dXQ, d->dXK, d->dXV, d->dlr,
                                &a->g, d->wsb, d->wsb_bytes);
    for (int t = 0; what == RUN_DECODE && t < steps && !err; t++)
        err = ttt_cuda_decode(be, &a->s1, &a->p, &a->io, t, d->W, d->A);
    return err;
}

/* The untimed preparation of run_once: checkpoints for the backward, a
 * fresh state for decode. */
static int prepare(const vttt_backend *be, dev_set *d, run_args *a, int what) {
    if (what == RUN_DECODE) return ttt_cuda_state_init(be, &a->s1, &a->p, d->W, d->A);
    if (what != RUN_BACKWARD) return VTTT_OK;
    int err = ttt_cuda_state_init(be, &a->s, &a->p, d->W, NULL);
    return err ? err : ttt_cuda_prefill(be, &a->s, &a->p, &a->io, 0, d->W, NULL, d->ckpt, a->group, d->wsf,
                                        d->wsf_bytes);
}

/* Best time in ms of `reps` timed runs after one warm-up run. */
static int time_it(const vttt_backend *be, ttt_cuda_timer *tm, dev_set *d, run_args *a, int what, int reps,
                   int steps, double *best) {
    int err = VTTT_OK;
    *best = INFINITY;
    for (int r = 0; r <= reps && !err; r++) {
        double ms = 0.0;
        err = prepare(be, d, a, what);
        if (!err) err = ttt_cuda_timer_start(tm);
        if (!err) err = run_once(be, d, a, what, steps);
        if (!err) err = ttt_cuda_timer_stop(tm, &ms);
        if (!err) err = be->sync(be->ctx);
        if (!err && r > 0 && ms < *best) *best = ms;
    }
    return err;
}

/* ---- the report ------------------------------------------------------------------------ */

/* Checks the kernels of one kind against the CPU on a short sequence at
 * the bench's shape. Returns 1 when they agree. */
static int check_kind(const vttt_backend *be, vttt_layer_kind kind) {
    vttt_layer_config cfg = vttt_layer_default_config(kind, BENCH_D, BENCH_H);
    vttt_layer *l = NULL;
    int B = 2, T = 2 * cfg.mini_batch + 5, ok = 0;
    float *x = malloc((size_t)B * T * BENCH_D * sizeof(float)), *dy = malloc((size_t)B * T * BENCH_D * sizeof(float));
    int err = x && dy ? vttt_layer_init(&l, &cfg, NULL) : VTTT_ENOMEM;
    ttt_cuda_check r;
    if (!err) {
        vttt_layer_init_weights(l, 3);
        fill(x, (size_t)B * T * BENCH_D, 1.0f, 0.0f, 5);
        fill(dy, (size_t)B * T * BENCH_D, 1.0f, 0.0f, 6);
        err = ttt_cuda_check_layer(l, be, x, dy, B, T, 5, &r);
    }
    if (err) printf("check: failed to run: %s\n", vttt_strerror(err));
    else {
        ok = ttt_cuda_check_passed(&r);
        printf("check (B=%d T=%d vs CPU, rel. err.): Z %.1e ckpt %.1e decode %.1e | dXQ %.1e dXK %.1e dXV %.1e "
               "dlr %.1e params %.1e: %s\n",
               B, T, r.z, r.ckpt, r.decode, r.dxq, r.dxk, r.dxv, r.dlr, r.dparams, ok ? "ok" : "FAILED");
    }
    vttt_layer_free(&l);
    free(x), free(dy);
    return ok;
}

/* Times one kind at one context and prints its row. */
static int bench_row(const vttt_backend *be, ttt_cuda_timer *tm, const bench_opts *o, int mlp, int T,
                     const double rate[2]) {
    ttt_cuda_shape s = {o->B, T, BENCH_H, BENCH_D / BENCH_H, mlp ? 4 * BENCH_D / BENCH_H : BENCH_D / BENCH_H, 16, mlp};
    int nmb = (T + s.b - 1) / s.b, group = 1;
    while (group * group < nmb) group++; /* as the layer's default */
    dev_set d;
    memset(&d, 0, sizeof d);
    bench_times bt = {NAN, NAN, NAN, NAN};
    int err = dev_setup(be, &d, &s, group);
    run_args a = run_args_of(&d, &s, group);
    if (!err) err = time_it(be, tm, &d, &a, RUN_PREFILL, o->reps, 0, &bt.prefill_ms);
    if (!err && o->train) err = time_it(be, tm, &d, &a, RUN_BACKWARD, o->reps, 0, &bt.bwd_ms);
    if (!err && o->train) err = time_it(be, tm, &d, &a, RUN_TRAIN, o->reps, 0, &bt.train_ms);
    if (!err) err = time_it(be, tm, &d, &a, RUN_DECODE, 1, o->decode_steps, &bt.decode_ms);
    if (d.mem) be->free(be->ctx, d.mem);
    const char *name = mlp ? "ttt_mlp" : "ttt_linear";
    if (err) {
        printf("%-10s %6d | failed: %s\n", name, T, vttt_strerror(err));
        return err;
    }
    double tok = (double)o->B * T, fl = prefill_flops(&s), ND = tok * BENCH_D * 4, NH = tok * BENCH_H * 4;
    double st = (double)o->B * BENCH_H * ttt_cuda_state_numel(&s) * 4;
    double pf_bytes = 4 * ND + NH + 2 * st;
    double tr_bytes = pf_bytes + (4 + 6) * ND + 3 * NH + 2 * st * ttt_cuda_num_groups(T, s.b, group);
    double pf_tf = fl / (bt.prefill_ms * 1e-3) / 1e12, tr_tf = 3 * fl / (bt.train_ms * 1e-3) / 1e12;
    printf("%-10s %6d | %10.0f %7.2f %6.1f %6.2f%% %6.2f%% | %8.1f | %10.0f %7.2f %6.1f %6.2f%% %6.2f%% | %9.0f\n", name,
           T, tok / (bt.prefill_ms * 1e-3), pf_tf, pf_bytes / (bt.prefill_ms * 1e-3) / 1e9, 100 * pf_tf / rate[0],
           100 * pf_tf / rate[1], bt.bwd_ms, tok / (bt.train_ms * 1e-3), tr_tf,
           tr_bytes / (bt.train_ms * 1e-3) / 1e9, 100 * tr_tf / rate[0], 100 * tr_tf / rate[1],
           o->B * o->decode_steps / (bt.decode_ms * 1e-3));
    fflush(stdout);
    return VTTT_OK;
}

/* Device name and measured matrix rates (TFLOP/s): rate[0] fp32, rate[1] bf16. */
static int print_device(const vttt_backend *be, const bench_opts *o, double rate[2]) {
    char name[256];
    int err = ttt_cuda_device_name(be, name, sizeof name);
    if (!err) err = ttt_cuda_gemm_rate(be, 0, 4096, &rate[0]);
    if (!err) err = ttt_cuda_gemm_rate(be, 1, 8192, &rate[1]);
    if (err) return err;
    printf("device: %s; measured cuBLAS GEMM: fp32 %.1f TFLOP/s (4096^3, no TF32), bf16 %.1f TFLOP/s (8192^3, "
           "fp32 accumulation)\n",
           name, rate[0], rate[1]);
    printf("layer: D=%d, H=%d, head dim %d, mini-batch 16, B=%d; inner loop only (fused kernels, fp32); best of %d\n",
           BENCH_D, BENCH_H, BENCH_D / BENCH_H, o->B, o->reps);
    printf("train = prefill with checkpoints + backward, TFLOP/s in model FLOPs (3x forward); decode: tokens/s of "
           "%d single-token steps\n",
           o->decode_steps);
    printf("%-10s %6s | %10s %7s %6s %7s %7s | %8s | %10s %7s %6s %7s %7s | %9s\n", "layer", "T", "prefill/s",
           "TFLOP/s", "GB/s", "%fp32", "%bf16", "bwd ms", "train/s", "TFLOP/s", "GB/s", "%fp32", "%bf16",
           "decode/s");
    return VTTT_OK;
}

int cli_bench_cuda(int argc, char **argv) {
    bench_opts o;
    if (parse_opts(argc, argv, &o)) {
        usage();
        return 2;
    }
    vttt_backend *be = NULL;
    vttt_logger lg = {NULL, NULL, VTTT_LOG_WARNING};
    int err = vttt_backend_cuda_open(&be, 0, &lg);
    if (err == VTTT_ENODEV) {
        printf("no CUDA device: nothing to benchmark (vttt bench cuda needs a GPU)\n");
        return 0;
    }
    if (err) {
        fprintf(stderr, "vttt bench cuda: opening the CUDA backend failed: %s\n", vttt_strerror(err));
        return 1;
    }
    double rate[2] = {NAN, NAN};
    ttt_cuda_timer *tm = NULL;
    int failed = 0;
    err = print_device(be, &o, rate);
    if (!err) err = ttt_cuda_timer_new(be, &tm);
    for (int mlp = 0; mlp < 2 && !err && o.parts[0]; mlp++) {
        if (!o.kinds[mlp]) continue;
        if (!check_kind(be, mlp ? VTTT_LAYER_TTT_MLP : VTTT_LAYER_TTT_LINEAR)) {
            failed = 1;
            continue; /* no figures for kernels that disagree with the CPU */
        }
        for (int ci = 0; ci < o.nctx; ci++)
            if (bench_row(be, tm, &o, mlp, o.ctx[ci], rate)) failed = 1;
    }
    if (!err && o.parts[1]) bench_cuda_layer_header();
    for (int mlp = 0; mlp < 2 && !err && o.parts[1]; mlp++)
        for (int ci = 0; o.kinds[mlp] && ci < o.nctx; ci++)
            if (bench_cuda_layer_row(be, tm, mlp, o.B, o.ctx[ci], o.reps, o.train, rate[1], ci == 0)) failed = 1;
    if (!err && o.parts[2]) {
        int Ns[MAX_CTX];
        for (int ci = 0; ci < o.nctx; ci++) Ns[ci] = o.B * o.ctx[ci];
        if (bench_cuda_gemm(be, tm, Ns, o.nctx, o.reps, rate[1])) failed = 1;
    }
    if (!err && o.parts[3]) {
        int Ts[MAX_CTX], nT = 0;
        for (int ci = 0; ci < o.nctx; ci++)
            if (o.ctx[ci] <= 16384) Ts[nT++] = o.ctx[ci]; /* the model's activations grow with T x 12 layers */
        if (bench_cuda_model(be, tm, o.kinds, o.B, Ts, nT, o.reps, rate)) failed = 1;
    }
    if (err) fprintf(stderr, "vttt bench cuda: %s\n", vttt_strerror(err));
    ttt_cuda_timer_free(&tm);
    vttt_backend_cuda_close(&be);
    return err || failed ? 1 : 0;
}
