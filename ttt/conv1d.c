/* Depthwise causal conv1d over time with a carried state of the previous
 * K-1 inputs, as in the Mamba-backbone TTT block. inp, out are (B,T,C),
 * w is (C,K), bias (C), state (B,K-1,C) oldest first. */
#include <string.h>

#include "ops.h"
#include "par.h"

#define CONV_CBLOCK 64 /* channels per thread task in parameter gradients */

/* Input row at time s (may be negative, down to -(K-1)) of batch b, from
 * inp or from the state; NULL means zeros (no state). */
static const float *conv_row(const float *inp, const float *state, int b, int s, int T, int C, int K) {
    if (s >= 0) return inp + ((size_t)b * T + s) * C;
    if (!state) return NULL;
    return state + ((size_t)b * (K - 1) + (K - 1 + s)) * C;
}

void ttt_conv1d_forward(float *out, const float *inp, const float *w, const float *bias, const float *state,
                        int B, int T, int C, int K) {
    long rows = (long)B * T;
#pragma omp parallel for if (VTTT_PAR((double)rows * C * K * VTTT_COST_COPY))
    for (long r = 0; r < rows; r++) {
        int b = (int)(r / T), t = (int)(r % T);
        float *o = out + (size_t)r * C;
        for (int c = 0; c < C; c++) o[c] = bias ? bias[c] : 0.0f;
        for (int k = 0; k < K; k++) {
            const float *x = conv_row(inp, state, b, t - (K - 1) + k, T, C, K);
            if (!x) continue;
            for (int c = 0; c < C; c++) o[c] += w[(size_t)c * K + k] * x[c];
        }
    }
}

/* dinp is gathered per input row (dinp[s] += sum_k w[k] dout[s+K-1-k]);
 * dw and dbias are summed over rows by threads owning channel blocks. */
void ttt_conv1d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, const float *state, int B, int T, int C, int K) {
    long rows = (long)B * T;
    if (dinp) {
#pragma omp parallel for if (VTTT_PAR((double)rows * C * K * VTTT_COST_COPY))
        for (long r = 0; r < rows; r++) {
            int b = (int)(r / T), s = (int)(r % T);
            float *dx = dinp + (size_t)r * C;
            for (int k = 0; k < K; k++) {
                int t = s + (K - 1) - k;
                if (t >= T) continue;
                const float *dy = dout + ((size_t)b * T + t) * C;
                for (int c = 0; c < C; c++) dx[c] += w[(size_t)c * K + k] * dy[c];
            }
        }
    }
    if (!dw && !dbias) return;
#pragma omp parallel for if (VTTT_PAR((double)rows * C * K * VTTT_COST_COPY))
    for (int c0 = 0; c0 < C; c0 += CONV_CBLOCK) {
        int c1 = c0 + CONV_CBLOCK < C ? c0 + CONV_CBLOCK : C;
        for (long r = 0; r < rows; r++) {
            int b = (int)(r / T), t = (int)(r % T);
            const float *dy = dout + (size_t)r * C;
            if (dbias)
                for (int c = c0; c < c1; c++) dbias[c] += dy[c];
            if (!dw) continue;
            for (int k = 0; k < K; k++) {
                const float *x = conv_row(inp, state, b, t - (K - 1) + k, T, C, K);
                if (!x) continue;
                for (int c = c0; c < c1; c++) dw[(size_t)c * K + k] += dy[c] * x[c];
            }
        }
    }
}

/* New state row j (0..K-2) is input time T-(K-1)+j of the sequence
 * [state; inp]. When that time is negative it is the old state row j+T,
 * which lies after row j, so ascending j never reads an overwritten row. */
void ttt_conv1d_state_update(float *state, const float *inp, int B, int T, int C, int K) {
    if (!state || K <= 1) return;
    for (int b = 0; b < B; b++) {
        for (int j = 0; j < K - 1; j++) {
            int s = T - (K - 1) + j;
            float *dst = state + ((size_t)b * (K - 1) + j) * C;
            const float *src = conv_row(inp, state, b, s, T, C, K);
            if (src != dst) memmove(dst, src, (size_t)C * sizeof(float));
        }
    }
}
