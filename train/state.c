/*
 * trainer_state.json: the step, the data position and RNG, the shards the
 * run reads, and the run's settings. Written atomically; read back with
 * every field checked.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ingest.h"
#include "json_file.h"
#include "train_internal.h"

#define STATE_FORMAT "vttt trainer state"
#define STATE_VERSION 1
#define STATE_MAX_BYTES (16 << 20)
#define STATE_HINT "(a damaged checkpoint?)"

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
    return vttt_json_file_write(j, path, lg);
}

static int fail(const vttt_logger *lg, const char *path, const char *what) {
    vttt_log(lg, VTTT_LOG_ERROR, "%s: %s " STATE_HINT, path, what);
    return VTTT_EFORMAT;
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
        int64_t tokens, want = vttt_json_count(f, "tokens");
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
    if (vttt_json_count(j, "version") != STATE_VERSION) return fail(lg, path, "unsupported version");
    s->step = vttt_json_count(j, "step");
    s->tokens = vttt_json_count(j, "tokens");
    s->epoch = vttt_json_count(data, "epoch");
    s->cursor = vttt_json_count(data, "cursor");
    s->samples = vttt_json_count(data, "samples");
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
    cJSON *j = NULL;
    int err = vttt_json_file_read(&j, path, STATE_MAX_BYTES, "cannot open the trainer state", STATE_HINT, lg);
    if (!err) err = parse(s, j, d, path, lg);
    cJSON_Delete(j);
    return err;
}
