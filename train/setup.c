/*
 * Setting a training run up: the communicator, the model (a new one from a
 * preset or config.json, or the newest checkpoint's), the data, the
 * optimizer and its state, the buffers, the metrics file; and taking it
 * down again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_internal.h"

int train_layer_parse(const char *name, vttt_layer_kind *k) {
    static const char *names[] = {"ttt_linear", "ttt_mlp", "attention"};
    for (int i = 0; i < 3; i++) {
        if (!strcmp(name, names[i])) {
            *k = (vttt_layer_kind)i;
            return VTTT_OK;
        }
    }
    return VTTT_EINVAL;
}

/* The model configuration of a new run, but for the vocabulary. */
static int new_config(vttt_model_config *cfg, const vttt_train_params *p, const vttt_logger *lg) {
    int err;
    *cfg = vttt_model_default_config();
    if (p->model_config[0]) {
        err = vttt_model_config_read(cfg, p->model_config, lg);
    } else {
        err = vttt_model_config_preset(cfg, p->model_preset, lg);
        cfg->seq_kind = VTTT_LAYER_TTT_MLP;
        cfg->max_position_embeddings = p->seq;
    }
    if (!err && p->layer[0] && train_layer_parse(p->layer, &cfg->seq_kind)) {
        vttt_log(lg, VTTT_LOG_ERROR, "--layer '%s' is not a sequence layer (ttt_mlp, ttt_linear, attention)", p->layer);
        err = VTTT_EINVAL;
    }
    if (!err && p->backbone[0]) err = vttt_model_config_backbone(cfg, p->backbone, lg);
    return err;
}

/* The vocabulary of a new run: the option, a config file's, the data's
 * meta.json, or the largest id in the data + 1. */
static void set_vocab(vttt_model_config *cfg, const vttt_train_params *p, const train_data *d,
                      const vttt_logger *lg) {
    int eot = train_data_meta_eot(d);
    if (p->vocab_size > 0) cfg->vocab_size = p->vocab_size;
    else if (!p->model_config[0]) /* else the config file's */
        cfg->vocab_size = train_data_meta_vocab(d) > 0 ? train_data_meta_vocab(d) : (int)train_data_max_id(d) + 1;
    if (!p->model_config[0] && eot >= 0 && eot < cfg->vocab_size) /* ingest's BPE: <|endoftext|> */
        cfg->bos_token_id = -1, cfg->eos_token_id = eot;
    if (cfg->bos_token_id >= cfg->vocab_size) cfg->bos_token_id = -1;
    if (cfg->eos_token_id >= cfg->vocab_size) cfg->eos_token_id = -1;
    vttt_log(lg, VTTT_LOG_INFO, "vocabulary: %d tokens", cfg->vocab_size);
}

/* Video token shards (meta.json's tokens_per_frame P > 0) make a video
 * model: P tokens per frame, the next-frame target shift. A config file
 * may leave tokens_per_frame 0 (it is set) but not give another value. */
static int set_frames(vttt_model_config *cfg, const vttt_train_params *p, const train_data *d,
                      const vttt_logger *lg) {
    int P = train_data_meta_tokens_per_frame(d);
    if (P <= 0) return VTTT_OK;
    if (cfg->tokens_per_frame > 0 && cfg->tokens_per_frame != P) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s has tokens_per_frame %d but the video token shards of %s have %d (meta.json); "
                 "use a config for this tokenizer", p->model_config, cfg->tokens_per_frame, p->data, P);
        return VTTT_EINVAL;
    }
    cfg->tokens_per_frame = P;
    vttt_log(lg, VTTT_LOG_INFO, "video: %d tokens per frame (next-frame objective, target shift %d)", P, P);
    return VTTT_OK;
}

/* The training shards' tokens per frame into cfg, before the data opens
 * with the target shift it implies. */
static int data_frames(train_ctx *c, vttt_model_config *cfg) {
    train_data *d = NULL;
    int err = train_data_open(&d, c->p.data, "train", 1, 1, &c->log);
    if (!err) err = set_frames(cfg, &c->p, d, &c->log);
    train_data_close(&d);
    return err;
}

void train_params_resolve(vttt_train_params *p, const vttt_model_config *cfg) {
    int mlp = cfg->seq_kind == VTTT_LAYER_TTT_MLP && !p->init[0];
    if (p->window == 0) p->window = p->seq;
    if (p->ttt_base_lr < 0.0f) p->ttt_base_lr = mlp ? 0.1f : cfg->ttt_base_lr;
    if (p->ttt_base_lr_init < 0.0f) p->ttt_base_lr_init = mlp ? 0.01f : -1.0f;
    if (p->ttt_base_lr_warmup < 0) p->ttt_base_lr_warmup = p->warmup;
}

/* Batch split and window checks against the model and the ranks. */
static int check_shape(train_ctx *c, const vttt_model_config *cfg) {
    const vttt_train_params *p = &c->p;
    int size = vttt_comm_size(c->comm), ttt = cfg->seq_kind != VTTT_LAYER_ATTENTION;
    if (p->batch % (size * p->accum)) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "--batch %d does not split into %d rank(s) x %d micro-batch(es) (--accum); "
                 "use a multiple of %d", p->batch, size, p->accum, size * p->accum);
        return VTTT_EINVAL;
    }
    int P = cfg->tokens_per_frame;
    if (P > 0 && (p->seq % P || p->window % P)) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "--%s %d must be a multiple of the %d tokens per frame of this video model "
                 "(samples and windows start at frame boundaries); e.g. %d frames = %d tokens",
                 p->seq % P ? "seq" : "window", p->seq % P ? p->seq : p->window, P,
                 (p->seq % P ? p->seq : p->window) / P + 1, ((p->seq % P ? p->seq : p->window) / P + 1) * P);
        return VTTT_EINVAL;
    }
    if (ttt && p->window < p->seq && p->window % cfg->mini_batch_size) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "--window %d must be a multiple of the TTT mini-batch size %d (windows start "
                 "at mini-batch boundaries)", p->window, cfg->mini_batch_size);
        return VTTT_EINVAL;
    }
    c->rank_seqs = p->batch / size;
    c->micro = c->rank_seqs / p->accum;
    return VTTT_OK;
}

static int make_dirs(const char *dir, const vttt_logger *lg) {
    char p[VTTT_TRAIN_PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1;; s++) {
        int end = *s == '\0';
        if (*s != '/' && !end) continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot create the directory: %s", p, strerror(errno));
            return VTTT_EIO;
        }
        if (end) return VTTT_OK;
        *s = '/';
    }
}

/* --docs cuts text at its end-of-text token (meta.json's eot). */
static int use_docs(train_ctx *c, train_data *d, const char *spec) {
    int eot = train_data_meta_eot(d);
    if (train_data_meta_tokens_per_frame(d) > 0 || eot < 0) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "--docs: %s %s; documents are text split at <|endoftext|>, which `vttt "
                 "ingest text` records as \"eot\" in meta.json beside the shards", spec,
                 train_data_meta_tokens_per_frame(d) > 0 ? "holds video tokens" : "has no meta.json with an \"eot\" id");
        return VTTT_EINVAL;
    }
    return train_data_use_docs(d, c->p.seq, c->shift, eot);
}

static int open_data(train_ctx *c, const vttt_model_config *cfg) {
    c->shift = vttt_model_config_target_shift(cfg);
    int err = train_data_open(&c->data, c->p.data, "train", c->p.seq + c->shift, c->p.seq, &c->log);
    if (!err && c->p.docs) err = use_docs(c, c->data, c->p.data);
    if (!err && c->p.val[0]) err = train_data_open(&c->val, c->p.val, "val", c->p.seq + c->shift, c->p.seq, &c->log);
    if (!err && c->val && c->p.docs) err = use_docs(c, c->val, c->p.val);
    return err;
}

/* A new run: model from the settings, initialised from the seed. */
static int setup_new(train_ctx *c, train_state *st) {
    vttt_model_config cfg;
    int err = new_config(&cfg, &c->p, &c->log);
    if (!err) err = data_frames(c, &cfg);
    if (!err) err = open_data(c, &cfg);
    if (err) return err;
    set_vocab(&cfg, &c->p, c->data, &c->log);
    train_params_resolve(&c->p, &cfg);
    if ((err = vttt_model_init(&c->model, &cfg, &c->log))) return err;
    vttt_model_init_weights(c->model, c->p.seed);
    memset(st, 0, sizeof *st);
    st->seed = c->p.seed;
    return VTTT_OK;
}

/* The options that describe a new model cannot go with --init, whose
 * model is taken as it is. */
static int init_conflicts(const vttt_train_params *p, const vttt_logger *lg) {
    const char *opt = p->model_config[0] ? "--config" : p->layer[0] ? "--layer" : p->backbone[0] ? "--backbone"
                                                      : p->vocab_size ? "--vocab-size" : NULL;
    if (!opt) return VTTT_OK;
    vttt_log(lg, VTTT_LOG_ERROR, "%s cannot go with --init %s: the run takes that model's own config; leave %s out",
             opt, p->init, opt);
    return VTTT_EINVAL;
}

/* The data of a run fine-tuned from a model must be in its vocabulary and,
 * for a video model, have its tokens per frame (and the reverse). */
static int init_data_match(const train_ctx *c, const vttt_model_config *cfg, const char *dir) {
    int P = train_data_meta_tokens_per_frame(c->data), V = train_data_meta_vocab(c->data);
    int64_t max_id = train_data_max_id(c->data);
    if (P != cfg->tokens_per_frame && (P > 0 || cfg->tokens_per_frame > 0)) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "--init %s: the model has tokens_per_frame %d but the token shards of %s "
                 "have %d (meta.json; 0: text); encode the frames with this model's tokenizer", dir,
                 cfg->tokens_per_frame, c->p.data, P);
        return VTTT_EINVAL;
    }
    if ((V > 0 && V != cfg->vocab_size) || max_id >= cfg->vocab_size) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "--init %s: the model's vocabulary has %d tokens but the token shards of "
                 "%s have %s %d; use shards made with this model's tokenizer", dir, cfg->vocab_size, c->p.data,
                 V > 0 && V != cfg->vocab_size ? "vocab_size (meta.json)" : "token id", V > 0 &&
                 V != cfg->vocab_size ? V : (int)max_id);
        return VTTT_EINVAL;
    }
    return VTTT_OK;
}

/* A new run fine-tuned from a model directory (--init; a training run
 * stands for its newest checkpoint): its config and weights. */
static int setup_init(train_ctx *c, train_state *st) {
    char dir[VTTT_TRAIN_PATH_MAX + 32];
    const char *from = c->p.init;
    int err = init_conflicts(&c->p, &c->log);
    if (err) return err;
    snprintf(dir, sizeof dir, "%s/config.json", from);
    if (access(dir, F_OK) != 0 && train_ckpt_latest(from, dir, sizeof dir) >= 0) from = dir;
    if ((err = vttt_model_load(&c->model, from, &c->log))) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "--init %s: cannot load the model (%s); give a model directory "
                 "(config.json, model.safetensors) or a training run", c->p.init, vttt_strerror(err));
        return err;
    }
    const vttt_model_config *cfg = vttt_model_get_config(c->model);
    if ((err = open_data(c, cfg)) || (err = init_data_match(c, cfg, c->p.init))) return err;
    train_params_resolve(&c->p, cfg);
    vttt_log(&c->log, VTTT_LOG_INFO, "fine-tuning %s (vocabulary %d, %d tokens per frame)", from, cfg->vocab_size,
             cfg->tokens_per_frame);
    memset(st, 0, sizeof *st);
    st->seed = c->p.seed;
    return VTTT_OK;
}

/* Resuming: the checkpoint's model and state, checked against the
 * settings and the data. */
static int setup_resume(train_ctx *c, train_state *st, const char *dir) {
    char path[VTTT_TRAIN_PATH_MAX + 64];
    int err = vttt_model_load(&c->model, dir, &c->log);
    if (err) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "%s: cannot load the checkpoint's model (%s)", dir, vttt_strerror(err));
        return err;
    }
    const vttt_model_config *cfg = vttt_model_get_config(c->model);
    train_params_resolve(&c->p, cfg);
    if ((err = open_data(c, cfg))) return err;
    int P = train_data_meta_tokens_per_frame(c->data);
    if (P > 0 && P != cfg->tokens_per_frame) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "%s: the model has tokens_per_frame %d but the token shards of %s have %d "
                 "(meta.json)", dir, cfg->tokens_per_frame, c->p.data, P);
        return VTTT_EINVAL;
    }
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    /* the settings first, so that a different one (--seq, --docs) is named
     * rather than taken for damage, then the data against the checkpoint */
    if ((err = train_state_read(st, NULL, path, &c->log))) return err;
    if ((err = train_params_match(&c->p, &st->params, c->p.out, &c->log))) return err;
    return train_state_read(st, c->data, path, &c->log);
}

/* Buffers, optimizer (and its saved state), sampler, schedule. */
static int setup_training(train_ctx *c, const train_state *st, const char *dir) {
    const vttt_train_params *p = &c->p;
    size_t len = (size_t)p->seq + c->shift;
    c->samples = malloc((size_t)c->micro * len * sizeof(int32_t));
    c->tok = malloc((size_t)c->micro * p->window * sizeof(int32_t));
    c->tgt = malloc((size_t)c->micro * p->window * sizeof(int32_t));
    c->ids = malloc((size_t)p->batch * sizeof(int64_t));
    if (!c->samples || !c->tok || !c->tgt || !c->ids) return VTTT_ENOMEM;
    int err = VTTT_OK;
    if (p->window < p->seq && (err = vttt_model_state_init(&c->carry, c->model, c->micro, p->window))) return err;
    if ((err = train_adamw_init(&c->opt, c->model, p->beta1, p->beta2, p->eps, p->weight_decay, &c->log))) return err;
    if (dir) {
        char path[VTTT_TRAIN_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
        if ((err = train_adamw_load(c->opt, path, st->step))) return err;
    }
    if ((err = train_sampler_init(&c->sampler, train_data_samples(c->data), st->seed, p->shuffle, st->epoch,
                                  st->cursor)))
        return err;
    c->step = st->step, c->tokens = st->tokens;
    c->sched = train_schedule_of(p);
    return VTTT_OK;
}

int train_setup(train_ctx *c, const vttt_train_params *p, const vttt_logger *lg, int64_t *resumed_from) {
    memset(c, 0, sizeof *c);
    c->p = *p;
    if (lg) c->log = *lg;
    int err = vttt_train_params_check(p, lg);
    if (!err) err = vttt_comm_open(&c->comm, p->comm, lg);
    if (err) return err;
    int rank0 = vttt_comm_rank(c->comm) == 0;
    char dir[VTTT_TRAIN_PATH_MAX + 32];
    int64_t latest = train_ckpt_latest(p->out, dir, sizeof dir);
    if (latest >= 0 && !p->resume) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s holds a training run (checkpoint of step %lld); pass --resume to continue "
                 "it, or choose another --out", p->out, (long long)latest);
        return VTTT_EINVAL;
    }
    if (latest < 0 && p->resume)
        vttt_log(lg, VTTT_LOG_WARNING, "%s: no checkpoint to resume from; starting a new run", p->out);
    if (rank0 && (err = make_dirs(p->out, lg))) return err;
    train_state st;
    err = latest >= 0 ? setup_resume(c, &st, dir) : p->init[0] ? setup_init(c, &st) : setup_new(c, &st);
    if (!err) err = check_shape(c, vttt_model_get_config(c->model));
    if (!err) err = setup_training(c, &st, latest >= 0 ? dir : NULL);
    if (!err && rank0) err = train_metrics_open(&c->metrics, p->out, latest, lg);
    if (err == VTTT_ENOMEM) vttt_log(lg, VTTT_LOG_ERROR, "out of memory setting the run up");
    *resumed_from = c->saved_step = latest;
    /* all ranks go on, or none: a rank that failed alone would leave the
     * others waiting in the first collective */
    double failed = err ? 1.0 : 0.0;
    int cerr = vttt_comm_allreduce_sum_f64(c->comm, &failed, 1);
    if (err || cerr) return err ? err : cerr;
    return failed > 0.0 ? VTTT_EIO : VTTT_OK;
}

void train_teardown(train_ctx *c) {
    if (c->metrics) fclose(c->metrics);
    vttt_model_state_free(&c->carry);
    train_sampler_free(&c->sampler);
    train_adamw_free(&c->opt);
    train_data_close(&c->data);
    train_data_close(&c->val);
    vttt_model_free(&c->model);
    free(c->samples), free(c->tok), free(c->tgt), free(c->ids);
    vttt_comm_close(&c->comm);
    memset(c, 0, sizeof *c);
}
