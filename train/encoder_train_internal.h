/*
 * train/encoder_train_internal.h — internal to the frame tokenizer's
 * trainer (train/encoder_*.c) and its tests.
 */
#ifndef VTTT_ENCODER_TRAIN_INTERNAL_H
#define VTTT_ENCODER_TRAIN_INTERNAL_H

#include <signal.h>
#include <stdio.h>

#include "encoder_train.h"
#include "ingest.h"
#include "train_internal.h"

/* ---- encoder_data.c: frame shards split into training and held-out ---- */
typedef struct enc_data {
    int n;                       /* shards */
    char **paths;                /* (n) */
    vttt_frame_shard **sh;       /* (n) */
    int64_t *frames;             /* (n) frames in each shard */
    int64_t *train_off;          /* (n + 1) prefix sums of the training frames per shard */
    int64_t *val_off;            /* (n + 1) prefix sums of the held-out frames */
    int val_frames;              /* held out at the end of each shard */
    int S;                       /* frames are S x S x 3 */
} enc_data;
/* Opens the shards; all must be S x S RGB with more than val_frames
 * frames (VTTT_EINVAL/VTTT_EFORMAT naming the shard otherwise). */
int enc_data_open(enc_data *d, char **paths, int n, int val_frames, const vttt_logger *lg);
void enc_data_close(enc_data *d);
int64_t enc_data_train(const enc_data *d);
int64_t enc_data_val(const enc_data *d);
/* out (S, S, 3) = training frame i (val: held-out frame i). */
int enc_data_read(const enc_data *d, int val, int64_t i, uint8_t *out);
/* The same, and into prev the frame gap before it in the same shard
 * (*have_prev 1), or nothing when the shard starts less than gap before
 * (*have_prev 0): the pairs a DELTA tokenizer trains on. */
int enc_data_read_pair(const enc_data *d, int val, int64_t i, int gap, uint8_t *prev, int *have_prev, uint8_t *out);

/* ---- encoder_state.c: trainer_state.json of a tokenizer run ---- */
typedef struct enc_state {
    int64_t step, frames, epoch, cursor, samples;
    vttt_encoder_train_params params;   /* frames/n_frames not set */
    char **files;                       /* (n_files) shard paths, malloc'd (read only) */
    int64_t *file_frames;               /* (n_files) their frame counts (read only) */
    int n_files;
} enc_state;
int enc_state_write(const enc_state *s, const enc_data *d, const char *path, const vttt_logger *lg);
/* Reads one; the shard list into s->files (enc_state_free). */
int enc_state_read(enc_state *s, const char *path, const vttt_logger *lg);
void enc_state_free(enc_state *s);

/* ---- encoder_trainer.c ---- */
typedef struct enc_train_ctx {
    vttt_encoder_train_params p;
    vttt_logger log;
    vttt_encoder *enc;
    train_adamw *opt;
    enc_data data;
    train_sampler sampler;
    train_schedule sched;
    uint8_t *batch;              /* (batch, S, S, 3) */
    uint8_t *prev;               /* (batch, S, S, 3): DELTA's reference frames */
    int64_t step, frames, saved_step;
    FILE *metrics;
    volatile sig_atomic_t stop;
} enc_train_ctx;

/* encoder_setup.c: a new run or the newest checkpoint of p->out; *from is
 * the checkpoint's step, or -1. */
int enc_train_setup(enc_train_ctx *c, const vttt_encoder_train_params *p, const vttt_logger *lg, int64_t *from);
void enc_train_teardown(enc_train_ctx *c);

#endif
