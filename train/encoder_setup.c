/*
 * Setting a tokenizer training run up: a new run (tokenizer from the seed)
 * or the newest checkpoint's (tokenizer, optimizer, data position and
 * settings), the data, the schedule, the metrics file; and taking it down.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "encoder_train_internal.h"

vttt_encoder_train_params vttt_encoder_train_default_params(void) {
    vttt_encoder_train_params p;
    memset(&p, 0, sizeof p);
    p.model = vttt_encoder_default_config();
    p.val_frames = 64;
    p.steps = 2000, p.batch = 16;
    p.lr = 2e-3f, p.min_lr = 1e-5f, p.warmup = 100;
    p.weight_decay = 0.0f, p.beta1 = 0.9f, p.beta2 = 0.99f, p.eps = 1e-8f, p.grad_clip = 1.0f;
    p.motion = -1;
    p.ckpt_every = 200, p.keep = 2;
    p.handle_signals = 1;
    return p;
}

static int bad(const vttt_logger *lg, const char *what) {
    vttt_log(lg, VTTT_LOG_ERROR, "%s", what);
    return VTTT_EINVAL;
}

static int check_params(const vttt_encoder_train_params *p, const vttt_logger *lg) {
    if (!p->out[0]) return bad(lg, "--out: a run directory is needed");
    if (p->steps < 1) return bad(lg, "--steps must be >= 1");
    if (p->batch < 1 || p->batch > 4096) return bad(lg, "--batch must be in [1, 4096] frames");
    if (!(p->lr > 0.0f) || !(p->min_lr >= 0.0f) || p->warmup < 0) return bad(lg, "--lr must be > 0, --min-lr >= 0, "
                                                                               "--warmup >= 0");
    if (!(p->weight_decay >= 0.0f) || !(p->beta1 >= 0.0f && p->beta1 < 1.0f) || !(p->beta2 >= 0.0f && p->beta2 < 1.0f) ||
        !(p->eps > 0.0f) || !(p->grad_clip >= 0.0f) || !(p->rate_weight >= 0.0f && p->rate_weight <= 100.0f))
        return bad(lg, "optimizer settings out of range (weight decay, betas in [0,1), eps > 0, clip >= 0)");
    if (p->val_frames < 0 || p->eval_every < 0 || p->eval_frames < 0 || p->ckpt_every < 0 || p->keep < 1)
        return bad(lg, "--val-frames, --eval-every, --eval-frames, --ckpt-every must be >= 0 and --keep >= 1");
    return VTTT_OK;
}

/* Opens the shards of args (or of the resumed state's list). */
static int open_data(enc_train_ctx *c, const char *const *args, int n_args) {
    char **paths = NULL;
    int n = 0, err = vttt_encoder_frames_list(args, n_args, &paths, &n, &c->log);
    if (err) return err;
    if ((err = enc_data_open(&c->data, paths, n, c->p.val_frames, &c->log))) vttt_encoder_frames_free(&paths, n);
    return err;
}

/* The shards opened now must be those the run read. */
static int check_same_data(enc_train_ctx *c, const enc_state *st, const char *path) {
    int same = st->n_files == c->data.n;
    for (int i = 0; same && i < st->n_files; i++)
        same = !strcmp(st->files[i], c->data.paths[i]) && st->file_frames[i] == c->data.frames[i];
    if (same) return VTTT_OK;
    vttt_log(&c->log, VTTT_LOG_ERROR, "%s: the run read other frame shards (or they changed since); resuming "
             "needs the same data (omit --frames to use the run's own)", path);
    return VTTT_EINVAL;
}

/* Loads the newest checkpoint of p->out into c. */
static int setup_resume(enc_train_ctx *c, const char *ck) {
    char path[VTTT_TRAIN_PATH_MAX + 64];
    enc_state st;
    snprintf(path, sizeof path, "%s/trainer_state.json", ck);
    int err = enc_state_read(&st, path, &c->log);
    if (err) return err;
    vttt_encoder_train_params q = st.params; /* the saved settings; the rest is this invocation's */
    memcpy(q.out, c->p.out, sizeof q.out);
    q.frames = c->p.frames, q.n_frames = c->p.n_frames;
    q.resume = 1, q.handle_signals = c->p.handle_signals, q.on_report = c->p.on_report, q.user = c->p.user;
    c->p = q;
    err = c->p.n_frames ? open_data(c, c->p.frames, c->p.n_frames)
                        : open_data(c, (const char *const *)st.files, st.n_files);
    if (!err) err = check_same_data(c, &st, path);
    if (!err && st.samples != enc_data_train(&c->data)) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "%s: the run had %lld training frames, the shards give %lld now", path,
                 (long long)st.samples, (long long)enc_data_train(&c->data));
        err = VTTT_EINVAL;
    }
    if (!err) err = vttt_encoder_load(&c->enc, ck, &c->log);
    if (!err && vttt_encoder_get_config(c->enc)->image_size != c->data.S) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "%s: the tokenizer is for %d-pixel frames, the shards hold %d", ck,
                 vttt_encoder_get_config(c->enc)->image_size, c->data.S);
        err = VTTT_EINVAL;
    }
    int n = 0;
    const vttt_model_tensor *ts = c->enc ? vttt_encoder_tensors(c->enc, &n) : NULL;
    if (!err) err = train_adamw_init_tensors(&c->opt, ts, n, c->p.beta1, c->p.beta2, c->p.eps, c->p.weight_decay,
                                             &c->log);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", ck);
    if (!err) err = train_adamw_load(c->opt, path, st.step);
    if (!err) err = train_sampler_init(&c->sampler, enc_data_train(&c->data), c->p.seed, 1, st.epoch, st.cursor);
    c->step = c->saved_step = st.step, c->frames = st.frames;
    enc_state_free(&st);
    return err;
}

static int setup_new(enc_train_ctx *c) {
    if (mkdir(c->p.out, 0777) != 0 && errno != EEXIST) {
        vttt_log(&c->log, VTTT_LOG_ERROR, "%s: cannot create the run directory: %s", c->p.out, strerror(errno));
        return VTTT_EIO;
    }
    int err = open_data(c, c->p.frames, c->p.n_frames);
    vttt_encoder_config cfg = c->p.model;
    vttt_encoder *from = NULL;
    if (!err && c->p.init) err = vttt_encoder_load_any(&from, c->p.init, NULL, 0, &c->log);
    if (from) cfg = *vttt_encoder_get_config(from);
    cfg.image_size = c->data.S;
    if (c->p.motion >= 0) cfg.motion = c->p.motion;
    if (!err) err = vttt_encoder_init(&c->enc, &cfg, c->p.seed, &c->log);
    if (!err && from) { /* the same layers (convolutions) at any frame size: copy every tensor */
        int n = 0, m = 0;
        const vttt_model_tensor *dst = vttt_encoder_tensors(c->enc, &n), *src = vttt_encoder_tensors(from, &m);
        for (int i = 0; i < n && i < m; i++) memcpy(dst[i].data, src[i].data, (size_t)dst[i].numel * sizeof(float));
    }
    vttt_encoder_free(&from);
    int n = 0;
    const vttt_model_tensor *ts = c->enc ? vttt_encoder_tensors(c->enc, &n) : NULL;
    if (!err) err = train_adamw_init_tensors(&c->opt, ts, n, c->p.beta1, c->p.beta2, c->p.eps, c->p.weight_decay,
                                             &c->log);
    if (!err) err = train_sampler_init(&c->sampler, enc_data_train(&c->data), c->p.seed, 1, 0, 0);
    c->saved_step = -1;
    return err;
}

int enc_train_setup(enc_train_ctx *c, const vttt_encoder_train_params *p, const vttt_logger *lg, int64_t *from) {
    memset(c, 0, sizeof *c);
    c->p = *p;
    if (lg) c->log = *lg;
    *from = -1;
    int err = check_params(p, lg);
    if (err) return err;
    char ck[VTTT_TRAIN_PATH_MAX + 32];
    int64_t latest = train_ckpt_latest(p->out, ck, sizeof ck);
    if (latest >= 0 && !p->resume) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s holds a run (step %lld); continue it with --resume or choose another --out",
                 p->out, (long long)latest);
        return VTTT_EINVAL;
    }
    if (latest < 0 && p->resume) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: no checkpoint (step-* directory) to resume from", p->out);
        return VTTT_EIO;
    }
    err = p->resume ? setup_resume(c, ck) : setup_new(c);
    if (!err && (err = check_params(&c->p, lg))) return err;
    if (err) return err;
    vttt_encoder_set_rate_weight(c->enc, c->p.rate_weight);
    *from = p->resume ? c->step : -1;
    c->sched = (train_schedule){.lr = c->p.lr, .min_lr = c->p.min_lr, .warmup = c->p.warmup, .steps = c->p.steps,
                                .ttt_lr = 0.0f, .ttt_lr_init = -1.0f};
    if (!(c->batch = malloc((size_t)c->p.batch * c->data.S * c->data.S * 3))) return VTTT_ENOMEM;
    if (!(c->prev = malloc((size_t)c->p.batch * c->data.S * c->data.S * 3))) return VTTT_ENOMEM;
    return train_metrics_open(&c->metrics, c->p.out, p->resume ? c->step : -1, lg);
}

void enc_train_teardown(enc_train_ctx *c) {
    if (c->metrics) fclose(c->metrics);
    free(c->batch);
    free(c->prev);
    train_sampler_free(&c->sampler);
    train_adamw_free(&c->opt);
    vttt_encoder_free(&c->enc);
    char **paths = c->data.paths;
    int n = c->data.n;
    enc_data_close(&c->data);
    vttt_encoder_frames_free(&paths, n);
    memset(c, 0, sizeof *c);
}
