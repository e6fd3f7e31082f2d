/* Token embedding lookup, table (V, C). */
#include <string.h>

#include "ops.h"
#include "par.h"
#include "ttt.h"

/* out (N,C) = table[ids (N)]. Every id is checked before anything is
 * written, so on VTTT_EINVAL out is untouched; the caller, which holds the
 * logger and knows where the ids came from, reports the error. */
int ttt_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int V, int C) {
    for (int n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= V) return VTTT_EINVAL;
#pragma omp parallel for if (VTTT_PAR((double)N * C * VTTT_COST_COPY))
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, table + (size_t)ids[n] * C, (size_t)C * sizeof(float));
    return VTTT_OK;
}

/* dtable[ids[n]] += dout[n]. Serial over rows because ids repeat; rows with
 * a negative id are skipped (the forward would have rejected them). */
void ttt_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C) {
    for (int n = 0; n < N; n++) {
        if (ids[n] < 0) continue;
        float *d = dtable + (size_t)ids[n] * C;
        const float *g = dout + (size_t)n * C;
        for (int i = 0; i < C; i++) d[i] += g[i];
    }
}
