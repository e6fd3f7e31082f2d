/*
 * trainer_state.json of a frame tokenizer run: the step, the data
 * position, the seed, the shards (paths and frame counts) and the run's
 * settings. Written atomically; read back with every field checked.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "encoder_train_internal.h"
#include "json_file.h"

#define STATE_FORMAT "vttt encoder trainer state"
#define STATE_MAX_BYTES (1 << 20)

typedef enum { F_INT, F_I64, F_F32 } field_type;

/* The settings saved with a run (the tokenizer's own are its config.json;
 * the seed is a string in "rng"). */
static const struct {
    const char *key;
    field_type type;
    size_t off;
} fields[] = {
#define F(k, t) {#k, t, offsetof(vttt_encoder_train_params, k)}
    F(val_frames, F_INT), F(steps, F_I64),       F(batch, F_INT),     F(lr, F_F32),
    F(min_lr, F_F32),     F(warmup, F_I64),      F(weight_decay, F_F32), F(beta1, F_F32),
    F(beta2, F_F32),      F(eps, F_F32),         F(grad_clip, F_F32), F(eval_every, F_I64),
    F(eval_frames, F_INT), F(ckpt_every, F_I64), F(keep, F_INT), F(rate_weight, F_F32),
#undef F
};
#define N_FIELDS (sizeof fields / sizeof *fields)

static cJSON *params_json(const vttt_encoder_train_params *p) {
    cJSON *j = cJSON_CreateObject();
    for (size_t i = 0; i < N_FIELDS; i++) {
        const char *at = (const char *)p + fields[i].off;
        double v = fields[i].type == F_INT ? *(const int *)at
                   : fields[i].type == F_I64 ? (double)*(const int64_t *)at
                                             : (double)*(const float *)at;
        cJSON_AddNumberToObject(j, fields[i].key, v);
    }
    return j;
}

int enc_state_write(const enc_state *s, const enc_data *d, const char *path, const vttt_logger *lg) {
    train_state_head h = {.format = STATE_FORMAT, .count_key = "frames", .step = s->step, .count = s->frames,
                          .epoch = s->epoch, .cursor = s->cursor, .samples = s->samples, .seed = s->params.seed};
    cJSON *files, *j = train_state_json(&h, params_json(&s->params), &files);
    for (int i = 0; i < d->n; i++) train_state_add_file(files, "frames", d->paths[i], d->frames[i]);
    return vttt_json_file_write(j, path, lg);
}

static int parse_params(vttt_encoder_train_params *p, const cJSON *j, const char *path, const vttt_logger *lg) {
    if (!cJSON_IsObject(j)) return train_state_fail(lg, path, "\"config\" is not an object");
    for (const cJSON *v = j->child; v; v = v->next) {
        size_t i = 0;
        while (i < N_FIELDS && strcmp(fields[i].key, v->string)) i++;
        if (i == N_FIELDS || !cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
            vttt_log(lg, VTTT_LOG_ERROR, "%s: config.%s is unknown or not a number", path, v->string);
            return VTTT_EFORMAT;
        }
        char *at = (char *)p + fields[i].off;
        if (fields[i].type == F_INT) *(int *)at = (int)v->valuedouble;
        else if (fields[i].type == F_I64) *(int64_t *)at = (int64_t)v->valuedouble;
        else *(float *)at = (float)v->valuedouble;
    }
    return VTTT_OK;
}

static int parse_files(enc_state *s, const cJSON *files, const char *path, const vttt_logger *lg) {
    int n = cJSON_GetArraySize(files);
    if (!cJSON_IsArray(files) || n < 1 || n > VTTT_ENCODER_TRAIN_MAX_SHARDS)
        return train_state_fail(lg, path, "data.files is not a list of shards");
    s->files = calloc((size_t)n, sizeof *s->files);
    s->file_frames = calloc((size_t)n, sizeof *s->file_frames);
    if (!s->files || !s->file_frames) return VTTT_ENOMEM;
    s->n_files = n;
    for (int i = 0; i < n; i++) {
        const cJSON *f = cJSON_GetArrayItem(files, i), *p = cJSON_GetObjectItemCaseSensitive(f, "path");
        if (!cJSON_IsString(p) || (s->file_frames[i] = vttt_json_count(f, "frames")) < 1)
            return train_state_fail(lg, path, "data.files has a malformed entry");
        if (!(s->files[i] = strdup(p->valuestring))) return VTTT_ENOMEM;
    }
    return VTTT_OK;
}

static int parse(enc_state *s, const cJSON *j, const char *path, const vttt_logger *lg) {
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    train_state_head h = {.format = STATE_FORMAT, .count_key = "frames"};
    int err = train_state_head_parse(&h, j, "not the trainer state of a tokenizer run", path, lg);
    if (err) return err;
    s->step = h.step, s->frames = h.count, s->epoch = h.epoch, s->cursor = h.cursor, s->samples = h.samples;
    s->params.seed = h.seed;
    err = parse_params(&s->params, cJSON_GetObjectItemCaseSensitive(j, "config"), path, lg);
    if (!err) err = train_state_head_bounds(&h, s->params.steps, s->params.batch, path, lg);
    return err ? err : parse_files(s, cJSON_GetObjectItemCaseSensitive(data, "files"), path, lg);
}

void enc_state_free(enc_state *s) {
    for (int i = 0; s->files && i < s->n_files; i++) free(s->files[i]);
    free(s->files), free(s->file_frames);
    s->files = NULL, s->file_frames = NULL, s->n_files = 0;
}

int enc_state_read(enc_state *s, const char *path, const vttt_logger *lg) {
    memset(s, 0, sizeof *s);
    s->params = vttt_encoder_train_default_params();
    cJSON *j = NULL;
    int err = vttt_json_file_read(&j, path, STATE_MAX_BYTES, "cannot open the trainer state", TRAIN_STATE_HINT, lg);
    if (!err) err = parse(s, j, path, lg);
    cJSON_Delete(j);
    if (err) enc_state_free(s);
    return err;
}
