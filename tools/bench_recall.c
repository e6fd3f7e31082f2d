/* `vttt bench recall`: the multi-query associative recall grid of the
 * Zoology paper's Figure 2 (train/mqar.h, docs/mqar.md): for every
 * sequence length (with its number of key-value pairs), layer and width,
 * a two-block model trained from scratch on MQAR and its held-out
 * accuracy; the grid on stdout (one panel per length: layers by widths),
 * DIR/mqar.csv (a row per run, written as each ends) and DIR/mqar.png
 * (accuracy against width, one line per layer, one panel per length). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "lm.h"
#include "mqar.h"
#include "plot_png.h"

#define CMD "vttt bench recall"
#define MAX_LIST 16

static void usage(FILE *f) {
    fprintf(f,
            "usage: vttt bench recall [--quick] [--layers LIST (attention,ttt_linear,ttt_mlp)]\n"
            "         [--widths LIST (64,128,256)] [--lens LIST (64,128,256,512)] [--kv LIST]\n"
            "         [--steps N (2000)] [--batch N (64)] [--lr LIST (1e-3)] [--warmup N (50)] [--seed N (0)]\n"
            "         [--vocab V (8192)] [--test N (512)] [--heads N (1)] [--mlp-mult N (2)]\n"
            "         [--backbone transformer|mamba] [--ttt-base-lr X] [--mini-batch N (16)]\n"
            "         [--power-a A (0.01)] [--filler zero|random] [--eval-every N (0)] [--stop-at ACC]\n"
            "         [--threads N] [--out DIR (mqar)]\n"
            "  trains a 2-block model per (length, layer, width) on multi-query associative recall and\n"
            "  prints the held-out accuracy grid; DIR/mqar.csv and DIR/mqar.png. --kv gives the key-value\n"
            "  pairs per length (one value, or one per --lens entry; default Zoology's: 64:4 128:8 256:16\n"
            "  512:64, else length/16). --lr with several values trains each and keeps the best\n"
            "  (Zoology sweeps 4). --stop-at ends a run once held-out accuracy reaches it (scored every\n"
            "  --eval-every steps). --quick: length 64, 4 pairs, width 64, vocabulary 128, stop at 0.99\n"
            "  (scored every 100 steps), 256 test examples.\n");
}

typedef struct opts {
    char layers[128], widths[128], lens[128], kv[128], lrs[128], out[512];
    vttt_mqar_run run;
    long long threads;
    int quick;
} opts;

static int parse_ints(const char *s, long long *v, int max) {
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        char *end;
        long long x = strtoll(p, &end, 10);
        if (end == p || x < 1 || (*end && *end != ',')) return -1;
        v[n++] = x;
        p = *end ? end + 1 : end;
    }
    return n;
}

static int parse_floats(const char *s, double *v, int max) {
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || !(x > 0.0) || !isfinite(x) || (*end && *end != ',')) return -1;
        v[n++] = x;
        p = *end ? end + 1 : end;
    }
    return n;
}

/* Numeric options (name, range, where it goes as a double). */
static int parse_num(opts *o, const char *a, const char *v) {
    vttt_mqar_run *r = &o->run;
    double x;
    struct { const char *name; double lo, hi; } t[] = {
        {"--steps", 1, 1e9},  {"--batch", 1, 4096},    {"--warmup", 0, 1e9},    {"--seed", 0, 1e15},
        {"--vocab", 8, 1 << 24}, {"--test", 1, 1 << 20}, {"--heads", 1, 1024}, {"--mlp-mult", 1, 64},
        {"--ttt-base-lr", 0, 1e3}, {"--mini-batch", 1, 1024}, {"--power-a", 1e-9, 1}, {"--eval-every", 0, 1e9},
        {"--stop-at", 0, 2}, {"--threads", 1, 4096},
    };
    int k = -1;
    for (int i = 0; i < (int)(sizeof t / sizeof t[0]); i++) k = !strcmp(a, t[i].name) ? i : k;
    if (k < 0) return 1;
    if (cli_num(CMD, a, v, t[k].lo, t[k].hi, &x)) return -1;
    switch (k) {
    case 0: r->train.steps = (int64_t)x; break;
    case 1: r->train.batch = (int)x; break;
    case 2: r->train.warmup = (int64_t)x; break;
    case 3: r->train.seed = (uint64_t)x; break;
    case 4: r->task.vocab_size = (int)x; break;
    case 5: r->test_examples = (int)x; break;
    case 6: r->heads = (int)x; break;
    case 7: r->mlp_mult = (int)x; break;
    case 8: r->train.ttt_base_lr = (float)x; break;
    case 9: r->mini_batch = (int)x; break;
    case 10: r->task.power_a = x; break;
    case 11: r->eval_every = (int)x; break;
    case 12: r->stop_at = x; break;
    default: o->threads = (long long)x; break;
    }
    return 0;
}

static void set_quick(opts *o) {
    snprintf(o->widths, sizeof o->widths, "64");
    snprintf(o->lens, sizeof o->lens, "64");
    snprintf(o->kv, sizeof o->kv, "4");
    o->run.test_examples = 256, o->run.task.vocab_size = 128, o->run.eval_every = 100, o->run.stop_at = 0.99;
}

/* 0: run; 1: help; 2: bad usage (message printed). */
static int parse(opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) o->quick = 1, set_quick(o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (!strcmp(a, "--quick")) continue;
        if (!v) return fprintf(stderr, CMD ": %s needs a value\n", a), 2;
        i++;
        int r = parse_num(o, a, v);
        if (r < 0) return 2;
        if (r == 0) continue;
        char *dst = !strcmp(a, "--layers") ? o->layers : !strcmp(a, "--widths") ? o->widths
                    : !strcmp(a, "--lens") ? o->lens : !strcmp(a, "--kv") ? o->kv : !strcmp(a, "--lr") ? o->lrs
                    : !strcmp(a, "--out") ? o->out : !strcmp(a, "--backbone") ? o->run.backbone : NULL;
        size_t n = dst == o->out ? sizeof o->out : dst == o->run.backbone ? sizeof o->run.backbone : 128;
        if (dst) snprintf(dst, n, "%s", v);
        else if (!strcmp(a, "--filler") && (!strcmp(v, "random") || !strcmp(v, "zero")))
            o->run.task.random_filler = !strcmp(v, "random");
        else return fprintf(stderr, CMD ": unknown option or value: %s %s\n", a, v), 2;
    }
    return 0;
}

/* The grid's axes, parsed. */
typedef struct grid {
    vttt_layer_kind layers[3];
    const char *layer_names[3];
    int n_layers, n_widths, n_lens, n_lrs;
    long long widths[MAX_LIST], lens[MAX_LIST], kv[MAX_LIST];
    double lrs[MAX_LIST];
    float *acc;   /* (n_lens, n_layers, n_widths) best held-out accuracy; NAN: failed */
} grid;

static long long default_kv(long long T) {
    return T == 64 ? 4 : T == 128 ? 8 : T == 256 ? 16 : T == 512 ? 64 : T / 16 > 0 ? T / 16 : 1;
}

static int parse_layers(grid *g, const char *s) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    static const char *names[] = {"ttt_linear", "ttt_mlp", "attention"};
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (int i = 0; i < 3; i++) k = !strcmp(t, names[i]) ? i : k;
        if (k < 0 || g->n_layers == 3) return fprintf(stderr, CMD ": --layers: unknown or repeated '%s'\n", t), -1;
        g->layers[g->n_layers] = (vttt_layer_kind)k, g->layer_names[g->n_layers++] = names[k];
    }
    return g->n_layers ? 0 : -1;
}

static int make_grid(grid *g, const opts *o) {
    memset(g, 0, sizeof *g);
    long long kv[MAX_LIST];
    int nkv = o->kv[0] ? parse_ints(o->kv, kv, MAX_LIST) : 0;
    if (parse_layers(g, o->layers)) return -1;
    if ((g->n_widths = parse_ints(o->widths, g->widths, MAX_LIST)) <= 0)
        return fprintf(stderr, CMD ": bad --widths '%s'\n", o->widths), -1;
    if ((g->n_lens = parse_ints(o->lens, g->lens, MAX_LIST)) <= 0)
        return fprintf(stderr, CMD ": bad --lens '%s'\n", o->lens), -1;
    if ((g->n_lrs = parse_floats(o->lrs, g->lrs, MAX_LIST)) <= 0)
        return fprintf(stderr, CMD ": bad --lr '%s'\n", o->lrs), -1;
    if (nkv < 0 || (nkv > 1 && nkv != g->n_lens))
        return fprintf(stderr, CMD ": --kv takes one value or one per --lens entry, got '%s'\n", o->kv), -1;
    for (int i = 0; i < g->n_lens; i++) g->kv[i] = nkv == 0 ? default_kv(g->lens[i]) : kv[nkv == 1 ? 0 : i];
    g->acc = malloc((size_t)g->n_lens * g->n_layers * g->n_widths * sizeof(float));
    return g->acc ? 0 : -1;
}

static float *cell(const grid *g, int l, int k, int w) {
    return &g->acc[((size_t)l * g->n_layers + k) * g->n_widths + w];
}

static void on_eval(void *user, int64_t step, float train_loss, float test_loss, float test_acc) {
    (void)user;
    printf("    step %6lld  train loss %.4f  test loss %.4f  test acc %.4f\n", (long long)step, (double)train_loss,
           (double)test_loss, (double)test_acc);
    fflush(stdout);
}

/* One (length, layer, width): every lr, the best held-out accuracy kept;
 * each run a CSV row. */
static int run_cell(const opts *o, grid *g, int l, int k, int w, FILE *csv) {
    vttt_mqar_run r = o->run;
    r.task.seq_len = (int)g->lens[l], r.task.num_kv_pairs = (int)g->kv[l];
    r.layer = g->layers[k], r.width = (int)g->widths[w];
    r.on_eval = r.eval_every > 0 ? on_eval : NULL;
    float best = NAN;
    for (int i = 0; i < g->n_lrs; i++) {
        r.train.lr = (float)g->lrs[i];
        vttt_mqar_result res;
        printf("  %-10s D %-4d T %-4d kv %-3d lr %.2g ...\n", g->layer_names[k], r.width, r.task.seq_len,
               r.task.num_kv_pairs, (double)r.train.lr);
        fflush(stdout);
        int err = vttt_mqar_train(&r, &res, NULL);
        if (err && err != VTTT_ENAN) return err;
        printf("  %-10s D %-4d T %-4d kv %-3d lr %.2g: acc %.4f  test loss %.4f  (%lld steps, %.0f s)%s\n",
               g->layer_names[k], r.width, r.task.seq_len, r.task.num_kv_pairs, (double)r.train.lr,
               (double)res.test_acc, (double)res.test_loss, (long long)res.steps, res.seconds,
               err ? " [diverged]" : "");
        fprintf(csv, "%s,%d,%d,%d,%d,%s,%d,%d,%.6g,%lld,%d,%.6f,%.6f,%.6f,%lld,%.1f,%s\n", g->layer_names[k], r.width,
                r.task.seq_len, r.task.num_kv_pairs, r.task.vocab_size, r.backbone, r.heads, r.mini_batch,
                (double)r.train.lr, (long long)res.steps, r.train.batch, (double)res.test_acc,
                (double)res.test_loss, (double)res.train_loss, (long long)res.params, res.seconds,
                err ? "diverged" : "ok");
        fflush(csv);
        if (!err && !(res.test_acc <= best)) best = res.test_acc;
    }
    *cell(g, l, k, w) = best;
    return VTTT_OK;
}

static void print_grid(const grid *g, const opts *o) {
    printf("\nMQAR held-out accuracy (vocab %d, %lld steps x %d, %s filler; best over %d lr)\n",
           o->run.task.vocab_size, (long long)o->run.train.steps, o->run.train.batch,
           o->run.task.random_filler ? "random" : "zero", g->n_lrs);
    for (int l = 0; l < g->n_lens; l++) {
        printf("seq %lld, %lld kv pairs\n  %-12s", g->lens[l], g->kv[l], "layer \\ D");
        for (int w = 0; w < g->n_widths; w++) printf(" %8lld", g->widths[w]);
        printf("\n");
        for (int k = 0; k < g->n_layers; k++) {
            printf("  %-12s", g->layer_names[k]);
            for (int w = 0; w < g->n_widths; w++) printf(" %8.3f", (double)*cell(g, l, k, w));
            printf("\n");
        }
    }
}

/* DIR/mqar.png: a panel per length, accuracy against width, a line per
 * layer. */
static int write_png(const grid *g, const char *path) {
    plot_panel panels[MAX_LIST];
    plot_series series[MAX_LIST][3];
    double x[MAX_LIST], y[MAX_LIST][3][MAX_LIST];
    char titles[MAX_LIST][64];
    for (int w = 0; w < g->n_widths; w++) x[w] = (double)g->widths[w];
    for (int l = 0; l < g->n_lens; l++) {
        for (int k = 0; k < g->n_layers; k++) {
            for (int w = 0; w < g->n_widths; w++) y[l][k][w] = (double)*cell(g, l, k, w);
            series[l][k] = (plot_series){g->layer_names[k], x, y[l][k], g->n_widths, NULL};
        }
        snprintf(titles[l], sizeof titles[l], "seq %lld, %lld kv pairs", g->lens[l], g->kv[l]);
        plot_params p = plot_default_params();
        p.width = 520, p.height = 400, p.title = titles[l], p.xlabel = "model width", p.ylabel = "accuracy";
        p.y_min = 0.0, p.y_max = 1.0;
        if (g->n_widths == 1) p.x_min = x[0] - 32, p.x_max = x[0] + 32;
        panels[l] = (plot_panel){series[l], g->n_layers, p};
    }
    return plot_png_write_panels(path, panels, g->n_lens, g->n_lens < 4 ? g->n_lens : 4);
}

static FILE *open_csv(const char *dir, char *path, size_t n) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, CMD ": cannot create %s: %s\n", dir, strerror(errno));
        return NULL;
    }
    snprintf(path, n, "%s/mqar.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f) fprintf(stderr, CMD ": cannot write %s: %s\n", path, strerror(errno));
    else fprintf(f, "layer,width,seq_len,kv_pairs,vocab,backbone,heads,mini_batch,lr,steps,batch,test_acc,test_loss,"
                    "train_loss,params,seconds,status\n");
    return f;
}

int cli_bench_recall(int argc, char **argv) {
    opts o;
    memset(&o, 0, sizeof o);
    o.run = vttt_mqar_default_run();
    snprintf(o.layers, sizeof o.layers, "attention,ttt_linear,ttt_mlp");
    snprintf(o.widths, sizeof o.widths, "64,128,256");
    snprintf(o.lens, sizeof o.lens, "64,128,256,512");
    snprintf(o.lrs, sizeof o.lrs, "1e-3");
    snprintf(o.out, sizeof o.out, "mqar");
    int r = parse(&o, argc, argv);
    if (r) return usage(r == 1 ? stdout : stderr), r == 1 ? 0 : 2;
    grid g;
    if (make_grid(&g, &o)) return free(g.acc), 2;
    lm_set_threads((int)o.threads);
    char csv_path[600], png_path[600];
    FILE *csv = open_csv(o.out, csv_path, sizeof csv_path);
    int err = csv ? VTTT_OK : VTTT_EIO;
    for (int l = 0; l < g.n_lens && !err; l++)
        for (int k = 0; k < g.n_layers && !err; k++)
            for (int w = 0; w < g.n_widths && !err; w++) err = run_cell(&o, &g, l, k, w, csv);
    if (csv && fclose(csv) != 0) err = VTTT_EIO;
    if (!err) {
        print_grid(&g, &o);
        snprintf(png_path, sizeof png_path, "%s/mqar.png", o.out);
        err = write_png(&g, png_path) ? VTTT_EIO : VTTT_OK;
        if (!err) printf("wrote %s and %s\n", csv_path, png_path);
    }
    free(g.acc);
    if (err) fprintf(stderr, CMD ": failed (%s)\n", vttt_strerror(err));
    return err ? 1 : 0;
}
