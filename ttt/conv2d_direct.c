/* The CPU conv2d written as its definition, a loop over every output,
 * channel and kernel tap; no scratch memory. conv2d.c falls back to it
 * when its column buffers cannot be allocated. */
#include "conv2d_internal.h"

/* The input pixel under output (oh, ow) and kernel tap (kh, kw), or -1. */
static long tap_index(const conv_shape *s, int c, int oh, int ow, int kh, int kw) {
    int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
    if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) return -1;
    return ((long)c * s->H + ih) * s->W + iw;
}

void conv_direct_forward(float *out, const float *inp, const float *w, const float *bias,
                                const conv_shape *s) {
    for (int n = 0; n < s->N; n++)
        for (int oc = 0; oc < s->OC; oc++)
            for (size_t p = 0; p < s->ohw; p++) {
                int oh = (int)(p / s->OW), ow = (int)(p % s->OW);
                float acc = bias ? bias[oc] : 0.0f;
                for (int c = 0; c < s->C; c++)
                    for (int kh = 0; kh < s->KH; kh++)
                        for (int kw = 0; kw < s->KW; kw++) {
                            long i = tap_index(s, c, oh, ow, kh, kw);
                            if (i >= 0)
                                acc += w[(((size_t)oc * s->C + c) * s->KH + kh) * s->KW + kw] *
                                       inp[(size_t)n * s->C * s->H * s->W + i];
                        }
                out[((size_t)n * s->OC + oc) * s->ohw + p] = acc;
            }
}

void conv_direct_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                                 const conv_shape *s) {
    size_t img = (size_t)s->C * s->H * s->W;
    for (int n = 0; n < s->N; n++)
        for (int oc = 0; oc < s->OC; oc++)
            for (size_t p = 0; p < s->ohw; p++) {
                float g = dout[((size_t)n * s->OC + oc) * s->ohw + p];
                int oh = (int)(p / s->OW), ow = (int)(p % s->OW);
                for (int c = 0; c < s->C; c++)
                    for (int kh = 0; kh < s->KH; kh++)
                        for (int kw = 0; kw < s->KW; kw++) {
                            long i = tap_index(s, c, oh, ow, kh, kw);
                            if (i < 0) continue;
                            size_t wi = (((size_t)oc * s->C + c) * s->KH + kh) * s->KW + kw;
                            if (dw) dw[wi] += g * inp[n * img + i];
                            if (dinp) dinp[n * img + i] += g * w[wi];
                        }
            }
}

