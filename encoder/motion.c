/*
 * A DELTA tokenizer's motion (encoder.h, encoder/README.md): each frame's
 * reference is the previous frame moved by a coarse motion field, one
 * motion vector in half-pixel steps for each of the 4x4 regions of the
 * frame, chosen at encode time by a search against the frame (block
 * matching, as a video codec does) and carried by 16 tokens at the start
 * of the frame's tokens. The cells then code what changed relative to the
 * moved reference, so a panning camera or a moving object costs a motion
 * token per region instead of every cell. Motion 0 is the identity: the
 * all-"no change" frame with zero motion decodes to the previous frame
 * exactly.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "encoder_internal.h"

/* A motion must lower the squared error of its region by this fraction
 * against the one it replaces (0, then the frame's motion), else the
 * region keeps that one: a static region's motion token stays at 0 instead
 * of following noise, a region moving with the camera keeps the camera's
 * motion (a predictable token stream). */
#define MOTION_GAIN 0.9

static inline int clampi(int v, int hi) { return v < 0 ? 0 : v > hi ? hi : v; }

/* Pixel (y, x) of dst = src at (y - hy/2, x - hx/2), bilinear, edges
 * clamped; in half-pixel units the source coordinate 2y - hy splits into a
 * whole pixel and a half. The mean of 1, 2 or 4 pixels, rounded half up. */
static inline void sample(const uint8_t *src, int S, int y, int x, int hx, int hy, uint8_t *o) {
    int sy2 = 2 * y - hy, y0 = sy2 >> 1, y1 = y0 + (sy2 & 1);
    int sx2 = 2 * x - hx, x0 = sx2 >> 1, x1 = x0 + (sx2 & 1);
    y0 = clampi(y0, S - 1), y1 = clampi(y1, S - 1), x0 = clampi(x0, S - 1), x1 = clampi(x1, S - 1);
    const uint8_t *a = src + ((size_t)y0 * S + x0) * 3, *b = src + ((size_t)y0 * S + x1) * 3;
    const uint8_t *c = src + ((size_t)y1 * S + x0) * 3, *d = src + ((size_t)y1 * S + x1) * 3;
    for (int k = 0; k < 3; k++) o[k] = (uint8_t)((a[k] + b[k] + c[k] + d[k] + 2) >> 2);
}

void enc_motion_warp(const uint8_t *src, int S, const int *mv, uint8_t *dst) {
    if (!src) {
        memset(dst, 128, (size_t)S * S * 3);
        return;
    }
    int bs = S / ENC_MOTION_GRID;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            const int *m = mv + 2 * ((y / bs) * ENC_MOTION_GRID + x / bs);
            uint8_t *o = dst + ((size_t)y * S + x) * 3;
            if (!m[0] && !m[1]) memcpy(o, src + ((size_t)y * S + x) * 3, 3);
            else sample(src, S, y, x, m[0], m[1], o);
        }
}

/* Squared error between cur and ref moved by (hx, hy) half pixels over
 * the square of side n at (y0, x0), on every step-th row and column; once
 * a row's end passes limit it stops there (a sum >= limit: a candidate
 * that cannot win a strict comparison against limit, the same choice
 * sooner). */
static double rect_sse_below(const uint8_t *ref, const uint8_t *cur, int S, int y0, int x0, int n, int hx, int hy,
                             int step, double limit) {
    int64_t s = 0;
    uint8_t o[3];
    for (int y = y0; y < y0 + n; y += step) {
        if ((double)s >= limit) break;
        for (int x = x0; x < x0 + n; x += step) {
            const uint8_t *c = cur + ((size_t)y * S + x) * 3;
            if (!(hx & 1) && !(hy & 1)) { /* whole pixels: no averaging */
                const uint8_t *r = ref + ((size_t)clampi(y - hy / 2, S - 1) * S + clampi(x - hx / 2, S - 1)) * 3;
                o[0] = r[0], o[1] = r[1], o[2] = r[2];
            } else {
                sample(ref, S, y, x, hx, hy, o);
            }
            for (int k = 0; k < 3; k++) s += ((int)c[k] - o[k]) * ((int)c[k] - o[k]);
        }
    }
    return (double)s;
}

static double rect_sse(const uint8_t *ref, const uint8_t *cur, int S, int y0, int x0, int n, int hx, int hy,
                       int step) {
    return rect_sse_below(ref, cur, S, y0, x0, n, hx, hy, step, HUGE_VAL);
}

/* The best motion (*hx, *hy) of the square (y0, x0, n) and its error:
 * every whole pixel in [-R, R]² on a quarter of the pixels (every other
 * row and column; squares of 8 pixels and more), then the best and the
 * half pixels around it on all of them. */
static double search(const uint8_t *ref, const uint8_t *cur, int S, int y0, int x0, int n, int R, int *hx, int *hy) {
    int sub = n >= 8 ? 2 : 1, bx = 0, by = 0;
    double best = rect_sse(ref, cur, S, y0, x0, n, 0, 0, sub);
    for (int dy = -R; dy <= R; dy++)
        for (int dx = -R; dx <= R; dx++) {
            if (!dx && !dy) continue;
            double e = rect_sse_below(ref, cur, S, y0, x0, n, 2 * dx, 2 * dy, sub, best);
            if (e < best) best = e, bx = 2 * dx, by = 2 * dy;
        }
    int cx = bx, cy = by;
    best = rect_sse(ref, cur, S, y0, x0, n, cx, cy, 1);
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
            int x = cx + dx, y = cy + dy;
            if ((!dx && !dy) || x < -2 * R || x > 2 * R || y < -2 * R || y > 2 * R) continue;
            double e = rect_sse_below(ref, cur, S, y0, x0, n, x, y, 1, best);
            if (e < best) best = e, bx = x, by = y;
        }
    *hx = bx, *hy = by;
    return best;
}

void enc_motion_estimate(const uint8_t *ref, const uint8_t *cur, int S, int R, int *mv) {
    memset(mv, 0, 2 * ENC_MOTION_REGIONS * sizeof *mv);
    if (!ref || R <= 0) return;
    /* the frame's own motion (the camera's) first; a region keeps it, or 0, unless its own best is clearly
     * better: a field that is one vector where the camera moves is a token stream the model can follow */
    int gx, gy, bs = S / ENC_MOTION_GRID;
    search(ref, cur, S, 0, 0, S, R, &gx, &gy);
    for (int by = 0; by < ENC_MOTION_GRID; by++)
        for (int bx = 0; bx < ENC_MOTION_GRID; bx++) {
            int y0 = by * bs, x0 = bx * bs, hx, hy, *m = mv + 2 * (by * ENC_MOTION_GRID + bx);
            double e = rect_sse(ref, cur, S, y0, x0, bs, 0, 0, 1);
            if (gx || gy) {
                double eg = rect_sse(ref, cur, S, y0, x0, bs, gx, gy, 1);
                if (eg < MOTION_GAIN * e) e = eg, m[0] = gx, m[1] = gy;
            }
            double eb = search(ref, cur, S, y0, x0, bs, R, &hx, &hy);
            if (eb < MOTION_GAIN * e) m[0] = hx, m[1] = hy;
        }
}

int enc_motion_count(const vttt_encoder_config *c) {
    return c->kind == VTTT_ENCODER_DELTA && c->motion > 0 ? 2 * ENC_MOTION_REGIONS : 0;
}

int vttt_encoder_motion_tokens(const vttt_encoder *e) { return enc_motion_count(&e->cfg); }

int vttt_encoder_cell_vocab(const vttt_encoder *e) { return enc_fsq_vocab(&e->cfg); }

void vttt_encoder_motion_token_range(const vttt_encoder *e, int axis, int *lo, int *n) {
    int k = enc_motion_count(&e->cfg) ? 4 * e->cfg.motion + 1 : 0;
    *lo = enc_fsq_vocab(&e->cfg) + (axis ? k : 0);
    *n = k;
}

/* The motion field mv (16 half-pixel pairs) of a frame's motion tokens
 * (x, y of each region); -1 when one is outside its range. */
static int motion_of_tokens(const vttt_encoder *e, const int32_t *t, int *mv) {
    int lo[2], n;
    vttt_encoder_motion_token_range(e, 0, &lo[0], &n);
    vttt_encoder_motion_token_range(e, 1, &lo[1], &n);
    for (int i = 0; i < 2 * ENC_MOTION_REGIONS; i++) {
        if (t[i] < lo[i & 1] || t[i] >= lo[i & 1] + n) return -1;
        mv[i] = t[i] - lo[i & 1] - 2 * e->cfg.motion;
    }
    return 0;
}

int vttt_encoder_motion_ref(const vttt_encoder *e, const uint8_t *prev, const int32_t *motion, uint8_t *out) {
    int mv[2 * ENC_MOTION_REGIONS] = {0};
    if (!out || (enc_motion_count(&e->cfg) && (!motion || motion_of_tokens(e, motion, mv)))) {
        vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer: a motion token is outside its range (tokens of another "
                 "tokenizer?)");
        return VTTT_EINVAL;
    }
    if (!prev) memset(out, 128, (size_t)e->cfg.image_size * e->cfg.image_size * 3);
    else if (!enc_motion_count(&e->cfg)) memcpy(out, prev, (size_t)e->cfg.image_size * e->cfg.image_size * 3);
    else enc_motion_warp(prev, e->cfg.image_size, mv, out);
    return VTTT_OK;
}

int enc_motion_refs(vttt_encoder *e, const uint8_t *ref0, const uint8_t *refs, const uint8_t *frames,
                    const int32_t *tokens, int N, int32_t *motion) {
    int S = e->cfg.image_size, M = enc_motion_count(&e->cfg), R = e->cfg.motion, lo[2], n_tok;
    size_t fb = (size_t)S * S * 3;
    if (!M) {
        enc_delta_set_prev(e, ref0, refs, N);
        return VTTT_OK;
    }
    vttt_encoder_motion_token_range(e, 0, &lo[0], &n_tok);
    vttt_encoder_motion_token_range(e, 1, &lo[1], &n_tok);
    for (int n = 0; n < N; n++) {
        const uint8_t *r = n == 0 ? ref0 : refs ? refs + (size_t)(n - 1) * fb : NULL;
        int mv[2 * ENC_MOTION_REGIONS] = {0};
        if (tokens) {
            if (motion_of_tokens(e, tokens + (size_t)n * (M + e->P), mv)) {
                vttt_log(&e->log, VTTT_LOG_ERROR, "tokenizer decode: a motion token of frame %d is outside its "
                         "range (tokens of another tokenizer?)", n);
                return VTTT_EINVAL;
            }
        } else {
            enc_motion_estimate(r, frames + (size_t)n * fb, S, R, mv);
        }
        enc_motion_warp(r, S, mv, e->h_mref + (size_t)n * fb);
        for (int i = 0; motion && i < M; i++) motion[(size_t)n * M + i] = lo[i & 1] + mv[i] + 2 * R;
    }
    enc_delta_set_prev(e, e->h_mref, e->h_mref + fb, N);
    return VTTT_OK;
}
