/*
 * Validation: the mean next-token loss over the first eval_seqs
 * validation samples (all when 0), spread over the ranks, each sequence
 * whole through the inference path (constant memory for TTT layers); with
 * documents (--docs) each sample is a document (or a piece of seq tokens
 * of one) from the initial state.
 */
#include <stdlib.h>

#include "train_internal.h"

int train_eval(train_ctx *c, float *loss) {
    int T = c->p.seq, len = T + c->shift, B = c->micro;
    int64_t n = train_data_samples(c->val);
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
        float l = 0.0f;
        int64_t count = 0;
        if (!err) err = vttt_model_forward(c->model, tok, tgt, b, span, 0, &l, NULL);
        if (err) break;
        vttt_model_losses(c->model, &count);
        sums[0] += (double)l * (double)count;
        sums[1] += (double)count;
    }
    free(smp), free(tok), free(tgt);
    /* a rank that failed still takes part, so that no other one waits */
    sums[2] = err ? 1.0 : 0.0;
    int cerr = vttt_comm_allreduce_sum_f64(c->comm, sums, 3);
    *loss = sums[1] > 0 ? (float)(sums[0] / sums[1]) : 0.0f;
    if (err || cerr) return err ? err : cerr;
    return sums[2] > 0.0 ? VTTT_EIO : VTTT_OK;
}
