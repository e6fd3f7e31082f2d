/*
 * The training loop: steps, reports and metrics, evaluations, checkpoints,
 * and stopping on a signal; plus reading a run's saved settings for
 * --resume.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

int vttt_train_checkpoint_params(vttt_train_params *p, const char *ckpt, const vttt_logger *lg) {
    char path[VTTT_TRAIN_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/trainer_state.json", ckpt);
    train_state st;
    int err = train_state_read(&st, NULL, path, lg);
    if (!err) *p = st.params;
    return err;
}

int vttt_train_params_load(vttt_train_params *p, const char *dir, const vttt_logger *lg) {
    char ck[VTTT_TRAIN_PATH_MAX + 32];
    if (train_ckpt_latest(dir, ck, sizeof ck) < 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: no checkpoint (step-* directory) to resume from", dir);
        return VTTT_EIO;
    }
    vttt_train_params q; /* the saved settings; the rest is this invocation's */
    int err = vttt_train_checkpoint_params(&q, ck, lg);
    if (err) return err;
    memcpy(q.out, p->out, sizeof q.out);
    q.resume = p->resume, q.handle_signals = p->handle_signals, q.comm = p->comm;
    q.on_report = p->on_report, q.user = p->user;
    *p = q;
    return VTTT_OK;
}

static int rank0(const train_ctx *c) { return vttt_comm_rank(c->comm) == 0; }

static void report(train_ctx *c, const vttt_train_report *r) {
    if (rank0(c) && c->p.on_report) c->p.on_report(c->p.user, r);
}

/* Rank 0 writes the checkpoint of the current step; every rank returns its
 * result. */
static int save(void *ctx) {
    train_ctx *c = ctx;
    char dir[VTTT_TRAIN_PATH_MAX + 32] = "";
    int err = VTTT_OK;
    if (c->step == c->saved_step || c->p.ckpt_every < 0) return VTTT_OK;
    if (rank0(c)) {
        train_state st = {c->step, c->tokens, c->sampler.epoch, c->sampler.cursor, c->p.seed, c->sampler.n, c->p};
        err = train_ckpt_save(c->p.out, c->model, c->opt, &st, c->data, c->p.keep, dir, sizeof dir, &c->log);
    }
    int cerr = vttt_comm_broadcast(c->comm, &err, sizeof err, 0);
    if (err || cerr) return err ? err : cerr;
    c->saved_step = c->step;
    vttt_train_report r = {.event = VTTT_TRAIN_EVENT_CHECKPOINT, .step = c->step, .steps = c->p.steps,
                           .tokens = c->tokens, .checkpoint = dir};
    report(c, &r);
    return VTTT_OK;
}

static int evaluate(void *ctx) {
    train_ctx *c = ctx;
    float loss;
    int err = train_eval(c, &loss);
    if (err == VTTT_ENAN) train_eval_nan_stop(&c->log, c->p.out, c->step);
    if (err) return err;
    vttt_train_report r = {.event = VTTT_TRAIN_EVENT_EVAL, .step = c->step, .steps = c->p.steps,
                           .tokens = c->tokens, .val_loss = loss, .val_ppl = expf(loss)};
    if (c->metrics) train_metrics_eval(c->metrics, &r);
    train_summary_eval(&c->summary, c->step, loss);
    report(c, &r);
    return VTTT_OK;
}

/* Every rank stops when one got a signal (mpirun forwards them to all,
 * but not necessarily within the same step). */
static int sync_stop(train_ctx *c) {
    if (vttt_comm_size(c->comm) == 1) return VTTT_OK;
    double s = c->stop ? 1.0 : 0.0;
    int err = vttt_comm_allreduce_sum_f64(c->comm, &s, 1);
    if (s > 0.0) c->stop = 1;
    return err;
}

/* Runs one step and what follows it (report, metrics, evaluation,
 * checkpoint). t_start, step0: when and where this process started. */
static int step_and_report(void *ctx, double t_start, int64_t step0) {
    train_ctx *c = ctx;
    const vttt_train_params *p = &c->p;
    vttt_train_report r = {.event = VTTT_TRAIN_EVENT_STEP, .steps = p->steps};
    r.lr = train_schedule_lr(&c->sched, c->step);
    r.ttt_base_lr = train_schedule_ttt_lr(&c->sched, c->step);
    double t0 = train_now_s();
    int err = train_step(c, &r.loss, &r.grad_norm);
    if (err) return err;
    r.step = c->step, r.tokens = c->tokens;
    train_report_rates(&r, (double)p->batch * p->seq, t0, train_now_s(), t_start, step0);
    r.time_s = c->summary.time0 + (train_now_s() - c->summary.t0);
    if (c->metrics) train_metrics_step(c->metrics, &r);
    train_summary_step(&c->summary, r.loss);
    report(c, &r);
    if (c->val && p->eval_every > 0 && c->step % p->eval_every == 0 && (err = evaluate(c))) return err;
    if (p->ckpt_every > 0 && c->step % p->ckpt_every == 0 && (err = save(c))) return err;
    return sync_stop(c);
}

static int loop(train_ctx *c) {
    const vttt_train_params *p = &c->p;
    vttt_train_report r = {.event = VTTT_TRAIN_EVENT_START, .step = c->step, .steps = p->steps, .tokens = c->tokens,
                           .params = (int64_t)vttt_model_num_params(c->model), .ranks = vttt_comm_size(c->comm)};
    report(c, &r);
    train_loop l = {.ctx = c, .step = &c->step, .steps = p->steps, .eval_every = p->eval_every, .stop = &c->stop,
                    .can_eval = c->val != NULL, .log = &c->log, .step_and_report = step_and_report,
                    .evaluate = evaluate, .save = save};
    int err = train_loop_run(&l);
    if (err || !rank0(c)) return err;
    r = train_summary_report(&c->summary, c->step, p->steps, c->tokens);
    report(c, &r);
    return train_summary_write(p->out, &r, &c->log);
}

/* The summary's start: this process's clock and tokens, and on resume the
 * best validation loss of the run so far. */
static void summary_start(train_ctx *c, double t0, int64_t from) {
    c->summary = (train_summary){.t0 = t0, .tokens0 = c->tokens, .best_val = NAN, .best_step = -1};
    train_metrics_history h;
    if (from < 0 || !rank0(c)) return;
    if (train_metrics_history_read(c->p.out, &h, &c->log)) {
        vttt_log(&c->log, VTTT_LOG_WARNING, "%s/metrics.jsonl: unreadable; the summary's best validation loss "
                 "covers only the steps from %lld on, and time_s starts again at 0", c->p.out, (long long)from);
        return;
    }
    c->summary.best_val = h.best_val, c->summary.best_step = h.best_step, c->summary.time0 = h.time_s;
}

int vttt_train_run(const vttt_train_params *p, const vttt_logger *lg) {
    if (!p) return VTTT_EINVAL;
    train_ctx *c = calloc(1, sizeof *c);
    if (!c) return VTTT_ENOMEM;
    int64_t from = -1;
    double t0 = train_now_s();
    int err = train_setup(c, p, lg, &from);
    if (!err) summary_start(c, t0, from);
    if (!err) {
        if (from >= 0) vttt_log(lg, VTTT_LOG_INFO, "resuming %s from step %lld", p->out, (long long)from);
        if (p->handle_signals) train_signals_install(c);
        err = loop(c);
        if (p->handle_signals) train_signals_restore();
    }
    train_teardown(c);
    free(c);
    return err;
}
