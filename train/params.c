/*
 * Trainer settings: defaults, checks, their JSON form in
 * trainer_state.json, and the comparison that guards --resume. One table
 * lists every saved setting with its option name.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "train_internal.h"

vttt_train_params vttt_train_default_params(void) {
    vttt_train_params p;
    memset(&p, 0, sizeof p);
    snprintf(p.model_preset, sizeof p.model_preset, "tiny");
    p.steps = 1000, p.batch = 8, p.seq = 256, p.accum = 1;
    p.lr = 3e-3f, p.min_lr = 1e-5f, p.warmup = 100;
    p.weight_decay = 0.1f, p.beta1 = 0.9f, p.beta2 = 0.95f, p.eps = 1e-8f, p.grad_clip = 1.0f;
    p.ttt_base_lr = p.ttt_base_lr_init = -1.0f, p.ttt_base_lr_warmup = -1;
    p.ckpt_every = 100, p.keep = 2;
    p.shuffle = 1, p.handle_signals = 1;
    p.comm = VTTT_COMM_AUTO;
    return p;
}

typedef enum { F_STR, F_INT, F_I64, F_F32, F_U64 } field_type;

/* run = 1: part of the training trajectory, must match on resume. */
static const struct {
    const char *key, *option;
    field_type type;
    size_t off, size;
    int run;
    int optional; /* may be missing from a saved trainer_state.json (added later; missing = zero) */
} fields[] = {
#define S(k, o, r) {#k, o, F_STR, offsetof(vttt_train_params, k), sizeof(((vttt_train_params *)0)->k), r, 0}
#define N(k, o, t, r) {#k, o, t, offsetof(vttt_train_params, k), 0, r, 0}
    S(data, "--data", 1),
    S(val, "--val", 0),
    S(model_preset, "--model-preset", 1),
    S(model_config, "--config", 1),
    S(layer, "--layer", 1),
    S(backbone, "--backbone", 1),
    {"init", "--init", F_STR, offsetof(vttt_train_params, init), sizeof(((vttt_train_params *)0)->init), 1, 1},
    N(vocab_size, "--vocab-size", F_INT, 1),
    N(steps, "--steps", F_I64, 1),
    N(batch, "--batch", F_INT, 1),
    N(seq, "--seq", F_INT, 1),
    N(window, "--window", F_INT, 1),
    N(accum, "--accum", F_INT, 1),
    {"docs", "--docs", F_INT, offsetof(vttt_train_params, docs), 0, 1, 1},
    N(lr, "--lr", F_F32, 1),
    N(min_lr, "--min-lr", F_F32, 1),
    N(warmup, "--warmup", F_I64, 1),
    N(weight_decay, "--weight-decay", F_F32, 1),
    N(beta1, "--beta1", F_F32, 1),
    N(beta2, "--beta2", F_F32, 1),
    N(eps, "--eps", F_F32, 1),
    N(grad_clip, "--clip", F_F32, 1),
    N(ttt_base_lr, "--ttt-base-lr", F_F32, 1),
    N(ttt_base_lr_init, "--ttt-base-lr-init", F_F32, 1),
    N(ttt_base_lr_warmup, "--ttt-base-lr-warmup", F_I64, 1),
    N(eval_every, "--eval-every", F_I64, 0),
    N(eval_seqs, "--eval-seqs", F_INT, 0),
    N(ckpt_every, "--ckpt-every", F_I64, 0),
    N(keep, "--keep", F_INT, 0),
    N(seed, "--seed", F_U64, 1),
    N(shuffle, "--shuffle/--no-shuffle", F_INT, 1),
#undef S
#undef N
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

/* Field i of p as a double (numbers) or a string. */
static double num(const vttt_train_params *p, size_t i) {
    const char *f = (const char *)p + fields[i].off;
    switch (fields[i].type) {
    case F_INT: return *(const int *)f;
    case F_I64: return (double)*(const int64_t *)f;
    case F_F32: return *(const float *)f;
    case F_U64: return (double)*(const uint64_t *)f;
    default: return 0.0;
    }
}

cJSON *train_params_to_json(const vttt_train_params *p) {
    cJSON *j = cJSON_CreateObject();
    for (size_t i = 0; j && i < N_FIELDS; i++) {
        const char *f = (const char *)p + fields[i].off;
        char u64[32];
        if (fields[i].type == F_STR) {
            cJSON_AddStringToObject(j, fields[i].key, f);
        } else if (fields[i].type == F_U64) { /* a string: JSON numbers keep 53 bits */
            snprintf(u64, sizeof u64, "%llu", (unsigned long long)*(const uint64_t *)f);
            cJSON_AddStringToObject(j, fields[i].key, u64);
        } else {
            cJSON_AddNumberToObject(j, fields[i].key, num(p, i));
        }
    }
    return j;
}

static int json_fail(const vttt_logger *lg, const char *path, const char *key, const char *what) {
    vttt_log(lg, VTTT_LOG_ERROR, "%s: config key \"%s\" %s", path, key, what);
    return VTTT_EFORMAT;
}

/* Stores a JSON value into field i after checking its type and range. */
static int set_field(vttt_train_params *p, size_t i, const cJSON *v, const char *path, const vttt_logger *lg) {
    char *f = (char *)p + fields[i].off;
    if (fields[i].type == F_STR) {
        if (!cJSON_IsString(v) || strlen(v->valuestring) >= fields[i].size)
            return json_fail(lg, path, fields[i].key, "must be a string (of reasonable length)");
        snprintf(f, fields[i].size, "%s", v->valuestring);
        return VTTT_OK;
    }
    if (fields[i].type == F_U64) {
        uint64_t u;
        if (!cJSON_IsString(v) || train_parse_u64(v->valuestring, &u))
            return json_fail(lg, path, fields[i].key, "must be a string of decimal digits (a 64-bit integer)");
        *(uint64_t *)f = u;
        return VTTT_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return json_fail(lg, path, fields[i].key, "must be a number");
    double d = v->valuedouble;
    int integral = d == floor(d);
    switch (fields[i].type) {
    case F_INT:
        if (!integral || fabs(d) > 2147483647.0) return json_fail(lg, path, fields[i].key, "must be an integer");
        *(int *)f = (int)d;
        break;
    case F_I64:
        if (!integral || fabs(d) > 9007199254740992.0) return json_fail(lg, path, fields[i].key, "must be an integer");
        *(int64_t *)f = (int64_t)d;
        break;
    default:
        *(float *)f = (float)d;
    }
    return VTTT_OK;
}

int train_params_from_json(vttt_train_params *p, const cJSON *j, const char *path, const vttt_logger *lg) {
    if (!cJSON_IsObject(j)) return json_fail(lg, path, "config", "must be an object");
    const cJSON *v;
    cJSON_ArrayForEach(v, j) {
        size_t i = 0;
        while (i < N_FIELDS && strcmp(fields[i].key, v->string)) i++;
        if (i == N_FIELDS) return json_fail(lg, path, v->string, "is unknown (a checkpoint of another vttt?)");
    }
    for (size_t i = 0; i < N_FIELDS; i++) {
        v = cJSON_GetObjectItemCaseSensitive(j, fields[i].key);
        if (!v && fields[i].optional) continue; /* p holds the default */
        if (!v) return json_fail(lg, path, fields[i].key, "is missing");
        int err = set_field(p, i, v, path, lg);
        if (err) return err;
    }
    return VTTT_OK;
}

int train_params_match(const vttt_train_params *given, const vttt_train_params *saved, const char *dir,
                       const vttt_logger *lg) {
    for (size_t i = 0; i < N_FIELDS; i++) {
        if (!fields[i].run) continue;
        const char *a = (const char *)given + fields[i].off, *b = (const char *)saved + fields[i].off;
        char ga[VTTT_TRAIN_PATH_MAX + 2], sb[VTTT_TRAIN_PATH_MAX + 2];
        if (fields[i].type == F_STR) {
            if (!strcmp(a, b)) continue;
            snprintf(ga, sizeof ga, "\"%s\"", a), snprintf(sb, sizeof sb, "\"%s\"", b);
        } else {
            if (!memcmp(a, b, fields[i].type == F_INT ? sizeof(int) : fields[i].type == F_F32 ? sizeof(float) : 8))
                continue;
            if (fields[i].type == F_U64)
                snprintf(ga, sizeof ga, "%llu", (unsigned long long)*(const uint64_t *)a),
                    snprintf(sb, sizeof sb, "%llu", (unsigned long long)*(const uint64_t *)b);
            else
                snprintf(ga, sizeof ga, "%.9g", num(given, i)), snprintf(sb, sizeof sb, "%.9g", num(saved, i));
        }
        vttt_log(lg, VTTT_LOG_ERROR, "%s: given %s, but the run in %s used %s; resuming needs the run's own "
                 "settings (leave the option out to take the saved one), or start a new run in another --out",
                 fields[i].option, ga, dir, sb);
        return VTTT_EINVAL;
    }
    return VTTT_OK;
}

int train_parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s) return VTTT_EINVAL;
    uint64_t u = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || u > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) return VTTT_EINVAL;
        u = u * 10 + (uint64_t)(*s - '0');
    }
    *out = u;
    return VTTT_OK;
}

static int bad(const vttt_logger *lg, const char *option, const char *what) {
    vttt_log(lg, VTTT_LOG_ERROR, "%s %s", option, what);
    return VTTT_EINVAL;
}

int vttt_train_params_check(const vttt_train_params *p, const vttt_logger *lg) {
    if (!p->data[0]) return bad(lg, "--data", "is required (token shards: a directory, glob or file)");
    if (!p->out[0]) return bad(lg, "--out", "is required (the run directory)");
    if (!p->model_preset[0] && !p->model_config[0]) return bad(lg, "--model-preset or --config", "is required");
    if (p->vocab_size < 0) return bad(lg, "--vocab-size", "must be >= 1 (0: from the data)");
    if (p->steps < 1) return bad(lg, "--steps", "must be >= 1");
    if (p->batch < 1 || p->seq < 1) return bad(lg, "--batch and --seq", "must be >= 1");
    if (p->window < 0 || p->window > p->seq) return bad(lg, "--window", "must be in 1..--seq (0: --seq)");
    if (p->accum < 1 || p->batch % p->accum) return bad(lg, "--accum", "must be >= 1 and divide --batch");
    if (!(p->lr >= 0.0f && isfinite(p->lr)) || !(p->min_lr >= 0.0f && p->min_lr <= p->lr))
        return bad(lg, "--lr / --min-lr", "must satisfy 0 <= min-lr <= lr");
    if (p->warmup < 0) return bad(lg, "--warmup", "must be >= 0");
    if (!(p->weight_decay >= 0.0f && isfinite(p->weight_decay))) return bad(lg, "--weight-decay", "must be >= 0");
    if (!(p->beta1 >= 0.0f && p->beta1 < 1.0f) || !(p->beta2 >= 0.0f && p->beta2 < 1.0f))
        return bad(lg, "--beta1 / --beta2", "must be in [0, 1)");
    if (!(p->eps > 0.0f && isfinite(p->eps))) return bad(lg, "--eps", "must be > 0");
    if (!(p->grad_clip >= 0.0f && isfinite(p->grad_clip))) return bad(lg, "--clip", "must be >= 0 (0: off)");
    if (!isfinite(p->ttt_base_lr) || !isfinite(p->ttt_base_lr_init))
        return bad(lg, "--ttt-base-lr / --ttt-base-lr-init", "must be finite");
    if (p->eval_every < 0 || p->eval_seqs < 0) return bad(lg, "--eval-every / --eval-seqs", "must be >= 0");
    if (p->ckpt_every < -1) return bad(lg, "--ckpt-every", "must be >= 0 (0: at the end only; -1: never)");
    if (p->keep < 1) return bad(lg, "--keep", "must be >= 1");
    return VTTT_OK;
}
