/*
 * train/train.h — the language-model trainer: token shards in, a run
 * directory out.
 *
 * A run directory (params.out) holds
 *   step-NNNNNNNN/        one checkpoint per saved step: a model directory
 *                         (config.json, model.safetensors) with
 *                         optimizer.safetensors (AdamW m, v and step) and
 *                         trainer_state.json (step, data position, RNG,
 *                         the run's settings) beside it;
 *   latest                a symbolic link to the newest checkpoint;
 *   metrics.jsonl         one JSON line per step ({"step", "loss", "lr",
 *                         "ttt_base_lr", "grad_norm", "tokens",
 *                         "tokens_per_s", "time_s"}) and per evaluation
 *                         ({"step", "val_loss", "val_ppl"});
 *   summary.json          the END report of the last process to finish.
 * A checkpoint is written into a temporary directory and renamed into
 * place, so a killed run leaves either the whole checkpoint or none of it;
 * the last `keep` are kept. Resuming (params.resume) continues from the
 * newest one exactly: on the CPU a run killed and resumed ends with the
 * same weights and loss lines, bit for bit, as one that was never
 * stopped (same thread count).
 *
 * Training: every step takes `batch` sequences of `seq` tokens (plus the
 * target shift) from the shards, split over the ranks of the communicator
 * (train/comm.h) and, on each rank, into `accum` micro-batches; a sequence
 * runs window by window (`window` tokens) with the TTT state carried and
 * the gradient truncated at window edges. The gradient of the mean loss
 * over the whole batch is summed over ranks, clipped to global norm
 * `grad_clip`, and applied by AdamW with linear warmup then cosine decay
 * to `min_lr`. Weight decay applies to matrices (tensors with at least two
 * dimensions larger than 1: linear, embedding, conv and TTT inner weights),
 * not to norms, biases or token offsets. The TTT inner base learning rate
 * warms up from ttt_base_lr_init to ttt_base_lr over ttt_base_lr_warmup
 * steps (the reference TTT-MLP recipe).
 *
 * SIGINT and SIGTERM stop the run at the end of the current step with a
 * checkpoint (vttt_train_run returns 0). Rank 0 writes the checkpoints and
 * the metrics.
 */
#ifndef VTTT_TRAIN_H
#define VTTT_TRAIN_H

#include <stdint.h>

#include "comm.h"
#include "ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VTTT_TRAIN_PATH_MAX 1024

/* What a step report carries (vttt_train_params.on_report). */
typedef enum {
    VTTT_TRAIN_EVENT_STEP = 0,       /* an optimizer step finished */
    VTTT_TRAIN_EVENT_EVAL = 1,       /* a validation pass finished (val_loss, val_ppl) */
    VTTT_TRAIN_EVENT_CHECKPOINT = 2, /* a checkpoint was written (checkpoint) */
    VTTT_TRAIN_EVENT_START = 3,      /* set up; step = the step it starts from */
    VTTT_TRAIN_EVENT_END = 4,        /* the run ended (last step or a signal), checkpoint saved: the summary
                                      * (step, tokens, tokens_per_s, wall_s, loss_smoothed, best_val_*),
                                      * also written to RUN/summary.json */
} vttt_train_event;

typedef struct vttt_train_report {
    vttt_train_event event;
    int64_t step, steps;      /* steps done, steps in the run */
    float loss, lr, ttt_base_lr, grad_norm;   /* of this step */
    float val_loss, val_ppl;  /* EVAL */
    int64_t tokens;           /* training tokens so far (all ranks) */
    double tokens_per_s;      /* this step, all ranks */
    double eta_s;             /* estimated time to the last step */
    double time_s;            /* STEP: the run's wall time so far (s; a resume goes on from its checkpoint's) */
    const char *checkpoint;   /* CHECKPOINT: its directory */
    int64_t params;           /* START: model parameters */
    int ranks;                /* START: data-parallel ranks */
    /* END; tokens_per_s is then this process's trained tokens over wall_s */
    double wall_s;            /* this process's wall time, setup to the last checkpoint (s) */
    float loss_smoothed;      /* the training loss's bias-corrected exponential moving average over this
                               * process's steps (beta 0.95: about the last 20 steps) */
    float best_val_loss;      /* the lowest val_loss of the run (resumes included); NAN: none */
    int64_t best_val_step;    /* its step; -1: none */
} vttt_train_report;

typedef struct vttt_train_params {
    /* data */
    char data[VTTT_TRAIN_PATH_MAX];  /* token shards: DIR (its train_*.bin, else *.bin), a glob, or a file */
    char val[VTTT_TRAIN_PATH_MAX];   /* validation shards (DIR: val_*.bin, else *.bin); "" = none */
    char out[VTTT_TRAIN_PATH_MAX];   /* run directory */
    /* model of a new run; a resumed run takes its checkpoint's */
    char model_preset[32];           /* "tiny" (ttt/model.h presets) unless model_config is set */
    char model_config[VTTT_TRAIN_PATH_MAX]; /* a config.json instead of a preset */
    char layer[16];                  /* "ttt_mlp", "ttt_linear", "attention"; "" = the config's (preset: ttt_mlp) */
    char backbone[16];               /* "transformer", "mamba"; "" = the config's */
    int vocab_size;                  /* 0: the data's meta.json vocab_size, else largest id + 1 */
    char init[VTTT_TRAIN_PATH_MAX];  /* "" or a model directory (or a training run: its newest checkpoint) a
                                      * new run starts from: its config and weights instead of the preset,
                                      * config and seed (fine-tuning); the data must match its vocabulary
                                      * and tokens_per_frame. The TTT inner base lr stays the model's
                                      * (no warmup) unless given. */
    /* batch */
    int64_t steps;                   /* optimizer steps in the run */
    int batch;                       /* sequences per step, all ranks and micro-batches together */
    int seq;                         /* tokens per sequence */
    int window;                      /* tokens per window (0 = seq); a multiple of the TTT mini-batch */
    int accum;                       /* micro-batches per step on each rank */
    int docs;                        /* 1: samples are documents (text: split at meta.json's eot), each
                                      * from its start in pieces of at most seq tokens, the TTT state
                                      * fresh at every document and carried window to window within it;
                                      * the rest of a batch row after a document's end is padding whose
                                      * targets do not count. 0: seq tokens at multiples of seq, across
                                      * document boundaries (llm.c). */
    /* optimizer */
    float lr, min_lr;                /* peak and final learning rate */
    int64_t warmup;                  /* linear warmup steps */
    float weight_decay, beta1, beta2, eps, grad_clip;
    float ttt_base_lr;               /* < 0: ttt_mlp 0.1 (the reference recipe), else the config's */
    float ttt_base_lr_init;          /* < 0: ttt_mlp 0.01, else no warmup */
    int64_t ttt_base_lr_warmup;      /* < 0: warmup */
    /* evaluation, checkpoints, logging */
    int64_t eval_every;              /* steps between validations (0: at the end only, if val is set) */
    int eval_seqs;                   /* validation sequences (0: all) */
    int64_t ckpt_every;              /* steps between checkpoints (0: at the end only; -1: never, benchmarks) */
    int keep;                        /* checkpoints kept (>= 1) */
    int resume;                      /* continue the run in out */
    uint64_t seed;                   /* weights and data order */
    int shuffle;                     /* 1: a new order of sequences every epoch */
    int handle_signals;              /* 1: SIGINT/SIGTERM stop with a checkpoint */
    vttt_comm_kind comm;
    /* called on rank 0 for every event (may be NULL) */
    void (*on_report)(void *user, const vttt_train_report *r);
    void *user;
} vttt_train_params;

/* The defaults: tiny ttt_mlp model, 1000 steps of 8 x 256 tokens, lr 3e-3
 * (min 1e-5), warmup 100, weight decay 0.1, betas 0.9/0.95, eps 1e-8,
 * clip 1.0, checkpoints every 100 steps (2 kept), seed 0, shuffled. */
vttt_train_params vttt_train_default_params(void);
/* Replaces p's run settings (data, model, batch, optimizer, seed, ...) by
 * those saved with the newest checkpoint in dir, for resuming with few
 * options; out, resume and the reporting fields are kept. VTTT_EIO when
 * dir holds no checkpoint, VTTT_EFORMAT for an unreadable one. */
int vttt_train_params_load(vttt_train_params *p, const char *dir, const vttt_logger *lg);
/* The settings saved with one checkpoint directory ckpt (its
 * trainer_state.json), all of them: what the model was trained on
 * (`seq`, `window`). VTTT_EIO when there is no readable
 * trainer_state.json (a model directory the trainer did not write),
 * VTTT_EFORMAT for a malformed one. */
int vttt_train_checkpoint_params(vttt_train_params *p, const char *ckpt, const vttt_logger *lg);
/* Checks the settings; VTTT_EINVAL with a message naming the option. */
int vttt_train_params_check(const vttt_train_params *p, const vttt_logger *lg);
/* Trains. Returns 0 when the run reached its last step or was stopped by
 * a signal (with a checkpoint either way), else a negative VTTT_E* code
 * with a message: unreadable or malformed shards, a run directory that
 * holds a run but resume is off (or the reverse), a checkpoint that does
 * not match the settings, a non-finite loss, a failed write. */
int vttt_train_run(const vttt_train_params *p, const vttt_logger *lg);

#ifdef __cplusplus
}
#endif
#endif
