/*
 * The layer object: configuration checks, one parameter block (and one
 * gradient block of the same layout), reference names, initialisation, and
 * dispatch of forward/backward/prefill/decode to TTT or attention code.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "ttt_internal.h"

vttt_layer_config vttt_layer_default_config(vttt_layer_kind kind, int width, int num_heads) {
    vttt_layer_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.width = width;
    c.num_heads = num_heads;
    c.mini_batch = 16;
    c.base_lr = 1.0f;
    c.share_qk = 0;
    c.use_gate = 0;
    c.conv_kernel = 4;
    c.rope_theta = 10000.0f;
    c.mlp_mult = 4;
    c.ckpt_group = 0;
    return c;
}

static int is_ttt(const vttt_layer_config *c) { return c->kind == VTTT_LAYER_TTT_LINEAR || c->kind == VTTT_LAYER_TTT_MLP; }

static int config_check(const vttt_layer_config *c, const vttt_logger *lg) {
    if (c->kind < VTTT_LAYER_TTT_LINEAR || c->kind > VTTT_LAYER_ATTENTION) {
        vttt_log(lg, VTTT_LOG_ERROR, "layer config: unknown kind %d", (int)c->kind);
        return VTTT_EINVAL;
    }
    if (c->width <= 0 || c->num_heads <= 0 || c->width % c->num_heads != 0 || (c->width / c->num_heads) % 2 != 0) {
        vttt_log(lg, VTTT_LOG_ERROR,
                 "layer config: width %d must be a positive multiple of num_heads %d with an even head dim",
                 c->width, c->num_heads);
        return VTTT_EINVAL;
    }
    if (is_ttt(c) && (c->mini_batch <= 0 || c->mini_batch > 1024 || c->width / c->num_heads > 1024 || !(c->base_lr >= 0.0f) ||
                      (c->kind == VTTT_LAYER_TTT_MLP && c->mlp_mult <= 0) ||
                      (c->share_qk && (c->conv_kernel <= 0 || c->conv_kernel > 64)) || c->ckpt_group < 0)) {
        vttt_log(lg, VTTT_LOG_ERROR,
                 "layer config: bad TTT settings (mini_batch %d (1..1024), head dim %d (<= 1024), base_lr %g, "
                 "mlp_mult %d, conv_kernel %d, ckpt_group %d)",
                 c->mini_batch, c->width / c->num_heads, c->base_lr, c->mlp_mult, c->conv_kernel, c->ckpt_group);
        return VTTT_EINVAL;
    }
    if (!(c->rope_theta > 0.0f)) {
        vttt_log(lg, VTTT_LOG_ERROR, "layer config: rope_theta must be positive");
        return VTTT_EINVAL;
    }
    return VTTT_OK;
}

/* One parameter tensor of a layer: its reference name and shape, and where
 * its pointer lives in a vttt_layer_params. */
typedef struct {
    const char *name;
    float **slot;
    int ndim;
    int64_t shape[3];
} param_slot;

/* The parameter table of a layer, in storage order. Which entries exist
 * depends on the config; sizes, pointers and names all come from here.
 * Fills at most 32 slots of p's pointers; returns the count. */
static int param_table(const vttt_layer *l, vttt_layer_params *p, param_slot *out) {
    const vttt_layer_config *c = &l->cfg;
    int64_t D = l->D, H = l->H, f = l->f, h1 = l->h1, K = c->conv_kernel;
    int ttt = is_ttt(c), mlp = c->kind == VTTT_LAYER_TTT_MLP, conv = ttt && c->share_qk;
    struct { param_slot s; int on; } t[] = {
        {{"q_proj.weight", &p->wq, 2, {D, D}}, 1},
        {{"k_proj.weight", &p->wk, 2, {D, D}}, !conv},
        {{"v_proj.weight", &p->wv, 2, {D, D}}, 1},
        {{"o_proj.weight", &p->wo, 2, {D, D}}, 1},
        {{"g_proj.weight", &p->wg, 2, {D, D}}, ttt && c->use_gate},
        {{"conv_q.weight", &p->conv_q_w, 3, {D, 1, K}}, conv},
        {{"conv_q.bias", &p->conv_q_b, 1, {D}}, conv},
        {{"conv_k.weight", &p->conv_k_w, 3, {D, 1, K}}, conv},
        {{"conv_k.bias", &p->conv_k_b, 1, {D}}, conv},
        {{"learnable_ttt_lr_weight", &p->lr_w, 3, {H, 1, D}}, ttt},
        {{"learnable_ttt_lr_bias", &p->lr_b, 2, {H, 1}}, ttt},
        {{"learnable_token_idx", &p->token_idx, 1, {l->b}}, ttt},
        {{"ttt_norm_weight", &p->ln_w, 2, {H, f}}, ttt},
        {{"ttt_norm_bias", &p->ln_b, 2, {H, f}}, ttt},
        {{"W1", &p->W1, 3, {H, f, h1}}, ttt},
        {{"b1", &p->b1, 3, {H, 1, h1}}, ttt},
        {{"W2", &p->W2, 3, {H, h1, f}}, mlp},
        {{"b2", &p->b2, 3, {H, 1, f}}, mlp},
        {{"post_norm.weight", &p->post_w, 1, {D}}, ttt},
        {{"post_norm.bias", &p->post_b, 1, {D}}, ttt},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].on) out[n++] = t[i].s;
    return n;
}

static int64_t slot_numel(const param_slot *s) {
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    return n;
}

/* Points p's slots into mem (NULL: only counts), each tensor 64-byte
 * aligned. Returns the floats needed. */
static size_t param_layout(const vttt_layer *l, vttt_layer_params *p, float *mem) {
    param_slot s[32];
    memset(p, 0, sizeof *p);
    int n = param_table(l, p, s);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        *s[i].slot = mem ? mem + off : NULL;
        off += (size_t)slot_numel(&s[i]);
        off = (off + 15) & ~(size_t)15;
    }
    return off;
}

int vttt_layer_init(vttt_layer **out, const vttt_layer_config *cfg, const vttt_logger *lg) {
    if (!out || !cfg) return VTTT_EINVAL;
    *out = NULL;
    int err = config_check(cfg, lg);
    if (err) return err;
    vttt_layer *l = calloc(1, sizeof *l);
    if (!l) return VTTT_ENOMEM;
    l->cfg = *cfg;
    if (lg) l->log = *lg;
    l->D = cfg->width;
    l->H = cfg->num_heads;
    l->f = cfg->width / cfg->num_heads;
    l->h1 = cfg->kind == VTTT_LAYER_TTT_MLP ? cfg->mlp_mult * l->f : l->f;
    l->b = cfg->mini_batch;
    l->n_params = param_layout(l, &l->p, NULL);
    if (posix_memalign((void **)&l->param_mem, 64, l->n_params * sizeof(float)) ||
        posix_memalign((void **)&l->grad_mem, 64, l->n_params * sizeof(float))) {
        vttt_log(lg, VTTT_LOG_ERROR, "layer: cannot allocate %zu parameters", l->n_params);
        vttt_layer_free(&l);
        return VTTT_ENOMEM;
    }
    memset(l->param_mem, 0, l->n_params * sizeof(float));
    memset(l->grad_mem, 0, l->n_params * sizeof(float));
    param_layout(l, &l->p, l->param_mem);
    param_layout(l, &l->g, l->grad_mem);
    *out = l;
    return VTTT_OK;
}

void vttt_layer_free(vttt_layer **lp) {
    if (!lp || !*lp) return;
    vttt_layer *l = *lp;
    ttt_cache_free(&l->tc);
    ttt_attn_cache_free(&l->ac);
    free(l->param_mem);
    free(l->grad_mem);
    free(l);
    *lp = NULL;
}

const vttt_layer_config *vttt_layer_get_config(const vttt_layer *l) { return &l->cfg; }
vttt_layer_params *vttt_layer_get_params(vttt_layer *l) { return &l->p; }
vttt_layer_params *vttt_layer_get_grads(vttt_layer *l) { return &l->g; }
size_t vttt_layer_num_params(const vttt_layer *l) {
    param_slot s[32];
    vttt_layer_params tmp;
    int n = param_table(l, &tmp, s);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)slot_numel(&s[i]);
    return total;
}

int vttt_layer_param_list(vttt_layer *l, int grads, vttt_param_info *out, int max) {
    param_slot s[32];
    int n = param_table(l, grads ? &l->g : &l->p, s);
    for (int i = 0; i < n && i < max; i++) {
        vttt_param_info *e = &out[i];
        memset(e, 0, sizeof *e);
        e->name = s[i].name;
        e->data = *s[i].slot;
        e->ndim = s[i].ndim;
        for (int d = 0; d < s[i].ndim; d++) e->shape[d] = s[i].shape[d];
        e->numel = slot_numel(&s[i]);
    }
    return n;
}

void vttt_layer_zero_grads(vttt_layer *l) { memset(l->grad_mem, 0, l->n_params * sizeof(float)); }

/* xorshift-based normal samples, local to one initialisation call. */
static double init_normal(uint64_t *s) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        u[i] = ((*s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

void vttt_layer_init_weights(vttt_layer *l, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 88172645463325252ull;
    if (!s) s = 1;
    vttt_param_info info[32];
    int n = vttt_layer_param_list(l, 0, info, 32);
    for (int i = 0; i < n; i++) {
        const char *nm = info[i].name;
        float *d = info[i].data;
        float val = 0.0f, std = 0.0f;
        if (!strcmp(nm, "ttt_norm_weight") || !strcmp(nm, "post_norm.weight")) val = 1.0f;
        else if (strstr(nm, "bias") || !strcmp(nm, "b1") || !strcmp(nm, "b2") || !strcmp(nm, "learnable_token_idx"))
            val = 0.0f;
        else std = 0.02f;
        for (int64_t j = 0; j < info[i].numel; j++) d[j] = std > 0 ? (float)(std * init_normal(&s)) : val;
    }
}

int ttt_check_finite(const vttt_layer *l, const char *what, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            vttt_log(&l->log, VTTT_LOG_ERROR, "%s: non-finite value %g at index %zu", what, (double)x[i], i);
            return VTTT_ENAN;
        }
    }
    return VTTT_OK;
}

int ttt_position_check(const vttt_logger *lg, const char *what, int64_t pos, int64_t n) {
    if (pos >= 0 && n >= 0 && pos <= VTTT_MAX_POSITION && n <= VTTT_MAX_POSITION - pos) return VTTT_OK;
    vttt_log(lg, VTTT_LOG_ERROR, "%s: position %lld + %lld tokens is past the limit of %lld tokens (VTTT_MAX_POSITION); "
             "reset the state or start a new stream", what, (long long)pos, (long long)n, (long long)VTTT_MAX_POSITION);
    return VTTT_EINVAL;
}

static int check_call(const vttt_layer *l, const void *y, const void *x, int B, int T) {
    if (!l || !y || !x) return VTTT_EINVAL;
    if (B <= 0 || T <= 0) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "layer forward: empty input (B=%d, T=%d); need B >= 1 and T >= 1", B, T);
        return VTTT_EINVAL;
    }
    return VTTT_OK;
}

int vttt_layer_forward(vttt_layer *l, float *y, const float *x, int B, int T, vttt_form form, int train) {
    int err = check_call(l, y, x, B, T);
    if (err) return err;
    if ((err = ttt_check_finite(l, "layer forward input", x, (size_t)B * T * l->D))) return err;
    if (l->cfg.kind == VTTT_LAYER_ATTENTION) return ttt_attn_forward(l, y, x, B, T, train);
    if (form == VTTT_FORM_PRIMAL) {
        if (train) {
            vttt_log(&l->log, VTTT_LOG_ERROR, "layer forward: training uses the dual form, not the primal form");
            return VTTT_ENOTSUP;
        }
        return ttt_forward_primal(l, y, x, B, T);
    }
    return ttt_forward(l, y, x, B, T, train);
}

int vttt_layer_backward(vttt_layer *l, float *dx, const float *dy) {
    if (!l || !dx || !dy) return VTTT_EINVAL;
    if (l->cfg.kind == VTTT_LAYER_ATTENTION) return ttt_attn_backward(l, dx, dy);
    return ttt_backward(l, dx, dy);
}

int vttt_layer_prefill(vttt_layer *l, vttt_state *s, float *y, const float *x, int T) {
    int err = check_call(l, y, x, s ? s->B : 0, T);
    if (err) return err;
    if (s->l != l) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "prefill: state belongs to another layer");
        return VTTT_EINVAL;
    }
    if ((err = ttt_check_finite(l, "prefill input", x, (size_t)s->B * T * l->D))) return err;
    if (l->cfg.kind == VTTT_LAYER_ATTENTION) return ttt_attn_prefill(l, s, y, x, T);
    return ttt_prefill(l, s, y, x, T);
}

int vttt_layer_decode(vttt_layer *l, vttt_state *s, float *y, const float *x) {
    return vttt_layer_prefill(l, s, y, x, 1);
}

double vttt_layer_forward_flops(const vttt_layer_config *c, int B, int T) {
    double D = c->width, f = (double)c->width / c->num_heads, H = c->num_heads, N = (double)B * T;
    if (c->kind == VTTT_LAYER_ATTENTION) {
        /* q,k,v,o projections + causal QK^T and PV (half the square) */
        return N * 4 * 2 * D * D + (double)B * H * 2.0 * 2.0 * f * (double)T * (T + 1) / 2.0;
    }
    double b = c->mini_batch;
    double h1 = c->kind == VTTT_LAYER_TTT_MLP ? c->mlp_mult * f : f;
    double proj = (3 + (c->use_gate ? 1 : 0) + (c->share_qk ? -1 : 0)) * 2 * D * D + 2 * D * D; /* + o_proj */
    /* per inner layer (in -> out): k W, grad backprop (mlp), q W, attn
     * scores and their products (b x b per mini-batch), state update */
    double layer = 0;
    int nl = c->kind == VTTT_LAYER_TTT_MLP ? 2 : 1;
    for (int i = 0; i < nl; i++) {
        double in = i == 0 ? f : h1, out = i == 0 ? h1 : f;
        layer += 2 * in * out * 3 + 2 * b * in + 2 * b * out; /* XW, QW, W update; scores; P G */
    }
    if (nl == 2) layer += 2 * f * h1; /* G2 W2^T */
    return N * (proj + H * layer);
}
