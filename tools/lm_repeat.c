/* In-context copying: the loss on a piece of a document read a second
 * time, right after the first (`vttt lm loss-by-position --repeat`). A
 * model that uses its context predicts the second copy far better than
 * the first; one that does not gains nothing. See lm_repeat_eval in lm.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm.h"

/* Sequences of equal length waiting for one batched forward, and the
 * per-piece sums. */
typedef struct {
    int32_t *buf;        /* (batch, len) */
    int batch, len, k;   /* k: 1 with a separator before each copy, else 0 */
    int64_t queued, max_pieces;
    double *w, *d;       /* (pieces) scored tokens and drop (nats/token) of each piece */
    int64_t pieces, cap, tokens;
    double first, second;
} rep_job;

/* losses (T = 2 (s + k)): losses[q - 1] is the NLL of the token at
 * position q; the piece's token i sits at k + i and at s + 2k + i. */
static int add_pair(void *user, int64_t window, const float *losses, int T) {
    rep_job *j = user;
    int s = T / 2 - j->k;
    double f = 0, g = 0;
    (void)window;
    for (int i = 1 - j->k; i < s; i++) f += losses[j->k + i - 1], g += losses[s + 2 * j->k + i - 1];
    int w = s - 1 + j->k;
    if (j->pieces == j->cap) {
        int64_t cap = j->cap ? 2 * j->cap : 256;
        double *nw = realloc(j->w, (size_t)cap * 2 * sizeof *nw);
        if (!nw) return VTTT_ENOMEM;
        j->d = nw + cap;
        memmove(j->d, nw + j->cap, (size_t)j->pieces * sizeof *nw);
        j->w = nw, j->cap = cap;
    }
    j->w[j->pieces] = w, j->d[j->pieces++] = (f - g) / w;
    j->first += f, j->second += g, j->tokens += w;
    return 0;
}

static int flush(rep_job *j, vttt_model *m) {
    int err = j->queued ? lm_eval_windows(m, j->buf, j->queued, j->len, j->batch, add_pair, j) : 0;
    j->queued = 0;
    return err;
}

/* Queues `sep piece sep piece` (or `piece piece`), flushing first when
 * the length changes or the batch is full. */
static int queue(rep_job *j, vttt_model *m, const int32_t *piece, int s, int32_t sep) {
    int len = 2 * (s + j->k);
    if (j->queued && (len != j->len || j->queued == j->batch)) {
        int err = flush(j, m);
        if (err) return err;
    }
    j->len = len;
    int32_t *q = j->buf + (size_t)j->queued++ * len;
    for (int c = 0; c < 2; c++) {
        if (j->k) *q++ = sep;
        memcpy(q, piece, (size_t)s * sizeof *q);
        q += s;
    }
    return 0;
}

/* Cuts one document (len tokens) into ceil(len / L) nearly equal pieces. */
static int add_document(rep_job *j, vttt_model *m, const int32_t *doc, int64_t len, int L, int32_t sep) {
    int64_t k = (len + L - 1) / L, at = 0;
    for (int64_t p = 0; p < k; p++) {
        int s = (int)(len / k + (p < len % k));
        if (j->max_pieces && j->pieces + j->queued >= j->max_pieces) return 0;
        if (s >= 2 - j->k) {
            int err = queue(j, m, doc + at, s, sep);
            if (err) return err;
        }
        at += s;
    }
    return 0;
}

static double se_drop(const rep_job *j) {
    if (j->pieces < 2) return NAN;
    double drop = (j->first - j->second) / (double)j->tokens, ss = 0;
    for (int64_t p = 0; p < j->pieces; p++) ss += j->w[p] * j->w[p] * (j->d[p] - drop) * (j->d[p] - drop);
    return sqrt((double)j->pieces / (double)(j->pieces - 1) * ss) / (double)j->tokens;
}

int lm_repeat_eval(vttt_model *m, const int32_t *ids, int64_t n, int32_t sep, int64_t T, int batch,
                   int64_t max_pieces, lm_repeat_stats *out, const char *cmd) {
    const vttt_model_config *cfg = vttt_model_get_config(m);
    if (vttt_model_config_target_shift(cfg) != 1) {
        fprintf(stderr, "%s: --repeat is for text models (this one predicts %d tokens ahead)\n", cmd,
                vttt_model_config_target_shift(cfg));
        return VTTT_EINVAL;
    }
    rep_job j = {.batch = batch, .k = sep >= 0, .max_pieces = max_pieces};
    int64_t L = T / 2 - j.k;
    if (L < 2 || L > INT32_MAX / 2 - 2) {
        fprintf(stderr, "%s: --repeat needs a context of at least %d tokens (got %lld)\n", cmd, 2 * (2 + j.k),
                (long long)T);
        return VTTT_EINVAL;
    }
    int64_t longest = 0;   /* no piece is longer than the longest document: the buffer's size */
    for (int64_t a = 0, b = 0; a < n; a = ++b) {
        while (b < n && ids[b] != sep) b++;
        if (b - a > longest) longest = b - a;
    }
    j.buf = malloc((size_t)batch * 2 * (size_t)((L < longest ? L : longest) + j.k) * sizeof *j.buf);
    int err = j.buf ? 0 : VTTT_ENOMEM;
    for (int64_t a = 0; !err && a < n;) {
        int64_t b = a;
        while (b < n && ids[b] != sep) b++;
        err = add_document(&j, m, ids + a, b - a, (int)L, sep);
        a = b + 1;
    }
    if (!err) err = flush(&j, m);
    if (err) fprintf(stderr, "%s: --repeat: evaluation failed (%s)\n", cmd, vttt_strerror(err));
    else if (!j.tokens) {
        fprintf(stderr, "%s: --repeat: the input holds no document to repeat\n", cmd);
        err = VTTT_EINVAL;
    } else {
        *out = (lm_repeat_stats){j.pieces, j.tokens, j.first / (double)j.tokens, j.second / (double)j.tokens,
                                 se_drop(&j)};
    }
    free(j.buf), free(j.w);
    return err;
}
