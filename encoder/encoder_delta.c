/*
 * The host side of a DELTA tokenizer (encoder_internal.h): moving pixels
 * between frames and cells (space-to-depth: a cell's factor×factor pixels
 * of each colour become C = 3·factor² channels), the encoder's and the
 * decoder's inputs, the change mask, and the output y = prev + mask · r.
 * The layers themselves run on the backend like a FRAME tokenizer's.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "encoder_internal.h"

/* Cells (C, G, G) of one planar image (3, S, S): channel c*f*f + dy*f + dx
 * of cell (gy, gx) is pixel (gy*f + dy, gx*f + dx) of colour c. to_cells
 * copies img -> cells, else cells -> img. */
static void cells(float *cell, float *img, int S, int f, int to_cells) {
    int G = S / f;
    for (int c = 0; c < 3; c++)
        for (int dy = 0; dy < f; dy++)
            for (int dx = 0; dx < f; dx++) {
                float *ch = cell + ((size_t)(c * f + dy) * f + dx) * G * G;
                for (int gy = 0; gy < G; gy++) {
                    float *row = img + ((size_t)c * S + gy * f + dy) * S + dx;
                    for (int gx = 0; gx < G; gx++) {
                        if (to_cells) ch[gy * G + gx] = row[gx * f];
                        else row[gx * f] = ch[gy * G + gx];
                    }
                }
            }
}

void enc_delta_set_prev(vttt_encoder *e, const uint8_t *ref0, const uint8_t *refs, int N) {
    int S = e->cfg.image_size;
    size_t hw = (size_t)S * S;
    for (int n = 0; n < N; n++) {
        const uint8_t *r = n == 0 ? ref0 : refs ? refs + (size_t)(n - 1) * hw * 3 : NULL;
        float *out = e->h_prev + (size_t)n * 3 * hw;
        if (!r) { /* mid-grey (128), the intra mode */
            for (size_t i = 0; i < 3 * hw; i++) out[i] = 128.0f / 255.0f - 0.5f;
            continue;
        }
        enc_frames_to_img(out, r, 1, S);
        for (size_t i = 0; i < 3 * hw; i++) out[i] -= 0.5f;
    }
}

int enc_delta_upload_input(vttt_encoder *e, int N) {
    int S = e->cfg.image_size, f = e->cfg.factor;
    size_t im = (size_t)3 * S * S;
    for (int n = 0; n < N; n++) {
        const float *img = e->h_img + n * im, *prev = e->h_prev + n * im;
        float *diff = e->h_y + n * im; /* h_y is free until the output */
        for (size_t i = 0; i < im; i++) diff[i] = img[i] - 0.5f - prev[i];
        float *x = e->h_x + 2 * n * im;
        cells(x, diff, S, f, 1);
        cells(x + im, (float *)prev, S, f, 1);
    }
    return e->be->to_device(e->be->ctx, e->x, e->h_x, (size_t)N * 2 * im * sizeof(float));
}

int enc_delta_upload_q(vttt_encoder *e, const float *q, int N) {
    int S = e->cfg.image_size, f = e->cfg.factor, d = e->cfg.num_levels, P = e->P;
    size_t im = (size_t)3 * S * S, blk = (size_t)(d + e->C) * P;
    for (int n = 0; n < N; n++) {
        float *o = e->h_q + n * blk;
        const float *qn = q + (size_t)n * d * P;
        memmove(o, qn, (size_t)d * P * sizeof(float));
        cells(o + (size_t)d * P, e->h_prev + n * im, S, f, 1);
        for (int p = 0; p < P; p++) {
            uint8_t m = 0;
            for (int i = 0; i < d; i++) m |= o[(size_t)i * P + p] != 0.0f;
            e->h_mask[(size_t)n * P + p] = m;
        }
    }
    return e->be->to_device(e->be->ctx, e->q, e->h_q, (size_t)N * blk * sizeof(float));
}

int enc_delta_output(vttt_encoder *e, int N) {
    int S = e->cfg.image_size, f = e->cfg.factor, G = e->G, P = e->P;
    size_t im = (size_t)3 * S * S;
    int err = e->be->to_host(e->be->ctx, e->h_x, e->L[e->n_layers - 1].y, (size_t)N * im * sizeof(float));
    if (err) return err;
    for (int n = 0; n < N; n++) {
        float *y = e->h_y + n * im;
        const float *prev = e->h_prev + n * im;
        const uint8_t *mask = e->h_mask + (size_t)n * P;
        cells(e->h_x + n * im, y, S, f, 0);
        for (int c = 0; c < 3; c++)
            for (int py = 0; py < S; py++)
                for (int px = 0; px < S; px++) {
                    size_t i = ((size_t)c * S + py) * S + px;
                    y[i] = prev[i] + (mask[(py / f) * G + px / f] ? y[i] : 0.0f);
                }
    }
    return VTTT_OK;
}

int enc_delta_keep_better(vttt_encoder *e, int N, int32_t *tokens) {
    int S = e->cfg.image_size, f = e->cfg.factor, G = e->G, P = e->P, zero = vttt_encoder_zero_token(e), kept = 0;
    size_t im = (size_t)3 * S * S;
    double *sse = calloc((size_t)2 * P, sizeof *sse);
    if (!sse) return VTTT_ENOMEM;
    for (int n = 0; n < N; n++) {
        const float *y = e->h_y + n * im, *prev = e->h_prev + n * im, *img = e->h_img + n * im;
        memset(sse, 0, (size_t)2 * P * sizeof *sse);
        for (int c = 0; c < 3; c++)
            for (int py = 0; py < S; py++)
                for (int px = 0; px < S; px++) {
                    size_t i = ((size_t)c * S + py) * S + px;
                    int cell = (py / f) * G + px / f;
                    double a = (double)y[i] + 0.5 - img[i], b = (double)prev[i] + 0.5 - img[i];
                    sse[2 * cell] += a * a, sse[2 * cell + 1] += b * b;
                }
        for (int p = 0; p < P; p++)
            if (tokens[(size_t)n * P + p] != zero && sse[2 * p + 1] <= sse[2 * p])
                tokens[(size_t)n * P + p] = zero, kept++;
    }
    free(sse);
    return kept;
}

int enc_delta_loss_grad(vttt_encoder *e, int N) {
    int S = e->cfg.image_size, f = e->cfg.factor;
    size_t im = (size_t)3 * S * S;
    for (int n = 0; n < N; n++) cells(e->h_x + n * im, e->h_y + n * im, S, f, 1); /* mask taken as 1 */
    return e->be->to_device(e->be->ctx, e->L[e->n_layers - 1].dy, e->h_x, (size_t)N * im * sizeof(float));
}

int enc_delta_dq_to_host(vttt_encoder *e, float *dq, int N) {
    int d = e->cfg.num_levels, P = e->P;
    size_t blk = (size_t)(d + e->C) * P;
    int err = e->be->to_host(e->be->ctx, e->h_q, e->dq, (size_t)N * blk * sizeof(float));
    for (int n = 0; n < N && !err; n++) memmove(dq + (size_t)n * d * P, e->h_q + n * blk, (size_t)d * P * sizeof(float));
    return err;
}

void vttt_encoder_expected_latent(const vttt_encoder *e, const float *logits, int P, int ld, float *q,
                                  float *p_zero) {
    const vttt_encoder_config *c = &e->cfg;
    int d = c->num_levels, V = enc_fsq_vocab(c), zero = p_zero ? vttt_encoder_zero_token(e) : -1;
    for (int p = 0; p < P; p++) {
        const float *r = logits + (size_t)p * ld;
        float mx = r[0];
        for (int v = 1; v < V; v++) mx = r[v] > mx ? r[v] : mx;
        double acc[VTTT_FSQ_MAX_LEVELS] = {0}, sum = 0.0, w0 = 0.0;
        for (int v = 0; v < V; v++) {
            double w = exp((double)(r[v] - mx));
            sum += w;
            if (v == zero) {
                w0 = w;
                continue;
            }
            int code = v;
            for (int i = 0; i < d; i++) {
                int L = c->levels[i];
                acc[i] += w * (double)(code % L - L / 2) / (double)(L / 2);
                code /= L;
            }
        }
        double rest = sum - w0;
        for (int i = 0; i < d; i++) q[(size_t)i * P + p] = rest > 0.0 ? (float)(acc[i] / rest) : 0.0f;
        if (p_zero) p_zero[p] = (float)(w0 / sum);
    }
}

void vttt_encoder_blend_unchanged(const vttt_encoder *e, const uint8_t *ref, const float *p_zero, int N,
                                  uint8_t *frames) {
    int S = e->cfg.image_size, f = e->cfg.factor, G = e->G;
    for (int n = 0; n < N; n++) {
        const float *pz = p_zero + (size_t)n * e->P;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                float w = pz[(y / f) * G + x / f];
                for (int c = 0; c < 3; c++) {
                    size_t i = (((size_t)n * S + y) * S + x) * 3 + c;
                    float r = ref ? (float)ref[i] : 128.0f, v = w * r + (1.0f - w) * (float)frames[i];
                    v = rintf(v);
                    frames[i] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
                }
            }
    }
}
