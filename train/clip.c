/*
 * Gradient reductions over the model's flat gradient blocks (or a list of
 * tensors: the frame tokenizer's): the global norm (thread-count
 * independent), clipping, and the sum over ranks.
 */
#include <math.h>
#include <stdlib.h>

#include "par.h"
#include "train_internal.h"

#define MAX_BLOCKS 1100   /* num_hidden_layers <= 1024, plus the model's own */
#define NORM_CHUNK 16384  /* elements per partial sum */

/* Sum of squares of x (n) in double: partial sums over fixed chunks,
 * added in chunk order, so the result does not depend on the threads. */
static double sum_squares(const float *x, size_t n) {
    size_t nc = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *part = malloc((nc ? nc : 1) * sizeof(double)), total = 0.0;
    if (!part) { /* serial fallback, same chunk order */
        for (size_t c = 0; c < nc; c++) {
            double s = 0.0;
            for (size_t i = c * NORM_CHUNK; i < n && i < (c + 1) * NORM_CHUNK; i++) s += (double)x[i] * x[i];
            total += s;
        }
        return total;
    }
#pragma omp parallel for if (VTTT_PAR((double)n * 2 * VTTT_COST_COPY))
    for (size_t c = 0; c < nc; c++) {
        double s = 0.0;
        size_t end = (c + 1) * NORM_CHUNK < n ? (c + 1) * NORM_CHUNK : n;
        for (size_t i = c * NORM_CHUNK; i < end; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    for (size_t c = 0; c < nc; c++) total += part[c];
    free(part);
    return total;
}

double train_grad_norm(vttt_model *m) {
    vttt_model_block b[MAX_BLOCKS];
    int n = vttt_model_blocks(m, b, MAX_BLOCKS);
    double ss = 0.0;
    for (int i = 0; i < n && i < MAX_BLOCKS; i++) ss += sum_squares(b[i].grads, b[i].n);
    return sqrt(ss);
}

float train_clip_grads(vttt_model *m, double norm, float max_norm) {
    if (!(max_norm > 0.0f) || !(norm > max_norm)) return 1.0f;
    float s = (float)(max_norm / norm);
    vttt_model_block b[MAX_BLOCKS];
    int n = vttt_model_blocks(m, b, MAX_BLOCKS);
    for (int i = 0; i < n && i < MAX_BLOCKS; i++) {
        float *g = b[i].grads;
        size_t k = b[i].n;
#pragma omp parallel for if (VTTT_PAR((double)k * VTTT_COST_COPY))
        for (size_t j = 0; j < k; j++) g[j] *= s;
    }
    return s;
}

double train_grad_norm_tensors(const vttt_model_tensor *ts, int n) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += sum_squares(ts[i].grad, (size_t)ts[i].numel);
    return sqrt(ss);
}

float train_clip_grads_tensors(const vttt_model_tensor *ts, int n, double norm, float max_norm) {
    if (!(max_norm > 0.0f) || !(norm > max_norm)) return 1.0f;
    float s = (float)(max_norm / norm);
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < ts[i].numel; j++) ts[i].grad[j] *= s;
    return s;
}

int train_allreduce_grads(vttt_model *m, vttt_comm *c) {
    if (vttt_comm_size(c) == 1) return VTTT_OK;
    vttt_model_block b[MAX_BLOCKS];
    int n = vttt_model_blocks(m, b, MAX_BLOCKS), err = VTTT_OK;
    for (int i = 0; i < n && i < MAX_BLOCKS && !err; i++) err = vttt_comm_allreduce_sum(c, b[i].grads, b[i].n);
    return err;
}
