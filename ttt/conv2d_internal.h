/*
 * ttt/conv2d_internal.h — internal to the CPU conv2d (conv2d.c,
 * conv2d_cols.c, conv2d_direct.c): the shape of one call with its derived
 * sizes, the column-matrix builders (im2col, col2im over a chunk of output
 * rows) and the scratch-free direct loops.
 */
#ifndef VTTT_CONV2D_INTERNAL_H
#define VTTT_CONV2D_INTERNAL_H

#include <stddef.h>

/* Shapes of one call, with the derived sizes. */
typedef struct {
    int N, C, H, W, OC, KH, KW, stride, pad;
    int OH, OW;
    size_t ckk;   /* rows of a column matrix: C*KH*KW */
    size_t ohw;   /* its columns: OH*OW */
    int rows;     /* output rows per column chunk */
} conv_shape;

#define CONV_CHUNK_FLOATS ((size_t)96 << 10) /* 384 KiB of columns per chunk */

/* The shape with its derived sizes (OH, OW <= 0 when the kernel does not
 * fit; rows is then 0). */
conv_shape conv_shape_of(int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad);

/* A 1x1 kernel with stride 1 and no padding: the image is its own column
 * matrix (C, H*W). */
static inline int conv_is_pointwise(const conv_shape *s) {
    return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0;
}

/* conv2d_cols.c: col (ckk, (oh1-oh0)*OW) from x (C, H, W), and back (+=). */
void conv_im2col(float *col, const float *x, const conv_shape *s, int oh0, int oh1);
void conv_col2im(float *dx, const float *dcol, const conv_shape *s, int oh0, int oh1);

/* conv2d_direct.c: the definition as loops, no scratch (the fallback when
 * the column buffers cannot be allocated). The backward adds into dinp and
 * dw (either may be NULL); the bias gradient is not done here. */
void conv_direct_forward(float *out, const float *inp, const float *w, const float *bias, const conv_shape *s);
void conv_direct_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                          const conv_shape *s);

#endif
