/* 2D convolution (NCHW, zero padding, stride, groups 1) on the CPU:
 * im2col + sgemm for the output and the weight gradient; for the input
 * gradient sgemm + col2im, or, at stride 1, a convolution of dout with the
 * flipped kernel (conv_dinp_as_conv). Column matrices are built a few
 * output rows at a time (about CONV_CHUNK_FLOATS, so that a chunk stays in
 * the core's L2 cache between im2col and the sgemm that reads it). Images
 * of a batch are split over OpenMP threads (OpenBLAS held serial inside
 * them) as they come free, each thread with its own column chunk; the
 * weight gradient is summed per block of images and the blocks added in
 * order (CONV_BLOCKS), so results do not depend on the thread count. The ops return nothing (ops.h), so
 * when the scratch cannot be allocated they fall back to direct loops
 * (conv2d_direct.c) that need none: slower, same result. */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "conv2d_internal.h"
#include "ops.h"

/* Threads for a batch of N images: one per image at most, and one when
 * the whole call is too small to be worth a thread (2e7 FLOPs: a few
 * tenths of a millisecond, about what an OpenMP barrier can cost when the
 * cores are shared). */
static int conv_threads(const conv_shape *s) {
    int t = omp_get_max_threads();
    if (t > s->N) t = s->N;
    double flops = 2.0 * (double)s->OC * (double)s->ckk * (double)s->ohw * s->N;
    if (flops < 2e7) t = 1;
    return t < 1 ? 1 : t;
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
        conv_im2col(col, x_n, s, oh0, oh1);
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
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
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
                conv_im2col(col, x, s, oh0, oh1);
                ttt_sgemm(0, 1, s->OC, ckk, ncol, 1.0f, gc, ohw, col, ncol, 1.0f, dw, ckk);
            }
            if (dx_n) {
                ttt_sgemm(1, 0, ckk, ncol, s->OC, 1.0f, w, ckk, gc, ohw, 0.0f, col, ncol);
                conv_col2im(dx_n, col, s, oh0, oh1);
            }
        }
        if (wt && dinp) conv_forward_image(dinp + n * in_img, g, wt, NULL, 1.0f, col, ts);
    }
}

/* The backward's unit of work is a block of images; there are
 * min(N, CONV_BLOCKS) of them whatever the thread count, each with its own
 * dw and dbias partial sums, added in block order at the end. So the
 * result does not depend on how many threads ran or which took which
 * block, and threads can take blocks as they come free (a thread that
 * loses its core does not hold the others up). */
#define CONV_BLOCKS 16

/* Scratch of the backward: per thread a column chunk (the larger of the
 * two shapes' chunks; none for pointwise kernels), per image block the dw
 * and dbias partial sums (zeroed), then the flipped weights wt
 * (C*OC*KH*KW, when dinp is computed as a convolution). */
typedef struct {
    float *buf, *parts, *wt;
    size_t col, part;   /* floats per thread, per block */
    int nblk;
} conv_scratch;

static int conv_scratch_alloc(conv_scratch *sc, const conv_shape *s, const conv_shape *ts, int nt, int want_dw,
                              int want_db) {
    sc->col = conv_is_pointwise(s) ? 0 : s->ckk * (size_t)s->rows * s->OW;
    size_t nwt = ts ? s->ckk * s->OC : 0;
    if (ts && ts->ckk * (size_t)ts->rows * ts->OW > sc->col) sc->col = ts->ckk * (size_t)ts->rows * ts->OW;
    sc->part = (want_dw ? (size_t)s->OC * s->ckk : 0) + (want_db ? (size_t)s->OC : 0);
    sc->nblk = s->N < CONV_BLOCKS ? s->N : CONV_BLOCKS;
    size_t total = sc->col * nt + sc->part * sc->nblk + nwt;
    sc->buf = total ? calloc(total, sizeof(float)) : NULL;
    sc->parts = sc->buf ? sc->buf + sc->col * nt : NULL;
    sc->wt = ts && sc->buf ? sc->parts + sc->part * sc->nblk : NULL;
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
    int nb = nt > 1 ? ttt_blas_serial_begin() : 0, nblk = sc.nblk;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int b = 0; b < nblk; b++) {
        int n0 = (int)((long)N * b / nblk), n1 = (int)((long)N * (b + 1) / nblk);
        float *col = sc.col ? sc.buf + sc.col * omp_get_thread_num() : NULL;
        float *part = sc.part ? sc.parts + sc.part * b : NULL;
        conv_backward_range(dinp, dw ? part : NULL, dbias ? part + wsz : NULL, dout, inp, w, sc.wt, col, &s, tsp, n0,
                            n1);
    }
    if (nt > 1) ttt_blas_serial_end(nb);
    for (int b = 0; b < nblk && sc.part; b++) {
        const float *part = sc.parts + sc.part * b;
        for (size_t i = 0; i < wsz; i++) dw[i] += part[i];
        if (dbias)
            for (int oc = 0; oc < OC; oc++) dbias[oc] += part[wsz + oc];
    }
    free(sc.buf);
}
