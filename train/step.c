/*
 * One optimizer step: this rank's share of the batch, micro-batch by
 * micro-batch, each sequence window by window; the gradient of the mean
 * loss over the whole batch summed over ranks, clipped, and applied.
 */
#include <math.h>
#include <string.h>

#include "train_internal.h"

/* tok, tgt (micro, n) = the window [w0, w0 + n) of the samples and their
 * targets (shift tokens later). */
static void cut_window(train_ctx *c, int w0, int n) {
    int len = c->p.seq + c->shift;
    for (int b = 0; b < c->micro; b++)
        train_sample_cut(c->samples + (size_t)b * len, w0, n, c->shift, c->tok + (size_t)b * n, c->tgt + (size_t)b * n);
}

/* The tokens of micro-batch k of this rank that have targets: seq, or
 * with documents the longest of its samples (the windows past it would
 * only hold padding). */
static int micro_span(const train_ctx *c, int k) {
    if (!c->p.docs) return c->p.seq;
    int first = vttt_comm_rank(c->comm) * c->rank_seqs + k * c->micro, span = 0;
    for (int b = 0; b < c->micro; b++) {
        int n = train_data_sample_targets(c->data, c->ids[first + b]);
        if (n > span) span = n;
    }
    return span;
}

/* Forward and backward of micro-batch k (c->samples); adds the sum of
 * its token losses to *loss_sum. total: targets in the whole batch. The
 * TTT state starts fresh at every sample (with documents: at every
 * document) and is carried from window to window within it. */
static int micro_step(train_ctx *c, int k, double total, double *loss_sum) {
    int T = micro_span(c, k), W = c->p.window, err = VTTT_OK;
    if (c->carry) vttt_model_state_reset(c->carry);
    for (int w0 = 0; w0 < T && !err; w0 += W) {
        int n = T - w0 < W ? T - w0 : W;
        float loss = 0.0f;
        cut_window(c, w0, n);
        if (c->carry) err = vttt_model_forward_carry(c->model, c->carry, c->tok, c->tgt, n, &loss, NULL);
        else err = vttt_model_forward(c->model, c->tok, c->tgt, c->micro, n, 1, &loss, NULL);
        int64_t count = 0;
        vttt_model_losses(c->model, &count);
        /* the model differentiates its mean loss; weigh it by its share */
        if (!err && count > 0) err = vttt_model_backward(c->model, (float)((double)count / total));
        *loss_sum += (double)loss * (double)count;
    }
    return err;
}

/* The samples of micro-batch k of this rank (ids: the whole batch). */
static int load_micro(train_ctx *c, int k) {
    int first = vttt_comm_rank(c->comm) * c->rank_seqs + k * c->micro, len = c->p.seq + c->shift;
    for (int b = 0; b < c->micro; b++) {
        int err = train_data_read(c->data, c->ids[first + b], c->samples + (size_t)b * len);
        if (err) return err;
    }
    return VTTT_OK;
}

int train_step(train_ctx *c, float *loss, float *grad_norm) {
    int B = c->p.batch, err = VTTT_OK;
    for (int i = 0; i < B; i++) c->ids[i] = train_sampler_next(&c->sampler); /* every rank draws all */
    if ((err = vttt_model_set_ttt_base_lr(c->model, train_schedule_ttt_lr(&c->sched, c->step)))) return err;
    vttt_model_zero_grads(c->model);
    /* every target of a token sample counts (padding past a document's end does not) */
    double total = 0.0, sums[2] = {0.0, 0.0};
    for (int i = 0; i < B; i++) total += train_data_sample_targets(c->data, c->ids[i]);
    for (int k = 0; k < c->p.accum && !err; k++) {
        if (!(err = load_micro(c, k))) err = micro_step(c, k, total, &sums[0]);
    }
    /* a rank that failed still takes part, so that no other one waits */
    sums[1] = err ? 1.0 : 0.0;
    int cerr = vttt_comm_allreduce_sum_f64(c->comm, sums, 2);
    if (err || cerr) return err ? err : cerr;
    if (sums[1] > 0.0) return VTTT_EIO; /* another rank failed and logged why */
    if ((err = train_allreduce_grads(c->model, c->comm))) return err;
    *loss = (float)(sums[0] / total);
    if ((err = train_update(c->model, c->opt, &c->sched, c->step, c->p.grad_clip, *loss, grad_norm))) {
        char last[VTTT_TRAIN_PATH_MAX + 64];
        train_ckpt_status(c->p.out, last, sizeof last);
        vttt_log(&c->log, VTTT_LOG_ERROR, "step %lld: non-finite loss (%g) or gradient norm (%g); stopping without "
                 "applying it (%s; try a lower --lr)", (long long)c->step + 1, (double)*loss, (double)*grad_norm, last);
        return err;
    }
    c->step++;
    c->tokens += (int64_t)total;
    return VTTT_OK;
}

int train_update(vttt_model *m, train_adamw *o, const train_schedule *s, int64_t step, float grad_clip, float loss,
                 float *grad_norm) {
    double norm = train_grad_norm(m);
    *grad_norm = (float)norm;
    if (!isfinite(norm) || !isfinite(loss)) return VTTT_ENAN;
    train_clip_grads(m, norm, grad_clip);
    train_adamw_step(o, train_schedule_lr(s, step));
    return VTTT_OK;
}
