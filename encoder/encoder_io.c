/*
 * Tokenizer directories: config.json (encoder_config.c) and
 * model.safetensors with the tensors of encoder_model.c, validated on
 * loading (names, shapes, finiteness; nothing missing, nothing extra);
 * saving replaces each file atomically and creates the directory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "encoder_internal.h"
#include "safetensors.h"

/* Reads tensor t from the file, checking its shape and values. */
static int load_one(const vttt_st *st, const vttt_model_tensor *t, const char *path, const vttt_logger *lg) {
    vttt_st_tensor ft;
    if (vttt_st_find(st, t->name, &ft)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: missing tensor %s (a tokenizer of another layout?)", path, t->name);
        return VTTT_EFORMAT;
    }
    if (vttt_st_read_f32(st, t->name, t->data, t->ndim, t->shape)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: tensor %s has the wrong shape or dtype for config.json's settings", path,
                 t->name);
        return VTTT_EFORMAT;
    }
    return vttt_model_tensor_check_finite(t, path, lg);
}

static int load_tensors(vttt_encoder *e, const vttt_st *st, const char *path, const vttt_logger *lg) {
    if (vttt_st_count(st) != e->n_tensors) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: holds %d tensors; the tokenizer of config.json has %d", path,
                 vttt_st_count(st), e->n_tensors);
        return VTTT_EFORMAT;
    }
    int err = VTTT_OK;
    for (int i = 0; i < e->n_tensors && !err; i++) err = load_one(st, &e->tensors[i], path, lg);
    return err;
}

int vttt_encoder_load(vttt_encoder **out, const char *dir, const vttt_logger *lg) {
    if (!out || !dir) return VTTT_EINVAL;
    *out = NULL;
    char path[4096];
    vttt_encoder_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    int err = enc_config_read(&cfg, path, lg);
    if (err) return err;
    vttt_encoder *e = NULL;
    if ((err = vttt_encoder_init(&e, &cfg, 0, lg))) return err;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    vttt_st *st = NULL;
    err = vttt_st_open(&st, path, lg);
    if (err == VTTT_EIO) vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot read the tokenizer's weights", path);
    else if (err) err = VTTT_EFORMAT;
    if (!err) err = load_tensors(e, st, path, lg);
    vttt_st_close(&st);
    if (err) {
        vttt_encoder_free(&e);
        return err;
    }
    *out = e;
    return VTTT_OK;
}

int vttt_encoder_save(const vttt_encoder *e, const char *dir) {
    if (!e || !dir) return VTTT_EINVAL;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        vttt_log(&e->log, VTTT_LOG_ERROR, "%s: cannot create the directory: %s", dir, strerror(errno));
        return VTTT_EIO;
    }
    const char *meta[] = {"format", "pt", "model_type", "vttt_fsq_tokenizer"};
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int err = vttt_model_tensors_write(path, e->tensors, e->n_tensors, meta, 2, &e->log);
    if (err) return err;
    snprintf(path, sizeof path, "%s/config.json", dir);
    return enc_config_write(&e->cfg, path, &e->log);
}
