/* The column matrices of the CPU conv2d (see conv2d_internal.h): im2col
 * gathers, for a chunk of output rows, every input value each kernel tap
 * reads (zeros for padding); col2im scatters a column gradient back. */
#include <string.h>

#include "conv2d_internal.h"

/* Output size, column-matrix size and the chunk of output rows whose
 * columns fill about CONV_CHUNK_FLOATS (at least one row). */
conv_shape conv_shape_of(int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad) {
    conv_shape s = {N, C, H, W, OC, KH, KW, stride, pad, 0, 0, 0, 0, 0};
    s.OH = (H + 2 * pad - KH) / stride + 1;
    s.OW = (W + 2 * pad - KW) / stride + 1;
    s.ckk = (size_t)C * KH * KW;
    s.ohw = (size_t)s.OH * s.OW;
    if (s.OH > 0 && s.OW > 0) {
        size_t r = CONV_CHUNK_FLOATS / (s.ckk * (size_t)s.OW);
        s.rows = r < 1 ? 1 : r > (size_t)s.OH ? s.OH : (int)r;
    }
    return s;
}

/* The input column of output position ow for kernel column kw: iw =
 * ow*stride - pad + kw. [*lo, *hi) are the ow whose iw is inside [0, W). */
static void valid_range(int kw, const conv_shape *s, int *lo, int *hi) {
    int off = kw - s->pad;
    int a = off >= 0 ? 0 : (-off + s->stride - 1) / s->stride;
    int b = (s->W - 1 - off) >= 0 ? (s->W - 1 - off) / s->stride + 1 : 0;
    *lo = a < s->OW ? a : s->OW;
    *hi = b < s->OW ? b : s->OW;
    if (*hi < *lo) *hi = *lo;
}

/* col (ckk, (oh1-oh0)*OW): the column matrix of output rows [oh0, oh1)
 * of one image x (C, H, W); padding reads as zero. */
void conv_im2col(float *col, const float *x, const conv_shape *s, int oh0, int oh1) {
    size_t ncol = (size_t)(oh1 - oh0) * s->OW;
    for (int c = 0; c < s->C; c++)
        for (int kh = 0; kh < s->KH; kh++)
            for (int kw = 0; kw < s->KW; kw++) {
                float *row = col + (((size_t)c * s->KH + kh) * s->KW + kw) * ncol;
                int lo, hi, off = kw - s->pad;
                valid_range(kw, s, &lo, &hi);
                for (int oh = oh0; oh < oh1; oh++) {
                    float *o = row + (size_t)(oh - oh0) * s->OW;
                    int ih = oh * s->stride - s->pad + kh;
                    if (ih < 0 || ih >= s->H) {
                        memset(o, 0, sizeof *o * s->OW);
                        continue;
                    }
                    const float *xr = x + ((size_t)c * s->H + ih) * s->W;
                    for (int ow = 0; ow < lo; ow++) o[ow] = 0.0f;
                    if (s->stride == 1) memcpy(o + lo, xr + lo + off, sizeof *o * (size_t)(hi - lo));
                    else
                        for (int ow = lo; ow < hi; ow++) o[ow] = xr[ow * s->stride + off];
                    for (int ow = hi; ow < s->OW; ow++) o[ow] = 0.0f;
                }
            }
}

/* dx (C, H, W) += the column gradient dcol (ckk, (oh1-oh0)*OW) of output
 * rows [oh0, oh1), scattered back to the pixels it was read from (padding
 * positions dropped). */
void conv_col2im(float *dx, const float *dcol, const conv_shape *s, int oh0, int oh1) {
    size_t ncol = (size_t)(oh1 - oh0) * s->OW;
    for (int c = 0; c < s->C; c++)
        for (int kh = 0; kh < s->KH; kh++)
            for (int kw = 0; kw < s->KW; kw++) {
                const float *row = dcol + (((size_t)c * s->KH + kh) * s->KW + kw) * ncol;
                int lo, hi, off = kw - s->pad;
                valid_range(kw, s, &lo, &hi);
                for (int oh = oh0; oh < oh1; oh++) {
                    int ih = oh * s->stride - s->pad + kh;
                    if (ih < 0 || ih >= s->H) continue;
                    const float *g = row + (size_t)(oh - oh0) * s->OW;
                    float *xr = dx + ((size_t)c * s->H + ih) * s->W;
                    for (int ow = lo; ow < hi; ow++) xr[ow * s->stride + off] += g[ow];
                }
            }
}

