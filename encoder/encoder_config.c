/*
 * The tokenizer's settings: defaults, checks, the "8,5,5,5" levels syntax,
 * and config.json (read strictly: unknown keys and wrong types are
 * rejected naming the file; written atomically).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "encoder_internal.h"
#include "json_file.h"

#define ENC_MODEL_TYPE "vttt_fsq_tokenizer"
#define ENC_CONFIG_MAX_BYTES (1 << 16)
#define ENC_CONFIG_HINT "(not a vttt tokenizer config.json?)"

vttt_encoder_config vttt_encoder_default_config(void) {
    vttt_encoder_config c;
    memset(&c, 0, sizeof c);
    c.kind = VTTT_ENCODER_FRAME;
    c.factor = 8;
    c.image_size = 64;
    c.channels = 32;
    c.num_groups = 8;
    c.num_levels = 4;
    c.levels[0] = 8, c.levels[1] = 5, c.levels[2] = 5, c.levels[3] = 5;
    return c;
}

vttt_encoder_config vttt_encoder_delta_default_config(void) {
    vttt_encoder_config c = vttt_encoder_default_config();
    c.kind = VTTT_ENCODER_DELTA;
    c.factor = 4;
    c.channels = 64;
    c.levels[0] = 7;
    return c;
}

static int bad(const vttt_logger *lg, const char *what) {
    vttt_log(lg, VTTT_LOG_ERROR, "tokenizer config: %s", what);
    return VTTT_EINVAL;
}

int vttt_encoder_config_check(const vttt_encoder_config *c, const vttt_logger *lg) {
    if (c->image_size < 8 || c->image_size > 1024 || c->image_size % 8)
        return bad(lg, "image_size must be a multiple of 8 in [8, 1024]");
    if (c->kind != VTTT_ENCODER_FRAME && c->kind != VTTT_ENCODER_DELTA) return bad(lg, "kind must be frame or delta");
    if (c->kind == VTTT_ENCODER_FRAME && c->factor != 8) return bad(lg, "a frame tokenizer's factor is 8");
    if (c->kind == VTTT_ENCODER_DELTA && c->factor != 4 && c->factor != 8)
        return bad(lg, "a delta tokenizer's factor must be 4 or 8");
    if (c->channels < 1 || c->channels > 512) return bad(lg, "channels must be in [1, 512]");
    if (c->num_groups < 1 || c->channels % c->num_groups)
        return bad(lg, "num_groups must be >= 1 and divide channels");
    if (c->num_levels < 1 || c->num_levels > VTTT_FSQ_MAX_LEVELS)
        return bad(lg, "num_levels (the number of FSQ levels) must be in [1, 8]");
    int64_t v = 1;
    for (int i = 0; i < c->num_levels; i++) {
        if (c->levels[i] < 2 || c->levels[i] > 256) return bad(lg, "each FSQ level must be in [2, 256]");
        if (c->kind == VTTT_ENCODER_DELTA && c->levels[i] % 2 == 0)
            return bad(lg, "a delta tokenizer needs odd FSQ levels (each channel needs an exact zero: 'no change')");
        v *= c->levels[i];
        if (v > 65536) return bad(lg, "the product of the FSQ levels (the vocabulary) must be <= 65536 (uint16 tokens)");
    }
    if (c->motion < 0 || c->motion > c->image_size / 8)
        return bad(lg, "motion (the largest motion in pixels) must be in [0, image_size / 8]");
    if (c->motion && c->kind != VTTT_ENCODER_DELTA) return bad(lg, "motion needs a delta tokenizer");
    if (v + 2 * (4 * c->motion + 1) > 65536)
        return bad(lg, "the vocabulary with the motion tokens must be <= 65536");
    return VTTT_OK;
}

int vttt_encoder_levels_parse(vttt_encoder_config *cfg, const char *s, const vttt_logger *lg) {
    int n = 0, lv[VTTT_FSQ_MAX_LEVELS];
    const char *p = s;
    while (p && *p) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 2 || v > 256 || n == VTTT_FSQ_MAX_LEVELS || (*end && *end != ',')) {
            vttt_log(lg, VTTT_LOG_ERROR, "--levels '%s': want 1 to 8 comma-separated integers in [2, 256], "
                     "e.g. 8,5,5,5", s);
            return VTTT_EINVAL;
        }
        lv[n++] = (int)v;
        p = *end ? end + 1 : end;
        if (*end && !*p) n = VTTT_FSQ_MAX_LEVELS + 1; /* trailing comma */
    }
    if (n < 1 || n > VTTT_FSQ_MAX_LEVELS) {
        vttt_log(lg, VTTT_LOG_ERROR, "--levels '%s': want 1 to 8 comma-separated integers, e.g. 8,5,5,5", s ? s : "");
        return VTTT_EINVAL;
    }
    vttt_encoder_config c = *cfg;
    c.num_levels = n;
    memset(c.levels, 0, sizeof c.levels);
    memcpy(c.levels, lv, (size_t)n * sizeof *lv);
    int err = vttt_encoder_config_check(&c, lg);
    if (!err) *cfg = c;
    return err;
}

static int fail(const vttt_logger *lg, const char *path, const char *what, const char *key) {
    vttt_log(lg, VTTT_LOG_ERROR, "%s: %s%s%s " ENC_CONFIG_HINT, path, what, key ? " " : "",
             key ? key : "");
    return VTTT_EFORMAT;
}

/* A whole-number JSON value in [lo, hi], else -1 (callers check). */
static int get_int(const cJSON *v, int lo, int hi, int *out) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < lo || v->valuedouble > hi)
        return -1;
    *out = (int)v->valuedouble;
    return 0;
}

static int parse_levels(vttt_encoder_config *c, const cJSON *v, const char *path, const vttt_logger *lg) {
    int n = cJSON_GetArraySize(v);
    if (!cJSON_IsArray(v) || n < 1 || n > VTTT_FSQ_MAX_LEVELS)
        return fail(lg, path, "\"levels\" must be a list of 1 to 8 integers", NULL);
    for (int i = 0; i < n; i++)
        if (get_int(cJSON_GetArrayItem(v, i), 2, 256, &c->levels[i]))
            return fail(lg, path, "\"levels\" holds a value that is not an integer in [2, 256]", NULL);
    c->num_levels = n;
    return VTTT_OK;
}

/* One key of the file into c; seen[] marks the keys read, so that a key
 * given twice is refused (a second "levels" would otherwise overwrite the
 * first in part, leaving its extra levels behind). */
static int parse_key(vttt_encoder_config *c, const cJSON *v, int *seen, int *num_levels, const char *path,
                     const vttt_logger *lg) {
    static const char *ints[] = {"image_size", "channels", "num_groups", "num_levels"};
    int *fields[] = {&c->image_size, &c->channels, &c->num_groups, num_levels};
    int *seen_int[] = {&seen[0], &seen[1], &seen[2], &seen[8]};
    const char *k = v->string;
    if (!strcmp(k, "model_type")) {
        if (seen[5]++) return fail(lg, path, "key given twice:", k);
        if (!cJSON_IsString(v) || strcmp(v->valuestring, ENC_MODEL_TYPE))
            return fail(lg, path, "\"model_type\" must be \"" ENC_MODEL_TYPE "\"", NULL);
        return VTTT_OK;
    }
    if (!strcmp(k, "levels")) {
        if (seen[4]++) return fail(lg, path, "key given twice:", k);
        return parse_levels(c, v, path, lg);
    }
    if (!strcmp(k, "kind")) {
        if (seen[6]++) return fail(lg, path, "key given twice:", k);
        if (!cJSON_IsString(v) || (strcmp(v->valuestring, "frame") && strcmp(v->valuestring, "delta")))
            return fail(lg, path, "\"kind\" must be \"frame\" or \"delta\"", NULL);
        c->kind = strcmp(v->valuestring, "delta") ? VTTT_ENCODER_FRAME : VTTT_ENCODER_DELTA;
        return VTTT_OK;
    }
    if (!strcmp(k, "motion")) {
        if (seen[3]++) return fail(lg, path, "key given twice:", k);
        return get_int(v, 0, 64, &c->motion) ? fail(lg, path, "not an integer in [0, 64]:", k) : VTTT_OK;
    }
    if (!strcmp(k, "factor")) {
        if (seen[7]++) return fail(lg, path, "key given twice:", k);
        return get_int(v, 1, 64, &c->factor) ? fail(lg, path, "not an integer in [1, 64]:", k) : VTTT_OK;
    }
    for (int i = 0; i < 4; i++) {
        if (strcmp(k, ints[i])) continue;
        if ((*seen_int[i])++) return fail(lg, path, "key given twice:", k);
        return get_int(v, 0, 1 << 20, fields[i]) ? fail(lg, path, "not a non-negative integer:", k) : VTTT_OK;
    }
    return fail(lg, path, "unknown key", k);
}

static int parse_config(vttt_encoder_config *c, const cJSON *root, const char *path, const vttt_logger *lg) {
    if (!cJSON_IsObject(root)) return fail(lg, path, "the top level must be a JSON object", NULL);
    /* seen: [0-2] ints, [4] levels, [5] model_type: required; [3] motion, [6] kind, [7] factor, [8]
     * num_levels: optional */
    int seen[9] = {0}, err = VTTT_OK, num_levels = -1;
    memset(c, 0, sizeof *c);
    c->factor = -1; /* "kind" (frame) and "factor" (8 for frame, 4 for delta) may be left out */
    for (const cJSON *v = root->child; v && !err; v = v->next) err = parse_key(c, v, seen, &num_levels, path, lg);
    if (err) return err;
    for (int i = 0; i < 6; i++)
        if (!seen[i] && i != 3) return fail(lg, path, "a required key is missing (image_size, channels, num_groups, "
                                            "levels, model_type)", NULL);
    if (c->factor < 0) c->factor = c->kind == VTTT_ENCODER_DELTA ? 4 : 8;
    if (num_levels >= 0 && num_levels != c->num_levels)
        return fail(lg, path, "\"num_levels\" disagrees with the length of \"levels\"", NULL);
    if (vttt_encoder_config_check(c, lg)) return fail(lg, path, "the settings are out of range (see above)", NULL);
    return VTTT_OK;
}

int enc_config_parse(vttt_encoder_config *c, const char *buf, size_t n, const char *name, const vttt_logger *lg) {
    cJSON *root = NULL;
    int err = vttt_json_parse(&root, buf, n, name, ENC_CONFIG_HINT, lg);
    if (!err) err = parse_config(c, root, name, lg);
    cJSON_Delete(root);
    return err;
}

int enc_config_read(vttt_encoder_config *c, const char *path, const vttt_logger *lg) {
    cJSON *root = NULL;
    int err = vttt_json_file_read(&root, path, ENC_CONFIG_MAX_BYTES, "cannot open (is this a tokenizer directory?)",
                                  ENC_CONFIG_HINT, lg);
    if (!err) err = parse_config(c, root, path, lg);
    cJSON_Delete(root);
    return err;
}

int enc_config_write(const vttt_encoder_config *c, const char *path, const vttt_logger *lg) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model_type", ENC_MODEL_TYPE);
    cJSON_AddStringToObject(j, "kind", c->kind == VTTT_ENCODER_DELTA ? "delta" : "frame");
    cJSON_AddNumberToObject(j, "factor", c->factor);
    cJSON_AddNumberToObject(j, "image_size", c->image_size);
    cJSON_AddNumberToObject(j, "channels", c->channels);
    cJSON_AddNumberToObject(j, "num_groups", c->num_groups);
    cJSON_AddNumberToObject(j, "num_levels", c->num_levels);
    cJSON_AddItemToObject(j, "levels", cJSON_CreateIntArray(c->levels, c->num_levels));
    if (c->motion) cJSON_AddNumberToObject(j, "motion", c->motion); /* left out at 0: older readers load it */
    return vttt_json_file_write(j, path, lg);
}
