/* `vttt video fit` internals: cli_video.c (the command, its options, the
 * initial pair, the directories), video_fit_run.c (the stages, the budget,
 * the kept pair, fit.json), video_fit_data.c (clips and their held-out
 * tails), video_fit_child.c (the stages that run as
 * child processes of this binary, stopped at their share of the budget),
 * video_fit_eval.c (next-frame PSNR on the held-out tails). */
#ifndef VTTT_TOOLS_VIDEO_FIT_H
#define VTTT_TOOLS_VIDEO_FIT_H

#include <stdint.h>

#include <cjson/cJSON.h>

#define FIT_PATH 4096
#define FIT_MAX_FILES 4096
#define FIT_MAX_SEGMENTS 4        /* model training checkpoints (candidates) at most */
#define FIT_TOKENIZER_SHARE 0.3   /* of the training time */

/* One input clip, ingested at the fit's frame size. Frames
 * [0, train_frames) are trained on; the tail [train_frames, frames) is
 * held out for choosing the checkpoint and never trained on. */
typedef struct fit_clip {
    const char *file;         /* as given on the command line */
    char shard[FIT_PATH];     /* its frame shard */
    int64_t frames, train_frames;
} fit_clip;

/* One fit: the options, the initial pair, the directories, the budget,
 * and what the stages did (fit.json). */
typedef struct fit_ctx {
    const char *out, *init, *fps;
    double minutes, heldout;
    int size, threads, n;
    const char *files[FIT_MAX_FILES];
    char exe[FIT_PATH], model[FIT_PATH], encoder[FIT_PATH]; /* this binary; the initial pair */
    char tmp[FIT_PATH], work[FIT_PATH + 16], logs[FIT_PATH + 16]; /* DIR.tmp, its work/ and logs/ */
    int S, P;                                              /* frame size, tokens per frame */
    double t0, deadline, budget;
    fit_clip *clips;
    double t_ingest, t_tokenizer, t_encode, t_model, t_eval;
    long long tokenizer_steps, model_steps;
    int segments;
    cJSON *candidates;
} fit_ctx;

/* cli_video.c: the initial pair (checked by loading it; S and P set),
 * 0 or an exit status after a message; DIR.tmp made fresh, likewise. */
int fit_resolve_init(fit_ctx *f);
int fit_make_dirs(fit_ctx *f);
/* video_fit_run.c: the stages, the kept pair, fit.json, the rename; the
 * exit status. */
int fit_run(fit_ctx *f);

/* The clips ingested into frames_dir from files (n; a clip is found by
 * its shard's source string), each with its tail of `heldout` (a share of
 * its frames, at least one) and at least 4 frames to train on. Every
 * missing, empty or too short clip gets a message naming it (log: the
 * ingest log to look at); -1 if there was any. video_fit_data.c. */
int fit_clips_find(const char *frames_dir, const char *const *files, int n, double heldout, int size,
                   const char *log, fit_clip *clips);
/* Writes the clip's training frames (before the tail) as a frame shard at
 * path. 0 or a negative VTTT_E* code (with a message). */
int fit_clip_write_train(const fit_clip *c, const char *path);

/* Held-out figures of one model/tokenizer pair: means over the scored
 * frames (dB) of the model's predicted next frame and of repeating the
 * last frame, against the true frame. */
typedef struct fit_score {
    double psnr, repeat_psnr;
    int64_t scored;           /* frames scored */
    double seconds;           /* the evaluation's wall time */
} fit_score;

/* Frames scored per clip at most (the first of its tail), and frames
 * before the tail a stream is warmed on at most. */
#define FIT_EVAL_FRAMES 120
#define FIT_EVAL_WARM 60

/* Scores the pair (a model directory or run, a tokenizer directory or
 * run) on every clip's held-out tail: one stream per clip, started
 * FIT_EVAL_WARM frames before the tail (at most), each prediction of a
 * tail frame (EXPECT decoding) scored. 0, or a negative VTTT_E* code with
 * a message on stderr naming what failed. */
int fit_eval(const char *model_dir, const char *encoder_dir, const fit_clip *clips, int n, fit_score *out);

/* A stage run as a child process: `exe argv...` with its stdout and stderr
 * in log. At stop_at (cli_now_s() seconds) a trainer (metrics != NULL,
 * its metrics.jsonl) gets SIGTERM, which stops it after the step with a
 * checkpoint, but only once it has finished a step since it started (its
 * metrics grew: the handler is installed), waiting for that until
 * stop_at + grace_s; other stages are killed at stop_at (a failure).
 * grace_s after SIGTERM it gets SIGKILL. Every progress_s a progress line
 * (the trainer's last step and loss) goes to stderr. */
typedef struct fit_child {
    const char *exe;          /* this binary */
    const char *stage;        /* its name in progress lines and messages */
    const char *log;          /* appended to */
    const char *metrics;      /* a trainer's metrics.jsonl, or NULL */
    double stop_at, grace_s, progress_s;
} fit_child;

/* The outcome of fit_child_run. */
enum {
    FIT_CHILD_DONE = 0,       /* exited 0 on its own */
    FIT_CHILD_STOPPED = 1,    /* a trainer stopped by SIGTERM, exited 0 (checkpoint written) */
    FIT_CHILD_NO_STEP = -1,   /* a trainer that finished no step by stop_at + grace_s (killed) */
    FIT_CHILD_FAILED = -2,    /* exited non-zero, or died (the log's last lines are printed) */
    FIT_CHILD_TIMEOUT = -3,   /* not a trainer, and still running at stop_at (killed) */
};
int fit_child_run(const fit_child *c, char *const argv[]);
/* The last line of a trainer's metrics.jsonl that reports a step: its
 * step and loss (1); 0 when there is none (yet). */
int fit_metrics_last(const char *metrics, long long *step, double *loss);

/* Removes dir and everything under it (no symbolic link followed); 0 or
 * -1 with errno. */
int fit_remove_tree(const char *dir);

#endif
