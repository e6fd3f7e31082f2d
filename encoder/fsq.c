/*
 * Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar
 * Quantization: VQ-VAE Made Simple"), as in their reference code: each of
 * the d channels is bounded by tanh to its level range and rounded; the
 * rounding's gradient is taken as the identity (straight-through). The
 * level values are {-hw, ..., L - 1 - hw} / hw with hw = floor(L / 2):
 * for L = 5, {-1, -0.5, 0, 0.5, 1}; for L = 8, {-1, ..., 0.75}.
 */
#include <math.h>

#include "encoder_internal.h"

int enc_fsq_vocab(const vttt_encoder_config *cfg) {
    int v = 1;
    for (int i = 0; i < cfg->num_levels; i++) v *= cfg->levels[i];
    return v;
}

/* The constants of a channel with L levels (see encoder_internal.h). */
typedef struct {
    float hl, off, shift, hw;
} fsq_chan;

static fsq_chan chan(int L) {
    fsq_chan c;
    c.hl = (float)(L - 1) * (1.0f + ENC_FSQ_EPS) / 2.0f;
    c.off = L % 2 == 0 ? 0.5f : 0.0f;
    c.shift = atanhf(c.off / c.hl);
    c.hw = (float)(L / 2);
    return c;
}

void enc_fsq_forward(const vttt_encoder_config *cfg, float *q, int32_t *codes, const float *z, int N, int P,
                     int bypass) {
    int d = cfg->num_levels;
    for (int n = 0; n < N; n++) {
        for (int p = 0; p < P; p++) {
            int32_t code = 0, base = 1;
            for (int i = 0; i < d; i++) {
                fsq_chan c = chan(cfg->levels[i]);
                size_t at = ((size_t)n * d + i) * P + p;
                float b = tanhf(z[at] + c.shift) * c.hl - c.off;
                float r = rintf(b); /* round half to even, as torch.round */
                q[at] = (bypass ? b : r) / c.hw;
                int digit = (int)r + (int)c.hw;
                digit = digit < 0 ? 0 : digit >= cfg->levels[i] ? cfg->levels[i] - 1 : digit;
                code += digit * base;
                base *= cfg->levels[i];
            }
            if (codes) codes[(size_t)n * P + p] = code;
        }
    }
}

void enc_fsq_backward(const vttt_encoder_config *cfg, float *dz, const float *dq, const float *z, int N, int P) {
    int d = cfg->num_levels;
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < d; i++) {
            fsq_chan c = chan(cfg->levels[i]);
            for (int p = 0; p < P; p++) {
                size_t at = ((size_t)n * d + i) * P + p;
                float t = tanhf(z[at] + c.shift);
                dz[at] = dq[at] / c.hw * c.hl * (1.0f - t * t);
            }
        }
    }
}

int enc_fsq_codes_to_q(const vttt_encoder_config *cfg, float *q, const int32_t *codes, int N, int P) {
    int d = cfg->num_levels, V = enc_fsq_vocab(cfg);
    for (int n = 0; n < N; n++) {
        for (int p = 0; p < P; p++) {
            int32_t code = codes[(size_t)n * P + p];
            if (code < 0 || code >= V) return VTTT_EINVAL;
            for (int i = 0; i < d; i++) {
                int L = cfg->levels[i];
                q[((size_t)n * d + i) * P + p] = (float)(code % L - L / 2) / (float)(L / 2);
                code /= L;
            }
        }
    }
    return VTTT_OK;
}

double enc_fsq_rate(const vttt_encoder_config *cfg, const float *z, int N, int P, float scale, float *dz) {
    int d = cfg->num_levels;
    double sum = 0.0;
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < d; i++) {
            fsq_chan c = chan(cfg->levels[i]);
            for (int p = 0; p < P; p++) {
                size_t at = ((size_t)n * d + i) * P + p;
                float t = tanhf(z[at] + c.shift), b = t * c.hl - c.off;
                sum += fabsf(b) / c.hw;
                if (dz) dz[at] += scale * (b > 0.0f ? 1.0f : b < 0.0f ? -1.0f : 0.0f) / c.hw * c.hl * (1.0f - t * t);
            }
        }
    }
    return sum;
}
