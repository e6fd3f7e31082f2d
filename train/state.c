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
#define STATE_MAX_BYTES (16 << 20)

int train_state_write(const train_state *s, const train_data *d, const char *path, const vttt_logger *lg) {
    train_state_head h = {.format = STATE_FORMAT, .count_key = "tokens", .step = s->step, .count = s->tokens,
                          .epoch = s->epoch, .cursor = s->cursor, .samples = s->samples, .seed = s->seed};
    cJSON *files, *j = train_state_json(&h, train_params_to_json(&s->params), &files);
    for (int i = 0; i < train_data_files(d); i++) {
        int64_t n;
        const char *shard = train_data_file(d, i, &n);
        train_state_add_file(files, "tokens", shard, n);
    }
    return vttt_json_file_write(j, path, lg);
}

/* The file's shard list against the shards opened now. */
static int check_files(const cJSON *files, const train_data *d, const char *path, const vttt_logger *lg) {
    if (!cJSON_IsArray(files)) return train_state_fail(lg, path, "data.files is not a list");
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
        if (!cJSON_IsString(p) || want < 0) return train_state_fail(lg, path, "data.files has a malformed entry");
        if (strcmp(p->valuestring, now) || want != tokens) {
            vttt_log(lg, VTTT_LOG_ERROR, "%s: shard %d was %s (%lld tokens), now %s (%lld tokens); resuming needs "
                     "the same data", path, i, p->valuestring, (long long)want, now, (long long)tokens);
            return VTTT_EINVAL;
        }
    }
    return VTTT_OK;
}

static int parse(train_state *s, const cJSON *j, const train_data *d, const char *path, const vttt_logger *lg) {
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    train_state_head h = {.format = STATE_FORMAT, .count_key = "tokens"};
    int err = train_state_head_parse(&h, j, "not a trainer state", path, lg);
    if (err) return err;
    s->step = h.step, s->tokens = h.count, s->epoch = h.epoch, s->cursor = h.cursor, s->samples = h.samples;
    s->seed = h.seed;
    err = train_params_from_json(&s->params, cJSON_GetObjectItemCaseSensitive(j, "config"), path, lg);
    /* with documents a step trains on as many tokens as its documents hold */
    int64_t per_step = s->params.docs ? 0 : (int64_t)s->params.batch * s->params.seq;
    if (!err) err = train_state_head_bounds(&h, s->params.steps, per_step, path, lg);
    if (!err && d) err = check_files(cJSON_GetObjectItemCaseSensitive(data, "files"), d, path, lg);
    if (!err && d && s->samples != train_data_samples(d))
        return train_state_fail(lg, path, "the number of samples per epoch differs from the data's");
    return err;
}

int train_state_read(train_state *s, const train_data *d, const char *path, const vttt_logger *lg) {
    memset(s, 0, sizeof *s);
    s->params = vttt_train_default_params();
    cJSON *j = NULL;
    int err = vttt_json_file_read(&j, path, STATE_MAX_BYTES, "cannot open the trainer state", TRAIN_STATE_HINT, lg);
    if (!err) err = parse(s, j, d, path, lg);
    cJSON_Delete(j);
    return err;
}
