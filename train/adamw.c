/*
 * AdamW (decoupled weight decay, Loshchilov & Hutter) over a list of named
 * parameter tensors (the language model's or the frame tokenizer's), and
 * its state file optimizer.safetensors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "par.h"
#include "train_internal.h"

struct train_adamw {
    vttt_logger log;
    float beta1, beta2, eps, wd;
    int64_t t;                /* updates done */
    int n;                    /* tensors */
    const vttt_model_tensor *ts;
    size_t *off;              /* (n) offset of tensor i in m and v */
    char *decay;              /* (n) */
    size_t total;
    float *m, *v;             /* (total) */
};

void train_adamw_update_flat(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                             float beta2, float eps, float wd, int64_t t) {
    float bc1 = (float)(1.0 - pow(beta1, (double)t)), bc2 = (float)(1.0 - pow(beta2, (double)t));
    float a1 = 1.0f - beta1, a2 = 1.0f - beta2;
#pragma omp parallel for if (VTTT_PAR((double)n * VTTT_COST_EXP)) /* a sqrt and a division each */
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = beta1 * m[i] + a1 * gi;
        float vi = beta2 * v[i] + a2 * gi * gi;
        m[i] = mi, v[i] = vi;
        float mhat = mi / bc1, vhat = vi / bc2;
        p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);
    }
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int train_decays(const char *name, int ndim, const int64_t *shape) {
    int big = 0;
    for (int d = 0; d < ndim; d++) big += shape[d] > 1;
    if (big < 2) return 0;
    return !(ends_with(name, "bias") || ends_with(name, ".b1") || ends_with(name, ".b2"));
}

int train_adamw_init_tensors(train_adamw **out, const vttt_model_tensor *ts, int n, float beta1, float beta2,
                             float eps, float wd, const vttt_logger *lg) {
    *out = NULL;
    train_adamw *o = calloc(1, sizeof *o);
    if (!o) return VTTT_ENOMEM;
    if (lg) o->log = *lg;
    o->beta1 = beta1, o->beta2 = beta2, o->eps = eps, o->wd = wd;
    o->ts = ts, o->n = n;
    o->off = calloc((size_t)o->n + 1, sizeof *o->off);
    o->decay = calloc((size_t)o->n + 1, 1);
    for (int i = 0; o->off && o->decay && i < o->n; i++) {
        o->off[i] = o->total;
        o->total += (size_t)o->ts[i].numel;
        o->decay[i] = (char)train_decays(o->ts[i].name, o->ts[i].ndim, o->ts[i].shape);
    }
    if (o->off && o->decay) {
        o->m = calloc(o->total ? o->total : 1, sizeof(float));
        o->v = calloc(o->total ? o->total : 1, sizeof(float));
    }
    if (!o->m || !o->v) {
        vttt_log(lg, VTTT_LOG_ERROR, "AdamW: out of memory for the moments of %zu parameters", o->total);
        train_adamw_free(&o);
        return VTTT_ENOMEM;
    }
    *out = o;
    return VTTT_OK;
}

int train_adamw_init(train_adamw **out, vttt_model *model, float beta1, float beta2, float eps, float wd,
                     const vttt_logger *lg) {
    int n = 0;
    const vttt_model_tensor *ts = vttt_model_tensors(model, &n);
    return train_adamw_init_tensors(out, ts, n, beta1, beta2, eps, wd, lg);
}

void train_adamw_free(train_adamw **op) {
    if (!op || !*op) return;
    train_adamw *o = *op;
    free(o->off), free(o->decay), free(o->m), free(o->v);
    free(o);
    *op = NULL;
}

int64_t train_adamw_steps(const train_adamw *o) { return o->t; }

void train_adamw_step(train_adamw *o, float lr) {
    o->t++;
    for (int i = 0; i < o->n; i++) {
        const vttt_model_tensor *t = &o->ts[i];
        train_adamw_update_flat(t->data, t->grad, o->m + o->off[i], o->v + o->off[i], (size_t)t->numel, lr,
                                o->beta1, o->beta2, o->eps, o->decay[i] ? o->wd : 0.0f, o->t);
    }
}

/* Fills a safetensors entry for moment `which` of tensor i. */
static void entry(const train_adamw *o, int i, int which, char *name, size_t n, vttt_st_tensor *e) {
    const vttt_model_tensor *t = &o->ts[i];
    snprintf(name, n, "%s.%s", which ? "exp_avg_sq" : "exp_avg", t->name);
    memset(e, 0, sizeof *e);
    e->name = name;
    e->dtype = VTTT_ST_F32;
    e->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) e->shape[d] = t->shape[d];
    e->data = (which ? o->v : o->m) + o->off[i];
    e->nbytes = (size_t)t->numel * sizeof(float);
}

int train_adamw_save(const train_adamw *o, const char *path) {
    int n = 2 * o->n;
    vttt_st_tensor *es = calloc((size_t)n + 1, sizeof *es);
    char(*names)[128] = calloc((size_t)n + 1, sizeof *names);
    if (!es || !names) {
        free(es), free(names);
        return VTTT_ENOMEM;
    }
    for (int i = 0; i < o->n; i++)
        for (int w = 0; w < 2; w++) entry(o, i, w, names[2 * i + w], sizeof names[0], &es[2 * i + w]);
    char step[32], b1[32], b2[32], eps[32], wd[32];
    snprintf(step, sizeof step, "%lld", (long long)o->t);
    snprintf(b1, sizeof b1, "%.9g", (double)o->beta1);
    snprintf(b2, sizeof b2, "%.9g", (double)o->beta2);
    snprintf(eps, sizeof eps, "%.9g", (double)o->eps);
    snprintf(wd, sizeof wd, "%.9g", (double)o->wd);
    const char *meta[] = {"format", "vttt-adamw", "step", step, "beta1", b1, "beta2", b2, "eps", eps,
                          "weight_decay", wd};
    int err = vttt_st_write(path, es, n, meta, 6, &o->log);
    free(es), free(names);
    return err;
}

static int load_fail(const train_adamw *o, const char *path, const char *what, const char *name) {
    vttt_log(&o->log, VTTT_LOG_ERROR, "%s: %s%s%s (a damaged checkpoint, or one of another model)", path, what,
             name ? " " : "", name ? name : "");
    return VTTT_EFORMAT;
}

/* Checks the file's metadata: its format and the step it belongs to. */
static int check_meta(const train_adamw *o, const vttt_st *st, const char *path, int64_t step) {
    const char *fmt = vttt_st_meta(st, "format"), *s = vttt_st_meta(st, "step");
    if (!fmt || strcmp(fmt, "vttt-adamw")) return load_fail(o, path, "not a vttt AdamW state (metadata format)", NULL);
    char *end = NULL;
    long long t = s ? strtoll(s, &end, 10) : -1;
    if (!s || *end || t != step) {
        char msg[160];
        snprintf(msg, sizeof msg, "holds the state of step %s, but trainer_state.json says step %lld",
                 s ? s : "(none)", (long long)step);
        return load_fail(o, path, msg, NULL);
    }
    return VTTT_OK;
}

int train_adamw_load(train_adamw *o, const char *path, int64_t step) {
    vttt_st *st = NULL;
    int err = vttt_st_open(&st, path, &o->log);
    if (err) return err == VTTT_EIO ? VTTT_EIO : VTTT_EFORMAT;
    if ((err = check_meta(o, st, path, step))) goto done;
    if (vttt_st_count(st) != 2 * o->n) {
        err = load_fail(o, path, "holds a different number of tensors than the model has parameters", NULL);
        goto done;
    }
    for (int i = 0; i < o->n && !err; i++) {
        for (int w = 0; w < 2 && !err; w++) {
            char name[128];
            vttt_st_tensor e;
            entry(o, i, w, name, sizeof name, &e);
            float *dst = (w ? o->v : o->m) + o->off[i];
            if (vttt_st_read_f32(st, name, dst, e.ndim, e.shape)) {
                err = load_fail(o, path, "missing or misshapen tensor", name);
                break;
            }
            for (size_t k = 0; k < e.nbytes / sizeof(float); k++) {
                if (!isfinite(dst[k]) || (w && dst[k] < 0.0f)) {
                    err = load_fail(o, path, w ? "negative or non-finite value in" : "non-finite value in", name);
                    break;
                }
            }
        }
    }
    if (!err) o->t = step;
done:
    vttt_st_close(&st);
    return err;
}
