/* `vttt lm loss-by-position`: the mean loss at each position of a context
 * window, averaged over the windows of an input; how much a model gains
 * from the tokens it has already seen (the paper's long-context measure).
 * The input is cut into consecutive windows of --context tokens, each
 * evaluated from the model's initial state; positions are grouped into
 * --buckets buckets of (nearly) equal width. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm.h"
#include "plot_png.h"

#define CMD "vttt lm loss-by-position"

typedef struct {
    const char *dir, *png;
    lm_input in;
    long long context, buckets, batch, max_windows, threads;
} lbp_opts;

typedef struct {
    double *sum;   /* (T) summed NLL of the window's token t + shift */
} lbp_job;

static void usage(void) {
    fprintf(stderr,
            "usage: vttt lm loss-by-position --model DIR (--tokens FILE | --text FILE --tokenizer TOK)\n"
            "           [--context T] [--buckets N (32)] [--batch B (4)] [--max-windows W] [--png OUT]\n"
            "           [--threads N]\n"
            "  cuts the input into consecutive windows of T tokens (default: the model's\n"
            "  max_position_embeddings, or the whole input when it is shorter), evaluates each from\n"
            "  the model's initial state, and prints `<first> <last> <mean_nll>` per bucket of\n"
            "  positions in the window (nats); --png OUT also plots it. --max-windows: use at most W.\n");
}

static int add_window(void *user, int64_t window, const float *losses, int T) {
    lbp_job *j = user;
    for (int t = 0; t < T; t++) j->sum[t] += losses[t];
    return 0;
}

static int write_plot(const lbp_opts *o, const double *x, const double *y, int n, int T, int64_t windows) {
    char title[160], label[160];
    snprintf(title, sizeof title, "loss by position: %lld windows of %d tokens", (long long)windows, T);
    snprintf(label, sizeof label, "%s", o->dir);
    plot_series s = {label, x, y, n};
    plot_params p = plot_default_params();
    p.title = title;
    p.xlabel = "position in the context (tokens)";
    p.ylabel = "mean NLL (nats)";
    p.x_min = 0;
    p.x_max = T;
    return plot_png_write(o->png, &s, 1, &p);
}

/* Prints (and plots) the bucket means of the summed losses. */
static int report(const lbp_opts *o, const double *sum, int T, int shift, int64_t windows) {
    int P = T - shift, N = o->buckets < P ? (int)o->buckets : P;
    double *x = malloc(2 * (size_t)N * sizeof *x);
    if (!x) return VTTT_ENOMEM;
    double *y = x + N;
    printf("# %lld windows of %d tokens, %d buckets; position = index in the window of the predicted token\n"
           "# first last mean_nll\n",
           (long long)windows, T, N);
    for (int b = 0; b < N; b++) {
        int lo = (int)((int64_t)b * P / N), hi = (int)((int64_t)(b + 1) * P / N);   /* [lo, hi) of t */
        double s = 0;
        for (int t = lo; t < hi; t++) s += sum[t];
        x[b] = shift + 0.5 * (lo + hi - 1);
        y[b] = s / ((double)(hi - lo) * (double)windows);
        printf("%d %d %.6f\n", lo + shift, hi - 1 + shift, y[b]);
    }
    int err = fflush(stdout) ? VTTT_EIO : 0;
    if (!err && o->png && write_plot(o, x, y, N, T, windows)) err = VTTT_EIO;
    free(x);
    return err;
}

static int run(const lbp_opts *o, vttt_model *m, const vttt_token_buf *ids) {
    const vttt_model_config *cfg = vttt_model_get_config(m);
    int shift = vttt_model_config_target_shift(cfg);
    int64_t n = (int64_t)ids->n, T = o->context ? o->context : cfg->max_position_embeddings;
    if (!o->context && n < T) {
        fprintf(stderr, CMD ": the input has %lld tokens, fewer than max_position_embeddings (%lld): one window "
                        "of the whole input\n", (long long)n, (long long)T);
        T = n;
    }
    if (T <= shift || n < T) {
        fprintf(stderr, CMD ": need at least one window of more than %d tokens; the input has %lld and the "
                        "context is %lld (set --context)\n", shift, (long long)n, (long long)T);
        return VTTT_EINVAL;
    }
    int64_t windows = n / T;
    if (o->max_windows && windows > o->max_windows) windows = o->max_windows;
    lbp_job j = {calloc((size_t)T, sizeof(double))};
    if (!j.sum) return VTTT_ENOMEM;
    int err = lm_eval_windows(m, ids->ids, windows, (int)T, (int)o->batch, add_window, &j);
    if (err) fprintf(stderr, CMD ": evaluation failed (%s)\n", vttt_strerror(err));
    else err = report(o, j.sum, (int)T, shift, windows);
    free(j.sum);
    return err;
}

/* 0, or the exit status of a usage error or --help. */
static int parse(lbp_opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long *num = !strcmp(a, "--context") ? &o->context
                         : !strcmp(a, "--buckets") ? &o->buckets
                         : !strcmp(a, "--batch") ? &o->batch
                         : !strcmp(a, "--max-windows") ? &o->max_windows
                         : !strcmp(a, "--threads") ? &o->threads
                                                        : NULL;
        if (lm_input_parse(&o->in, argc, argv, &i)) continue;
        if (!strcmp(a, "--model") && v) o->dir = v, i++;
        else if (!strcmp(a, "--png") && v) o->png = v, i++;
        else if (num && v) {
            if (lm_parse_int(CMD, a, v, num == &o->context || num == &o->max_windows ? 0 : 1, INT32_MAX, num))
                return 2;
            i++;
        } else return usage(), strcmp(a, "--help") && strcmp(a, "-h") ? 2 : 1;
    }
    if (!o->dir) {
        fprintf(stderr, CMD ": --model DIR is required\n");
        return 2;
    }
    return lm_input_check(&o->in, CMD) ? 2 : 0;
}

int cli_lm_loss_by_position(int argc, char **argv) {
    lbp_opts o = {.buckets = 32, .batch = 4};
    int st = parse(&o, argc, argv);
    if (st) return st == 1 ? 0 : st;
    lm_set_threads((int)o.threads);
    vttt_model *m = NULL;
    vttt_token_buf ids = {0};
    int err = lm_model_load(&m, o.dir, CMD);
    if (!err) err = lm_input_read(&o.in, CMD, vttt_model_get_config(m)->vocab_size, &ids);
    if (!err) err = run(&o, m, &ids);
    vttt_token_buf_free(&ids);
    vttt_model_free(&m);
    return err ? 1 : 0;
}
