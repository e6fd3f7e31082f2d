/* 2D convolution (NCHW, zero padding, stride, groups 1) on the CPU:
 * im2col + sgemm for the output and the weight gradient, sgemm + col2im
 * for the input gradient. The column matrix of an image is built a few
 * output rows at a time (a chunk of about CHUNK_FLOATS, so that it stays in
 * the core's L2 cache between im2col and the sgemm that reads it). Images
 * of a batch are split over OpenMP threads
 * (OpenBLAS held serial inside them), each thread with its own column
 * buffer and, for the weight gradient, its own partial sums, which are
 * added in thread order afterwards (deterministic for a thread count).
 * The ops return nothing (ops.h), so when the scratch cannot be allocated
 * they fall back to direct loops that need none: slower, same result. */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "ops.h"

/* Shapes of one call, with the derived sizes. */
typedef struct {
    int N, C, H, W, OC, KH, KW, stride, pad;
    int OH, OW;
    size_t ckk;   /* rows of a column matrix: C*KH*KW */
    size_t ohw;   /* its columns: OH*OW */
    int rows;     /* output rows per column chunk */
} conv_shape;

#define CHUNK_FLOATS ((size_t)96 << 10) /* 384 KiB of columns per chunk */

static conv_shape conv_shape_of(int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad) {
    conv_shape s = {N, C, H, W, OC, KH, KW, stride, pad, 0, 0, 0, 0, 0};
    s.OH = (H + 2 * pad - KH) / stride + 1;
    s.OW = (W + 2 * pad - KW) / stride + 1;
    s.ckk = (size_t)C * KH * KW;
    s.ohw = (size_t)s.OH * s.OW;
    if (s.OH > 0 && s.OW > 0) {
        size_t r = CHUNK_FLOATS / (s.ckk * (size_t)s.OW);
        s.rows = r < 1 ? 1 : r > (size_t)s.OH ? s.OH : (int)r;
    }
    return s;
}

/* A 1x1 kernel with stride 1 and no padding: the image is its own column
 * matrix (C, H*W). */
static int conv_is_pointwise(const conv_shape *s) {
    return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0;
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
static void im2col(float *col, const float *x, const conv_shape *s, int oh0, int oh1) {
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
static void col2im(float *dx, const float *dcol, const conv_shape *s, int oh0, int oh1) {
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

/* Threads for a batch of N images: one per image at most, and one when
 * a single image is too small to be worth a thread. */
static int conv_threads(const conv_shape *s) {
    int t = omp_get_max_threads();
    if (t > s->N) t = s->N;
    double flops = 2.0 * (double)s->OC * (double)s->ckk * (double)s->ohw * s->N;
    if (flops < 2e6) t = 1;
    return t < 1 ? 1 : t;
}

/* ---- direct loops: the fallback when scratch memory is unavailable ------ */

/* The input pixel under output (oh, ow) and kernel tap (kh, kw), or -1. */
static long tap_index(const conv_shape *s, int c, int oh, int ow, int kh, int kw) {
    int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
    if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) return -1;
    return ((long)c * s->H + ih) * s->W + iw;
}

static void conv_direct_forward(float *out, const float *inp, const float *w, const float *bias,
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

static void conv_direct_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
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

/* ---- forward ------------------------------------------------------------ */

/* out_n (OC, ohw) = bias + w (OC, ckk) . col_n (ckk, ohw), one chunk of
 * output rows at a time (col holds one chunk). Without bias, beta 1 adds
 * to out_n instead of replacing it. */
static void conv_forward_image(float *out_n, const float *x_n, const float *w, const float *bias, float beta,
                               float *col, const conv_shape *s) {
    if (bias) {
        for (int oc = 0; oc < s->OC; oc++)
            for (size_t p = 0; p < s->ohw; p++) out_n[oc * s->ohw + p] = bias[oc];
        beta = 1.0f;
    }
    int ckk = (int)s->ckk, ohw = (int)s->ohw;
    if (conv_is_pointwise(s)) {
        ttt_sgemm(0, 0, s->OC, ohw, ckk, 1.0f, w, ckk, x_n, ohw, beta, out_n, ohw);
        return;
    }
    for (int oh0 = 0; oh0 < s->OH; oh0 += s->rows) {
        int oh1 = oh0 + s->rows < s->OH ? oh0 + s->rows : s->OH, ncol = (oh1 - oh0) * s->OW;
        im2col(col, x_n, s, oh0, oh1);
        ttt_sgemm(0, 0, s->OC, ncol, ckk, 1.0f, w, ckk, col, ncol, beta, out_n + (size_t)oh0 * s->OW, ohw);
    }
}

void ttt_conv2d_forward(float *out, const float *inp, const float *w, const float *bias, int N, int C, int H,
                        int W, int OC, int KH, int KW, int stride, int pad) {
    conv_shape s = conv_shape_of(N, C, H, W, OC, KH, KW, stride, pad);
    if (N <= 0 || s.OH <= 0 || s.OW <= 0 || OC <= 0) return;
    int nt = conv_threads(&s);
    size_t per = conv_is_pointwise(&s) ? 0 : s.ckk * (size_t)s.rows * s.OW;
    float *scratch = per ? malloc(sizeof(float) * per * nt) : NULL;
    if (per && !scratch) {
        conv_direct_forward(out, inp, w, bias, &s);
        return;
    }
    size_t in_img = (size_t)C * H * W, out_img = (size_t)OC * s.ohw;
    int nb = nt > 1 ? ttt_blas_serial_begin() : 0;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int n = 0; n < N; n++)
        conv_forward_image(out + n * out_img, inp + n * in_img, w, bias, 0.0f,
                           scratch ? scratch + per * omp_get_thread_num() : NULL, &s);
    if (nt > 1) ttt_blas_serial_end(nb);
    free(scratch);
}

/* ---- backward ----------------------------------------------------------- */

/* The input gradient of a stride-1 convolution is a convolution too: of
 * dout (N, OC, OH, OW) with the kernel flipped and its channel axes
 * swapped, wt (C, OC, KH, KW), padded by K-1-pad, which gives (N, C, H, W).
 * Used when the kernel is square and pad <= K-1: it needs an im2col of
 * dout (OC*K*K rows) instead of a column gradient of C*K*K rows and a
 * scatter (col2im), which is much cheaper when OC < C. */
static int conv_dinp_as_conv(const conv_shape *s) {
    return s->stride == 1 && s->KH == s->KW && s->pad <= s->KH - 1 && !conv_is_pointwise(s);
}

static conv_shape conv_dinp_shape(const conv_shape *s) {
    return conv_shape_of(s->N, s->OC, s->OH, s->OW, s->C, s->KH, s->KW, 1, s->KH - 1 - s->pad);
}

/* wt (C, OC, KH, KW) = w (OC, C, KH, KW) flipped in both spatial axes. */
static void conv_flip_weights(float *wt, const float *w, const conv_shape *s) {
    size_t kk = (size_t)s->KH * s->KW;
    for (int oc = 0; oc < s->OC; oc++)
        for (int c = 0; c < s->C; c++)
            for (size_t k = 0; k < kk; k++)
                wt[((size_t)c * s->OC + oc) * kk + (kk - 1 - k)] = w[((size_t)oc * s->C + c) * kk + k];
}

/* One thread's share of the backward: images [n0, n1), adding into dinp
 * and into its own dw (OC, ckk) and dbias (OC). col holds one chunk of
 * columns; for each chunk of output rows it serves first as the column
 * matrix (weight gradient), then as the column gradient (input gradient).
 * With wt (conv_dinp_as_conv), dinp is instead the convolution of dout
 * with wt, shape ts. */
static void conv_backward_range(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                const float *w, const float *wt, float *col, const conv_shape *s,
                                const conv_shape *ts, int n0, int n1) {
    size_t in_img = (size_t)s->C * s->H * s->W, out_img = (size_t)s->OC * s->ohw;
    int ckk = (int)s->ckk, ohw = (int)s->ohw;
    for (int n = n0; n < n1; n++) {
        const float *g = dout + n * out_img, *x = inp + n * in_img;
        if (dbias)
            for (int oc = 0; oc < s->OC; oc++) {
                float acc = 0.0f;
                for (size_t p = 0; p < s->ohw; p++) acc += g[oc * s->ohw + p];
                dbias[oc] += acc;
            }
        if (conv_is_pointwise(s)) {
            if (dw) ttt_sgemm(0, 1, s->OC, ckk, ohw, 1.0f, g, ohw, x, ohw, 1.0f, dw, ckk);
            if (dinp) ttt_sgemm(1, 0, ckk, ohw, s->OC, 1.0f, w, ckk, g, ohw, 1.0f, dinp + n * in_img, ohw);
            continue;
        }
        float *dx_n = wt ? NULL : dinp ? dinp + n * in_img : NULL;
        for (int oh0 = 0; oh0 < s->OH && (dw || dx_n); oh0 += s->rows) {
            int oh1 = oh0 + s->rows < s->OH ? oh0 + s->rows : s->OH, ncol = (oh1 - oh0) * s->OW;
            const float *gc = g + (size_t)oh0 * s->OW;   /* (OC, ncol) with row stride ohw */
            if (dw) {
                im2col(col, x, s, oh0, oh1);
                ttt_sgemm(0, 1, s->OC, ckk, ncol, 1.0f, gc, ohw, col, ncol, 1.0f, dw, ckk);
            }
            if (dx_n) {
                ttt_sgemm(1, 0, ckk, ncol, s->OC, 1.0f, w, ckk, gc, ohw, 0.0f, col, ncol);
                col2im(dx_n, col, s, oh0, oh1);
            }
        }
        if (wt && dinp) conv_forward_image(dinp + n * in_img, g, wt, NULL, 1.0f, col, ts);
    }
}

/* Scratch of the backward: the flipped weights wt (C*OC*KH*KW, when dinp
 * is computed as a convolution), then per thread a column chunk (the
 * larger of the two shapes' chunks; none for pointwise kernels) and, for
 * threads after the first, private dw and dbias partial sums. */
typedef struct {
    float *buf, *wt;
    size_t col, part;   /* floats per thread */
} conv_scratch;

static int conv_scratch_alloc(conv_scratch *sc, const conv_shape *s, const conv_shape *ts, int nt, int want_dw,
                              int want_db) {
    sc->col = conv_is_pointwise(s) ? 0 : s->ckk * (size_t)s->rows * s->OW;
    size_t nwt = ts ? s->ckk * s->OC : 0;
    if (ts && ts->ckk * (size_t)ts->rows * ts->OW > sc->col) sc->col = ts->ckk * (size_t)ts->rows * ts->OW;
    sc->part = (want_dw ? (size_t)s->OC * s->ckk : 0) + (want_db ? (size_t)s->OC : 0);
    size_t total = nwt + sc->col * nt + sc->part * (nt - 1);
    sc->buf = total ? calloc(total, sizeof(float)) : NULL;
    sc->wt = ts && sc->buf ? sc->buf + sc->col * nt + sc->part * (nt - 1) : NULL;
    return total == 0 || sc->buf != NULL;
}

void ttt_conv2d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad) {
    conv_shape s = conv_shape_of(N, C, H, W, OC, KH, KW, stride, pad);
    if (N <= 0 || s.OH <= 0 || s.OW <= 0 || OC <= 0 || (!dinp && !dw && !dbias)) return;
    int nt = conv_threads(&s);
    conv_shape ts = conv_dinp_shape(&s);
    const conv_shape *tsp = dinp && conv_dinp_as_conv(&s) ? &ts : NULL;
    conv_scratch sc;
    if (!conv_scratch_alloc(&sc, &s, tsp, nt, dw != NULL, dbias != NULL)) {
        conv_direct_backward(dinp, dw, dout, inp, w, &s);
        if (dbias) conv_backward_range(NULL, NULL, dbias, dout, inp, w, NULL, NULL, &s, NULL, 0, N);
        return;
    }
    if (sc.wt) conv_flip_weights(sc.wt, w, &s);
    size_t wsz = dw ? (size_t)OC * s.ckk : 0;
    int nb = nt > 1 ? ttt_blas_serial_begin() : 0, team = 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        /* the team may be smaller than asked (nested regions): split by its size */
        int t = omp_get_thread_num(), nth = omp_get_num_threads();
        if (t == 0) team = nth;
        int n0 = (int)((long)N * t / nth), n1 = (int)((long)N * (t + 1) / nth);
        float *col = sc.col ? sc.buf + sc.col * t : NULL;
        float *part = t ? sc.buf + sc.col * nt + sc.part * (t - 1) : NULL;
        conv_backward_range(dinp, t ? (dw ? part : NULL) : dw, t ? (dbias ? part + wsz : NULL) : dbias, dout, inp,
                            w, sc.wt, col, &s, tsp, n0, n1);
    }
    if (nt > 1) ttt_blas_serial_end(nb);
    for (int t = 1; t < team; t++) {
        const float *part = sc.buf + sc.col * nt + sc.part * (t - 1);
        for (size_t i = 0; i < wsz; i++) dw[i] += part[i];
        if (dbias)
            for (int oc = 0; oc < OC; oc++) dbias[oc] += part[wsz + oc];
    }
    free(sc.buf);
}
