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
    if (err) vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer: %s failed on %s (%s)", enc_layer_name(e, l1 - 1),
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

/* The encoder's input on the backend from h_img (and h_prev for DELTA). */
static int upload(vttt_encoder *e, int N) {
    return e->cfg.kind == VTTT_ENCODER_DELTA ? enc_delta_upload_input(e, N) : upload_input(e, e->h_img, N);
}

/* The decoder's input on the backend from latents q (N, d, P) on the host. */
static int upload_q(vttt_encoder *e, const float *q, int N) {
    if (e->cfg.kind == VTTT_ENCODER_DELTA) return enc_delta_upload_q(e, q, N);
    return e->be->to_device(e->be->ctx, e->q, q, (size_t)N * e->cfg.num_levels * e->P * sizeof(float));
}

/* The decoder's output into h_y (pixels - 0.5). */
static int output(vttt_encoder *e, int N) {
    if (e->cfg.kind == VTTT_ENCODER_DELTA) return enc_delta_output(e, N);
    size_t ny = (size_t)N * 3 * e->cfg.image_size * e->cfg.image_size;
    return e->be->to_host(e->be->ctx, e->h_y, e->L[e->n_layers - 1].y, ny * sizeof(float));
}

/* z (the encoder's output) to the host, FSQ, q back to the backend. */
static int quantize(vttt_encoder *e, int N, int32_t *codes) {
    size_t n = (size_t)N * e->cfg.num_levels * e->P;
    int err = e->be->to_host(e->be->ctx, e->h_z, e->L[e->n_enc - 1].y, n * sizeof(float));
    if (!err) err = check_finite(e, e->h_z, n, "encoder's output (latents)");
    if (err) return err;
    float *q = e->cfg.kind == VTTT_ENCODER_DELTA ? e->h_x : e->h_q; /* DELTA packs q into h_q with prev */
    enc_fsq_forward(&e->cfg, q, codes, e->h_z, N, e->P, e->fsq_bypass);
    return upload_q(e, q, N);
}

int enc_forward_f(vttt_encoder *e, const float *img, int N, float *loss) {
    e->has_fwd = 0;
    int S = e->cfg.image_size, err = enc_buffers_reserve(e, N);
    size_t n = (size_t)N * 3 * S * S;
    if (err || (err = enc_params_sync(e))) return err;
    if (img != e->h_img) memcpy(e->h_img, img, n * sizeof(float));
    if ((err = upload(e, N))) return err;
    if ((err = enc_layers_forward(e, 0, e->n_enc, N)) || (err = quantize(e, N, NULL))) return err;
    if ((err = enc_layers_forward(e, e->n_enc, e->n_layers, N)) || (err = output(e, N))) return err;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double r = (double)e->h_y[i] + 0.5 - (double)e->h_img[i];
        s += r * r;
    }
    if (loss) *loss = (float)(s / (double)n);
    e->rate = enc_fsq_rate(&e->cfg, e->h_z, N, e->P, 0.0f, NULL) / ((double)N * e->cfg.num_levels * e->P);
    e->N = N;
    e->has_fwd = 1;
    return VTTT_OK;
}

int vttt_encoder_forward(vttt_encoder *e, const uint8_t *prev, const uint8_t *frames, int N, int train, float *loss,
                         uint8_t *recon) {
    if (N < 1 || !frames) {
        vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer forward: %d frames", N);
        return VTTT_EINVAL;
    }
    int S = e->cfg.image_size, err = enc_buffers_reserve(e, N);
    if (err) return err;
    enc_frames_to_img(e->h_img, frames, N, S);
    if (e->cfg.kind == VTTT_ENCODER_DELTA &&
        (err = enc_motion_refs(e, prev, prev ? prev + (size_t)S * S * 3 : NULL, frames, NULL, N, NULL)))
        return err;
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

/* Encodes N frames in chunks. DELTA references: video 0: frame n's is
 * ref[n] (NULL: mid-grey); video 1: frame n's is frame n-1, frame 0's is
 * ref (one frame; NULL: mid-grey). */
static int encode_chunks(vttt_encoder *e, const uint8_t *ref, int video, const uint8_t *frames, int N,
                         int32_t *tokens) {
    int S = e->cfg.image_size, P = e->P, M = enc_motion_count(&e->cfg), err = chunks_begin(e, N, frames && tokens);
    size_t fb = (size_t)S * S * 3;
    int32_t motion[2 * ENC_MOTION_REGIONS * ENC_CHUNK];
    if (err) return err;
    for (int n0 = 0; n0 < N && !err; n0 += ENC_CHUNK) {
        int n = N - n0 < ENC_CHUNK ? N - n0 : ENC_CHUNK;
        const uint8_t *cur = frames + (size_t)n0 * fb;
        int32_t *cells = M ? e->h_cells : tokens + (size_t)n0 * P;
        enc_frames_to_img(e->h_img, cur, n, S);
        if (e->cfg.kind == VTTT_ENCODER_DELTA && video)
            err = enc_motion_refs(e, n0 ? cur - fb : ref, cur, cur, NULL, n, motion);
        else if (e->cfg.kind == VTTT_ENCODER_DELTA)
            err = enc_motion_refs(e, ref ? ref + (size_t)n0 * fb : NULL, ref ? ref + (size_t)(n0 + 1) * fb : NULL,
                                  cur, NULL, n, motion);
        if (!err) err = upload(e, n);
        if (!err) err = enc_layers_forward(e, 0, e->n_enc, n);
        if (!err) err = quantize(e, n, cells);
        if (!err && e->cfg.kind == VTTT_ENCODER_DELTA) { /* keep the reference where the code does not beat it */
            err = enc_layers_forward(e, e->n_enc, e->n_layers, n);
            if (!err) err = output(e, n);
            if (!err && enc_delta_keep_better(e, n, cells) < 0) err = VTTT_ENOMEM;
        }
        for (int i = 0; i < n && M && !err; i++) { /* each frame's tokens: its motion, then its cells */
            int32_t *t = tokens + (size_t)(n0 + i) * (M + P);
            memcpy(t, motion + (size_t)i * M, (size_t)M * sizeof(int32_t));
            memcpy(t + M, cells + (size_t)i * P, (size_t)P * sizeof(int32_t));
        }
    }
    return err;
}

int vttt_encoder_encode(vttt_encoder *e, const uint8_t *ref, const uint8_t *frames, int N, int32_t *tokens) {
    return encode_chunks(e, ref, 0, frames, N, tokens);
}

int vttt_encoder_encode_video(vttt_encoder *e, const uint8_t *before, const uint8_t *frames, int N,
                              int32_t *tokens) {
    return encode_chunks(e, before, 1, frames, N, tokens);
}

/* Decodes n frames of latents q (host, (n, d, P)) whose references are
 * already in h_prev (DELTA) into frames. */
static int decode_q(vttt_encoder *e, const float *q, int n, uint8_t *frames) {
    int err = upload_q(e, q, n);
    if (!err) err = enc_layers_forward(e, e->n_enc, e->n_layers, n);
    if (!err) err = output(e, n);
    size_t ny = (size_t)n * 3 * e->cfg.image_size * e->cfg.image_size;
    if (!err) err = check_finite(e, e->h_y, ny, "decoder's output");
    if (!err) enc_y_to_frames(frames, e->h_y, n, e->cfg.image_size);
    return err;
}

int vttt_encoder_decode(vttt_encoder *e, const uint8_t *prev, const int32_t *tokens, int N, uint8_t *frames) {
    int S = e->cfg.image_size, P = e->P, err = chunks_begin(e, N, frames && tokens);
    size_t fb = (size_t)S * S * 3;
    /* DELTA decodes each frame on the one before it: one at a time */
    int chunk = e->cfg.kind == VTTT_ENCODER_DELTA ? 1 : ENC_CHUNK;
    float *q = e->cfg.kind == VTTT_ENCODER_DELTA ? e->h_x : e->h_q;
    if (err) return err;
    int M = enc_motion_count(&e->cfg), T = M + P; /* a frame's tokens: motion, then cells */
    for (int n0 = 0; n0 < N && !err; n0 += chunk) {
        int n = N - n0 < chunk ? N - n0 : chunk;
        for (int i = 0; i < n; i++)
            if (enc_fsq_codes_to_q(&e->cfg, q + (size_t)i * e->cfg.num_levels * P, tokens + (size_t)(n0 + i) * T + M,
                                   1, P)) {
                vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer decode: a cell token of frame %d is outside [0, %d) "
                         "(tokens of another tokenizer?)", n0 + i, enc_fsq_vocab(&e->cfg));
                return VTTT_EINVAL;
            }
        if (e->cfg.kind == VTTT_ENCODER_DELTA &&
            (err = enc_motion_refs(e, n0 ? frames + (size_t)(n0 - 1) * fb : prev, NULL, NULL, tokens + (size_t)n0 * T,
                                   1, NULL)))
            return err;
        err = decode_q(e, q, n, frames + (size_t)n0 * fb);
    }
    return err;
}

int vttt_encoder_token_latent(const vttt_encoder *e, const int32_t *tokens, int N, float *q) {
    if (N < 0 || (N && (!tokens || !q))) return VTTT_EINVAL;
    if (enc_fsq_codes_to_q(&e->cfg, q, tokens, N, e->P)) {
        vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer: a token is outside [0, %d) (tokens of another tokenizer?)",
                 enc_fsq_vocab(&e->cfg));
        return VTTT_EINVAL;
    }
    return VTTT_OK;
}

int vttt_encoder_decode_latent(vttt_encoder *e, const uint8_t *ref, const float *q, int N, uint8_t *frames) {
    int S = e->cfg.image_size, err = chunks_begin(e, N, frames && q);
    size_t fb = (size_t)S * S * 3, nq = (size_t)e->cfg.num_levels * e->P;
    float *stage = e->cfg.kind == VTTT_ENCODER_DELTA ? e->h_x : e->h_q;
    for (int n0 = 0; n0 < N && !err; n0 += ENC_CHUNK) {
        int n = N - n0 < ENC_CHUNK ? N - n0 : ENC_CHUNK;
        memcpy(stage, q + (size_t)n0 * nq, (size_t)n * nq * sizeof(float));
        if (e->cfg.kind == VTTT_ENCODER_DELTA)
            enc_delta_set_prev(e, ref ? ref + (size_t)n0 * fb : NULL, ref ? ref + (size_t)(n0 + 1) * fb : NULL, n);
        err = decode_q(e, stage, n, frames + (size_t)n0 * fb);
    }
    return err;
}

void vttt_encoder_set_rate_weight(vttt_encoder *e, float weight) { e->rate_weight = weight; }

double vttt_encoder_rate(const vttt_encoder *e) { return e->rate; }
