/*
 * train/encoder_train.h — training the frame tokenizer (encoder/encoder.h)
 * on frame shards with the trainer's machinery (AdamW, warmup + cosine
 * schedule, gradient clipping, atomic checkpoints, exact resume, signals,
 * metrics.jsonl).
 *
 * A run directory (params.out) holds
 *   step-NNNNNNNN/   a tokenizer directory (config.json, model.safetensors)
 *                    with optimizer.safetensors and trainer_state.json
 *                    (step, data position, seed, the shards, the settings);
 *   latest           a symbolic link to the newest checkpoint;
 *   metrics.jsonl    {"step", "loss", "psnr", "lr", "grad_norm", "frames",
 *                    "frames_per_s"} per step and {"step", "val_loss",
 *                    "val_psnr"} per evaluation (loss: MSE in [0,1] pixel
 *                    units; PSNR in dB of that MSE).
 * Data: every frame of every shard but the last val_frames of each, in an
 * order drawn from the seed each epoch (the train/ sampler); the held-out
 * frames are the validation set. Each step takes `batch` frames.
 * Resuming continues from the newest checkpoint bit for bit on the CPU
 * (same thread count), with the settings saved in it. SIGINT/SIGTERM stop
 * after the current step with a checkpoint.
 *
 * The reports (vttt_train_report of train/train.h) count frames where the
 * language model's count tokens: tokens = frames so far, tokens_per_s =
 * frames/s; val_ppl is unused (PSNR = 10 log10(1 / val_loss)).
 */
#ifndef VTTT_ENCODER_TRAIN_H
#define VTTT_ENCODER_TRAIN_H

#include <stdint.h>

#include "encoder.h"
#include "train.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VTTT_ENCODER_TRAIN_MAX_SHARDS 256

typedef struct vttt_encoder_train_params {
    /* data: frame shards (.vfr) or directories of them (their *.vfr by
     * name); n_frames 0 when resuming takes the run's own */
    const char *const *frames;
    int n_frames;
    int val_frames;                 /* the last N frames of each shard are held out (0: none) */
    char out[VTTT_TRAIN_PATH_MAX];  /* run directory */
    /* tokenizer of a new run (image_size is the data's) */
    vttt_encoder_config model;
    const char *init;               /* a new run starts from this tokenizer's weights and settings (its
                                     * training run or checkpoint; any frame size: the layers are
                                     * convolutions) instead of model; NULL: from the seed */
    float rate_weight;              /* vttt_encoder_set_rate_weight during training (0: off) */
    int motion;                     /* a new run's global motion range (vttt_encoder_config.motion); -1
                                     * (default): model's, or init's when starting from one */
    /* batch and optimizer */
    int64_t steps;                  /* optimizer steps */
    int batch;                      /* frames per step */
    float lr, min_lr;
    int64_t warmup;
    float weight_decay, beta1, beta2, eps, grad_clip;
    /* evaluation, checkpoints */
    int64_t eval_every;             /* steps between validations (0: at the end only) */
    int eval_frames;                /* held-out frames per validation (0: all) */
    int64_t ckpt_every;             /* steps between checkpoints (0: at the end only) */
    int keep;                       /* checkpoints kept */
    int resume;
    uint64_t seed;                  /* weights and data order */
    int handle_signals;
    void (*on_report)(void *user, const vttt_train_report *r);
    void *user;
} vttt_encoder_train_params;

/* Default tokenizer (vttt_encoder_default_config), 2000 steps of 16
 * frames, lr 2e-3 (min 1e-5), warmup 100, weight decay 0 (a small conv
 * net), betas 0.9/0.99, eps 1e-8, clip 1.0, 64 held-out frames per
 * shard, checkpoints every 200 steps (2 kept), seed 0. */
vttt_encoder_train_params vttt_encoder_train_default_params(void);
/* Trains. 0 when the run reached its last step or was stopped by a signal
 * (with a checkpoint either way); else a negative VTTT_E* code with a
 * message: unreadable or mismatched shards (frame size, channels), a run
 * directory that holds a run but resume is off (or the reverse), a
 * damaged checkpoint, a non-finite loss, a failed write. */
int vttt_encoder_train_run(const vttt_encoder_train_params *p, const vttt_logger *lg);

/* The frame shards named by args (files, or directories: their *.vfr in
 * name order), as a malloc'd list of malloc'd paths (*paths, *n); free
 * with vttt_encoder_frames_free. VTTT_EIO naming an argument that is
 * missing or a directory without shards. */
int vttt_encoder_frames_list(const char *const *args, int n_args, char ***paths, int *n, const vttt_logger *lg);
void vttt_encoder_frames_free(char ***paths, int n);

/* The tokenizer of dir: a tokenizer directory, or a training run (its
 * newest checkpoint). The directory used goes to used (n bytes). */
int vttt_encoder_load_any(vttt_encoder **out, const char *dir, char *used, size_t n, const vttt_logger *lg);

#ifdef __cplusplus
}
#endif
#endif
