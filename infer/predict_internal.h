/*
 * infer/predict_internal.h — internal to infer/predict*.c: the state of
 * one `vttt predict` run (rings of recent true and predicted frames, the
 * score sums, the strips) and the writers of its output files.
 */
#ifndef VTTT_PREDICT_INTERNAL_H
#define VTTT_PREDICT_INTERNAL_H

#include <stdio.h>

#include "infer_internal.h"
#include "video_writer.h"

typedef struct predict_run {
    vttt_predictor *p;
    const vttt_predict_params *pp;
    vttt_logger log;
    int S, P, K;
    size_t fb;                /* bytes of one frame: S*S*3 */
    int fps_num, fps_den;     /* rate of the decoded frames (the video written) */
    vttt_stream *stream;
    /* rings */
    uint8_t *hist;            /* (K+1, S, S, 3) true frame t at t % (K+1) */
    uint8_t *pred;            /* (K, K, S, S, 3) frames predicted at push t at [t % K] */
    int32_t *tok;             /* (P) tokens of the current frame */
    int32_t *ptok;            /* (K, P) predicted tokens of the last push */
    int32_t *prev_tok;        /* (P) tokens of the previous frame */
    uint8_t *recon;           /* (S, S, 3) the tokenizer's reconstruction of the current frame */
    uint8_t *cpred;           /* (K, K, S, S, 3) copying push t's tokens 1..K times, at [t % K] */
    int32_t *ctok;            /* (K, P) */
    uint8_t *side;            /* (S, 2S, 3) side-by-side video frame */
    /* strips */
    uint8_t *strip;           /* (3S, strip_frames*S, 3) */
    int strip_cols;
    uint8_t *roll;            /* (2S, K*S, 3) */
    int roll_cols;
    int64_t roll_t0;          /* the push whose roll-out is shown (-1: none yet) */
    /* outputs */
    FILE *csv, *tokens;
    infer_video_writer *video;
    vttt_predict_summary sum;
    double sums[10];          /* model psnr, ssim, repeat psnr, ssim, ceiling psnr, ssim, model and repeat token
                                 accuracy, copy-tokens psnr, ssim */
    double t_model, t_codec;  /* seconds */
} predict_run;

/* Scores true frame t (t >= 1, in the history ring) against the
 * predictions and the baselines: sums, frames.csv, the video, strips. */
int predict_score(predict_run *r, int64_t t);
/* Opens frames.csv (with its header), tokens.txt and the video. */
int predict_outputs_open(predict_run *r);
/* Writes strip.png, rollout.png and summary.json; closes the files. */
int predict_outputs_close(predict_run *r, int ok);
/* Copies frame src (S, S, 3) into cell (row, col) of an image of cols x S
 * columns. */
void predict_blit(uint8_t *img, int cols, int S, int row, int col, const uint8_t *src);

#endif
