/* `vttt lm loss-by-position`: the mean loss at each position of a context
 * window, averaged over the windows of an input; how much a model gains
 * from the tokens it has already seen (the paper's long-context measure).
 * The input is cut into consecutive windows of --context tokens (the last
 * one may be shorter), each evaluated from the model's initial state;
 * positions are grouped into buckets (equal width, or geometric with
 * --log-x). A bucket's figure is the mean over the windows that reach it
 * of each window's mean NLL in the bucket, with the standard error of
 * that mean across windows (the windows are the independent samples;
 * tokens of one window are not). Several --model give one curve each on
 * the same positions; --repeat (lm_repeat.c) measures in-context copying
 * instead. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm.h"
#include "plot_png.h"

#define CMD "vttt lm loss-by-position"
#define MAX_MODELS 16

typedef struct {
    const char *dir[MAX_MODELS], *label[MAX_MODELS], *png, *csv;
    int n_models, n_labels, log_x, repeat;
    lm_input in;
    long long context, buckets, batch, max_windows, threads;
} lbp_opts;

/* Bucket b covers the window's target indices [lo[b], hi[b]) (the token
 * at position t + shift); Welford sums of the per-window bucket means. */
typedef struct {
    int n, *lo, *hi;
    int64_t *count;      /* (n) windows that reach the bucket */
    double *mean, *m2;   /* (n) running mean and sum of squared deviations */
} lbp_buckets;

static void usage(void) {
    fprintf(stderr,
            "usage: vttt lm loss-by-position --model DIR [--model DIR2 ...] [--label NAME ...]\n"
            "           (--tokens FILE | --text FILE --tokenizer TOK) [--context T] [--buckets N (32)]\n"
            "           [--log-x] [--batch B (4)] [--max-windows W] [--png OUT] [--csv OUT] [--threads N]\n"
            "       vttt lm loss-by-position --repeat --model DIR [--model DIR2 ...] (--tokens | --text ...)\n"
            "           [--context T] [--max-windows W] [--csv OUT]\n"
            "  Cuts the input into consecutive windows of T inputs predicting the T tokens after their\n"
            "  first, as `vttt lm score` (default T: the shortest context the\n"
            "  models were trained on, see `vttt lm score --help`; the last window may be shorter), evaluates\n"
            "  each from the model's initial state and prints, per model and bucket of positions,\n"
            "  `<first> <last> <mean_nll> <se> <windows>`: the mean over the windows reaching the bucket\n"
            "  of their mean NLL there (nats), its standard error across windows, and their count.\n"
            "  --model: repeat it for several models, one curve each (--label: their legend names, in\n"
            "  order; default the directories). --log-x: geometric buckets and a log position axis.\n"
            "  --png OUT: the curves (bars: +- one standard error); --csv OUT (default: OUT.png's name\n"
            "  with .csv): model,first,last,mean_nll,se,windows. --max-windows: use at most W windows.\n"
            "  --repeat: in-context copying. Each document of the input (split at <|endoftext|>) is\n"
            "  cut into pieces of at most T/2-1 tokens; each piece is scored as\n"
            "  `<|endoftext|> piece <|endoftext|> piece` from the initial state, and the table gives per\n"
            "  model the mean NLL of the piece's tokens in the first copy, in the second, the drop\n"
            "  (first - second) and its standard error across pieces (CSV:\n"
            "  model,pieces,tokens,nll_first,nll_second,drop,se_drop). --max-windows: at most W pieces.\n");
}

/* Linear buckets of (nearly) equal width over a window's T targets, or
 * geometric ones over their positions shift..T+shift-1 (each at least
 * one position wide, so there may be fewer than asked). */
static int buckets_init(lbp_buckets *b, int want, int T, int shift, int log_x) {
    int N = want < T ? want : T;
    b->lo = malloc(2 * (size_t)N * sizeof *b->lo);
    b->count = calloc((size_t)N, sizeof *b->count);
    b->mean = calloc(2 * (size_t)N, sizeof *b->mean);
    if (!b->lo || !b->count || !b->mean) return VTTT_ENOMEM;
    b->hi = b->lo + N, b->m2 = b->mean + N, b->n = 0;
    int prev = 0;
    for (int k = 1; k <= N; k++) {
        int64_t v = k == N ? T
                    : log_x ? llround(shift * pow((double)(T + shift) / shift, (double)k / N)) - shift
                            : (int64_t)k * T / N;
        if (v <= prev) continue;
        b->lo[b->n] = prev, b->hi[b->n++] = (int)v, prev = (int)v;
    }
    return 0;
}

static void buckets_free(lbp_buckets *b) {
    free(b->lo), free(b->count), free(b->mean);
    memset(b, 0, sizeof *b);
}

/* The buckets of one model and its target shift. */
typedef struct {
    lbp_buckets b;
    int shift;
} lbp_job;

/* One window's losses (T targets; fewer than the buckets' in the last window). */
static int add_window(void *user, int64_t window, const float *losses, int P) {
    lbp_job *j = user;
    lbp_buckets *b = &j->b;
    (void)window;
    for (int k = 0; k < b->n && b->lo[k] < P; k++) {
        int hi = b->hi[k] < P ? b->hi[k] : P;
        double s = 0;
        for (int t = b->lo[k]; t < hi; t++) s += losses[t];
        double x = s / (hi - b->lo[k]), d = x - b->mean[k];
        b->count[k]++;
        b->mean[k] += d / (double)b->count[k];
        b->m2[k] += d * (x - b->mean[k]);
    }
    return 0;
}

static double bucket_se(const lbp_buckets *b, int k) {
    int64_t c = b->count[k];
    return c > 1 ? sqrt(b->m2[k] / (double)(c - 1) / (double)c) : NAN;
}

/* Evaluates the windows of ids into the buckets: inputs [w*T, (w+1)*T)
 * predicting the tokens shift later (as `vttt lm score` and the trainer's
 * val_loss), the last window shorter when the input does not divide. */
static int eval_model(const lbp_opts *o, vttt_model *m, const vttt_token_buf *ids, int64_t T, lbp_job *j) {
    const int32_t *tok = ids->ids;
    int64_t n = (int64_t)ids->n - j->shift, full = n / T, rest = n - full * T;
    if (o->max_windows && full >= o->max_windows) full = o->max_windows, rest = 0;
    int err = lm_eval_windows_targets(m, tok, tok + j->shift, full, (int)T, (int)o->batch, add_window, j);
    if (!err && rest > 0)
        err = lm_eval_windows_targets(m, tok + full * T, tok + full * T + j->shift, 1, (int)rest, 1, add_window, j);
    if (err) fprintf(stderr, CMD ": evaluation failed (%s)\n", vttt_strerror(err));
    return err;
}

static const char *label_of(const lbp_opts *o, int i) { return i < o->n_labels ? o->label[i] : o->dir[i]; }

/* A CSV field: quoted when it holds a comma, a quote or a line break. */
static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void print_buckets(const lbp_opts *o, int i, const lbp_buckets *b, int shift, FILE *csv) {
    printf("# %s\n# first last mean_nll se windows\n", label_of(o, i));
    for (int k = 0; k < b->n; k++) {
        double se = bucket_se(b, k);
        printf("%d %d %.6f %.6f %lld\n", b->lo[k] + shift, b->hi[k] - 1 + shift, b->mean[k], se,
               (long long)b->count[k]);
        if (!csv) continue;
        csv_field(csv, label_of(o, i));
        fprintf(csv, ",%d,%d,%.6f,%.6f,%lld\n", b->lo[k] + shift, b->hi[k] - 1 + shift, b->mean[k], se,
                (long long)b->count[k]);
    }
}

static int write_plot(const lbp_opts *o, const lbp_job *jobs, int T, int64_t windows) {
    int N = jobs[0].b.n, shift = jobs[0].shift;
    double *xy = malloc((size_t)N * (1 + 2 * o->n_models) * sizeof *xy);   /* x, then y and se per model */
    if (!xy) return VTTT_ENOMEM;
    plot_series s[MAX_MODELS];
    for (int k = 0; k < N; k++) {
        double a = jobs[0].b.lo[k] + shift, z = jobs[0].b.hi[k] - 1 + shift;
            xy[k] = o->log_x ? sqrt(a * z) : 0.5 * (a + z);
    }
    for (int i = 0; i < o->n_models; i++) {
        double *y = xy + (size_t)N * (1 + 2 * i), *se = y + N;
        for (int k = 0; k < N; k++) y[k] = jobs[i].b.count[k] ? jobs[i].b.mean[k] : NAN, se[k] = bucket_se(&jobs[i].b, k);
        s[i] = (plot_series){label_of(o, i), xy, y, N, se};
    }
    char title[160];
    snprintf(title, sizeof title, "loss by position: %lld windows of %d tokens", (long long)windows, T);
    plot_params p = plot_default_params();
    p.title = title;
    p.xlabel = o->log_x ? "position in the context (tokens, log scale)" : "position in the context (tokens)";
    p.ylabel = "mean NLL (nats)";
    p.x_log = o->log_x;
    p.x_min = o->log_x ? shift : 0;
    p.x_max = T + shift;
    int err = plot_png_write(o->png, s, o->n_models, &p) ? VTTT_EIO : 0;
    free(xy);
    return err;
}

/* The window length: --context, else the shortest trained context of the
 * models (so that none reads past it), cut to the input when shorter
 * (n tokens predict n - shift). */
static int pick_context(const lbp_opts *o, vttt_model *const *m, const lm_context *ctx, int64_t n, int64_t *T) {
    int shift = vttt_model_config_target_shift(vttt_model_get_config(m[0]));
    *T = o->context;
    for (int i = 0; !o->context && i < o->n_models; i++)
        if (!*T || ctx[i].tokens < *T) *T = ctx[i].tokens;
    if (!o->context && n - shift < *T) {
        fprintf(stderr, CMD ": the input has %lld tokens, too few for the trained context (%lld): one window of the "
                        "whole input\n", (long long)n, (long long)*T);
        *T = n - shift;
    }
    if (*T < 1 || n - shift < *T) {
        fprintf(stderr, CMD ": need at least one window of %lld tokens and the %d after it; the input has %lld "
                        "(set --context)\n", (long long)*T, shift, (long long)n);
        return VTTT_EINVAL;
    }
    for (int i = 0; i < o->n_models; i++) lm_warn_context(CMD, o->dir[i], vttt_model_get_config(m[i]), &ctx[i], *T);
    return 0;
}

static int curves(const lbp_opts *o, vttt_model *const *m, const lm_context *ctx, const vttt_token_buf *ids,
                  FILE *csv) {
    int64_t T, n = (int64_t)ids->n;
    int err = pick_context(o, m, ctx, n, &T);
    if (err) return err;
    int shift = vttt_model_config_target_shift(vttt_model_get_config(m[0]));
    int64_t full = (n - shift) / T, rest = n - shift - full * T, windows = full + (rest > 0);
    if (o->max_windows && windows > o->max_windows) windows = o->max_windows;
    lbp_job jobs[MAX_MODELS] = {0};
    printf("# %lld windows of %lld tokens", (long long)windows, (long long)T);
    if (windows > full) printf(" (the last of %lld)", (long long)rest);
    printf("; position = index in the window of the predicted token\n");
    if (csv) fprintf(csv, "model,first,last,mean_nll,se,windows\n");
    for (int i = 0; !err && i < o->n_models; i++) {
        jobs[i].shift = vttt_model_config_target_shift(vttt_model_get_config(m[i]));
        err = buckets_init(&jobs[i].b, (int)o->buckets, (int)T, jobs[i].shift, o->log_x);
        if (!err) err = eval_model(o, m[i], ids, T, &jobs[i]);
        if (!err) print_buckets(o, i, &jobs[i].b, jobs[i].shift, csv);
    }
    if (!err && fflush(stdout)) err = VTTT_EIO;
    if (!err && o->png) err = write_plot(o, jobs, (int)T, windows);
    for (int i = 0; i < o->n_models; i++) buckets_free(&jobs[i].b);
    return err;
}

static int repeat(const lbp_opts *o, vttt_model *const *m, const lm_context *ctx, const vttt_token_buf *ids,
                  FILE *csv) {
    printf("# repeat: each piece scored as <|endoftext|> piece <|endoftext|> piece; NLL in nats per token\n"
           "# model pieces tokens nll_first nll_second drop se_drop\n");
    if (csv) fprintf(csv, "model,pieces,tokens,nll_first,nll_second,drop,se_drop\n");
    for (int i = 0; i < o->n_models; i++) {
        const vttt_model_config *cfg = vttt_model_get_config(m[i]);
        int64_t T = o->context ? o->context : ctx[i].tokens;
        lm_warn_context(CMD, o->dir[i], cfg, &ctx[i], T);
        int32_t sep = o->in.text ? o->in.doc_sep : cfg->eos_token_id;
        lm_repeat_stats r;
        int err = lm_repeat_eval(m[i], ids->ids, (int64_t)ids->n, sep, T, (int)o->batch, o->max_windows, &r, CMD);
        if (err) return err;
        printf("%s %lld %lld %.6f %.6f %.6f %.6f\n", label_of(o, i), (long long)r.pieces, (long long)r.tokens,
               r.nll_first, r.nll_second, r.nll_first - r.nll_second, r.se_drop);
        if (!csv) continue;
        csv_field(csv, label_of(o, i));
        fprintf(csv, ",%lld,%lld,%.6f,%.6f,%.6f,%.6f\n", (long long)r.pieces, (long long)r.tokens, r.nll_first,
                r.nll_second, r.nll_first - r.nll_second, r.se_drop);
    }
    return fflush(stdout) ? VTTT_EIO : 0;
}

/* The CSV's path: --csv, else the PNG's with .csv for .png; NULL for none. */
static const char *csv_path(const lbp_opts *o, char *buf, size_t n) {
    if (o->csv || !o->png) return o->csv;
    size_t len = strlen(o->png);
    int png = len > 4 && !strcmp(o->png + len - 4, ".png");
    snprintf(buf, n, "%.*s.csv", (int)(png ? len - 4 : len), o->png);
    return buf;
}

static int run(const lbp_opts *o, vttt_model *const *m, const lm_context *ctx, const vttt_token_buf *ids) {
    char buf[4200];
    const char *path = csv_path(o, buf, sizeof buf);
    FILE *csv = path ? fopen(path, "w") : NULL;
    if (path && !csv) {
        fprintf(stderr, CMD ": cannot write the CSV %s\n", path);
        return VTTT_EIO;
    }
    int err = o->repeat ? repeat(o, m, ctx, ids, csv) : curves(o, m, ctx, ids, csv);
    if (csv && fclose(csv) && !err) {
        fprintf(stderr, CMD ": cannot write the CSV %s\n", path);
        err = VTTT_EIO;
    }
    return err;
}

/* 0, or the exit status of a usage error or --help (1 for --help). */
static int parse_one(lbp_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    long long *num = !strcmp(a, "--context") ? &o->context
                     : !strcmp(a, "--buckets") ? &o->buckets
                     : !strcmp(a, "--batch") ? &o->batch
                     : !strcmp(a, "--max-windows") ? &o->max_windows
                     : !strcmp(a, "--threads") ? &o->threads
                                                    : NULL;
    const char **many = !strcmp(a, "--model") ? &o->dir[o->n_models] : !strcmp(a, "--label") ? &o->label[o->n_labels] : NULL;
    if (lm_input_parse(&o->in, argc, argv, i)) return 0;
    if (many && v) {
        int *cnt = many == &o->dir[o->n_models] ? &o->n_models : &o->n_labels;
        if (*cnt == MAX_MODELS) {
            fprintf(stderr, CMD ": at most %d %s\n", MAX_MODELS, a);
            return 2;
        }
        *many = v, ++*cnt, ++*i;
    } else if (!strcmp(a, "--png") && v) o->png = v, ++*i;
    else if (!strcmp(a, "--csv") && v) o->csv = v, ++*i;
    else if (!strcmp(a, "--log-x")) o->log_x = 1;
    else if (!strcmp(a, "--repeat")) o->repeat = 1;
    else if (num && v) {
        if (lm_parse_int(CMD, a, v, num == &o->context || num == &o->max_windows ? 0 : 1, INT32_MAX, num)) return 2;
        ++*i;
    } else return usage(), strcmp(a, "--help") && strcmp(a, "-h") ? 2 : 1;
    return 0;
}

static int parse(lbp_opts *o, int argc, char **argv) {
    int buckets_given = 0;
    for (int i = 1; i < argc; i++) {
        buckets_given |= !strcmp(argv[i], "--buckets");
        int st = parse_one(o, argc, argv, &i);
        if (st) return st;
    }
    if (!o->n_models) {
        fprintf(stderr, CMD ": --model DIR is required\n");
        return 2;
    }
    if (o->n_labels > o->n_models) {
        fprintf(stderr, CMD ": %d --label for %d --model\n", o->n_labels, o->n_models);
        return 2;
    }
    if (o->repeat && (o->png || o->log_x || buckets_given)) {
        fprintf(stderr, CMD ": --repeat prints a table (and --csv); --png, --log-x and --buckets are for the curves\n");
        return 2;
    }
    return lm_input_check(&o->in, CMD) ? 2 : 0;
}

/* Loads the models and their trained contexts; the input once, checked
 * against every model's vocabulary. */
static int load_all(lbp_opts *o, vttt_model **m, lm_context *ctx, vttt_token_buf *ids) {
    int err = 0, V = INT32_MAX, shift = -1;
    for (int i = 0; !err && i < o->n_models; i++) {
        err = lm_model_load(&m[i], o->dir[i], CMD);
        if (err) break;
        const vttt_model_config *cfg = vttt_model_get_config(m[i]);
        err = lm_trained_context(o->dir[i], cfg, CMD, &ctx[i]);
        if (cfg->vocab_size < V) V = cfg->vocab_size;
        if (shift >= 0 && vttt_model_config_target_shift(cfg) != shift) {
            fprintf(stderr, CMD ": %s predicts %d token(s) ahead, %s %d: compare models of one kind\n", o->dir[i],
                    vttt_model_config_target_shift(cfg), o->dir[0], shift);
            err = VTTT_EINVAL;
        }
        shift = vttt_model_config_target_shift(cfg);
    }
    if (!err) err = lm_input_read(&o->in, CMD, V, ids);
    return err;
}

int cli_lm_loss_by_position(int argc, char **argv) {
    lbp_opts o = {.buckets = 32, .batch = 4};
    int st = parse(&o, argc, argv);
    if (st) return st == 1 ? 0 : st;
    lm_set_threads((int)o.threads);
    vttt_model *m[MAX_MODELS] = {0};
    lm_context ctx[MAX_MODELS];
    vttt_token_buf ids = {0};
    int err = load_all(&o, m, ctx, &ids);
    if (!err) err = run(&o, m, ctx, &ids);
    vttt_token_buf_free(&ids);
    for (int i = 0; i < o.n_models; i++) vttt_model_free(&m[i]);
    return err ? 1 : 0;
}
