/*
 * Training a language model on MQAR in-process (train/mqar.h): fresh
 * examples every step from the training stream, the trainer's AdamW,
 * schedule, clipping and TTT inner-lr recipe (train_update,
 * train_schedule_of, train_params_resolve), and held-out scoring on the
 * query positions only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqar.h"
#include "train_internal.h"

#define EVAL_SEQS 16 /* held-out sequences per forward */

vttt_mqar_run vttt_mqar_default_run(void) {
    vttt_mqar_run r;
    memset(&r, 0, sizeof r);
    r.task = vttt_mqar_default_config();
    r.layer = VTTT_LAYER_ATTENTION;
    snprintf(r.backbone, sizeof r.backbone, "transformer");
    r.width = 64, r.layers = 2, r.heads = 1, r.mlp_mult = 2, r.mini_batch = 16;
    r.train = vttt_train_default_params();
    r.train.steps = 2000, r.train.batch = 64, r.train.warmup = 50, r.train.lr = 1e-3f;
    r.test_examples = 512;
    r.stop_at = 2.0;
    return r;
}

/* Everything one run holds. */
typedef struct mqar_ctx {
    const vttt_mqar_run *r;
    vttt_train_params p;       /* resolved */
    vttt_model *model;
    train_adamw *opt;
    train_schedule sched;
    vttt_mqar_gen *train_gen, *test_gen;
    int32_t *tok, *tgt;        /* (max(batch, EVAL_SEQS), T) */
    float *logits;             /* (EVAL_SEQS * K, V) */
    const vttt_logger *lg;
} mqar_ctx;

static int check_run(const vttt_mqar_run *r, const vttt_logger *lg) {
    const vttt_train_params *p = &r->train;
    int err = vttt_mqar_config_check(&r->task, lg);
    if (err) return err;
    if (p->steps < 1 || p->batch < 1 || r->test_examples < 1 || r->eval_every < 0 || r->mlp_mult < 1 ||
        !(p->lr > 0.0f && isfinite(p->lr)) || !(p->min_lr >= 0.0f) || p->warmup < 0 || !(p->grad_clip >= 0.0f)) {
        vttt_log(lg, VTTT_LOG_ERROR, "mqar: steps, batch and test examples must be >= 1, eval_every, warmup >= 0, "
                 "lr > 0, min_lr and clip >= 0");
        return VTTT_EINVAL;
    }
    return VTTT_OK;
}

/* The model of r (a new one, weights from the seed) and the settings
 * resolved for it. */
static int make_model(mqar_ctx *c) {
    const vttt_mqar_run *r = c->r;
    vttt_model_config cfg = vttt_model_default_config();
    cfg.vocab_size = r->task.vocab_size, cfg.hidden_size = r->width, cfg.intermediate_size = r->mlp_mult * r->width;
    cfg.num_hidden_layers = r->layers, cfg.num_attention_heads = r->heads, cfg.seq_kind = r->layer;
    cfg.mini_batch_size = r->mini_batch, cfg.max_position_embeddings = r->task.seq_len;
    cfg.bos_token_id = cfg.eos_token_id = cfg.pad_token_id = -1;
    int err = vttt_model_config_backbone(&cfg, r->backbone, c->lg);
    if (!err) err = vttt_model_config_check(&cfg, c->lg);
    if (err) return err;
    c->p = r->train;
    c->p.seq = r->task.seq_len, c->p.window = 0;
    train_params_resolve(&c->p, &cfg);
    if ((err = vttt_model_init(&c->model, &cfg, c->lg))) return err;
    vttt_model_init_weights(c->model, c->p.seed);
    c->sched = train_schedule_of(&c->p);
    return train_adamw_init(&c->opt, c->model, c->p.beta1, c->p.beta2, c->p.eps, c->p.weight_decay, c->lg);
}

static int setup(mqar_ctx *c) {
    const vttt_mqar_config *t = &c->r->task;
    int rows = c->r->train.batch > EVAL_SEQS ? c->r->train.batch : EVAL_SEQS, err = make_model(c);
    if (!err) err = vttt_mqar_gen_init(&c->train_gen, t, c->p.seed, c->lg);
    if (!err) err = vttt_mqar_gen_init(&c->test_gen, t, c->p.seed + 10, c->lg);
    if (err) return err;
    c->tok = malloc((size_t)rows * t->seq_len * sizeof(int32_t));
    c->tgt = malloc((size_t)rows * t->seq_len * sizeof(int32_t));
    c->logits = malloc((size_t)EVAL_SEQS * t->num_kv_pairs * t->vocab_size * sizeof(float));
    if (!c->tok || !c->tgt || !c->logits) {
        vttt_log(c->lg, VTTT_LOG_ERROR, "mqar: out of memory for %d sequences of %d tokens", rows, t->seq_len);
        return VTTT_ENOMEM;
    }
    return VTTT_OK;
}

static void teardown(mqar_ctx *c) {
    vttt_mqar_gen_free(&c->train_gen), vttt_mqar_gen_free(&c->test_gen);
    train_adamw_free(&c->opt);
    vttt_model_free(&c->model);
    free(c->tok), free(c->tgt), free(c->logits);
}

static void fill(vttt_mqar_gen *g, int32_t *tok, int32_t *tgt, int B, int T) {
    for (int b = 0; b < B; b++) vttt_mqar_gen_next(g, tok + (size_t)b * T, tgt + (size_t)b * T);
}

/* One optimizer step on `batch` fresh examples. */
static int step(mqar_ctx *c, int64_t s, float *loss) {
    int B = c->p.batch, T = c->p.seq, err;
    float norm = 0.0f;
    if ((err = vttt_model_set_ttt_base_lr(c->model, train_schedule_ttt_lr(&c->sched, s)))) return err;
    vttt_model_zero_grads(c->model);
    fill(c->train_gen, c->tok, c->tgt, B, T);
    if ((err = vttt_model_forward(c->model, c->tok, c->tgt, B, T, 1, loss, NULL))) return err;
    if ((err = vttt_model_backward(c->model, 1.0f))) return err;
    if ((err = train_update(c->model, c->opt, &c->sched, s, c->p.grad_clip, *loss, &norm)))
        vttt_log(c->lg, VTTT_LOG_ERROR, "mqar: step %lld: non-finite loss (%g) or gradient norm (%g); try a lower lr",
                 (long long)s + 1, (double)*loss, (double)norm);
    return err;
}

/* Accuracy and mean loss over the held-out examples (the same ones every
 * time: the stream restarts from its seed). */
static int score(mqar_ctx *c, float *acc, float *loss) {
    const vttt_mqar_config *t = &c->r->task;
    int T = t->seq_len, V = t->vocab_size, err = VTTT_OK;
    int64_t right = 0, counted = 0;
    double lsum = 0.0;
    vttt_mqar_gen_free(&c->test_gen);
    if ((err = vttt_mqar_gen_init(&c->test_gen, t, c->p.seed + 10, c->lg))) return err;
    for (int done = 0; done < c->r->test_examples && !err; done += EVAL_SEQS) {
        int B = c->r->test_examples - done < EVAL_SEQS ? c->r->test_examples - done : EVAL_SEQS, k = 0;
        float l = 0.0f;
        int64_t n = 0;
        fill(c->test_gen, c->tok, c->tgt, B, T);
        if ((err = vttt_model_forward(c->model, c->tok, c->tgt, B, T, 1, &l, NULL))) break;
        if ((err = vttt_model_target_logits(c->model, c->logits))) break;
        vttt_model_losses(c->model, &n);
        for (int i = 0; i < B * T; i++) {
            if (c->tgt[i] < 0) continue;
            const float *z = c->logits + (size_t)k++ * V;
            int best = 0;
            for (int v = 1; v < V; v++) best = z[v] > z[best] ? v : best;
            right += best == c->tgt[i];
        }
        lsum += (double)l * (double)n, counted += n;
    }
    *acc = counted ? (float)((double)right / (double)counted) : 0.0f;
    *loss = counted ? (float)(lsum / (double)counted) : 0.0f;
    return err;
}

/* Steps, scoring every eval_every and at the end; stops early at stop_at. */
static int loop(mqar_ctx *c, vttt_mqar_result *out) {
    const vttt_mqar_run *r = c->r;
    int err = VTTT_OK;
    for (int64_t s = 0; s < c->p.steps && !err; s++) {
        if ((err = step(c, s, &out->train_loss))) break;
        out->steps = s + 1;
        int last = s + 1 == c->p.steps, due = r->eval_every > 0 && (s + 1) % r->eval_every == 0;
        if (!last && !due) continue;
        if ((err = score(c, &out->test_acc, &out->test_loss))) break;
        if (r->on_eval) r->on_eval(r->user, s + 1, out->train_loss, out->test_loss, out->test_acc);
        if (out->test_acc >= r->stop_at) break;
    }
    return err;
}

int vttt_mqar_train(const vttt_mqar_run *r, vttt_mqar_result *out, const vttt_logger *lg) {
    memset(out, 0, sizeof *out);
    int err = check_run(r, lg);
    if (err) return err;
    double t0 = train_now_s();
    mqar_ctx c;
    memset(&c, 0, sizeof c);
    c.r = r, c.lg = lg;
    if (!(err = setup(&c))) {
        out->params = (int64_t)vttt_model_num_params(c.model);
        err = loop(&c, out);
    }
    teardown(&c);
    out->seconds = train_now_s() - t0;
    return err;
}
