/*
 * Model directories: model.safetensors (reference names and layouts),
 * validated on loading, with config.json (model_config_json.c); saving
 * replaces each file atomically.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model_internal.h"
#include "safetensors.h"

static int is_float_dtype(vttt_st_dtype dt) {
    return dt == VTTT_ST_F32 || dt == VTTT_ST_F16 || dt == VTTT_ST_BF16 || dt == VTTT_ST_F64;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && off < n; d++)
        off += (size_t)snprintf(buf + off, n - off, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (off < n) snprintf(buf + off, n - off, "]");
}

/* Checks one file tensor against the model's tensor t (shape, dtype). */
static int check_tensor(const vttt_st_tensor *ft, const vttt_model_tensor *t, const char *path,
                        const vttt_logger *lg) {
    char want[96], got[96];
    if (!is_float_dtype(ft->dtype)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: tensor %s has dtype %s; expected a float type (F32, F16, BF16, F64)", path,
                 ft->name, vttt_st_dtype_name(ft->dtype));
        return VTTT_EFORMAT;
    }
    int same = ft->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = ft->shape[d] == t->shape[d];
    if (same) return VTTT_OK;
    shape_str(want, sizeof want, t->ndim, t->shape);
    shape_str(got, sizeof got, ft->ndim, ft->shape);
    vttt_log(lg, VTTT_LOG_ERROR, "%s: tensor %s has shape %s; this model's config needs %s", path, ft->name, got, want);
    return VTTT_EFORMAT;
}

int vttt_model_tensor_check_finite(const vttt_model_tensor *t, const char *path, const vttt_logger *lg) {
    for (int64_t i = 0; i < t->numel; i++) {
        if (!isfinite(t->data[i])) {
            vttt_log(lg, VTTT_LOG_ERROR, "%s: tensor %s holds a non-finite value at index %lld", path, t->name,
                     (long long)i);
            return VTTT_EFORMAT;
        }
    }
    return VTTT_OK;
}

/* A tied lm_head.weight in the file must equal the embedding. */
static int check_tied_head(const vttt_model *m, const vttt_st *st, const vttt_st_tensor *ft, const char *path,
                           const vttt_logger *lg) {
    const vttt_model_tensor *emb = &m->tensors[0];
    vttt_model_tensor head = *emb;
    snprintf(head.name, sizeof head.name, "lm_head.weight");
    int err = check_tensor(ft, &head, path, lg);
    if (err) return err;
    float *buf = malloc((size_t)emb->numel * sizeof(float));
    if (!buf) return VTTT_ENOMEM;
    err = vttt_st_read_f32(st, ft->name, buf, head.ndim, head.shape) ? VTTT_EFORMAT : VTTT_OK;
    if (!err && memcmp(buf, emb->data, (size_t)emb->numel * sizeof(float))) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: lm_head.weight differs from model.embed_tokens.weight but the config "
                 "ties them (tie_word_embeddings); set it to false to load a separate LM head", path);
        err = VTTT_EFORMAT;
    }
    free(buf);
    return err;
}

/* Fills every tensor of m from the file; a missing, extra, misshapen or
 * non-finite tensor is VTTT_EFORMAT. */
static int load_tensors(vttt_model *m, const vttt_st *st, const char *path, const vttt_logger *lg) {
    char *seen = calloc((size_t)m->n_tensors, 1);
    if (!seen) return VTTT_ENOMEM;
    int err = VTTT_OK, n = vttt_st_count(st), tied_head = -1;
    for (int j = 0; j < n && !err; j++) {
        vttt_st_tensor ft;
        vttt_st_get(st, j, &ft);
        int k = 0;
        while (k < m->n_tensors && strcmp(m->tensors[k].name, ft.name)) k++;
        if (k == m->n_tensors) {
            if (m->cfg.tie_word_embeddings && !strcmp(ft.name, "lm_head.weight")) {
                tied_head = j;
                continue;
            }
            vttt_log(lg, VTTT_LOG_ERROR, "%s: unexpected tensor %s (not a parameter of the model that config.json "
                     "describes)", path, ft.name);
            err = VTTT_EFORMAT;
            break;
        }
        const vttt_model_tensor *t = &m->tensors[k];
        seen[k] = 1;
        if (!(err = check_tensor(&ft, t, path, lg)) &&
            vttt_st_read_f32(st, ft.name, t->data, t->ndim, t->shape) != VTTT_OK)
            err = VTTT_EFORMAT;
        if (!err) err = vttt_model_tensor_check_finite(t, path, lg);
    }
    for (int k = 0; k < m->n_tensors && !err; k++) {
        if (seen[k]) continue;
        vttt_log(lg, VTTT_LOG_ERROR, "%s: missing tensor %s", path, m->tensors[k].name);
        err = VTTT_EFORMAT;
    }
    if (!err && tied_head >= 0) {
        vttt_st_tensor ft;
        vttt_st_get(st, tied_head, &ft);
        err = check_tied_head(m, st, &ft, path, lg);
    }
    free(seen);
    return err;
}

static void join(char *out, size_t n, const char *dir, const char *file) { snprintf(out, n, "%s/%s", dir, file); }

int vttt_model_load(vttt_model **out, const char *dir, const vttt_logger *lg) {
    if (!out || !dir) return VTTT_EINVAL;
    *out = NULL;
    char path[4096];
    vttt_model_config cfg;
    join(path, sizeof path, dir, "config.json");
    int err = vttt_model_config_read(&cfg, path, lg);
    if (err) return err;
    vttt_model *m = NULL;
    if ((err = vttt_model_init(&m, &cfg, lg))) return err;
    join(path, sizeof path, dir, "model.safetensors");
    vttt_st *st = NULL;
    if (!(err = vttt_st_open(&st, path, lg))) err = load_tensors(m, st, path, lg);
    vttt_st_close(&st);
    if (err) {
        vttt_model_free(&m);
        return err;
    }
    *out = m;
    return VTTT_OK;
}

int vttt_model_tensors_write(const char *path, const vttt_model_tensor *t, int n, const char **meta, int n_meta,
                             const vttt_logger *lg) {
    vttt_st_tensor *ts = calloc((size_t)(n > 0 ? n : 1), sizeof *ts);
    if (!ts) return VTTT_ENOMEM;
    for (int i = 0; i < n; i++) {
        ts[i].name = t[i].name;
        ts[i].dtype = VTTT_ST_F32;
        ts[i].ndim = t[i].ndim;
        for (int d = 0; d < t[i].ndim; d++) ts[i].shape[d] = t[i].shape[d];
        ts[i].data = t[i].data;
        ts[i].nbytes = (size_t)t[i].numel * sizeof(float);
    }
    int err = vttt_st_write(path, ts, n, meta, n_meta, lg);
    free(ts);
    return err;
}

int vttt_model_save(const vttt_model *m, const char *dir) {
    if (!m || !dir) return VTTT_EINVAL;
    const vttt_logger *lg = &m->log;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return model_io_fail(lg, dir, VTTT_EIO, "cannot create the directory: %s", strerror(errno));
    /* Hugging Face's loader wants format "pt" in the metadata */
    const char *meta[] = {"format", "pt"};
    char path[4096];
    join(path, sizeof path, dir, "model.safetensors");
    int err = vttt_model_tensors_write(path, m->tensors, m->n_tensors, meta, 1, lg);
    if (err) return err;
    join(path, sizeof path, dir, "config.json");
    return vttt_model_config_write(&m->cfg, path, lg);
}
