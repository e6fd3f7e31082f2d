/*
 * The part of trainer_state.json both trainers share (state.c for the LM,
 * encoder_state.c for the frame tokenizer): format and version, the step
 * and the count of what was trained on, the data position, the seed, and
 * the messages of a damaged file.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "json_file.h"
#include "train_internal.h"

#define STATE_VERSION 1

int train_state_fail(const vttt_logger *lg, const char *path, const char *what) {
    vttt_log(lg, VTTT_LOG_ERROR, "%s: %s " TRAIN_STATE_HINT, path, what);
    return VTTT_EFORMAT;
}

cJSON *train_state_json(const train_state_head *h, cJSON *config, cJSON **files) {
    cJSON *j = cJSON_CreateObject(), *rng = cJSON_CreateObject(), *data = cJSON_CreateObject();
    *files = cJSON_AddArrayToObject(data, "files");
    cJSON_AddNumberToObject(data, "epoch", (double)h->epoch);
    cJSON_AddNumberToObject(data, "cursor", (double)h->cursor);
    cJSON_AddNumberToObject(data, "samples", (double)h->samples);
    cJSON_AddStringToObject(j, "format", h->format);
    cJSON_AddNumberToObject(j, "version", STATE_VERSION);
    cJSON_AddNumberToObject(j, "step", (double)h->step);
    cJSON_AddNumberToObject(j, h->count_key, (double)h->count);
    cJSON_AddItemToObject(j, "data", data);
    /* the sampler's permutation of an epoch is drawn from (seed, epoch) */
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)h->seed);
    cJSON_AddStringToObject(rng, "seed", seed);
    cJSON_AddStringToObject(rng, "generator", "splitmix64 (seed, epoch) Fisher-Yates");
    cJSON_AddItemToObject(j, "rng", rng);
    cJSON_AddItemToObject(j, "config", config);
    return j;
}

void train_state_add_file(cJSON *files, const char *count_key, const char *path, int64_t count) {
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "path", path);
    cJSON_AddNumberToObject(f, count_key, (double)count);
    cJSON_AddItemToArray(files, f);
}

int train_state_head_bounds(const train_state_head *h, int64_t steps, int64_t per_step, const char *path,
                            const vttt_logger *lg) {
    char what[160];
    if (h->step > steps) {
        snprintf(what, sizeof what, "step %lld is past the run's %lld steps", (long long)h->step, (long long)steps);
        return train_state_fail(lg, path, what);
    }
    if (per_step > 0 && (h->count % per_step != 0 || h->count / per_step != h->step)) {
        snprintf(what, sizeof what, "%s %lld is not %lld steps of %lld", h->count_key, (long long)h->count,
                 (long long)h->step, (long long)per_step);
        return train_state_fail(lg, path, what);
    }
    return VTTT_OK;
}

int train_state_head_parse(train_state_head *h, const cJSON *j, const char *not_this, const char *path,
                           const vttt_logger *lg) {
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data"), *rng = cJSON_GetObjectItemCaseSensitive(j, "rng");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, h->format)) return train_state_fail(lg, path, not_this);
    if (vttt_json_count(j, "version") != STATE_VERSION) return train_state_fail(lg, path, "unsupported version");
    h->step = vttt_json_count(j, "step"), h->count = vttt_json_count(j, h->count_key);
    h->epoch = vttt_json_count(data, "epoch"), h->cursor = vttt_json_count(data, "cursor");
    h->samples = vttt_json_count(data, "samples");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(rng, "seed");
    if (h->step < 0 || h->count < 0 || h->epoch < 0 || h->cursor < 0 || h->samples < 1 || h->cursor > h->samples ||
        !cJSON_IsString(seed) || train_parse_u64(seed->valuestring, &h->seed)) {
        char what[96];
        snprintf(what, sizeof what, "step, %s, data position or seed missing or out of range", h->count_key);
        return train_state_fail(lg, path, what);
    }
    return VTTT_OK;
}
