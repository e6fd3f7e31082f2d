/*
 * config.json of a model directory: the reference TTTConfig keys (as
 * Hugging Face's save_pretrained writes them) plus vttt's own, read with
 * every key and value checked, written atomically.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "json_doc.h"
#include "model_internal.h"

#define CONFIG_MAX_BYTES (1 << 20)

int model_io_fail(const vttt_logger *lg, const char *path, int err, const char *fmt, const char *detail) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, detail);
    vttt_log(lg, VTTT_LOG_ERROR, "%s: %s", path, msg);
    return err;
}

typedef enum { KEY_INT, KEY_FLOAT, KEY_BOOL, KEY_ID, KEY_STR } key_type;

/* Keys with a field of vttt_model_config (KEY_STR: handled by name). */
static const struct {
    const char *key;
    key_type type;
    size_t off;
} config_keys[] = {
    {"vocab_size", KEY_INT, offsetof(vttt_model_config, vocab_size)},
    {"hidden_size", KEY_INT, offsetof(vttt_model_config, hidden_size)},
    {"intermediate_size", KEY_INT, offsetof(vttt_model_config, intermediate_size)},
    {"num_hidden_layers", KEY_INT, offsetof(vttt_model_config, num_hidden_layers)},
    {"num_attention_heads", KEY_INT, offsetof(vttt_model_config, num_attention_heads)},
    {"rms_norm_eps", KEY_FLOAT, offsetof(vttt_model_config, rms_norm_eps)},
    {"initializer_range", KEY_FLOAT, offsetof(vttt_model_config, initializer_range)},
    {"max_position_embeddings", KEY_INT, offsetof(vttt_model_config, max_position_embeddings)},
    {"tie_word_embeddings", KEY_BOOL, offsetof(vttt_model_config, tie_word_embeddings)},
    {"rope_theta", KEY_FLOAT, offsetof(vttt_model_config, rope_theta)},
    {"mini_batch_size", KEY_INT, offsetof(vttt_model_config, mini_batch_size)},
    {"ttt_base_lr", KEY_FLOAT, offsetof(vttt_model_config, ttt_base_lr)},
    {"pre_conv", KEY_BOOL, offsetof(vttt_model_config, pre_conv)},
    {"conv_kernel", KEY_INT, offsetof(vttt_model_config, conv_kernel)},
    {"share_qk", KEY_BOOL, offsetof(vttt_model_config, share_qk)},
    {"use_gate", KEY_BOOL, offsetof(vttt_model_config, use_gate)},
    {"scan_checkpoint_group_size", KEY_INT, offsetof(vttt_model_config, scan_checkpoint_group_size)},
    {"bos_token_id", KEY_ID, offsetof(vttt_model_config, bos_token_id)},
    {"eos_token_id", KEY_ID, offsetof(vttt_model_config, eos_token_id)},
    {"pad_token_id", KEY_ID, offsetof(vttt_model_config, pad_token_id)},
    {"tokens_per_frame", KEY_INT, offsetof(vttt_model_config, tokens_per_frame)},
    {"ttt_layer_type", KEY_STR, 0},
    {"seq_modeling_block", KEY_STR, 0},
    {"hidden_act", KEY_STR, 0},
    {"model_type", KEY_STR, 0},
};

/* Keys of Hugging Face's PretrainedConfig that do not change the model's
 * function; accepted and ignored. */
static const char *const ignored_keys[] = {
    "architectures", "torch_dtype", "transformers_version", "_name_or_path", "use_cache", "pretraining_tp",
    "output_hidden_states", "output_attentions", "return_dict", "is_decoder", "is_encoder_decoder",
    "add_cross_attention", "tie_encoder_decoder", "chunk_size_feed_forward", "pruned_heads", "torchscript",
    "id2label", "label2id", "problem_type", "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
    "task_specific_params", "finetuning_task", "cross_attention_hidden_size", "use_bfloat16", "tf_legacy_loss",
    "bad_words_ids", "begin_suppress_tokens", "suppress_tokens", "max_length", "min_length", "do_sample",
    "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
    "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty", "vttt_version",
};

static int is_ignored(const char *key) {
    for (size_t i = 0; i < sizeof ignored_keys / sizeof ignored_keys[0]; i++)
        if (!strcmp(key, ignored_keys[i])) return 1;
    return 0;
}

static int key_fail(const vttt_logger *lg, const char *path, const char *key, const char *what) {
    vttt_log(lg, VTTT_LOG_ERROR, "%s: key \"%s\": %s", path, key, what);
    return VTTT_EFORMAT;
}

/* Stores a numeric or boolean value into its field after checking its
 * JSON type (integers must be integral and fit an int). */
static int set_field(vttt_model_config *c, key_type type, size_t off, const cJSON *v, const char *path,
                     const char *key, const vttt_logger *lg) {
    char *field = (char *)c + off;
    if (type == KEY_BOOL) {
        if (!cJSON_IsBool(v)) return key_fail(lg, path, key, "must be true or false");
        *(int *)field = cJSON_IsTrue(v) ? 1 : 0;
        return VTTT_OK;
    }
    if (type == KEY_ID && cJSON_IsNull(v)) {
        *(int *)field = -1;
        return VTTT_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return key_fail(lg, path, key, type == KEY_ID ? "must be an integer or null" : "must be a number");
    double d = v->valuedouble;
    if (type == KEY_FLOAT) {
        if (fabs(d) > 3.0e38) return key_fail(lg, path, key, "is out of range");
        *(float *)field = (float)d;
        return VTTT_OK;
    }
    if (d != floor(d) || d < -2147483648.0 || d > 2147483647.0) return key_fail(lg, path, key, "must be an integer");
    *(int *)field = (int)d;
    return VTTT_OK;
}

/* Keys that are accepted only with the value the model implements. */
static int check_fixed_key(const cJSON *v, const char *path, const char *key, const vttt_logger *lg,
                           const vttt_model_config *c) {
    if (!strcmp(key, "rope_scaling") && !cJSON_IsNull(v))
        return key_fail(lg, path, key, "RoPE scaling is not supported (must be null)");
    if (!strcmp(key, "attention_bias") && !cJSON_IsFalse(v))
        return key_fail(lg, path, key, "biased attention projections are not supported (must be false)");
    if (!strcmp(key, "num_key_value_heads") && !cJSON_IsNull(v) &&
        !(cJSON_IsNumber(v) && v->valuedouble == c->num_attention_heads))
        return key_fail(lg, path, key, "grouped key/value heads are not supported (must equal num_attention_heads)");
    return VTTT_OK;
}

typedef struct {
    const char *ttt_layer_type, *seq_modeling_block;
} config_strings;

static int handle_string(const cJSON *v, const char *path, const char *key, const vttt_logger *lg,
                         config_strings *s) {
    const char *val = cJSON_GetStringValue(v);
    if (!val) return key_fail(lg, path, key, "must be a string");
    if (!strcmp(key, "hidden_act") && strcmp(val, "silu"))
        return key_fail(lg, path, key, "only \"silu\" (SwiGLU) is supported");
    if (!strcmp(key, "model_type") && strcmp(val, "ttt")) return key_fail(lg, path, key, "must be \"ttt\"");
    if (!strcmp(key, "ttt_layer_type")) s->ttt_layer_type = val;
    if (!strcmp(key, "seq_modeling_block")) s->seq_modeling_block = val;
    return VTTT_OK;
}

static int parse_key(vttt_model_config *c, const cJSON *v, const char *path, const vttt_logger *lg,
                     config_strings *s) {
    const char *key = v->string;
    for (size_t i = 0; i < sizeof config_keys / sizeof config_keys[0]; i++) {
        if (strcmp(key, config_keys[i].key)) continue;
        if (config_keys[i].type == KEY_STR) return handle_string(v, path, key, lg, s);
        return set_field(c, config_keys[i].type, config_keys[i].off, v, path, key, lg);
    }
    if (!strcmp(key, "rope_scaling") || !strcmp(key, "attention_bias") || !strcmp(key, "num_key_value_heads"))
        return VTTT_OK; /* checked once every key is read */
    if (is_ignored(key)) return VTTT_OK;
    return key_fail(lg, path, key, "unknown key (not a TTTConfig or vttt setting)");
}

/* seq_modeling_block ("ttt" | "attention") and ttt_layer_type ("linear" |
 * "mlp") into seq_kind. */
static int resolve_kind(vttt_model_config *c, const config_strings *s, const char *path, const vttt_logger *lg) {
    const char *blk = s->seq_modeling_block ? s->seq_modeling_block : "ttt";
    const char *typ = s->ttt_layer_type ? s->ttt_layer_type : "linear";
    if (!strcmp(blk, "attention")) {
        c->seq_kind = VTTT_LAYER_ATTENTION;
        return VTTT_OK;
    }
    if (strcmp(blk, "ttt"))
        return key_fail(lg, path, "seq_modeling_block", "unknown value (known: \"ttt\", \"attention\")");
    if (!strcmp(typ, "linear")) c->seq_kind = VTTT_LAYER_TTT_LINEAR;
    else if (!strcmp(typ, "mlp")) c->seq_kind = VTTT_LAYER_TTT_MLP;
    else return key_fail(lg, path, "ttt_layer_type", "unknown value (known: \"linear\", \"mlp\")");
    return VTTT_OK;
}

/* A logger that keeps the last error message (user: char[1024]). */
static void keep_message(void *user, int level, const char *msg) {
    if (level == VTTT_LOG_ERROR) snprintf(user, 1024, "%s", msg);
}

static int parse_config(vttt_model_config *c, const cJSON *root, const char *path, const vttt_logger *lg) {
    if (!cJSON_IsObject(root)) return model_io_fail(lg, path, VTTT_EFORMAT, "%s", "the top level must be a JSON object");
    *c = vttt_model_default_config();
    config_strings s = {NULL, NULL};
    for (const cJSON *v = root->child; v; v = v->next) {
        for (const cJSON *w = root->child; w != v; w = w->next)
            if (!strcmp(w->string, v->string)) return key_fail(lg, path, v->string, "appears twice");
        int err = parse_key(c, v, path, lg, &s);
        if (err) return err;
    }
    for (const cJSON *v = root->child; v; v = v->next) {
        int err = check_fixed_key(v, path, v->string, lg, c);
        if (err) return err;
    }
    int err = resolve_kind(c, &s, path, lg);
    if (err) return err;
    char why[1024] = "";
    vttt_logger keep = {keep_message, why, VTTT_LOG_ERROR};
    if (vttt_model_config_check(c, &keep)) return model_io_fail(lg, path, VTTT_EFORMAT, "%s", why);
    return VTTT_OK;
}

int vttt_model_config_parse(vttt_model_config *cfg, const char *buf, size_t n, const char *name,
                            const vttt_logger *lg) {
    if (!cfg || !buf || !name) return VTTT_EINVAL;
    cJSON *root = NULL;
    int err = vttt_json_parse(&root, buf, n, name, "(not a model config)", lg);
    if (!err) err = parse_config(cfg, root, name, lg);
    cJSON_Delete(root);
    return err;
}

int vttt_model_config_read(vttt_model_config *cfg, const char *path, const vttt_logger *lg) {
    if (!cfg || !path) return VTTT_EINVAL;
    char *buf = NULL;
    size_t len = 0;
    int err = vttt_file_read_all(path, CONFIG_MAX_BYTES, &buf, &len, lg);
    if (!err) err = vttt_model_config_parse(cfg, buf, len, path, lg);
    free(buf);
    return err;
}

/* The shortest decimal that reads back as the same float. */
static void float_repr(char *buf, size_t n, float v) {
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

static void add_float(cJSON *o, const char *key, float v) {
    char buf[32];
    float_repr(buf, sizeof buf, v);
    cJSON_AddRawToObject(o, key, buf);
}

static void add_id(cJSON *o, const char *key, int v) {
    if (v < 0) cJSON_AddNullToObject(o, key);
    else cJSON_AddNumberToObject(o, key, v);
}

/* The config as JSON text in the reference's key names; NULL when out of
 * memory. Caller frees. */
static char *config_json(const vttt_model_config *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    const char *arch = "TTTForCausalLM";
    cJSON_AddItemToObject(o, "architectures", cJSON_CreateStringArray(&arch, 1));
    cJSON_AddStringToObject(o, "model_type", "ttt");
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->num_attention_heads);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_position_embeddings);
    add_float(o, "initializer_range", c->initializer_range);
    add_float(o, "rms_norm_eps", c->rms_norm_eps);
    cJSON_AddFalseToObject(o, "use_cache");
    add_id(o, "pad_token_id", c->pad_token_id);
    add_id(o, "bos_token_id", c->bos_token_id);
    add_id(o, "eos_token_id", c->eos_token_id);
    cJSON_AddNumberToObject(o, "pretraining_tp", 1);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
    add_float(o, "rope_theta", c->rope_theta);
    cJSON_AddBoolToObject(o, "use_gate", c->use_gate);
    cJSON_AddBoolToObject(o, "share_qk", c->share_qk);
    cJSON_AddStringToObject(o, "ttt_layer_type", c->seq_kind == VTTT_LAYER_TTT_MLP ? "mlp" : "linear");
    add_float(o, "ttt_base_lr", c->ttt_base_lr);
    cJSON_AddNumberToObject(o, "mini_batch_size", c->mini_batch_size);
    cJSON_AddBoolToObject(o, "pre_conv", c->pre_conv);
    cJSON_AddNumberToObject(o, "conv_kernel", c->conv_kernel);
    cJSON_AddNumberToObject(o, "scan_checkpoint_group_size", c->scan_checkpoint_group_size);
    cJSON_AddStringToObject(o, "seq_modeling_block", c->seq_kind == VTTT_LAYER_ATTENTION ? "attention" : "ttt");
    cJSON_AddNumberToObject(o, "tokens_per_frame", c->tokens_per_frame);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
}

/* Makes a rename in path's directory durable (best effort where the file
 * system cannot sync directories). */
static void sync_parent_dir(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Writes text to path through a synced temporary file and a rename. */
static int write_file_atomic(const char *path, const char *text, const vttt_logger *lg) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return model_io_fail(lg, tmp, VTTT_EIO, "cannot create: %s", strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved = errno;
    ok = (fclose(f) == 0) && ok;
    if (ok && rename(tmp, path) != 0) {
        saved = errno;
        ok = 0;
    }
    if (!ok) {
        unlink(tmp);
        return model_io_fail(lg, path, VTTT_EIO, "write failed: %s", strerror(saved));
    }
    sync_parent_dir(path);
    return VTTT_OK;
}

int vttt_model_config_write(const vttt_model_config *cfg, const char *path, const vttt_logger *lg) {
    if (!cfg || !path) return VTTT_EINVAL;
    int err = vttt_model_config_check(cfg, lg);
    if (err) return err;
    char *text = config_json(cfg);
    if (!text) return VTTT_ENOMEM;
    err = write_file_atomic(path, text, lg);
    free(text);
    return err;
}
