/*
 * `vttt encoder eval`: reconstruction quality on held-out frames (PSNR and
 * SSIM per frame, averaged) and a PNG grid of originals above their
 * reconstructions; `vttt encoder bench`: encode, decode and training-step
 * throughput in frames/s and GFLOP/s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_encoder.h"
#include "ingest.h"
#include "lm.h"

#define EVAL_CMD ENC_CMD " eval"
#define CHUNK 32

static int eval_usage(int status) {
    fprintf(status ? stderr : stdout,
            "usage: vttt encoder eval --encoder DIR --frames SHARD|DIR... [--val-frames N] [--png GRID.png]\n"
            "  reconstructs the last N frames of each shard (the training run's held-out frames; default 64,\n"
            "  0: every frame) and prints the mean PSNR (dB) and SSIM over them, and how many tokens survive\n"
            "  a second trip (encode(decode(tokens)) == tokens).\n"
            "  --png GRID.png   a grid of --grid K (8) frames spread over them: originals above reconstructions\n"
            "  --threads N\n");
    return status;
}

typedef struct {
    double psnr, ssim, mse;
    double rep_psnr, rep_ssim; /* repeating the frame before (frames with one), the trivial baseline */
    int64_t n, n_rep;
    int64_t tok_same, tok_all; /* tokens of encode(decode(encode(x))) equal to encode(x) */
    uint8_t *grid;   /* (2S, K*S, 3) */
    int K, S;
    int64_t total;   /* frames evaluated in all (for the grid's spacing) */
} eval_acc;

/* Adds frame idx (of all evaluated) to the sums and, when it is one of the
 * grid's, to the grid. */
static void add_frame(eval_acc *a, const uint8_t *orig, const uint8_t *rec) {
    int S = a->S;
    a->psnr += vttt_image_psnr(orig, rec, S, S);
    a->ssim += vttt_image_ssim(orig, rec, S, S);
    double s = 0.0;
    for (int i = 0; i < S * S * 3; i++) {
        double d = ((double)orig[i] - rec[i]) / 255.0;
        s += d * d;
    }
    a->mse += s / (S * S * 3);
    for (int k = 0; a->grid && k < a->K; k++) {
        if (a->n != k * a->total / a->K) continue;
        for (int y = 0; y < S; y++) {
            memcpy(a->grid + ((size_t)y * a->K * S + (size_t)k * S) * 3, orig + (size_t)y * S * 3, (size_t)S * 3);
            memcpy(a->grid + ((size_t)(y + S) * a->K * S + (size_t)k * S) * 3, rec + (size_t)y * S * 3, (size_t)S * 3);
        }
    }
    a->n++;
}

/* Frames [first, first + count) of one shard through the tokenizer:
 * tokens = encode(x), reconstruction = decode(tokens) (the same bytes as
 * the forward's), and encode(reconstruction) against tokens. */
static int eval_range(vttt_encoder *e, vttt_frame_shard *s, int64_t first, int64_t count, eval_acc *a) {
    size_t fb = (size_t)a->S * a->S * 3, P = (size_t)vttt_encoder_tokens_per_frame(e);
    /* ref: each frame's reference, the true frame before it (a DELTA
     * tokenizer's; the shard's first frame is intra, mid-grey) */
    uint8_t *in = malloc(CHUNK * fb), *out = malloc(CHUNK * fb), *ref = malloc((CHUNK + 1) * fb);
    int32_t *t1 = malloc(CHUNK * P * sizeof *t1), *t2 = malloc(CHUNK * P * sizeof *t2);
    int err = in && out && ref && t1 && t2 ? VTTT_OK : VTTT_ENOMEM;
    memset(ref, 128, fb);
    if (!err && first > 0) err = vttt_frame_shard_read(s, first - 1, 1, ref);
    for (int64_t i = 0; i < count && !err; i += CHUNK) {
        int k = (int)(count - i < CHUNK ? count - i : CHUNK);
        if ((err = vttt_frame_shard_read(s, first + i, k, in))) break;
        memcpy(ref + fb, in, (size_t)(k - 1) * fb);
        err = vttt_encoder_encode(e, ref, in, k, t1);
        for (int j = 0; j < k && !err; j++) /* each frame on its own reference */
            err = vttt_encoder_decode(e, ref + j * fb, t1 + j * P, 1, out + j * fb);
        if (!err) err = vttt_encoder_encode(e, ref, out, k, t2);
        for (size_t j = 0; j < (size_t)k * P && !err; j++) a->tok_same += t1[j] == t2[j];
        a->tok_all += (int64_t)k * (int64_t)P;
        for (int j = 0; j < k && !err; j++) {
            add_frame(a, in + j * fb, out + j * fb);
            if (first + i + j == 0) continue; /* the shard's first frame has none before it */
            a->rep_psnr += vttt_image_psnr(in + j * fb, ref + j * fb, a->S, a->S);
            a->rep_ssim += vttt_image_ssim(in + j * fb, ref + j * fb, a->S, a->S);
            a->n_rep++;
        }
        memcpy(ref, in + (size_t)(k - 1) * fb, fb);
    }
    free(in), free(out), free(ref), free(t1), free(t2);
    return err;
}

typedef struct {
    const char *encoder, *png;
    const char *shards[VTTT_ENCODER_TRAIN_MAX_SHARDS];
    int n_shards, val_frames, grid, threads;
} eval_opts;

static int parse_eval(eval_opts *o, int argc, char **argv) {
    double d;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return eval_usage(0), 1;
        if (!strcmp(a, "--frames")) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) && o->n_shards < VTTT_ENCODER_TRAIN_MAX_SHARDS)
                o->shards[o->n_shards++] = argv[++i];
        } else if (!strcmp(a, "--encoder") && v) o->encoder = v, i++;
        else if (!strcmp(a, "--png") && v) o->png = v, i++;
        else if (!strcmp(a, "--val-frames") && !cli_num(EVAL_CMD, a, v, 0, 1e9, &d)) o->val_frames = (int)d, i++;
        else if (!strcmp(a, "--grid") && !cli_num(EVAL_CMD, a, v, 1, 64, &d)) o->grid = (int)d, i++;
        else if (!strcmp(a, "--threads") && !cli_num(EVAL_CMD, a, v, 1, 1024, &d)) o->threads = (int)d, i++;
        else return fprintf(stderr, EVAL_CMD ": bad option '%s'\n", a), eval_usage(2);
    }
    if (!o->encoder || !o->n_shards) return fprintf(stderr, EVAL_CMD ": --encoder and --frames are required\n"), 2;
    return 0;
}

/* Evaluates every shard's last val_frames (all when 0). */
static int eval_all(vttt_encoder *e, char **paths, int n, int val, eval_acc *a) {
    vttt_frame_shard **sh = calloc((size_t)n, sizeof *sh);
    int64_t *first = calloc((size_t)n, sizeof *first), *count = calloc((size_t)n, sizeof *count);
    int err = sh && first && count ? VTTT_OK : VTTT_ENOMEM;
    for (int i = 0; i < n && !err; i++) {
        if ((err = vttt_frame_shard_open(&sh[i], paths[i], NULL))) break;
        int64_t f = vttt_frame_shard_get_info(sh[i])->frame_count;
        count[i] = val > 0 && val < f ? val : f;
        first[i] = f - count[i];
        a->total += count[i];
    }
    for (int i = 0; i < n && !err; i++) err = eval_range(e, sh[i], first[i], count[i], a);
    for (int i = 0; sh && i < n; i++) vttt_frame_shard_close(&sh[i]);
    free(sh), free(first), free(count);
    return err;
}

int cli_encoder_eval(int argc, char **argv) {
    eval_opts o = {.val_frames = 64, .grid = 8};
    int rc = parse_eval(&o, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    lm_set_threads(o.threads);
    vttt_encoder *e = NULL;
    char used[VTTT_TRAIN_PATH_MAX + 64], **paths = NULL;
    int n = 0;
    if (vttt_encoder_load_any(&e, o.encoder, used, sizeof used, NULL)) return 1;
    int err = cli_enc_shards(EVAL_CMD, e, o.shards, o.n_shards, &paths, &n);
    eval_acc a = {.K = o.grid, .S = vttt_encoder_get_config(e)->image_size};
    if (!err && o.png && !(a.grid = calloc((size_t)2 * a.S * a.K * a.S * 3, 1))) err = VTTT_ENOMEM;
    if (!err) err = eval_all(e, paths, n, o.val_frames, &a);
    if (!err && a.n) {
        printf("tokenizer %s: %lld held-out frames of %d shard(s): PSNR %.2f dB, SSIM %.4f (means over frames; "
               "MSE %.6f in [0,1] units)\n", used, (long long)a.n, n, a.psnr / a.n, a.ssim / a.n, a.mse / a.n);
        if (a.n_rep)
            printf("repeating the frame before (the baseline, %lld frames): PSNR %.2f dB, SSIM %.4f\n",
                   (long long)a.n_rep, a.rep_psnr / a.n_rep, a.rep_ssim / a.n_rep);
        printf("token round trip: %.2f%% of the tokens of encode(decode(tokens)) equal the tokens\n",
               100.0 * (double)a.tok_same / (double)a.tok_all);
    }
    if (!err && a.grid) err = vttt_png_write(o.png, a.grid, a.K * a.S, 2 * a.S, NULL);
    if (!err && a.grid) printf("grid: %s (top: originals, bottom: reconstructions)\n", o.png);
    if (err) fprintf(stderr, EVAL_CMD ": failed (%s)\n", vttt_strerror(err));
    free(a.grid);
    vttt_encoder_frames_free(&paths, n);
    vttt_encoder_free(&e);
    return err ? 1 : 0;
}

/* ---- bench ---- */

static double time_it(vttt_encoder *e, int which, const uint8_t *frames, int32_t *tok, uint8_t *rec, int N, int B) {
    double t0 = cli_now_s();
    int err = VTTT_OK;
    for (int i = 0; i < N && !err; i += B) {
        int k = N - i < B ? N - i : B;
        size_t fo = (size_t)i * vttt_encoder_get_config(e)->image_size * vttt_encoder_get_config(e)->image_size * 3;
        int32_t *t = tok + (size_t)i * vttt_encoder_tokens_per_frame(e);
        if (which == 0) err = vttt_encoder_encode(e, NULL, frames + fo, k, t);
        else if (which == 1) err = vttt_encoder_decode(e, NULL, t, k, rec + fo);
        else if (!(err = vttt_encoder_forward(e, NULL, frames + fo, k, 1, NULL, NULL)))
            err = vttt_encoder_backward(e, 1.0f);
    }
    return err ? -1.0 : cli_now_s() - t0;
}

int cli_encoder_bench(int argc, char **argv) {
    vttt_encoder_config cfg = vttt_encoder_default_config();
    const char *dir = NULL;
    int N = 256, B = 16, threads = 0;
    double d;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--encoder") && v) dir = v, i++;
        else if (!strcmp(a, "--frames") && !cli_num(ENC_CMD " bench", a, v, 1, 1e6, &d)) N = (int)d, i++;
        else if (!strcmp(a, "--batch") && !cli_num(ENC_CMD " bench", a, v, 1, 1024, &d)) B = (int)d, i++;
        else if (!strcmp(a, "--channels") && !cli_num(ENC_CMD " bench", a, v, 1, 512, &d)) cfg.channels = (int)d, i++;
        else if (!strcmp(a, "--size") && !cli_num(ENC_CMD " bench", a, v, 8, 1024, &d)) cfg.image_size = (int)d, i++;
        else if (!strcmp(a, "--threads") && !cli_num(ENC_CMD " bench", a, v, 1, 1024, &d)) threads = (int)d, i++;
        else {
            fprintf(stderr, "usage: vttt encoder bench [--encoder DIR | --channels C --size S] [--frames N (256)] "
                    "[--batch B (16, training)] [--threads N]\n");
            return 2;
        }
    }
    lm_set_threads(threads);
    vttt_encoder *e = NULL;
    if (dir ? vttt_encoder_load_any(&e, dir, NULL, 0, NULL) : vttt_encoder_init(&e, &cfg, 1, NULL)) return 1;
    cfg = *vttt_encoder_get_config(e);
    size_t fb = (size_t)cfg.image_size * cfg.image_size * 3;
    uint8_t *frames = malloc((size_t)N * fb), *rec = malloc((size_t)N * fb);
    int32_t *tok = malloc((size_t)N * vttt_encoder_tokens_per_frame(e) * sizeof *tok);
    int err = frames && rec && tok ? VTTT_OK : VTTT_ENOMEM;
    for (size_t i = 0; !err && i < (size_t)N * fb; i++) frames[i] = (uint8_t)((i * 2654435761u) >> 13);
    const char *names[] = {"encode", "decode", "train step (fwd+bwd)"};
    double fl[] = {vttt_encoder_encode_flops(&cfg), vttt_encoder_forward_flops(&cfg) - vttt_encoder_encode_flops(&cfg),
                   3.0 * vttt_encoder_forward_flops(&cfg)};
    printf("tokenizer: S %d, channels %d, levels %d, %zu parameters, %s\n", cfg.image_size, cfg.channels,
           cfg.num_levels, vttt_encoder_num_params(e), dir ? dir : "random weights");
    for (int w = 0; w < 3 && !err; w++) {
        time_it(e, w, frames, tok, rec, w == 2 ? B : 32 < N ? 32 : N, w == 2 ? B : 32); /* warm-up */
        double s = time_it(e, w, frames, tok, rec, N, w == 2 ? B : 32);
        if (s < 0) err = VTTT_EINVAL;
        else printf("%-22s %9.1f frames/s  %7.2f GFLOP/s  (%d frames in %.2f s, %.3f GFLOP/frame)\n", names[w],
                    N / s, fl[w] * N / s * 1e-9, N, s, fl[w] * 1e-9);
    }
    free(frames), free(rec), free(tok);
    vttt_encoder_free(&e);
    return err ? 1 : 0;
}
