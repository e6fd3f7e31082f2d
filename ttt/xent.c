/* Softmax cross-entropy over rows of logits (N, V). */
#include <math.h>

#include "ops.h"
#include "par.h"
#include "ttt.h"

/* Row maximum and log of sum(exp(logit - max)), for a stable softmax. */
static void xent_row_lse(const float *z, int V, float *maxv, float *log_sum) {
    float m = -INFINITY;
    for (int i = 0; i < V; i++) m = z[i] > m ? z[i] : m;
    double s = 0.0;
    for (int i = 0; i < V; i++) s += expf(z[i] - m);
    *maxv = m;
    *log_sum = (float)log(s);
}

/* losses (N) = -log softmax(logits (N,V))[targets (N)]; a target < 0 gives
 * loss 0. Targets are checked first: a target >= V returns VTTT_EINVAL with
 * losses untouched (the caller logs it). */
int ttt_xent_forward(float *losses, const float *logits, const int32_t *targets, int N, int V) {
    for (int n = 0; n < N; n++)
        if (targets[n] >= V) return VTTT_EINVAL;
#pragma omp parallel for if (VTTT_PAR((double)N * V * VTTT_COST_EXP))
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) {
            losses[n] = 0.0f;
            continue;
        }
        const float *z = logits + (size_t)n * V;
        float m, ls;
        xent_row_lse(z, V, &m, &ls);
        losses[n] = (m - z[targets[n]]) + ls; /* max first: keeps precision at large logits */
    }
    return VTTT_OK;
}

/* dlogits (N,V) += dloss[n] * (softmax(logits[n]) - onehot(targets[n])),
 * the softmax recomputed from the logits. Ignored (< 0) and invalid (>= V)
 * targets contribute nothing; dloss NULL means 1 for every row. */
void ttt_xent_backward(float *dlogits, const float *dloss, const float *logits, const int32_t *targets, int N,
                       int V) {
#pragma omp parallel for if (VTTT_PAR((double)N * V * VTTT_COST_EXP))
    for (int n = 0; n < N; n++) {
        int y = targets[n];
        if (y < 0 || y >= V) continue;
        const float *z = logits + (size_t)n * V;
        float *dz = dlogits + (size_t)n * V;
        float g = dloss ? dloss[n] : 1.0f;
        float m, ls;
        xent_row_lse(z, V, &m, &ls);
        for (int i = 0; i < V; i++) dz[i] += g * expf((z[i] - m) - ls);
        dz[y] -= g;
    }
}
