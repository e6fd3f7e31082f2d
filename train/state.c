/*
 * trainer_state.json: the step, the data position and RNG, the shards the
 * run reads, and the run's settings. Written atomically; read back with
 * every field checked.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ingest.h"
#include "train_internal.h"

#define STATE_FORMAT "vttt trainer state"
#define STATE_VERSION 1
#define STATE_MAX_BYTES (16 << 20)

static cJSON *data_json(const train_state *s, const train_data *d) {
    cJSON *j = cJSON_CreateObject(), *files = cJSON_AddArrayToObject(j, "files");
    cJSON_AddNumberToObject(j, "epoch", (double)s->epoch);
    cJSON_AddNumberToObject(j, "cursor", (double)s->cursor);
    cJSON_AddNumberToObject(j, "samples", (double)s->samples);
    for (int i = 0; i < train_data_files(d); i++) {
        int64_t n;
        const char *path = train_data_file(d, i, &n);
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "path", path);
        cJSON_AddNumberToObject(f, "tokens", (double)n);
        cJSON_AddItemToArray(files, f);
    }
    return j;
}

int train_state_write(const train_state *s, const train_data *d, const char *path, const vttt_logger *lg) {
    cJSON *j = cJSON_CreateObject(), *rng = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", STATE_FORMAT);
    cJSON_AddNumberToObject(j, "version", STATE_VERSION);
    cJSON_AddNumberToObject(j, "step", (double)s->step);
    cJSON_AddNumberToObject(j, "tokens", (double)s->tokens);
    cJSON_AddItemToObject(j, "data", data_json(s, d));
    /* the sampler's permutation of an epoch is drawn from (seed, epoch) */
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)s->seed);
    cJSON_AddStringToObject(rng, "seed", seed);
    cJSON_AddStringToObject(rng, "generator", "splitmix64 (seed, epoch) Fisher-Yates");
    cJSON_AddItemToObject(j, "rng", rng);
    cJSON_AddItemToObject(j, "config", train_params_to_json(&s->params));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return VTTT_ENOMEM;
    size_t n = strlen(text);
    text[n] = '\n'; /* the NUL becomes the final newline */
    int err = vttt_file_write_atomic(path, text, n + 1, lg);
    free(text);
    return err;
}

static int fail(const vttt_logger *lg, const char *path, const char *what) {
    vttt_log(lg, VTTT_LOG_ERROR, "%s: %s (a damaged checkpoint?)", path, what);
    return VTTT_EFORMAT;
}

/* A non-negative integer member of j; -1 when missing or malformed. */
static int64_t get_count(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.0) || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return -1;
    return (int64_t)v->valuedouble;
}

/* The file's shard list against the shards opened now. */
static int check_files(const cJSON *files, const train_data *d, const char *path, const vttt_logger *lg) {
    if (!cJSON_IsArray(files)) return fail(lg, path, "data.files is not a list");
    int n = cJSON_GetArraySize(files);
    if (n != train_data_files(d)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: the run read %d shard(s), --data now finds %d; resuming needs the same "
                 "data", path, n, train_data_files(d));
        return VTTT_EINVAL;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *f = cJSON_GetArrayItem(files, i), *p = cJSON_GetObjectItemCaseSensitive(f, "path");
        int64_t tokens, want = get_count(f, "tokens");
        const char *now = train_data_file(d, i, &tokens);
        if (!cJSON_IsString(p) || want < 0) return fail(lg, path, "data.files has a malformed entry");
        if (strcmp(p->valuestring, now) || want != tokens) {
            vttt_log(lg, VTTT_LOG_ERROR, "%s: shard %d was %s (%lld tokens), now %s (%lld tokens); resuming needs "
                     "the same data", path, i, p->valuestring, (long long)want, now, (long long)tokens);
            return VTTT_EINVAL;
        }
    }
    return VTTT_OK;
}

static int parse(train_state *s, const cJSON *j, const train_data *d, const char *path, const vttt_logger *lg) {
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data"), *rng = cJSON_GetObjectItemCaseSensitive(j, "rng");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, STATE_FORMAT)) return fail(lg, path, "not a trainer state");
    if (get_count(j, "version") != STATE_VERSION) return fail(lg, path, "unsupported version");
    s->step = get_count(j, "step");
    s->tokens = get_count(j, "tokens");
    s->epoch = get_count(data, "epoch");
    s->cursor = get_count(data, "cursor");
    s->samples = get_count(data, "samples");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(rng, "seed");
    if (s->step < 0 || s->tokens < 0 || s->epoch < 0 || s->cursor < 0 || s->samples < 1 || s->cursor > s->samples ||
        !cJSON_IsString(seed) || train_parse_u64(seed->valuestring, &s->seed))
        return fail(lg, path, "step, tokens, data position or seed missing or out of range");
    int err = train_params_from_json(&s->params, cJSON_GetObjectItemCaseSensitive(j, "config"), path, lg);
    if (!err && d) err = check_files(cJSON_GetObjectItemCaseSensitive(data, "files"), d, path, lg);
    if (!err && d && s->samples != train_data_samples(d))
        return fail(lg, path, "the number of samples per epoch differs from the data's");
    return err;
}

int train_state_read(train_state *s, const train_data *d, const char *path, const vttt_logger *lg) {
    memset(s, 0, sizeof *s);
    s->params = vttt_train_default_params();
    FILE *f = fopen(path, "rb");
    if (!f) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot open the trainer state", path);
        return VTTT_EIO;
    }
    char *buf = malloc(STATE_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, STATE_MAX_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf) return VTTT_ENOMEM;
    if (n > STATE_MAX_BYTES) {
        free(buf);
        return fail(lg, path, "larger than 16 MiB");
    }
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    int err = j ? parse(s, j, d, path, lg) : fail(lg, path, "not valid JSON");
    cJSON_Delete(j);
    return err;
}
