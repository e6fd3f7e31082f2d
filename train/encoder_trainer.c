/*
 * The frame tokenizer's training loop: steps (forward, backward, clip,
 * AdamW), reports and metrics, evaluations on the held-out frames,
 * checkpoints, and stopping on a signal.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "encoder_train_internal.h"

static double psnr_of(double mse) { return mse > 1e-10 ? 10.0 * log10(1.0 / mse) : 100.0; }

static void report(enc_train_ctx *c, const vttt_train_report *r) {
    if (c->p.on_report) c->p.on_report(c->p.user, r);
}

static int is_delta(const enc_train_ctx *c) { return vttt_encoder_get_config(c->enc)->kind == VTTT_ENCODER_DELTA; }

/* A deterministic hash of (seed, step, b): the per-sample choices of a
 * DELTA batch, the same again after a resume. */
static uint64_t sample_hash(uint64_t seed, int64_t step, int b) {
    uint64_t z = seed ^ ((uint64_t)step * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)b * 0xD1B54A32D192ED03ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Frame b of a batch (training: val 0, sample i) into c->batch, and for a
 * DELTA tokenizer its reference into c->prev: the frame `gap` before it in
 * the same shard, or mid-grey (the intra mode) at a shard's start and for
 * one sample in ten of a training batch. Training draws gap 2 for a
 * quarter of the samples (larger motion), else 1. */
static int read_sample(enc_train_ctx *c, int val, int64_t i, int b) {
    size_t fb = (size_t)c->data.S * c->data.S * 3;
    if (!is_delta(c)) return enc_data_read(&c->data, val, i, c->batch + b * fb);
    uint64_t h = val ? 1 : sample_hash(c->p.seed, c->step, b);
    int gap = (h >> 8) % 4 == 0 ? 2 : 1, intra = h % 10 == 0, have = 0;
    int err = enc_data_read_pair(&c->data, val, i, intra ? 0 : gap, c->prev + b * fb, &have, c->batch + b * fb);
    if (!err && !have) memset(c->prev + b * fb, 128, fb);
    return err;
}

/* One optimizer step over the next batch of training frames. */
static int step(enc_train_ctx *c, float *loss, float *grad_norm) {
    int B = c->p.batch, err = VTTT_OK;
    for (int b = 0; b < B && !err; b++) err = read_sample(c, 0, train_sampler_next(&c->sampler), b);
    if (err) return err;
    vttt_encoder_zero_grads(c->enc);
    if ((err = vttt_encoder_forward(c->enc, c->prev, c->batch, B, 1, loss, NULL)) ||
        (err = vttt_encoder_backward(c->enc, 1.0f)))
        return err;
    int n = 0;
    const vttt_model_tensor *ts = vttt_encoder_tensors(c->enc, &n);
    double norm = train_grad_norm_tensors(ts, n);
    *grad_norm = (float)norm;
    if (!isfinite(norm) || !isfinite(*loss)) {
        char last[VTTT_TRAIN_PATH_MAX + 64];
        train_ckpt_status(c->p.out, last, sizeof last);
        vttt_log(&c->log, VTTT_LOG_ERROR, "step %lld: non-finite loss (%g) or gradient norm (%g); stopping without "
                 "applying it (%s; try a lower --lr)", (long long)c->step + 1, (double)*loss, norm, last);
        return VTTT_ENAN;
    }
    train_clip_grads_tensors(ts, n, norm, c->p.grad_clip);
    train_adamw_step(c->opt, train_schedule_lr(&c->sched, c->step));
    c->step++;
    c->frames += B;
    return VTTT_OK;
}

/* Mean MSE over the held-out frames (the first eval_frames of them). */
static int evaluate(void *ctx) {
    enc_train_ctx *c = ctx;
    int64_t n = enc_data_val(&c->data);
    if (c->p.eval_frames > 0 && c->p.eval_frames < n) n = c->p.eval_frames;
    if (n == 0) return VTTT_OK;
    double sum = 0.0;
    int err = VTTT_OK;
    for (int64_t i0 = 0; i0 < n && !err; i0 += c->p.batch) {
        int k = (int)(n - i0 < c->p.batch ? n - i0 : c->p.batch);
        float loss = 0.0f;
        for (int b = 0; b < k && !err; b++) err = read_sample(c, 1, i0 + b, b);
        if (!err) err = vttt_encoder_forward(c->enc, c->prev, c->batch, k, 0, &loss, NULL);
        sum += (double)loss * k;
    }
    if (!err && !isfinite(sum)) err = VTTT_ENAN;
    if (err == VTTT_ENAN) train_eval_nan_stop(&c->log, c->p.out, c->step);
    if (err) return err;
    vttt_train_report r = {.event = VTTT_TRAIN_EVENT_EVAL, .step = c->step, .steps = c->p.steps,
                           .tokens = c->frames, .val_loss = (float)(sum / (double)n)};
    if (c->metrics) {
        fprintf(c->metrics, "{\"step\":%lld,\"val_loss\":%.9g,\"val_psnr\":%.9g}\n", (long long)r.step,
                (double)r.val_loss, psnr_of(r.val_loss));
        fflush(c->metrics);
    }
    report(c, &r);
    return VTTT_OK;
}

/* The checkpoint's files: the tokenizer directory, the optimizer, the state. */
static int fill_ckpt(void *user, const char *tmp) {
    enc_train_ctx *c = user;
    char path[VTTT_TRAIN_PATH_MAX + 64];
    int nt = 0;
    const vttt_model_tensor *t = vttt_encoder_tensors(c->enc, &nt);
    int err = train_tensors_finite(t, nt, &c->log);
    if (!err) err = vttt_encoder_save(c->enc, tmp);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
    if (!err) err = train_adamw_save(c->opt, path);
    enc_state st = {.step = c->step, .frames = c->frames, .epoch = c->sampler.epoch, .cursor = c->sampler.cursor,
                    .samples = c->sampler.n, .params = c->p};
    snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
    if (!err) err = enc_state_write(&st, &c->data, path, &c->log);
    return err;
}

static int save(void *ctx) {
    enc_train_ctx *c = ctx;
    char dir[VTTT_TRAIN_PATH_MAX + 32] = "";
    if (c->step == c->saved_step) return VTTT_OK;
    int err = train_ckpt_write(c->p.out, c->step, fill_ckpt, c, c->p.keep, dir, sizeof dir, &c->log);
    if (err) return err;
    c->saved_step = c->step;
    vttt_train_report r = {.event = VTTT_TRAIN_EVENT_CHECKPOINT, .step = c->step, .steps = c->p.steps,
                           .tokens = c->frames, .checkpoint = dir};
    report(c, &r);
    return VTTT_OK;
}

static int step_and_report(void *ctx, double t_start, int64_t step0) {
    enc_train_ctx *c = ctx;
    const vttt_encoder_train_params *p = &c->p;
    vttt_train_report r = {.event = VTTT_TRAIN_EVENT_STEP, .steps = p->steps};
    r.lr = train_schedule_lr(&c->sched, c->step);
    double t0 = train_now_s();
    int err = step(c, &r.loss, &r.grad_norm);
    if (err) return err;
    r.step = c->step, r.tokens = c->frames;
    train_report_rates(&r, (double)p->batch, t0, train_now_s(), t_start, step0);
    if (c->metrics) {
        fprintf(c->metrics, "{\"step\":%lld,\"loss\":%.9g,\"psnr\":%.9g,\"rate\":%.6g,\"lr\":%.9g,\"grad_norm\":%.9g,"
                "\"frames\":%lld,\"frames_per_s\":%.1f}\n", (long long)r.step, (double)r.loss, psnr_of(r.loss),
                vttt_encoder_rate(c->enc), (double)r.lr, (double)r.grad_norm, (long long)r.tokens, r.tokens_per_s);
        fflush(c->metrics);
    }
    report(c, &r);
    if (p->eval_every > 0 && c->step % p->eval_every == 0 && (err = evaluate(c))) return err;
    if (p->ckpt_every > 0 && c->step % p->ckpt_every == 0 && (err = save(c))) return err;
    return VTTT_OK;
}

static int loop(enc_train_ctx *c) {
    const vttt_encoder_train_params *p = &c->p;
    vttt_train_report r = {.event = VTTT_TRAIN_EVENT_START, .step = c->step, .steps = p->steps, .tokens = c->frames,
                           .params = (int64_t)vttt_encoder_num_params(c->enc), .ranks = 1};
    report(c, &r);
    train_loop l = {.ctx = c, .step = &c->step, .steps = p->steps, .eval_every = p->eval_every, .stop = &c->stop,
                    .can_eval = 1, .log = &c->log, .step_and_report = step_and_report, .evaluate = evaluate,
                    .save = save};
    return train_loop_run(&l);
}

int vttt_encoder_train_run(const vttt_encoder_train_params *p, const vttt_logger *lg) {
    if (!p) return VTTT_EINVAL;
    enc_train_ctx *c = calloc(1, sizeof *c);
    if (!c) return VTTT_ENOMEM;
    int64_t from = -1;
    int err = enc_train_setup(c, p, lg, &from);
    if (!err) {
        if (from >= 0) vttt_log(lg, VTTT_LOG_INFO, "resuming %s from step %lld", p->out, (long long)from);
        if (p->handle_signals) train_signals_install_flag(&c->stop);
        err = loop(c);
        if (p->handle_signals) train_signals_restore();
    }
    enc_train_teardown(c);
    free(c);
    return err;
}

int vttt_encoder_load_any(vttt_encoder **out, const char *dir, char *used, size_t n, const vttt_logger *lg) {
    char ck[VTTT_TRAIN_PATH_MAX + 32], cfg[VTTT_TRAIN_PATH_MAX + 48];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    struct stat st;
    const char *use = dir;
    if (stat(cfg, &st) != 0 && train_ckpt_latest(dir, ck, sizeof ck) >= 0) use = ck; /* a training run: its newest checkpoint */
    if (used) snprintf(used, n, "%s", use);
    return vttt_encoder_load(out, use, lg);
}
