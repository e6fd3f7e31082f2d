/* Fully connected layer over rows: out = inp . w^T + bias, via ttt_sgemm. */
#include "ops.h"
#include "par.h"

/* out (N,OC) = inp (N,C) . w (OC,C)^T + bias (OC). The bias (or zero) is
 * written first so the GEMM can accumulate onto it with beta = 1. */
void ttt_linear_forward(float *out, const float *inp, const float *w, const float *bias, int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return;
#pragma omp parallel for if (VTTT_PAR((double)N * OC * VTTT_COST_COPY))
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * OC;
        for (int j = 0; j < OC; j++) o[j] = bias ? bias[j] : 0.0f;
    }
    if (C > 0) ttt_sgemm(0, 1, N, OC, C, 1.0f, inp, C, w, C, 1.0f, out, OC);
}

/* dinp (N,C) += dout (N,OC) . w (OC,C); dw (OC,C) += dout^T . inp;
 * dbias (OC) += column sums of dout. Each parallel iteration owns one bias
 * entry, so the accumulation has no race. */
void ttt_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    if (dinp && C > 0) ttt_sgemm(0, 0, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
    if (dw && C > 0) ttt_sgemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (dbias) {
#pragma omp parallel for if (VTTT_PAR((double)N * OC * VTTT_COST_COPY))
        for (int j = 0; j < OC; j++) {
            double s = 0.0;
            for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + j];
            dbias[j] += (float)s;
        }
    }
}
