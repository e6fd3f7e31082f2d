/*
 * Validation: the mean next-token loss over the validation tokens, each
 * window from the learned initial state through the inference path
 * (constant memory for TTT layers), spread over the ranks.
 *
 * The one definition, shared with `vttt lm score --context seq` (see
 * train/README.md): the tokens laid end to end are cut into windows of
 * seq inputs, window i the inputs [i*seq, (i+1)*seq) predicting the tokens
 * shift later, so every token but the first shift ones is predicted once;
 * the tokens after the last whole window make one shorter window. The
 * mean is over predicted tokens. With eval_seqs > 0 only the first
 * eval_seqs whole windows count (and no shorter one). With documents
 * (--docs) each sample is a document (or a piece of seq tokens of one)
 * from the initial state; they cover every token already.
 */
#include <stdlib.h>

#include "train_internal.h"

/* The forward of b windows (tok, tgt: (b, T)); adds the loss sum and the
 * number of targets to sums. */
static int eval_forward(train_ctx *c, const int32_t *tok, const int32_t *tgt, int b, int T, double sums[2]) {
    float l = 0.0f;
    int64_t count = 0;
    int err = vttt_model_forward(c->model, tok, tgt, b, T, 0, &l, NULL);
    if (err) return err;
    vttt_model_losses(c->model, &count);
    sums[0] += (double)l * (double)count;
    sums[1] += (double)count;
    return VTTT_OK;
}

/* The shorter last window: the inputs from the end of the last whole
 * sample to shift before the end. */
static int eval_tail(train_ctx *c, double sums[2]) {
    int64_t from = train_data_samples(c->val) * c->p.seq;
    int64_t rest = train_data_tokens(c->val) - c->shift - from;   /* < seq */
    if (rest <= 0) return VTTT_OK;
    int32_t *buf = malloc((size_t)(rest + c->shift) * sizeof(int32_t));
    int err = buf ? train_data_read_range(c->val, from, rest + c->shift, buf) : VTTT_ENOMEM;
    if (!err) err = eval_forward(c, buf, buf + c->shift, 1, (int)rest, sums);
    free(buf);
    return err;
}

int train_eval(train_ctx *c, float *loss) {
    int T = c->p.seq, len = T + c->shift, B = c->micro;
    int64_t n = train_data_samples(c->val), all = n;
    if (c->p.eval_seqs > 0 && c->p.eval_seqs < n) n = c->p.eval_seqs;
    int32_t *smp = malloc((size_t)B * len * sizeof(int32_t)), *tok = malloc((size_t)B * T * sizeof(int32_t));
    int32_t *tgt = malloc((size_t)B * T * sizeof(int32_t));
    double sums[3] = {0.0, 0.0, 0.0}; /* loss sum, targets, failed ranks */
    int err = smp && tok && tgt ? VTTT_OK : VTTT_ENOMEM;
    int rank = vttt_comm_rank(c->comm), size = vttt_comm_size(c->comm);
    /* this rank's samples are rank, rank + size, ...; B at a time */
    for (int64_t i = rank; i < n && !err; i += (int64_t)B * size) {
        int b = 0, span = 0;   /* span: the longest sample's targets (documents are shorter than seq) */
        for (; b < B && i + (int64_t)b * size < n && !err; b++) {
            int64_t k = i + (int64_t)b * size;
            int t = train_data_sample_targets(c->val, k);
            err = train_data_read(c->val, k, smp + (size_t)b * len);
            if (t > span) span = t;
        }
        for (int r = 0; r < b; r++)
            train_sample_cut(smp + (size_t)r * len, 0, span, c->shift, tok + (size_t)r * span, tgt + (size_t)r * span);
        if (!err) err = eval_forward(c, tok, tgt, b, span, sums);
    }
    free(smp), free(tok), free(tgt);
    /* the shorter last window: on the rank next in turn */
    if (!err && !c->p.docs && n == all && rank == (int)(n % size)) err = eval_tail(c, sums);
    /* a rank that failed still takes part, so that no other one waits */
    sums[2] = err ? 1.0 : 0.0;
    int cerr = vttt_comm_allreduce_sum_f64(c->comm, sums, 3);
    *loss = sums[1] > 0 ? (float)(sums[0] / sums[1]) : 0.0f;
    if (err || cerr) return err ? err : cerr;
    return sums[2] > 0.0 ? VTTT_EIO : VTTT_OK;
}
