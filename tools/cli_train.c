/* `vttt train`: train a language model on token shards (train/train.h).
 * Progress goes to stderr: a line that updates itself on a terminal, plain
 * lines otherwise; the run directory gets checkpoints and metrics.jsonl. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#include <omp.h>

#include "cli.h"
#include "train.h"

#define CMD "vttt train"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vttt train --data DIR|GLOB --out DIR [options]\n"
            "  trains a language model on token shards (`vttt ingest text` writes them; llm.c shards work\n"
            "  too). DIR gets step-N/ checkpoints (a model directory with optimizer.safetensors and\n"
            "  trainer_state.json), latest -> the newest, and metrics.jsonl. Under mpirun every rank takes\n"
            "  a share of each batch (data parallel); rank 0 writes.\n"
            "model (new runs; a resumed run keeps its own):\n"
            "  --model-preset NAME  125m, 350m, 760m, 1b, tiny (default), test   (also --preset)\n"
            "  --config FILE        a config.json instead of a preset\n"
            "  --layer KIND         ttt_mlp (preset default), ttt_linear, attention\n"
            "  --backbone NAME      transformer (preset default), mamba\n"
            "  --vocab-size N       default: the data's meta.json, else the largest token id + 1\n"
            "  --init DIR           fine-tune: start from this model directory (or a run's newest checkpoint),\n"
            "                       its config and weights; the data must have its vocabulary (and tokens per\n"
            "                       frame); the TTT inner base lr stays the model's. Not with the options above.\n"
            "batch:\n"
            "  --steps N (1000)  --batch B sequences per step, all ranks (8)  --seq T tokens (256)\n"
            "  --window W        train each sequence in windows of W tokens, the TTT state carried and the\n"
            "                    gradient truncated between them (default T; a multiple of 16 for TTT)\n"
            "  --accum K         micro-batches per step on each rank (1)\n"
            "  --docs            text: every sequence is one document from its start (split at <|endoftext|>),\n"
            "                    or a piece of T tokens of a longer one; the TTT state starts fresh at each\n"
            "                    and is carried window to window within it (with --window); the rest of a\n"
            "                    shorter document's row is padding that does not count\n"
            "optimizer (AdamW, linear warmup then cosine decay):\n"
            "  --lr X (3e-3)  --min-lr X (1e-5)  --warmup N (100)  --weight-decay X (0.1)  --clip X (1.0)\n"
            "  --beta1 X (0.9)  --beta2 X (0.95)  --eps X (1e-8)\n"
            "  --ttt-base-lr X  --ttt-base-lr-init X  --ttt-base-lr-warmup N   TTT inner base lr and its\n"
            "                    warmup (ttt_mlp default: 0.01 -> 0.1 over --warmup steps; else the config's)\n"
            "evaluation and checkpoints:\n"
            "  --val DIR|GLOB    validation shards (a directory: its val_*.bin)\n"
            "  --eval-every N    steps between validations (default: at the end only)\n"
            "  --eval-seqs N     validation sequences (default all)\n"
            "  --ckpt-every N (100)  --keep N checkpoints kept (2)  --no-save: no checkpoints (benchmarks)\n"
            "  --resume          continue the run in --out from its newest checkpoint, with its settings\n"
            "                    (options given must match them)\n"
            "other:\n"
            "  --seed S (0)  --no-shuffle  --threads N  --comm auto|single|mpi  --log-every N (10)  --quiet\n"
            "SIGINT/SIGTERM stop after the current step with a checkpoint; a second one stops at once.\n");
}

typedef struct {
    int tty, quiet;
    long long log_every;
    int open_line;   /* a progress line without its newline is on the terminal */
} progress;

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0.0) || s > 1e8) snprintf(buf, n, "?");
    else if (s >= 3600.0) snprintf(buf, n, "%dh%02dm", (int)(s / 3600.0), (int)fmod(s / 60.0, 60.0));
    else if (s >= 60.0) snprintf(buf, n, "%dm%02ds", (int)(s / 60.0), (int)fmod(s, 60.0));
    else snprintf(buf, n, "%.0fs", s);
}

static void end_line(progress *pr) {
    if (pr->open_line) fputc('\n', stderr);
    pr->open_line = 0;
}

/* The end-of-run lines (also RUN/summary.json). */
static void print_summary(const vttt_train_report *r) {
    fprintf(stderr, "summary: %lld steps, %lld tokens | wall %.1f s, %.0f tok/s (this process, mean) | smoothed "
            "loss %.4f", (long long)r->step, (long long)r->tokens, r->wall_s, r->tokens_per_s,
            (double)r->loss_smoothed);
    if (r->best_val_step >= 0)
        fprintf(stderr, " | best val_loss %.4f at step %lld\n", (double)r->best_val_loss, (long long)r->best_val_step);
    else
        fprintf(stderr, " | no validation\n");
}

static void on_report(void *user, const vttt_train_report *r) {
    progress *pr = user;
    char eta[32];
    if (pr->quiet) return;
    switch (r->event) {
    case VTTT_TRAIN_EVENT_START:
        fprintf(stderr, CMD ": %lld parameters, %d rank(s), %s step %lld of %lld\n", (long long)r->params, r->ranks,
                r->step ? "resuming after" : "starting at", (long long)(r->step ? r->step : 1), (long long)r->steps);
        break;
    case VTTT_TRAIN_EVENT_STEP:
        if (!pr->tty && r->step % pr->log_every && r->step != r->steps && r->step != 1) break;
        fmt_time(eta, sizeof eta, r->eta_s);
        fprintf(stderr, "%sstep %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s%s", pr->tty ? "\r" : "",
                (long long)r->step, (long long)r->steps, (double)r->loss, (double)r->lr, r->tokens_per_s, eta,
                pr->tty ? "\033[K" : "\n");
        pr->open_line = pr->tty;
        break;
    case VTTT_TRAIN_EVENT_EVAL:
        end_line(pr);
        fprintf(stderr, "step %lld: val_loss %.4f, val_ppl %.3f\n", (long long)r->step, (double)r->val_loss,
                (double)r->val_ppl);
        break;
    case VTTT_TRAIN_EVENT_CHECKPOINT:
        end_line(pr);
        fprintf(stderr, "step %lld: checkpoint %s\n", (long long)r->step, r->checkpoint);
        break;
    case VTTT_TRAIN_EVENT_END:
        end_line(pr);
        print_summary(r);
        break;
    }
    fflush(stderr);
}


static int str(const char *opt, const char *v, char *dst, size_t n) {
    if (!v || strlen(v) >= n) {
        fprintf(stderr, CMD ": %s needs a value (shorter than %zu bytes)\n", opt, n);
        return -1;
    }
    snprintf(dst, n, "%s", v);
    return 0;
}

typedef struct {
    int threads;
    progress pr;
} cli_extra;

#define IS(name) (!strcmp(a, name))
#define NUM(lo, hi, lval, type)                                                                                   \
    do {                                                                                                          \
        if (cli_num(CMD, a, v, lo, hi, &d)) return -1;                                                                 \
        lval = (type)d;                                                                                           \
        return 2;                                                                                                 \
    } while (0)

/* Applies argv[i] (and its value v); returns the arguments used (1, 2),
 * 0 for an unknown option, -1 for a bad value. */
static int apply(vttt_train_params *p, cli_extra *x, const char *a, const char *v) {
    double d;
    if (IS("--data")) return str(a, v, p->data, sizeof p->data) ? -1 : 2;
    if (IS("--val")) return str(a, v, p->val, sizeof p->val) ? -1 : 2;
    if (IS("--out")) return str(a, v, p->out, sizeof p->out) ? -1 : 2;
    if (IS("--model-preset") || IS("--preset")) return str(a, v, p->model_preset, sizeof p->model_preset) ? -1 : 2;
    if (IS("--config")) return str(a, v, p->model_config, sizeof p->model_config) ? -1 : 2;
    if (IS("--init")) return str(a, v, p->init, sizeof p->init) ? -1 : 2;
    if (IS("--layer")) return str(a, v, p->layer, sizeof p->layer) ? -1 : 2;
    if (IS("--backbone")) return str(a, v, p->backbone, sizeof p->backbone) ? -1 : 2;
    if (IS("--vocab-size")) NUM(1, 1 << 24, p->vocab_size, int);
    if (IS("--steps")) NUM(1, 1e12, p->steps, int64_t);
    if (IS("--batch")) NUM(1, 1 << 20, p->batch, int);
    if (IS("--seq")) NUM(1, 1 << 30, p->seq, int);
    if (IS("--window")) NUM(0, 1 << 30, p->window, int);
    if (IS("--accum")) NUM(1, 1 << 20, p->accum, int);
    if (IS("--lr")) NUM(0, 1e3, p->lr, float);
    if (IS("--min-lr")) NUM(0, 1e3, p->min_lr, float);
    if (IS("--warmup")) NUM(0, 1e12, p->warmup, int64_t);
    if (IS("--weight-decay")) NUM(0, 1e3, p->weight_decay, float);
    if (IS("--beta1")) NUM(0, 0.999999, p->beta1, float);
    if (IS("--beta2")) NUM(0, 0.999999, p->beta2, float);
    if (IS("--eps")) NUM(1e-30, 1, p->eps, float);
    if (IS("--clip")) NUM(0, 1e9, p->grad_clip, float);
    if (IS("--ttt-base-lr")) NUM(0, 1e3, p->ttt_base_lr, float);
    if (IS("--ttt-base-lr-init")) NUM(0, 1e3, p->ttt_base_lr_init, float);
    if (IS("--ttt-base-lr-warmup")) NUM(0, 1e12, p->ttt_base_lr_warmup, int64_t);
    if (IS("--eval-every")) NUM(0, 1e12, p->eval_every, int64_t);
    if (IS("--eval-seqs")) NUM(0, 1 << 30, p->eval_seqs, int);
    if (IS("--ckpt-every")) NUM(0, 1e12, p->ckpt_every, int64_t);
    if (IS("--keep")) NUM(1, 1e6, p->keep, int);
    if (IS("--seed")) {
        char *end = NULL;
        errno = 0;
        unsigned long long u = v && *v != '-' ? strtoull(v, &end, 10) : 0;
        if (!v || end == v || *end || errno) return fprintf(stderr, CMD ": --seed needs an integer >= 0\n"), -1;
        p->seed = u;
        return 2;
    }
    if (IS("--threads")) NUM(1, 4096, x->threads, int);
    if (IS("--log-every")) NUM(1, 1e12, x->pr.log_every, long long);
    if (IS("--comm")) {
        if (v && !vttt_comm_kind_parse(v, &p->comm)) return 2;
        fprintf(stderr, CMD ": --comm needs auto, single or mpi\n");
        return -1;
    }
    if (IS("--resume")) return p->resume = 1, 1;
    if (IS("--shuffle")) return p->shuffle = 1, 1;
    if (IS("--no-shuffle")) return p->shuffle = 0, 1;
    if (IS("--docs")) return p->docs = 1, 1;
    if (IS("--quiet")) return x->pr.quiet = 1, 1;
    if (IS("--no-save")) return p->ckpt_every = -1, 1;
    return 0;
}

/* Applies every option of argv to p; 0, or the exit status of a usage
 * error. */
static int apply_all(vttt_train_params *p, cli_extra *x, int argc, char **argv) {
    for (int i = 1; i < argc;) {
        int k = apply(p, x, argv[i], i + 1 < argc ? argv[i + 1] : NULL);
        if (k < 0) return 2;
        if (k == 0) {
            fprintf(stderr, CMD ": unknown option '%s'; `vttt train --help` lists them\n", argv[i]);
            return 2;
        }
        i += k;
    }
    return 0;
}

/* OpenMP and OpenBLAS threads: --threads, else OMP_NUM_THREADS, else the
 * cores shared among the ranks on this machine. */
static void set_threads(int threads) {
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!threads && !getenv("OMP_NUM_THREADS") && local && atoi(local) > 1) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores / atoi(local) > 1 ? (int)(cores / atoi(local)) : 1;
    }
    if (threads <= 0) return;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
}

int cli_train(int argc, char **argv) {
    vttt_train_params p = vttt_train_default_params();
    cli_extra x = {0, {isatty(STDERR_FILENO), 0, 10, 0}};
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout), 0;
    int rc = apply_all(&p, &x, argc, argv);
    if (rc) return rc;
    if (!p.out[0] || (!p.data[0] && !p.resume)) {
        fprintf(stderr, CMD ": --out DIR and --data DIR|GLOB are required (or --out DIR --resume)\n");
        return 2;
    }
    if (p.resume) { /* the run's own settings, then the options given, which must agree with them */
        char probe[VTTT_TRAIN_PATH_MAX + 16];
        snprintf(probe, sizeof probe, "%s/latest", p.out);
        vttt_train_params saved = p;
        vttt_logger quiet = {NULL, NULL, -1};
        if (vttt_train_params_load(&saved, p.out, access(probe, F_OK) == 0 ? NULL : &quiet) == 0) {
            p = saved;
            if ((rc = apply_all(&p, &x, argc, argv))) return rc;
        } else if (access(probe, F_OK) == 0) {
            return 1; /* a checkpoint that cannot be read: the message is out */
        }
    }
    set_threads(x.threads);
    p.on_report = on_report, p.user = &x.pr;
    int err = vttt_train_run(&p, NULL);
    end_line(&x.pr);
    if (err) fprintf(stderr, CMD ": failed (%s)\n", vttt_strerror(err));
    return err ? 1 : 0;
}
