/* `vttt plot`: the loss curves of one or more training runs (their
 * metrics.jsonl, train/train.h) in one PNG: training loss against the step,
 * the training tokens or the wall time for every run, and its validation
 * loss where it has one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "plot_png.h"

#define CMD "vttt plot"
#define MAX_RUNS 16

static void usage(FILE *f) {
    fprintf(f, "usage: vttt plot --out PNG [--x step|tokens|time] [--title TEXT] [--smooth N] [--no-val]\n"
               "                 [--ymin Y] [--ymax Y] [--width W] [--height H]\n"
               "                 RUN_DIR|[NAME=]RUN_DIR|metrics.jsonl ...\n"
               "  draws the training loss (and the validation loss, where there is one) of each run against the\n"
               "  step; the legend names each run by NAME or its directory's name. --smooth N: the training\n"
               "  loss as a trailing mean over N steps. --x tokens: against the training tokens seen; --x time:\n"
               "  against the run's wall time in seconds (metrics.jsonl's time_s, which vttt train writes since\n"
               "  2026-12; an older log has none: plot it by step or tokens). A validation point takes the x\n"
               "  of its step's line.\n");
}

typedef enum { X_STEP, X_TOKENS, X_TIME } x_kind;
static const char *const x_keys[] = {"step", "tokens", "time_s"};

typedef struct {
    char name[128];
    double *x, *y, *vx, *vy;  /* train (n), validation (nv) */
    int n, nv, cap, vcap;
    x_kind xk;
    double last_step, last_x; /* the latest step line's (a validation point's x) */
    int has_last;
    int no_x;                 /* lines without the x key, left out */
} run_curve;

static int push(double **x, double **y, int *n, int *cap, double a, double b) {
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 256;
        double *nx = realloc(*x, (size_t)c * sizeof **x), *ny = nx ? realloc(*y, (size_t)c * sizeof **y) : NULL;
        if (nx) *x = nx;
        if (!ny) return -1;
        *y = ny, *cap = c;
    }
    (*x)[*n] = a, (*y)[*n] = b, (*n)++;
    return 0;
}

/* Takes the x (step, tokens or time_s) and loss of a step line, or the
 * val_loss of an evaluation line at the x of its step's line. */
static int take_line(run_curve *r, const char *line) {
    cJSON *j = cJSON_Parse(line);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step"), *l = cJSON_GetObjectItemCaseSensitive(j, "loss");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "val_loss");
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, x_keys[r->xk]);
    int err = 0;
    if (cJSON_IsNumber(s) && cJSON_IsNumber(l)) {
        r->has_last = cJSON_IsNumber(x);
        r->last_step = s->valuedouble, r->last_x = r->has_last ? x->valuedouble : 0.0;
        if (r->has_last) err = push(&r->x, &r->y, &r->n, &r->cap, r->last_x, l->valuedouble);
        else r->no_x++;
    }
    if (!err && cJSON_IsNumber(s) && cJSON_IsNumber(v)) {
        int at = r->xk == X_STEP || (r->has_last && r->last_step == s->valuedouble);
        double vx = r->xk == X_STEP ? s->valuedouble : r->last_x;
        if (at) err = push(&r->vx, &r->vy, &r->nv, &r->vcap, vx, v->valuedouble);
        else r->no_x++;
    }
    cJSON_Delete(j);
    return err;
}

/* Reads "[NAME=]PATH": a run directory's metrics.jsonl or the file itself. */
static int read_run(run_curve *r, const char *arg) {
    const char *eq = strchr(arg, '='), *path = eq ? eq + 1 : arg;
    char file[4096], *line = NULL;
    struct stat sb;
    int is_dir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (is_dir) snprintf(file, sizeof file, "%s/metrics.jsonl", path);
    else snprintf(file, sizeof file, "%s", path);
    if (eq) {
        snprintf(r->name, sizeof r->name, "%.*s", (int)(eq - arg), arg);
    } else { /* the run directory's name */
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s", is_dir ? path : file);
        if (!is_dir) *(strrchr(tmp, '/') ? strrchr(tmp, '/') : tmp) = '\0';
        size_t k = strlen(tmp);
        while (k > 1 && tmp[k - 1] == '/') tmp[--k] = '\0';
        const char *base = strrchr(tmp, '/');
        snprintf(r->name, sizeof r->name, "%.127s", base ? base + 1 : tmp[0] ? tmp : ".");
    }
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, CMD ": cannot read %s (a run directory of `vttt train` holds metrics.jsonl)\n", file);
        return -1;
    }
    size_t cap = 0;
    int err = 0;
    while (!err && getline(&line, &cap, f) > 0) err = take_line(r, line);
    free(line);
    fclose(f);
    if (err) fprintf(stderr, CMD ": out of memory reading %s\n", file);
    else if (!r->n && !r->nv && r->no_x)
        fprintf(stderr, CMD ": %s has no \"%s\" (a log from an older vttt train, or not a language-model run); plot "
                "it with --x step\n", file, x_keys[r->xk]), err = -1;
    else if (!r->n && !r->nv) fprintf(stderr, CMD ": %s holds no loss values yet\n", file), err = -1;
    else if (r->no_x)
        fprintf(stderr, CMD ": warning: %s: %d line(s) without \"%s\" left out (written by an older vttt train)\n",
                file, r->no_x, x_keys[r->xk]);
    return err;
}

/* y (n) = the trailing mean of y over w points, in place. */
static void smooth(double *y, int n, int w) {
    if (w <= 1) return;
    double *out = malloc((size_t)n * sizeof *out), sum = 0.0;
    if (!out) return;
    for (int i = 0; i < n; i++) {
        sum += y[i];
        if (i >= w) sum -= y[i - w];
        out[i] = sum / (i + 1 < w ? i + 1 : w);
    }
    memcpy(y, out, (size_t)n * sizeof *out);
    free(out);
}

static int draw(const char *out, run_curve *runs, int n_runs, int val, plot_params *pp) {
    plot_series s[2 * MAX_RUNS];
    char labels[2 * MAX_RUNS][160];
    int k = 0;
    for (int i = 0; i < n_runs; i++) {
        if (runs[i].n) {
            snprintf(labels[k], sizeof labels[k], "%s%s", runs[i].name, val && runs[i].nv ? " train" : "");
            s[k] = (plot_series){labels[k], runs[i].x, runs[i].y, runs[i].n, NULL}, k++;
        }
        if (val && runs[i].nv) {
            snprintf(labels[k], sizeof labels[k], "%s val", runs[i].name);
            s[k] = (plot_series){labels[k], runs[i].vx, runs[i].vy, runs[i].nv, NULL}, k++;
        }
    }
    return plot_png_write(out, s, k, pp);
}

int cli_plot(int argc, char **argv) {
    const char *out = NULL;
    int width = 0, height = 0, window = 0, val = 1, n_runs = 0, err = 0;
    x_kind xk = X_STEP;
    double ymin = NAN, ymax = NAN;
    const char *title = "training loss", *args[MAX_RUNS];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        if (!strcmp(a, "--out") && v) out = v, i++;
        else if (!strcmp(a, "--title") && v) title = v, i++;
        else if (!strcmp(a, "--smooth") && v) window = atoi(v), i++;
        else if (!strcmp(a, "--width") && v) width = atoi(v), i++;
        else if (!strcmp(a, "--height") && v) height = atoi(v), i++;
        else if (!strcmp(a, "--ymin") && v) ymin = atof(v), i++;
        else if (!strcmp(a, "--ymax") && v) ymax = atof(v), i++;
        else if (!strcmp(a, "--no-val")) val = 0;
        else if (!strcmp(a, "--x") && v) {
            if (!strcmp(v, "step")) xk = X_STEP;
            else if (!strcmp(v, "tokens")) xk = X_TOKENS;
            else if (!strcmp(v, "time")) xk = X_TIME;
            else return fprintf(stderr, CMD ": --x takes step, tokens or time (got '%s')\n", v), 2;
            i++;
        }
        else if (a[0] == '-' && a[1] == '-') return usage(stderr), 2;
        else if (n_runs == MAX_RUNS) return fprintf(stderr, CMD ": at most %d runs\n", MAX_RUNS), 2;
        else args[n_runs++] = a;
    }
    if (!out || !n_runs || window < 0 || width < 0 || height < 0) return usage(stderr), 2;
    run_curve *runs = calloc((size_t)n_runs, sizeof *runs);
    if (!runs) return 1;
    for (int i = 0; i < n_runs && !err; i++) {
        runs[i].xk = xk;
        err = read_run(&runs[i], args[i]);
        smooth(runs[i].y, runs[i].n, window);
    }
    plot_params pp = plot_default_params();
    static const char *const xlabels[] = {"step", "training tokens", "wall time (s)"};
    pp.title = title, pp.xlabel = xlabels[xk], pp.ylabel = "loss (nats/token)";
    if (width) pp.width = width;
    if (height) pp.height = height;
    pp.y_min = ymin, pp.y_max = ymax;
    if (!err) err = draw(out, runs, n_runs, val, &pp);
    for (int i = 0; i < n_runs; i++) free(runs[i].x), free(runs[i].y), free(runs[i].vx), free(runs[i].vy);
    free(runs);
    if (!err) fprintf(stderr, CMD ": wrote %s\n", out);
    return err ? 1 : 0;
}
