/*
 * train/mqar.h — multi-query associative recall (MQAR), the synthetic task
 * of the Zoology paper (Arora, Eyuboglu et al., "Zoology: Measuring and
 * improving recall in efficient language models", 2023; the generator of
 * HazyResearch/zoology, zoology/data/associative_recall.py, _mqar), and
 * training a small language model on it in-process with the trainer's
 * optimizer and schedule (`vttt bench recall`, docs/mqar.md).
 *
 * An example of seq_len T with K key-value pairs over a vocabulary V:
 *   positions [0, 2K): k1 v1 k2 v2 ... kK vK, the keys distinct and drawn
 *     from [1, V/2), the values distinct and drawn from [V/2, V);
 *   positions [2K, T): every key once more as a query, key i at position
 *     2K + 2 g_i, where the gaps g_i are distinct and drawn without
 *     replacement from [0, (T - 2K) / 2) with probability proportional to
 *     a * (g + 1)^(a - 1) (power_a = a; 0.01 puts most queries near the
 *     pairs, 1 is uniform); every other position is filler: a uniform
 *     token of [0, V) (random_filler) or 0.
 *   targets: -1 everywhere but at each query position, whose target is
 *     its key's value (the model reads the key and must say the value).
 * Loss and accuracy count those K positions only.
 *
 * Conventions as in ttt.h: 0 or a negative VTTT_E* code with a message.
 */
#ifndef VTTT_MQAR_H
#define VTTT_MQAR_H

#include <stdint.h>

#include "model.h"
#include "train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vttt_mqar_config {
    int vocab_size;     /* V (Zoology: 8192); > seq_len, keys [1, V/2), values [V/2, V) */
    int seq_len;        /* T, even */
    int num_kv_pairs;   /* K, 4 K <= T */
    double power_a;     /* query gap power law (0.01) */
    int random_filler;  /* 1: filler uniform in [0, V) (Zoology's random_non_queries, its generator's
                         * default); 0: token 0 (the Figure 2 configs) */
} vttt_mqar_config;

/* V 8192, T 64, K 4, a 0.01, zero filler: the Figure 2 settings. */
vttt_mqar_config vttt_mqar_default_config(void);
/* VTTT_EINVAL naming the field: T odd or < 4, 4 K > T, K < 1, V <= T,
 * V / 2 - 1 < K keys, a not in (0, 1]. */
int vttt_mqar_config_check(const vttt_mqar_config *c, const vttt_logger *lg);

/* A stream of examples from a seed (the same seed, the same examples). */
typedef struct vttt_mqar_gen vttt_mqar_gen;
int vttt_mqar_gen_init(vttt_mqar_gen **out, const vttt_mqar_config *c, uint64_t seed, const vttt_logger *lg);
void vttt_mqar_gen_free(vttt_mqar_gen **g);
/* The next example: tokens (T), targets (T) as above. */
void vttt_mqar_gen_next(vttt_mqar_gen *g, int32_t *tokens, int32_t *targets);

/* One model trained on MQAR and scored on held-out examples. */
typedef struct vttt_mqar_run {
    vttt_mqar_config task;
    vttt_layer_kind layer;   /* the sequence layer of both blocks */
    char backbone[16];       /* "transformer" or "mamba" (ttt/model.h) */
    int width;               /* hidden_size D */
    int layers;              /* blocks (2) */
    int heads;               /* heads (D divisible, even head dim) */
    int mlp_mult;            /* SwiGLU width = mlp_mult * D */
    int mini_batch;          /* TTT mini-batch */
    /* optimizer and schedule, as `vttt train` reads them: steps, batch,
     * lr, min_lr, warmup, weight_decay, betas, eps, grad_clip,
     * ttt_base_lr(_init, _warmup) (< 0: the recipe), seed (weights and the
     * training examples); the data, run-directory and checkpoint fields
     * are not used. */
    vttt_train_params train;
    int test_examples;       /* held-out examples, drawn from seed + 10 as Zoology's */
    int eval_every;          /* steps between held-out scores (0: at the end only) */
    double stop_at;          /* stop once held-out accuracy >= this (> 1: never) */
    /* called after each held-out score (may be NULL) */
    void (*on_eval)(void *user, int64_t step, float train_loss, float test_loss, float test_acc);
    void *user;
} vttt_mqar_run;

/* Two transformer blocks, width 64, 1 head, SwiGLU 2 D, mini-batch 16;
 * 2000 steps of 64, lr 1e-3 (min 1e-5), warmup 50, weight decay 0.1,
 * clip 1; 512 held-out examples, stop at accuracy 1 (never earlier).
 * (lr 3e-3 or batch 32 leave attention at 1/K: docs/mqar.md.) */
vttt_mqar_run vttt_mqar_default_run(void);

typedef struct vttt_mqar_result {
    float test_acc;         /* fraction of held-out queries answered right (argmax) */
    float test_loss;        /* mean cross-entropy on them, nats */
    float train_loss;       /* mean of the last step */
    int64_t steps;          /* steps taken */
    int64_t params;         /* model parameters */
    double seconds;         /* wall time, training and scoring */
} vttt_mqar_result;

/* Trains a new model of r on MQAR from r->train.seed and scores it.
 * VTTT_EINVAL for bad settings, VTTT_ENAN when the loss diverges. */
int vttt_mqar_train(const vttt_mqar_run *r, vttt_mqar_result *out, const vttt_logger *lg);

#ifdef __cplusplus
}
#endif
#endif
