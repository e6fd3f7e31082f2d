/* Rotary position embedding on interleaved pairs, (B, T, H, f) rows. */
#include <math.h>

#include "ops.h"
#include "par.h"

/* Position of time step t: (pos0 + t) mod pos_mod, or unreduced when
 * pos_mod <= 0. The modulus is taken non-negative. */
static int64_t rotary_pos(int64_t pos0, int t, int pos_mod) {
    int64_t p = pos0 + t;
    if (pos_mod > 0) p = ((p % pos_mod) + pos_mod) % pos_mod;
    return p;
}

/* Rotates every pair of x (B,T,H,f) by sign * angle into y. acc != 0 adds
 * the rotated value to y instead of storing it; acc == 0 allows y == x.
 * The angle is computed like the reference (fp32 inverse frequency times
 * the position). An odd trailing element (odd f) is passed through. */
static void rotary_apply(float *y, const float *x, int B, int T, int H, int f, int64_t pos0, int pos_mod,
                         float theta, float sign, int acc) {
    long rows = (long)B * T;
#pragma omp parallel for if (VTTT_PAR((double)rows * H * f * VTTT_COST_EXP))
    for (long r = 0; r < rows; r++) {
        float p = (float)rotary_pos(pos0, (int)(r % T), pos_mod);
        const float *xr = x + (size_t)r * H * f;
        float *yr = y + (size_t)r * H * f;
        for (int i = 0; i < f / 2; i++) {
            float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)f);
            float ang = p * inv_freq;
            float c = cosf(ang), s = sign * sinf(ang);
            for (int h = 0; h < H; h++) {
                size_t j = (size_t)h * f + 2 * i;
                float x0 = xr[j], x1 = xr[j + 1];
                float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
                if (acc) {
                    yr[j] += y0;
                    yr[j + 1] += y1;
                } else {
                    yr[j] = y0;
                    yr[j + 1] = y1;
                }
            }
        }
        if (f % 2) {
            for (int h = 0; h < H; h++) {
                size_t j = (size_t)h * f + f - 1;
                yr[j] = acc ? yr[j] + xr[j] : xr[j];
            }
        }
    }
}

void ttt_rotary_forward(float *out, const float *inp, int B, int T, int H, int f, int64_t pos0, int pos_mod,
                        float theta) {
    rotary_apply(out, inp, B, T, H, f, pos0, pos_mod, theta, 1.0f, 0);
}

/* The rotation is orthogonal: dinp += R(-angle) dout. */
void ttt_rotary_backward(float *dinp, const float *dout, int B, int T, int H, int f, int64_t pos0, int pos_mod,
                         float theta) {
    rotary_apply(dinp, dout, B, T, H, f, pos0, pos_mod, theta, -1.0f, 1);
}
