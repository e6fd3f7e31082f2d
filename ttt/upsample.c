/* Nearest-neighbour 2x upsampling of NCHW images (torch's
 * interpolate(scale_factor=2, mode="nearest")): every input pixel becomes
 * a 2x2 block of the output; the backward sums each block. */
#include "ops.h"

/* Input values below which one thread does it (a copy: well under a
 * millisecond, less than an OpenMP barrier on busy cores). */
#define UP_PAR_MIN (1L << 19)

/* out (N, C, 2H, 2W) from inp (N, C, H, W). */
void ttt_upsample2x_forward(float *out, const float *inp, int N, int C, int H, int W) {
    long rows = (long)N * C * H;
#pragma omp parallel for schedule(static) if (rows * W > UP_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        const float *x = inp + r * W;
        float *o = out + r * 4 * W;   /* output rows 2h and 2h+1 of the same plane */
        for (int w = 0; w < W; w++) o[2 * w] = o[2 * w + 1] = x[w];
        for (int w = 0; w < 2 * W; w++) o[2 * W + w] = o[w];
    }
}

/* dinp (N, C, H, W) += the sum of each 2x2 block of dout (N, C, 2H, 2W). */
void ttt_upsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W) {
    long rows = (long)N * C * H;
#pragma omp parallel for schedule(static) if (rows * W > UP_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        const float *g = dout + r * 4 * W;
        float *dx = dinp + r * W;
        for (int w = 0; w < W; w++) dx[w] += g[2 * w] + g[2 * w + 1] + g[2 * W + 2 * w] + g[2 * W + 2 * w + 1];
    }
}
