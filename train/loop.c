/*
 * The run loop both trainers (the LM's trainer.c and the frame
 * tokenizer's encoder_trainer.c) drive: steps until the last one or a
 * signal, the final evaluation and checkpoint, and the rates of a step's
 * report.
 */
#include <time.h>

#include "train_internal.h"

double train_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void train_report_rates(vttt_train_report *r, double items, double t0, double t1, double t_start, int64_t step0) {
    r->tokens_per_s = items / (t1 - t0 > 1e-9 ? t1 - t0 : 1e-9);
    r->eta_s = (t1 - t_start) / (double)(r->step - step0) * (double)(r->steps - r->step);
}

void train_eval_nan_stop(const vttt_logger *lg, const char *run, int64_t step) {
    char last[VTTT_TRAIN_PATH_MAX + 64];
    train_ckpt_status(run, last, sizeof last);
    vttt_log(lg, VTTT_LOG_ERROR, "step %lld: the validation loss is not finite; stopping without saving a checkpoint "
             "(%s; try a lower --lr)", (long long)step, last);
}

int train_loop_run(const train_loop *l) {
    double t_start = train_now_s();
    int64_t step0 = *l->step;
    int err = VTTT_OK;
    while (!err && *l->step < l->steps && !*l->stop) err = l->step_and_report(l->ctx, t_start, step0);
    if (err) return err; /* nothing saved: the last checkpoint stays the one to resume from */
    if (*l->stop) {
        vttt_log(l->log, VTTT_LOG_WARNING, "stopped by a signal after step %lld; saving a checkpoint",
                 (long long)*l->step);
    } else if (l->can_eval && !(l->eval_every > 0 && *l->step % l->eval_every == 0)) {
        if ((err = l->evaluate(l->ctx))) return err;
    }
    return l->save(l->ctx);
}
