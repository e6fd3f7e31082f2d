/*
 * The tokenizer's forward passes: training (encoder -> FSQ -> decoder with
 * the loss), encode (frames -> tokens) and decode (tokens -> frames). The
 * layers run on the backend; the input conversion, FSQ and the loss run on
 * the host (small: FSQ sees d*G*G values per frame).
 */
#include <math.h>
#include <string.h>

#include "encoder_internal.h"

#define ENC_CHUNK 32 /* frames per pass of encode/decode */

void enc_frames_to_img(float *img, const uint8_t *frames, int N, int S) {
    size_t hw = (size_t)S * S;
    for (int n = 0; n < N; n++)
        for (size_t p = 0; p < hw; p++)
            for (int c = 0; c < 3; c++)
                img[((size_t)n * 3 + c) * hw + p] = frames[((size_t)n * hw + p) * 3 + c] * (1.0f / 255.0f);
}

void enc_y_to_frames(uint8_t *frames, const float *y, int N, int S) {
    size_t hw = (size_t)S * S;
    for (int n = 0; n < N; n++) {
        for (size_t p = 0; p < hw; p++) {
            for (int c = 0; c < 3; c++) {
                float v = rintf((y[((size_t)n * 3 + c) * hw + p] + 0.5f) * 255.0f);
                v = v > 0.0f ? v : 0.0f; /* NaN -> 0 as well */
                frames[((size_t)n * hw + p) * 3 + c] = (uint8_t)(v < 255.0f ? v : 255.0f);
            }
        }
    }
}

float *enc_layer_input(vttt_encoder *e, int l) {
    if (l == 0) return e->x;
    if (l == e->n_enc) return e->q;
    return e->L[l - 1].y;
}

/* Layer l over N frames (see encoder_internal.h). */
static int layer_forward(vttt_encoder *e, int l, int N) {
    const vttt_backend *be = e->be;
    enc_layer *L = &e->L[l];
    float *cur = enc_layer_input(e, l);
    int h = L->h, w = L->w;
    size_t n_in = (size_t)N * L->cin * h * w;
    if (L->norm) {
        be->groupnorm_forward(L->gn, L->mean, L->rstd, cur, L->dp[ENC_P_GN_W], L->dp[ENC_P_GN_B], N, L->cin, h * w,
                              e->groups, ENC_GN_EPS);
        be->silu_forward(L->act, L->gn, n_in);
        cur = L->act;
    }
    if (L->up) {
        be->upsample2x_forward(L->upb, cur, N, L->cin, h, w);
        cur = L->upb, h *= 2, w *= 2;
    }
    return be->conv2d_forward(be->ctx, L->y, cur, L->dp[ENC_P_CONV_W], L->dp[ENC_P_CONV_B], N, L->cin, h, w,
                              L->cout, L->k, L->k, L->stride, L->pad);
}

int enc_layers_forward(vttt_encoder *e, int l0, int l1, int N) {
    int err = VTTT_OK;
    for (int l = l0; l < l1 && !err; l++) err = layer_forward(e, l, N);
    if (err) vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer: %s failed on %s (%s)", enc_layer_name(l1 - 1),
                      e->be->name, vttt_strerror(err));
    return err;
}

/* x = img - 0.5 on the backend (staged through h_y). */
static int upload_input(vttt_encoder *e, const float *img, int N) {
    size_t n = (size_t)N * 3 * e->cfg.image_size * e->cfg.image_size;
    for (size_t i = 0; i < n; i++) e->h_y[i] = img[i] - 0.5f;
    return e->be->to_device(e->be->ctx, e->x, e->h_y, n * sizeof(float));
}

/* VTTT_ENAN with a message when x (n) holds a non-finite value: weights
 * that overflow make NaN latents or pixels, which must not become
 * tokens or black pixels silently. */
static int check_finite(const vttt_encoder *e, const float *x, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++) {
        if (isfinite(x[i])) continue;
        vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer: the %s holds a non-finite value (%g at index %zu); the weights "
                 "overflow (check the tokenizer)", what, (double)x[i], i);
        return VTTT_ENAN;
    }
    return VTTT_OK;
}

/* z (the encoder's output) to the host, FSQ, q back to the backend. */
static int quantize(vttt_encoder *e, int N, int32_t *codes) {
    int G = e->cfg.image_size / 8, P = G * G;
    size_t n = (size_t)N * e->cfg.num_levels * P;
    int err = e->be->to_host(e->be->ctx, e->h_z, e->L[e->n_enc - 1].y, n * sizeof(float));
    if (!err) err = check_finite(e, e->h_z, n, "encoder's output (latents)");
    if (err) return err;
    enc_fsq_forward(&e->cfg, e->h_q, codes, e->h_z, N, P, e->fsq_bypass);
    return e->be->to_device(e->be->ctx, e->q, e->h_q, n * sizeof(float));
}

int enc_forward_f(vttt_encoder *e, const float *img, int N, float *loss) {
    e->has_fwd = 0;
    int S = e->cfg.image_size, err = enc_buffers_reserve(e, N);
    size_t n = (size_t)N * 3 * S * S;
    if (err || (err = enc_params_sync(e))) return err;
    if (img != e->h_img) memcpy(e->h_img, img, n * sizeof(float));
    if ((err = upload_input(e, e->h_img, N))) return err;
    if ((err = enc_layers_forward(e, 0, e->n_enc, N)) || (err = quantize(e, N, NULL))) return err;
    if ((err = enc_layers_forward(e, e->n_enc, e->n_layers, N))) return err;
    if ((err = e->be->to_host(e->be->ctx, e->h_y, e->L[e->n_layers - 1].y, n * sizeof(float)))) return err;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double r = (double)e->h_y[i] + 0.5 - (double)e->h_img[i];
        s += r * r;
    }
    if (loss) *loss = (float)(s / (double)n);
    e->N = N;
    e->has_fwd = 1;
    return VTTT_OK;
}

int vttt_encoder_forward(vttt_encoder *e, const uint8_t *frames, int N, int train, float *loss, uint8_t *recon) {
    if (N < 1 || !frames) {
        vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer forward: %d frames", N);
        return VTTT_EINVAL;
    }
    int S = e->cfg.image_size, err = enc_buffers_reserve(e, N);
    if (err) return err;
    enc_frames_to_img(e->h_img, frames, N, S);
    if ((err = enc_forward_f(e, e->h_img, N, loss))) return err;
    /* training: the trainer checks the loss (and says it stops there) */
    if (!train && (err = check_finite(e, e->h_y, (size_t)N * 3 * S * S, "decoder's output"))) return err;
    if (recon) enc_y_to_frames(recon, e->h_y, N, S);
    return VTTT_OK;
}

/* What encode and decode do first: drop the kept forward (its buffers are
 * reused), check N (>= 0; both buffers given when N > 0), and make room for
 * one chunk with the parameters on the device. */
static int chunks_begin(vttt_encoder *e, int N, int have_buffers) {
    e->has_fwd = 0;
    if (N < 0 || (N && !have_buffers)) return VTTT_EINVAL;
    int err = enc_buffers_reserve(e, N < ENC_CHUNK ? N : ENC_CHUNK);
    return err ? err : enc_params_sync(e);
}

int vttt_encoder_encode(vttt_encoder *e, const uint8_t *frames, int N, int32_t *tokens) {
    int S = e->cfg.image_size, P = (S / 8) * (S / 8), err = chunks_begin(e, N, frames && tokens);
    if (err) return err;
    for (int n0 = 0; n0 < N && !err; n0 += ENC_CHUNK) {
        int n = N - n0 < ENC_CHUNK ? N - n0 : ENC_CHUNK;
        enc_frames_to_img(e->h_img, frames + (size_t)n0 * S * S * 3, n, S);
        err = upload_input(e, e->h_img, n);
        if (!err) err = enc_layers_forward(e, 0, e->n_enc, n);
        if (!err) err = quantize(e, n, tokens + (size_t)n0 * P);
    }
    return err;
}

int vttt_encoder_decode(vttt_encoder *e, const int32_t *tokens, int N, uint8_t *frames) {
    int S = e->cfg.image_size, P = (S / 8) * (S / 8), err = chunks_begin(e, N, frames && tokens);
    if (err) return err;
    for (int n0 = 0; n0 < N && !err; n0 += ENC_CHUNK) {
        int n = N - n0 < ENC_CHUNK ? N - n0 : ENC_CHUNK;
        size_t nq = (size_t)n * e->cfg.num_levels * P, ny = (size_t)n * 3 * S * S;
        if (enc_fsq_codes_to_q(&e->cfg, e->h_q, tokens + (size_t)n0 * P, n, P)) {
            vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer decode: a token of frames %d..%d is outside [0, %d) (tokens "
                     "of another tokenizer?)", n0, n0 + n - 1, enc_fsq_vocab(&e->cfg));
            return VTTT_EINVAL;
        }
        err = e->be->to_device(e->be->ctx, e->q, e->h_q, nq * sizeof(float));
        if (!err) err = enc_layers_forward(e, e->n_enc, e->n_layers, n);
        if (!err) err = e->be->to_host(e->be->ctx, e->h_y, e->L[e->n_layers - 1].y, ny * sizeof(float));
        if (!err) err = check_finite(e, e->h_y, ny, "decoder's output");
        if (!err) enc_y_to_frames(frames + (size_t)n0 * S * S * 3, e->h_y, n, S);
    }
    return err;
}
