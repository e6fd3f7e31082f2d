/*
 * The tokenizer's layer table and parameters: one allocation for all
 * parameters and one for their gradients (llm.c style), each tensor named
 * as in model.safetensors.
 *
 * With c = channels, d = num_levels, S = image_size, G = S / 8 and widths
 * w0 = c (at S), w1 = c (S/2), w2 = 2c (S/4), w3 = 2c (S/8):
 *
 *  l  name               norm up  conv        cin -> cout   size
 *  0  encoder.conv_in     -   -   3x3 s1      3   -> w0     S   -> S
 *  1  encoder.down.0      y   -   3x3 s2      w0  -> w1     S   -> S/2
 *  2  encoder.down.1      y   -   3x3 s2      w1  -> w2     S/2 -> S/4
 *  3  encoder.down.2      y   -   3x3 s2      w2  -> w3     S/4 -> G
 *  4  encoder.mid         y   -   3x3 s1      w3  -> w3     G
 *  5  encoder.conv_out    y   -   1x1         w3  -> d      G        (z)
 *     FSQ                                     d   -> d      G        (q)
 *  6  decoder.conv_in     -   -   1x1         d   -> w3     G
 *  7  decoder.mid         y   -   3x3 s1      w3  -> w3     G
 *  8  decoder.up.0        y   y   3x3 s1      w3  -> w2     G   -> S/4
 *  9  decoder.up.1        y   y   3x3 s1      w2  -> w1     S/4 -> S/2
 * 10  decoder.up.2        y   y   3x3 s1      w1  -> w0     S/2 -> S
 * 11  decoder.conv_out    y   -   3x3 s1      w0  -> 3      S        (y)
 *
 * DELTA (c = channels, C = 3·factor², all on the G×G grid; see
 * encoder_internal.h for x, q and r):
 *
 *  l  name               norm conv   cin -> cout
 *  0  encoder.conv_in     -   3x3    2C    -> c
 *  1  encoder.mid.0       y   3x3    c     -> c
 *  2  encoder.mid.1       y   3x3    c     -> c
 *  3  encoder.conv_out    y   1x1    c     -> d      (z)
 *     FSQ
 *  4  decoder.conv_in     -   3x3    d + C -> c
 *  5  decoder.mid.0       y   3x3    c     -> c
 *  6  decoder.mid.1       y   3x3    c     -> c
 *  7  decoder.mid.2       y   3x3    c     -> c
 *  8  decoder.conv_out    y   3x3    c     -> C      (r)
 *
 * Tensors of layer NAME: NAME.norm.weight (cin), NAME.norm.bias (cin) when
 * normed; NAME.conv.weight (cout, cin, k, k), NAME.conv.bias (cout).
 * "norm" is GroupNorm(num_groups, cin) then SiLU.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder_internal.h"

static const char *const layer_names[] = {
    "encoder.conv_in", "encoder.down.0", "encoder.down.1", "encoder.down.2", "encoder.mid", "encoder.conv_out",
    "decoder.conv_in", "decoder.mid",    "decoder.up.0",   "decoder.up.1",   "decoder.up.2", "decoder.conv_out",
};
static const char *const delta_names[] = {
    "encoder.conv_in", "encoder.mid.0", "encoder.mid.1", "encoder.mid.2", "encoder.conv_out",
    "decoder.conv_in", "decoder.mid.0", "decoder.mid.1", "decoder.mid.2", "decoder.conv_out",
};

const char *enc_layer_name(const vttt_encoder *e, int l) { return l >= 0 && l < e->n_layers ? e->names[l] : "?"; }

/* Fills layer l's shape from the table above; h is its input size. */
static void layer_spec(enc_layer *L, int cin, int cout, int k, int stride, int norm, int up, int h) {
    memset(L, 0, sizeof *L);
    L->cin = cin, L->cout = cout, L->k = k, L->stride = stride, L->pad = k / 2;
    L->norm = norm, L->up = up, L->h = L->w = h;
    int hc = up ? 2 * h : h;
    L->oh = L->ow = (hc + 2 * L->pad - k) / stride + 1;
    L->numel[ENC_P_GN_W] = L->numel[ENC_P_GN_B] = norm ? cin : 0;
    L->numel[ENC_P_CONV_W] = (int64_t)cout * cin * k * k;
    L->numel[ENC_P_CONV_B] = cout;
}

static void build_delta(vttt_encoder *e) {
    const vttt_encoder_config *c = &e->cfg;
    int G = e->G, C = e->C, d = c->num_levels, w = c->channels;
    enc_layer *L = e->L;
    layer_spec(&L[0], 2 * C, w, 3, 1, 0, 0, G);
    layer_spec(&L[1], w, w, 3, 1, 1, 0, G);
    layer_spec(&L[2], w, w, 3, 1, 1, 0, G);
    layer_spec(&L[3], w, w, 3, 1, 1, 0, G);
    layer_spec(&L[4], w, d, 1, 1, 1, 0, G);
    layer_spec(&L[5], d + C, w, 3, 1, 0, 0, G);
    layer_spec(&L[6], w, w, 3, 1, 1, 0, G);
    layer_spec(&L[7], w, w, 3, 1, 1, 0, G);
    layer_spec(&L[8], w, w, 3, 1, 1, 0, G);
    layer_spec(&L[9], w, C, 3, 1, 1, 0, G);
    e->n_layers = 10, e->n_enc = 5, e->names = delta_names, e->dec_cin = d + C;
}

static void build_layers(vttt_encoder *e) {
    const vttt_encoder_config *c = &e->cfg;
    int S = c->image_size, G = S / c->factor, d = c->num_levels;
    e->G = G, e->P = G * G, e->C = 3 * c->factor * c->factor, e->groups = c->num_groups;
    if (c->kind == VTTT_ENCODER_DELTA) {
        build_delta(e);
        return;
    }
    int w0 = c->channels, w1 = c->channels, w2 = 2 * c->channels, w3 = 2 * c->channels;
    enc_layer *L = e->L;
    layer_spec(&L[0], 3, w0, 3, 1, 0, 0, S);
    layer_spec(&L[1], w0, w1, 3, 2, 1, 0, S);
    layer_spec(&L[2], w1, w2, 3, 2, 1, 0, S / 2);
    layer_spec(&L[3], w2, w3, 3, 2, 1, 0, S / 4);
    layer_spec(&L[4], w3, w3, 3, 1, 1, 0, G);
    layer_spec(&L[5], w3, d, 1, 1, 1, 0, G);
    layer_spec(&L[6], d, w3, 1, 1, 0, 0, G);
    layer_spec(&L[7], w3, w3, 3, 1, 1, 0, G);
    layer_spec(&L[8], w3, w2, 3, 1, 1, 1, G);
    layer_spec(&L[9], w2, w1, 3, 1, 1, 1, S / 4);
    layer_spec(&L[10], w1, w0, 3, 1, 1, 1, S / 2);
    layer_spec(&L[11], w0, 3, 3, 1, 1, 0, S);
    e->n_layers = 12, e->n_enc = 6, e->names = layer_names, e->dec_cin = d;
}

static const char *const slot_names[ENC_P_COUNT] = {"norm.weight", "norm.bias", "conv.weight", "conv.bias"};

/* Points every layer's parameter and gradient slots into the two
 * allocations and fills the named tensor list. */
static void point_tensors(vttt_encoder *e) {
    size_t off = 0;
    e->n_tensors = 0;
    for (int l = 0; l < e->n_layers; l++) {
        enc_layer *L = &e->L[l];
        for (int s = 0; s < ENC_P_COUNT; s++) {
            if (!L->numel[s]) continue;
            L->p[s] = L->dp[s] = e->params + off;
            L->g[s] = L->dg[s] = e->grads + off;
            vttt_model_tensor *t = &e->tensors[e->n_tensors++];
            memset(t, 0, sizeof *t);
            snprintf(t->name, sizeof t->name, "%s.%s", e->names[l], slot_names[s]);
            t->data = L->p[s], t->grad = L->g[s], t->numel = L->numel[s];
            if (s == ENC_P_CONV_W) {
                t->ndim = 4;
                t->shape[0] = L->cout, t->shape[1] = L->cin, t->shape[2] = t->shape[3] = L->k;
            } else {
                t->ndim = 1;
                t->shape[0] = L->numel[s];
            }
            off += (size_t)L->numel[s];
        }
    }
}

/* splitmix64: the weights' generator. */
static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void enc_init_weights(vttt_encoder *e, uint64_t seed) {
    uint64_t s = seed ^ 0x656e636f646572ULL; /* "encoder" */
    for (int l = 0; l < e->n_layers; l++) {
        enc_layer *L = &e->L[l];
        float bound = 1.0f / sqrtf((float)(L->cin * L->k * L->k));
        if (l == e->n_layers - 1) bound *= 0.1f; /* start near mid-grey: a small first loss */
        for (int k = 0; k < ENC_P_COUNT; k++) {
            for (int64_t i = 0; i < L->numel[k]; i++) {
                float u = (float)((mix(&s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
                L->p[k][i] = k == ENC_P_GN_W ? 1.0f : k == ENC_P_GN_B ? 0.0f : u * bound;
            }
        }
    }
}

int vttt_encoder_init(vttt_encoder **out, const vttt_encoder_config *cfg, uint64_t seed, const vttt_logger *lg) {
    *out = NULL;
    int err = vttt_encoder_config_check(cfg, lg);
    if (err) return err;
    vttt_encoder *e = calloc(1, sizeof *e);
    if (!e) return VTTT_ENOMEM;
    e->cfg = *cfg;
    for (int i = cfg->num_levels; i < VTTT_FSQ_MAX_LEVELS; i++) e->cfg.levels[i] = 0; /* one form per config */
    if (lg) e->log = *lg;
    e->be = vttt_backend_cpu();
    build_layers(e);
    for (int l = 0; l < e->n_layers; l++)
        for (int s = 0; s < ENC_P_COUNT; s++) e->n_params += (size_t)e->L[l].numel[s];
    e->params = calloc(e->n_params, sizeof(float));
    e->grads = calloc(e->n_params, sizeof(float));
    if (!e->params || !e->grads) {
        vttt_log(lg, VTTT_LOG_ERROR, "tokenizer: out of memory for %zu parameters", e->n_params);
        vttt_encoder_free(&e);
        return VTTT_ENOMEM;
    }
    point_tensors(e);
    enc_init_weights(e, seed);
    *out = e;
    return VTTT_OK;
}

void vttt_encoder_free(vttt_encoder **ep) {
    if (!ep || !*ep) return;
    vttt_encoder *e = *ep;
    enc_buffers_free(e);
    if (e->dparams) e->be->free(e->be->ctx, e->dparams);
    if (e->dgrads) e->be->free(e->be->ctx, e->dgrads);
    free(e->params), free(e->grads);
    free(e);
    *ep = NULL;
}

const vttt_encoder_config *vttt_encoder_get_config(const vttt_encoder *e) { return &e->cfg; }

int vttt_encoder_tokens_per_frame(const vttt_encoder *e) { return enc_motion_count(&e->cfg) + e->P; }

int vttt_encoder_vocab_size(const vttt_encoder *e) {
    int lo, n;
    vttt_encoder_motion_token_range(e, 1, &lo, &n);
    return lo + n;
}

int vttt_encoder_latent_dim(const vttt_encoder *e) { return e->cfg.num_levels; }

int vttt_encoder_zero_token(const vttt_encoder *e) {
    if (e->cfg.kind != VTTT_ENCODER_DELTA) return -1;
    int code = 0, base = 1;
    for (int i = 0; i < e->cfg.num_levels; i++) code += (e->cfg.levels[i] / 2) * base, base *= e->cfg.levels[i];
    return code;
}

const vttt_model_tensor *vttt_encoder_tensors(const vttt_encoder *e, int *n) {
    *n = e->n_tensors;
    return e->tensors;
}

size_t vttt_encoder_num_params(const vttt_encoder *e) { return e->n_params; }

void vttt_encoder_zero_grads(vttt_encoder *e) { memset(e->grads, 0, e->n_params * sizeof(float)); }

size_t enc_max_layer_floats(const vttt_encoder *e) {
    size_t m = (size_t)(e->cfg.kind == VTTT_ENCODER_DELTA ? 6 : 3) * e->cfg.image_size * e->cfg.image_size;
    for (int l = 0; l < e->n_layers; l++) {
        const enc_layer *L = &e->L[l];
        size_t in = (size_t)L->cin * L->h * L->w * (L->up ? 4 : 1), o = (size_t)L->cout * L->oh * L->ow;
        if (in > m) m = in;
        if (o > m) m = o;
    }
    return m;
}

/* Conv FLOPs (multiply-adds as 2) of layers [l0, l1) for one frame. */
static double flops(const vttt_encoder_config *cfg, int l0, int l1) {
    vttt_encoder e;
    memset(&e, 0, sizeof e);
    e.cfg = *cfg;
    build_layers(&e);
    double f = 0.0;
    for (int l = l0; l < l1 && l < e.n_layers; l++) {
        const enc_layer *L = &e.L[l];
        f += 2.0 * L->cin * L->cout * L->k * L->k * L->oh * L->ow;
    }
    return f;
}

double vttt_encoder_forward_flops(const vttt_encoder_config *cfg) { return flops(cfg, 0, ENC_MAX_LAYERS); }

double vttt_encoder_encode_flops(const vttt_encoder_config *cfg) {
    return flops(cfg, 0, cfg->kind == VTTT_ENCODER_DELTA ? 5 : 6);
}
