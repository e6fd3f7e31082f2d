/*
 * The language model object: configuration (defaults, presets, backbones,
 * checks), the parameter block and its named-tensor list in the reference
 * state-dict names, the sequence layers, and initialisation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "model_internal.h"

vttt_model_config vttt_model_default_config(void) {
    vttt_model_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 32000;
    c.hidden_size = 2048;
    c.intermediate_size = 5504;
    c.num_hidden_layers = 24;
    c.num_attention_heads = 32;
    c.rms_norm_eps = 1e-6f;
    c.initializer_range = 0.02f;
    c.max_position_embeddings = 2048;
    c.tie_word_embeddings = 1;
    c.rope_theta = 10000.0f;
    c.seq_kind = VTTT_LAYER_TTT_LINEAR;
    c.mini_batch_size = 16;
    c.ttt_base_lr = 1.0f;
    c.conv_kernel = 4;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
    c.pad_token_id = -1;
    return c;
}

/* hidden, intermediate, layers, heads: the reference TTT_STANDARD_CONFIGS
 * and two small ones for tests and examples. */
static const struct {
    const char *name;
    int D, I, L, H;
} presets[] = {
    {"125m", 768, 2048, 12, 12}, {"350m", 1024, 2736, 24, 16}, {"760m", 1536, 4096, 24, 16},
    {"1b", 2048, 5504, 24, 32},  {"tiny", 128, 344, 4, 4},     {"test", 32, 64, 2, 4},
};

int vttt_model_config_preset(vttt_model_config *cfg, const char *name, const vttt_logger *lg) {
    for (size_t i = 0; name && i < sizeof presets / sizeof presets[0]; i++) {
        if (strcmp(presets[i].name, name)) continue;
        cfg->hidden_size = presets[i].D;
        cfg->intermediate_size = presets[i].I;
        cfg->num_hidden_layers = presets[i].L;
        cfg->num_attention_heads = presets[i].H;
        return VTTT_OK;
    }
    vttt_log(lg, VTTT_LOG_ERROR, "unknown model preset '%s' (known: 125m, 350m, 760m, 1b, tiny, test)",
             name ? name : "(null)");
    return VTTT_EINVAL;
}

int vttt_model_config_backbone(vttt_model_config *cfg, const char *name, const vttt_logger *lg) {
    int mamba = name && !strcmp(name, "mamba");
    if (!mamba && !(name && !strcmp(name, "transformer"))) {
        vttt_log(lg, VTTT_LOG_ERROR, "unknown backbone '%s' (known: transformer, mamba)", name ? name : "(null)");
        return VTTT_EINVAL;
    }
    cfg->pre_conv = cfg->share_qk = cfg->use_gate = mamba;
    return VTTT_OK;
}

int vttt_model_config_target_shift(const vttt_model_config *cfg) {
    return cfg->tokens_per_frame > 0 ? cfg->tokens_per_frame : 1;
}

static int bad(const vttt_logger *lg, const char *what) {
    vttt_log(lg, VTTT_LOG_ERROR, "model config: %s", what);
    return VTTT_EINVAL;
}

#define IN(v, lo, hi) ((v) >= (lo) && (v) <= (hi))

/* Sizes first, then the settings of the sequence layers. */
int vttt_model_config_check(const vttt_model_config *c, const vttt_logger *lg) {
    char msg[256];
    int ttt = c->seq_kind == VTTT_LAYER_TTT_LINEAR || c->seq_kind == VTTT_LAYER_TTT_MLP;
    if (!IN(c->vocab_size, 1, 1 << 24)) return bad(lg, "vocab_size must be in 1..16777216");
    if (!IN(c->hidden_size, 2, 65536)) return bad(lg, "hidden_size must be in 2..65536");
    if (!IN(c->intermediate_size, 1, 1 << 20)) return bad(lg, "intermediate_size must be in 1..1048576");
    if (!IN(c->num_hidden_layers, 1, 1024)) return bad(lg, "num_hidden_layers must be in 1..1024");
    if (c->num_attention_heads <= 0 || c->hidden_size % c->num_attention_heads != 0 ||
        (c->hidden_size / c->num_attention_heads) % 2 != 0) {
        snprintf(msg, sizeof msg, "hidden_size %d must be a multiple of num_attention_heads %d with an even head dim",
                 c->hidden_size, c->num_attention_heads);
        return bad(lg, msg);
    }
    if (!(c->rms_norm_eps > 0.0f && isfinite(c->rms_norm_eps))) return bad(lg, "rms_norm_eps must be positive");
    if (!(c->initializer_range >= 0.0f && isfinite(c->initializer_range)))
        return bad(lg, "initializer_range must be >= 0");
    if (!IN(c->max_position_embeddings, 1, 1 << 30)) return bad(lg, "max_position_embeddings must be >= 1");
    if (!(c->rope_theta > 0.0f && isfinite(c->rope_theta))) return bad(lg, "rope_theta must be positive");
    if (!IN((int)c->seq_kind, VTTT_LAYER_TTT_LINEAR, VTTT_LAYER_ATTENTION)) return bad(lg, "unknown sequence layer");
    if (!IN(c->mini_batch_size, 1, 1024)) return bad(lg, "mini_batch_size must be in 1..1024");
    if (!(c->ttt_base_lr >= 0.0f && isfinite(c->ttt_base_lr))) return bad(lg, "ttt_base_lr must be >= 0");
    if (!IN(c->conv_kernel, 1, 64)) return bad(lg, "conv_kernel must be in 1..64");
    if (c->scan_checkpoint_group_size < 0) return bad(lg, "scan_checkpoint_group_size must be >= 0");
    if (!ttt && (c->share_qk || c->use_gate))
        return bad(lg, "share_qk and use_gate apply to TTT layers only, not to attention");
    int ids[3] = {c->bos_token_id, c->eos_token_id, c->pad_token_id};
    for (int i = 0; i < 3; i++) {
        if (!IN(ids[i], -1, c->vocab_size - 1)) {
            snprintf(msg, sizeof msg, "%s %d outside the vocabulary (0..%d, or null)",
                     i == 0 ? "bos_token_id" : i == 1 ? "eos_token_id" : "pad_token_id", ids[i], c->vocab_size - 1);
            return bad(lg, msg);
        }
    }
    if (!IN(c->tokens_per_frame, 0, 1 << 20)) return bad(lg, "tokens_per_frame must be in 0..1048576");
    if (ttt && c->tokens_per_frame % c->mini_batch_size != 0) {
        snprintf(msg, sizeof msg, "tokens_per_frame %d must be a multiple of mini_batch_size %d (frames align with "
                 "mini-batches)", c->tokens_per_frame, c->mini_batch_size);
        return bad(lg, msg);
    }
    return VTTT_OK;
}

static vttt_layer_config layer_config(const vttt_model_config *c) {
    vttt_layer_config lc = vttt_layer_default_config(c->seq_kind, c->hidden_size, c->num_attention_heads);
    lc.mini_batch = c->mini_batch_size;
    lc.base_lr = c->ttt_base_lr;
    lc.share_qk = c->share_qk;
    lc.use_gate = c->use_gate;
    lc.conv_kernel = c->conv_kernel;
    lc.rope_theta = c->rope_theta;
    lc.ckpt_group = c->scan_checkpoint_group_size;
    return lc;
}

/* Points p's arrays into mem (NULL: only counts), each 64-byte aligned.
 * Returns the floats needed. */
static size_t param_layout(const vttt_model *m, model_params *p, float *mem) {
    size_t V = m->V, D = m->D, I = m->I, L = m->L, K = m->K, P = m->P;
    int pc = m->cfg.pre_conv;
    struct { float **slot; size_t n; } t[] = {
        {&p->embed, V * D},         {&p->frame_pos, P * D},     {&p->conv_norm, pc ? L * D : 0},
        {&p->conv_w, pc ? L * D * K : 0}, {&p->conv_b, pc ? L * D : 0}, {&p->seq_norm, L * D},
        {&p->ffn_norm, L * D},      {&p->gate_proj, L * I * D}, {&p->up_proj, L * I * D},
        {&p->down_proj, L * D * I}, {&p->norm, D},              {&p->lm_head, m->cfg.tie_word_embeddings ? 0 : V * D},
    };
    memset(p, 0, sizeof *p);
    size_t off = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (!t[i].n) continue;
        *t[i].slot = mem ? mem + off : NULL;
        off = (off + t[i].n + 15) & ~(size_t)15;
    }
    return off;
}

/* Appends one tensor to the model's list. */
static void add_tensor(vttt_model *m, const char *name, float *data, float *grad, int ndim, const int64_t *shape) {
    vttt_model_tensor *t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->data = data;
    t->grad = grad;
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) t->numel *= (t->shape[d] = shape[d]);
}

/* The model's own tensors of block i, slices of the stacked arrays. */
static void add_block_tensors(vttt_model *m, int i) {
    int64_t D = m->D, I = m->I, K = m->K;
    const model_params *p = &m->p, *g = &m->g;
    struct {
        const char *suffix;
        float *p, *g;
        int on, ndim;
        int64_t shape[3];
    } t[] = {
        {"mlp.gate_proj.weight", p->gate_proj, g->gate_proj, 1, 2, {I, D}},
        {"mlp.up_proj.weight", p->up_proj, g->up_proj, 1, 2, {I, D}},
        {"mlp.down_proj.weight", p->down_proj, g->down_proj, 1, 2, {D, I}},
        {"conv.norm.weight", p->conv_norm, g->conv_norm, m->cfg.pre_conv, 1, {D}},
        {"conv.conv.weight", p->conv_w, g->conv_w, m->cfg.pre_conv, 3, {D, 1, K}},
        {"conv.conv.bias", p->conv_b, g->conv_b, m->cfg.pre_conv, 1, {D}},
        {"seq_norm.weight", p->seq_norm, g->seq_norm, 1, 1, {D}},
        {"ffn_norm.weight", p->ffn_norm, g->ffn_norm, 1, 1, {D}},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        if (!t[k].on) continue;
        size_t per = 1;
        for (int d = 0; d < t[k].ndim; d++) per *= (size_t)t[k].shape[d];
        char nm[96];
        snprintf(nm, sizeof nm, "model.layers.%d.%s", i, t[k].suffix);
        add_tensor(m, nm, t[k].p + i * per, t[k].g + i * per, t[k].ndim, t[k].shape);
    }
}

/* The named-tensor list in the reference's state-dict order. */
static int build_tensor_list(vttt_model *m) {
    m->tensors = calloc(4 + (size_t)m->L * 40, sizeof *m->tensors);
    if (!m->tensors) return VTTT_ENOMEM;
    int64_t VD[2] = {m->V, m->D}, PD[2] = {m->P, m->D}, D1[1] = {m->D};
    add_tensor(m, "model.embed_tokens.weight", m->p.embed, m->g.embed, 2, VD);
    if (m->P) add_tensor(m, "model.frame_pos_embed.weight", m->p.frame_pos, m->g.frame_pos, 2, PD);
    for (int i = 0; i < m->L; i++) {
        vttt_param_info p[32], g[32];
        int n = vttt_layer_param_list(m->layers[i], 0, p, 32);
        vttt_layer_param_list(m->layers[i], 1, g, 32);
        for (int j = 0; j < n && j < 32; j++) {
            char nm[96];
            snprintf(nm, sizeof nm, "model.layers.%d.seq_modeling_block.%s", i, p[j].name);
            add_tensor(m, nm, p[j].data, g[j].data, p[j].ndim, p[j].shape);
        }
        add_block_tensors(m, i);
    }
    add_tensor(m, "model.norm.weight", m->p.norm, m->g.norm, 1, D1);
    if (!m->cfg.tie_word_embeddings) add_tensor(m, "lm_head.weight", m->p.lm_head, m->g.lm_head, 2, VD);
    return VTTT_OK;
}

int vttt_model_init(vttt_model **out, const vttt_model_config *cfg, const vttt_logger *lg) {
    if (!out || !cfg) return VTTT_EINVAL;
    *out = NULL;
    int err = vttt_model_config_check(cfg, lg);
    if (err) return err;
    vttt_model *m = calloc(1, sizeof *m);
    if (!m) return VTTT_ENOMEM;
    m->cfg = *cfg;
    if (lg) m->log = *lg;
    m->V = cfg->vocab_size, m->D = cfg->hidden_size, m->I = cfg->intermediate_size;
    m->L = cfg->num_hidden_layers, m->K = cfg->conv_kernel, m->P = cfg->tokens_per_frame;
    m->n_params = param_layout(m, &m->p, NULL);
    err = VTTT_ENOMEM;
    if (posix_memalign((void **)&m->param_mem, 64, m->n_params * sizeof(float)) ||
        posix_memalign((void **)&m->grad_mem, 64, m->n_params * sizeof(float)) ||
        !(m->layers = calloc((size_t)m->L, sizeof *m->layers))) {
        vttt_log(lg, VTTT_LOG_ERROR, "model: cannot allocate %zu parameters", m->n_params);
        goto fail;
    }
    memset(m->param_mem, 0, m->n_params * sizeof(float));
    memset(m->grad_mem, 0, m->n_params * sizeof(float));
    param_layout(m, &m->p, m->param_mem);
    param_layout(m, &m->g, m->grad_mem);
    vttt_layer_config lc = layer_config(cfg);
    for (int i = 0; i < m->L; i++)
        if ((err = vttt_layer_init(&m->layers[i], &lc, lg))) goto fail;
    if ((err = build_tensor_list(m))) goto fail;
    *out = m;
    return VTTT_OK;
fail:
    vttt_model_free(&m);
    return err;
}

static void acts_free(model_acts *a) {
    void *bufs[] = {a->tokens, a->targets, a->losses, a->h, a->h1, a->h2, a->u, a->xs, a->xf,
                    a->gate, a->up, a->rstd, a->hf, a->rstd_f, a->dhf, a->dlm, a->dlogits, a->conv0};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    memset(a, 0, sizeof *a);
}

static void scratch_free(model_scratch *s) {
    for (int i = 0; i < 3; i++) free(s->nd[i]), free(s->ni[i]);
    free(s->rstd), free(s->logits), free(s->tok);
    memset(s, 0, sizeof *s);
}

void vttt_model_free(vttt_model **mp) {
    if (!mp || !*mp) return;
    vttt_model *m = *mp;
    for (int i = 0; m->layers && i < m->L; i++) vttt_layer_free(&m->layers[i]);
    free(m->layers);
    free(m->tensors);
    free(m->param_mem);
    free(m->grad_mem);
    acts_free(&m->acts);
    scratch_free(&m->scr);
    free(m);
    *mp = NULL;
}

int model_scratch_reserve(vttt_model *m, size_t rows) {
    model_scratch *s = &m->scr;
    if (!s->logits && !(s->logits = malloc((size_t)MODEL_HEAD_ROWS * m->V * sizeof(float)))) goto oom;
    if (rows <= s->cap_rows) return VTTT_OK;
    for (int i = 0; i < 3; i++) {
        free(s->nd[i]), free(s->ni[i]);
        s->nd[i] = malloc(rows * m->D * sizeof(float));
        s->ni[i] = malloc(rows * m->I * sizeof(float));
        if (!s->nd[i] || !s->ni[i]) goto oom;
    }
    free(s->rstd), free(s->tok);
    s->rstd = malloc(3 * rows * sizeof(float));
    s->tok = malloc(rows * sizeof(int32_t));
    if (!s->rstd || !s->tok) goto oom;
    s->cap_rows = rows;
    return VTTT_OK;
oom:
    scratch_free(s);
    vttt_log(&m->log, VTTT_LOG_ERROR, "model: out of memory for scratch buffers (%zu rows)", rows);
    return VTTT_ENOMEM;
}

const vttt_model_config *vttt_model_get_config(const vttt_model *m) { return &m->cfg; }

const vttt_model_tensor *vttt_model_tensors(const vttt_model *m, int *n) {
    if (n) *n = m->n_tensors;
    return m->tensors;
}

const vttt_model_tensor *vttt_model_find_tensor(const vttt_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

size_t vttt_model_num_params(const vttt_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += (size_t)m->tensors[i].numel;
    return n;
}

int vttt_model_blocks(vttt_model *m, vttt_model_block *out, int max) {
    if (max > 0) out[0] = (vttt_model_block){m->param_mem, m->grad_mem, m->n_params};
    for (int i = 0; i < m->L && i + 1 < max; i++)
        out[i + 1] = (vttt_model_block){m->layers[i]->param_mem, m->layers[i]->grad_mem, m->layers[i]->n_params};
    return m->L + 1;
}

void vttt_model_zero_grads(vttt_model *m) {
    memset(m->grad_mem, 0, m->n_params * sizeof(float));
    for (int i = 0; i < m->L; i++) vttt_layer_zero_grads(m->layers[i]);
}

int vttt_model_set_ttt_base_lr(vttt_model *m, float lr) {
    if (!(lr >= 0.0f && isfinite(lr))) {
        vttt_log(&m->log, VTTT_LOG_ERROR, "model: ttt_base_lr must be >= 0 (got %g)", (double)lr);
        return VTTT_EINVAL;
    }
    m->cfg.ttt_base_lr = lr;
    for (int i = 0; i < m->L; i++) m->layers[i]->cfg.base_lr = lr;
    return VTTT_OK;
}

double vttt_model_forward_flops(const vttt_model_config *c, int B, int T) {
    double N = (double)B * T, D = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    double block = N * 2.0 * 3.0 * D * I + (c->pre_conv ? N * 2.0 * D * c->conv_kernel : 0.0);
    vttt_layer_config lc = layer_config(c);
    return c->num_hidden_layers * (block + vttt_layer_forward_flops(&lc, B, T)) + N * 2.0 * D * V;
}

/* splitmix64 and Box-Muller: a deterministic stream per (seed, tensor). */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_uniform(uint64_t *s) { return ((rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static double rng_normal(uint64_t *s) {
    double u1 = rng_uniform(s), u2 = rng_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

typedef enum { INIT_ZERO, INIT_ONE, INIT_NORMAL, INIT_NORMAL_002, INIT_CONV } init_kind;

/* How the reference initialises a tensor, from its name. */
static init_kind init_of(const char *name) {
    if (ends_with(name, "norm.weight") || ends_with(name, "ttt_norm_weight")) return INIT_ONE;
    if (strstr(name, "conv")) return INIT_CONV; /* conv.conv.*, conv_q.*, conv_k.* (not conv.norm: above) */
    if (ends_with(name, ".W1") || ends_with(name, ".W2") || ends_with(name, "learnable_ttt_lr_weight"))
        return INIT_NORMAL_002;
    if (ends_with(name, "bias") || ends_with(name, ".b1") || ends_with(name, ".b2") ||
        ends_with(name, "learnable_token_idx"))
        return INIT_ZERO;
    return INIT_NORMAL; /* linear weights, embeddings, lm_head */
}

void vttt_model_init_weights(vttt_model *m, uint64_t seed) {
    double conv_bound = 1.0 / sqrt((double)m->K);
    for (int i = 0; i < m->n_tensors; i++) {
        const vttt_model_tensor *t = &m->tensors[i];
        uint64_t s = seed * 0x2545F4914F6CDD1Dull + (uint64_t)i * 0x9E3779B97F4A7C15ull;
        init_kind k = init_of(t->name);
        double std = k == INIT_NORMAL_002 ? 0.02 : m->cfg.initializer_range;
        for (int64_t j = 0; j < t->numel; j++) {
            double v = 0.0;
            if (k == INIT_ONE) v = 1.0;
            else if (k == INIT_CONV) v = conv_bound * (2.0 * rng_uniform(&s) - 1.0);
            else if (k == INIT_NORMAL || k == INIT_NORMAL_002) v = std * rng_normal(&s);
            t->data[j] = (float)v;
        }
    }
}
