/*
 * `vttt encoder`: the frame tokenizer (encoder/encoder.h).
 *   vttt encoder train  --frames SHARDS... --out DIR [options]   (train/encoder_train.h)
 *   vttt encoder eval   --encoder DIR --frames SHARDS... [--png GRID]
 *   vttt encoder encode --encoder DIR --out TOKDIR [--val-frames N] SHARDS...
 *   vttt encoder decode --encoder DIR --tokens FILE.bin --out OUT [--png]
 *   vttt encoder bench  [--encoder DIR] [--frames N]
 * This file: the dispatch, the training command and the shared helpers.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_encoder.h"
#include "ingest.h"
#include "lm.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vttt encoder train  --frames SHARD|DIR... --out DIR [options]\n"
            "       vttt encoder eval   --encoder DIR --frames SHARD|DIR... [--val-frames N] [--png GRID.png]\n"
            "       vttt encoder encode --encoder DIR --out TOKDIR [--val-frames N] SHARD|DIR...\n"
            "       vttt encoder decode --encoder DIR --tokens FILE.bin --out OUT.vfr|DIR [--png]\n"
            "       vttt encoder bench  [--encoder DIR | --channels C] [--frames N] [--size S]\n"
            "  the frame tokenizer: a conv encoder (8x down), FSQ tokens, a conv decoder. DIR is a tokenizer\n"
            "  directory or a training run (its newest checkpoint). `<command> --help` for each one's options.\n");
}

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: vttt encoder train --frames SHARD|DIR... --out DIR [options]\n"
            "  trains the tokenizer on frame shards (`vttt ingest video` writes them; a directory means its\n"
            "  *.vfr); the last --val-frames of each shard are held out. DIR gets step-N/ checkpoints (each a\n"
            "  tokenizer directory with optimizer.safetensors and trainer_state.json), latest, metrics.jsonl.\n"
            "tokenizer (new runs):\n"
            "  --kind frame|delta  frame: each frame alone, 8x down (default); delta: each frame relative to the\n"
            "                   previous one (factor 4, channels 64, levels 7,5,5,5 unless given after --kind)\n"
            "  --factor F (delta: 4 or 8)  pixels per grid cell side\n"
            "  --rate W (0)     weight of the rate term: pulls small changes to the \"no change\" token\n"
            "  --init DIR       start from this tokenizer (fine-tuning; any frame size) instead of the seed\n"
            "  --motion R (delta) a motion field (4x4 regions) up to R pixels in half-pixel steps, 16 tokens at the\n"
            "                   start of each frame (0: none; default: 0, or --init's)\n"
            "  --channels C (32)  --groups G GroupNorm groups (8)  --levels L,L,... FSQ levels (8,5,5,5)\n"
            "batch and optimizer (AdamW, warmup then cosine):\n"
            "  --steps N (2000)  --batch B frames (16)  --lr X (2e-3)  --min-lr X (1e-5)  --warmup N (100)\n"
            "  --weight-decay X (0)  --clip X (1.0)  --seed S (0)\n"
            "evaluation and checkpoints:\n"
            "  --val-frames N (64)  --eval-every N (end only)  --eval-frames N (all held out)\n"
            "  --ckpt-every N (200)  --keep N (2)\n"
            "  --resume          continue the run in --out with its saved settings (--frames optional)\n"
            "other: --threads N  --log-every N (10)  --quiet\n"
            "SIGINT/SIGTERM stop after the current step with a checkpoint.\n");
}

int cli_enc_shards(const char *cmd, const vttt_encoder *e, const char *const *args, int n, char ***paths, int *np) {
    if (n < 1) {
        fprintf(stderr, "%s: no frame shards given\n", cmd);
        return VTTT_EINVAL;
    }
    int err = vttt_encoder_frames_list(args, n, paths, np, NULL), S = vttt_encoder_get_config(e)->image_size;
    for (int i = 0; !err && i < *np; i++) {
        vttt_frame_shard *s = NULL;
        if ((err = vttt_frame_shard_open(&s, (*paths)[i], NULL))) break;
        const vttt_frame_shard_info *in = vttt_frame_shard_get_info(s);
        if (in->width != S || in->height != S || in->channels != 3) {
            fprintf(stderr, "%s: %s: frames are %dx%dx%d; this tokenizer takes %dx%d RGB frames (ingest with "
                    "`vttt ingest video --size %d`)\n", cmd, (*paths)[i], in->width, in->height, in->channels, S, S, S);
            err = VTTT_EINVAL;
        }
        vttt_frame_shard_close(&s);
    }
    if (err) vttt_encoder_frames_free(paths, *np);
    return err;
}

typedef struct {
    int tty, quiet;
    long long log_every;
    int open_line;
} progress;

static void end_line(progress *pr) {
    if (pr->open_line) fputc('\n', stderr);
    pr->open_line = 0;
}

static void on_report(void *user, const vttt_train_report *r) {
    progress *pr = user;
    if (pr->quiet) return;
    if (r->event == VTTT_TRAIN_EVENT_START) {
        fprintf(stderr, ENC_CMD " train: %lld parameters, %s step %lld of %lld\n", (long long)r->params,
                r->step ? "resuming after" : "starting at", (long long)(r->step ? r->step : 1), (long long)r->steps);
    } else if (r->event == VTTT_TRAIN_EVENT_STEP) {
        if (!pr->tty && r->step % pr->log_every && r->step != r->steps && r->step != 1) return;
        fprintf(stderr, "%sstep %lld/%lld | loss %.5f | psnr %.2f dB | lr %.2e | %.1f frames/s | ETA %.0fs%s",
                pr->tty ? "\r" : "", (long long)r->step, (long long)r->steps, (double)r->loss,
                10.0 * log10(1.0 / fmax((double)r->loss, 1e-10)), (double)r->lr, r->tokens_per_s, r->eta_s,
                pr->tty ? "\033[K" : "\n");
        pr->open_line = pr->tty;
    } else if (r->event == VTTT_TRAIN_EVENT_EVAL) {
        end_line(pr);
        fprintf(stderr, "step %lld: val_loss %.5f, val_psnr %.2f dB\n", (long long)r->step, (double)r->val_loss,
                10.0 * log10(1.0 / fmax((double)r->val_loss, 1e-10)));
    } else if (r->event == VTTT_TRAIN_EVENT_CHECKPOINT) {
        end_line(pr);
        fprintf(stderr, "step %lld: checkpoint %s\n", (long long)r->step, r->checkpoint);
    }
    fflush(stderr);
}

#define IS(name) (!strcmp(a, name))
#define NUM(lo, hi, lval, type)                                                                                   \
    do {                                                                                                          \
        if (cli_num(ENC_CMD " train", a, v, lo, hi, &d)) return -1;                                           \
        lval = (type)d;                                                                                           \
        return 2;                                                                                                 \
    } while (0)

typedef struct {
    progress pr;
    int threads;
    const char *frames[VTTT_ENCODER_TRAIN_MAX_SHARDS];
    int n_frames;
} train_extra;

/* Applies option a (value v): the arguments used (1, 2), 0 unknown, -1 bad. */
static int apply(vttt_encoder_train_params *p, train_extra *x, const char *a, const char *v) {
    double d;
    if (IS("--out")) {
        if (!v || strlen(v) >= sizeof p->out) return -1;
        snprintf(p->out, sizeof p->out, "%s", v);
        return 2;
    }
    if (IS("--levels")) return v && !vttt_encoder_levels_parse(&p->model, v, NULL) ? 2 : -1;
    if (IS("--kind")) {
        /* delta: the DELTA defaults (factor 4, channels 64, levels 7,5,5,5); later options override them */
        if (!v || (strcmp(v, "delta") && strcmp(v, "frame"))) return -1;
        int S = p->model.image_size;
        p->model = strcmp(v, "delta") ? vttt_encoder_default_config() : vttt_encoder_delta_default_config();
        p->model.image_size = S;
        return 2;
    }
    if (IS("--factor")) NUM(4, 8, p->model.factor, int);
    if (IS("--rate")) NUM(0, 100, p->rate_weight, float);
    if (IS("--motion")) NUM(0, 64, p->motion, int);
    if (IS("--init")) {
        if (!v) return -1;
        p->init = v;
        return 2;
    }
    if (IS("--channels")) NUM(1, 512, p->model.channels, int);
    if (IS("--groups")) NUM(1, 512, p->model.num_groups, int);
    if (IS("--steps")) NUM(1, 1e12, p->steps, int64_t);
    if (IS("--batch")) NUM(1, 4096, p->batch, int);
    if (IS("--lr")) NUM(1e-9, 10, p->lr, float);
    if (IS("--min-lr")) NUM(0, 10, p->min_lr, float);
    if (IS("--warmup")) NUM(0, 1e12, p->warmup, int64_t);
    if (IS("--weight-decay")) NUM(0, 10, p->weight_decay, float);
    if (IS("--clip")) NUM(0, 1e9, p->grad_clip, float);
    if (IS("--seed")) NUM(0, 9007199254740992.0, p->seed, uint64_t);
    if (IS("--val-frames")) NUM(0, 1e9, p->val_frames, int);
    if (IS("--eval-every")) NUM(0, 1e12, p->eval_every, int64_t);
    if (IS("--eval-frames")) NUM(0, 1e9, p->eval_frames, int);
    if (IS("--ckpt-every")) NUM(0, 1e12, p->ckpt_every, int64_t);
    if (IS("--keep")) NUM(1, 1e6, p->keep, int);
    if (IS("--threads")) NUM(1, 1024, x->threads, int);
    if (IS("--log-every")) NUM(1, 1e12, x->pr.log_every, long long);
    if (IS("--resume")) return p->resume = 1, 1;
    if (IS("--quiet")) return x->pr.quiet = 1, 1;
    return 0;
}

/* --frames takes every following argument up to the next option. */
static int parse_train(vttt_encoder_train_params *p, train_extra *x, int argc, char **argv) {
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "--frames")) {
            for (i++; i < argc && strncmp(argv[i], "--", 2); i++) {
                if (x->n_frames == VTTT_ENCODER_TRAIN_MAX_SHARDS) return 2;
                x->frames[x->n_frames++] = argv[i];
            }
            continue;
        }
        int k = apply(p, x, argv[i], i + 1 < argc ? argv[i + 1] : NULL);
        if (k <= 0) {
            fprintf(stderr, ENC_CMD " train: %s option '%s'; `vttt encoder train --help` lists them\n",
                    k ? "bad value for" : "unknown", argv[i]);
            return 2;
        }
        i += k;
    }
    return 0;
}

static int cmd_train(int argc, char **argv) {
    vttt_encoder_train_params p = vttt_encoder_train_default_params();
    train_extra x;
    memset(&x, 0, sizeof x);
    x.pr.tty = isatty(STDERR_FILENO), x.pr.log_every = 10;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return train_usage(stdout), 0;
    int rc = parse_train(&p, &x, argc, argv);
    if (rc) return rc;
    if (!p.out[0] || (!x.n_frames && !p.resume)) {
        fprintf(stderr, ENC_CMD " train: --out DIR and --frames SHARDS are required (or --out DIR --resume)\n");
        return 2;
    }
    lm_set_threads(x.threads);
    p.frames = x.frames, p.n_frames = x.n_frames;
    p.on_report = on_report, p.user = &x.pr;
    int err = vttt_encoder_train_run(&p, NULL);
    end_line(&x.pr);
    if (err) fprintf(stderr, ENC_CMD " train: failed (%s)\n", vttt_strerror(err));
    return err ? 1 : 0;
}

int cli_encoder(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(sub, "eval")) return cli_encoder_eval(argc - 1, argv + 1);
    if (!strcmp(sub, "encode")) return cli_encoder_encode(argc - 1, argv + 1);
    if (!strcmp(sub, "decode")) return cli_encoder_decode(argc - 1, argv + 1);
    if (!strcmp(sub, "bench")) return cli_encoder_bench(argc - 1, argv + 1);
    fprintf(stderr, ENC_CMD ": unknown command '%s'\n", sub);
    usage(stderr);
    return 2;
}
