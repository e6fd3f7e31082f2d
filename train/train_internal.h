/*
 * train/train_internal.h — internal to the train/ sources (and its tests): the
 * pieces of the trainer, one file each.
 */
#ifndef VTTT_TRAIN_INTERNAL_H
#define VTTT_TRAIN_INTERNAL_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "train.h"

/* ---- schedule.c: learning rates by step -------------------------------- */

typedef struct train_schedule {
    float lr, min_lr;         /* peak, final */
    int64_t warmup, steps;
    float ttt_lr, ttt_lr_init; /* inner base lr: peak, start (< 0: no warmup) */
    int64_t ttt_warmup;
} train_schedule;
/* Learning rate of update `step` (0-based): lr * (step + 1) / warmup during
 * the warmup, then a cosine from lr down to min_lr at step = steps. */
float train_schedule_lr(const train_schedule *s, int64_t step);
/* TTT inner base lr of update `step` (0-based): ttt_lr_init + min(1,
 * step / ttt_warmup) * (ttt_lr - ttt_lr_init), as the reference's
 * ttt_base_lr_init / ttt_base_lr_warmup (its 1-based step - 1); ttt_lr
 * when there is no warmup. */
float train_schedule_ttt_lr(const train_schedule *s, int64_t step);
/* The schedule of resolved settings p (train_params_resolve). */
train_schedule train_schedule_of(const vttt_train_params *p);

/* ---- adamw.c: the optimizer -------------------------------------------- */

/* One AdamW update of n parameters p with gradients g and moments m, v;
 * t is the 1-based update count (bias correction); wd the decoupled weight
 * decay (0: none): p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p). */
void train_adamw_update_flat(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                             float beta2, float eps, float wd, int64_t t);
/* Whether AdamW decays a tensor: at least two dimensions larger than 1 and
 * not a bias (b1, b2, *bias). */
int train_decays(const char *name, int ndim, const int64_t *shape);

typedef struct train_adamw train_adamw;
/* Moments for the n tensors ts (which must outlive the optimizer), zero,
 * step 0. */
int train_adamw_init_tensors(train_adamw **out, const vttt_model_tensor *ts, int n, float beta1, float beta2,
                             float eps, float wd, const vttt_logger *lg);
/* train_adamw_init_tensors over every tensor of the model. */
int train_adamw_init(train_adamw **out, vttt_model *m, float beta1, float beta2, float eps, float wd,
                     const vttt_logger *lg);
void train_adamw_free(train_adamw **o);
/* One update of every parameter from its gradient. */
void train_adamw_step(train_adamw *o, float lr);
int64_t train_adamw_steps(const train_adamw *o);
/* optimizer.safetensors: exp_avg.NAME and exp_avg_sq.NAME per parameter,
 * metadata step. Loading checks names, shapes and the step
 * (VTTT_EFORMAT with the file and the problem). */
int train_adamw_save(const train_adamw *o, const char *path);
int train_adamw_load(train_adamw *o, const char *path, int64_t step);

/* ---- clip.c: gradient norm --------------------------------------------- */

/* Global L2 norm of the model's gradients, summed in double over fixed
 * chunks so that it does not depend on the thread count. */
double train_grad_norm(vttt_model *m);
/* Scales the gradients by max_norm / norm when norm > max_norm (> 0).
 * Returns the factor applied (1 when none). */
float train_clip_grads(vttt_model *m, double norm, float max_norm);
/* The same over a list of tensors (the frame tokenizer's). */
double train_grad_norm_tensors(const vttt_model_tensor *ts, int n);
float train_clip_grads_tensors(const vttt_model_tensor *ts, int n, double norm, float max_norm);
/* Sums the gradients over the communicator's ranks. */
int train_allreduce_grads(vttt_model *m, vttt_comm *c);

/* ---- data.c: a set of token shards -------------------------------------- */

typedef struct train_data train_data;
/* Opens the shards of spec: a directory (its `split`_*.bin, else every
 * *.bin), a glob pattern or one file, in name order. A sample is `len`
 * tokens starting at a multiple of `stride`: sample i is the tokens
 * [i * stride, i * stride + len) of the shards laid end to end.
 * VTTT_EIO/VTTT_EFORMAT (logged) for missing or malformed shards,
 * VTTT_EINVAL when there are fewer than len tokens. */
int train_data_open(train_data **out, const char *spec, const char *split, int len, int stride,
                    const vttt_logger *lg);
void train_data_close(train_data **d);
int64_t train_data_samples(const train_data *d);
int64_t train_data_tokens(const train_data *d);
int train_data_files(const train_data *d);
const char *train_data_file(const train_data *d, int i, int64_t *tokens);
/* The vocab_size of a meta.json beside the shards (ingest's), or 0. */
int train_data_meta_vocab(const train_data *d);
/* The meta.json's end-of-text id ("eot"), or -1. */
int train_data_meta_eot(const train_data *d);
/* Video token shards: the meta.json's tokens_per_frame, or 0 (text). */
int train_data_meta_tokens_per_frame(const train_data *d);
/* Largest token id (a scan of every shard). */
int64_t train_data_max_id(const train_data *d);
/* out (len) = sample i; with documents (below), its tokens and targets
 * (train_data_sample_targets + shift tokens) then -1 up to len. */
int train_data_read(const train_data *d, int64_t i, int32_t *out);
/* out (n) = the tokens [pos, pos + n) of the shards laid end to end;
 * VTTT_EINVAL outside them. */
int train_data_read_range(const train_data *d, int64_t pos, int64_t n, int32_t *out);
/* Cuts the data into documents instead (--docs): a document starts at
 * every `eot` token (and at the first token) and ends before the next
 * one; each document is one sample, or several of seq tokens (the last
 * one shorter) when it is longer, in order. Sample i then starts at its
 * piece's first token and has train_data_sample_targets(d, i) <= seq
 * targets, so that a sequence never crosses a document boundary.
 * VTTT_EINVAL (logged) when there is no token with a target. */
int train_data_use_docs(train_data *d, int seq, int shift, int eot);
/* Targets of sample i: its piece's length with documents, else the
 * stride (the trainer opens its data with stride = seq). */
int train_data_sample_targets(const train_data *d, int64_t i);
/* tok, tgt (n) = tokens [w0, w0 + n) of sample s and their targets shift
 * tokens later; padding (-1) becomes token 0 and an ignored target. */
void train_sample_cut(const int32_t *s, int w0, int n, int shift, int32_t *tok, int32_t *tgt);

/* ---- sampler.c: the order of samples ------------------------------------ */

/* splitmix64: the next number of the stream in *s. */
uint64_t train_rng_next(uint64_t *s);
/* A uniform integer in [0, n) (Lemire's multiply-shift; the bias for
 * n < 2^40 is below 2^-24). */
int64_t train_rng_below(uint64_t *s, int64_t n);

/* Epoch e visits the n samples in a permutation drawn from (seed, e), or in
 * order; the position (epoch, cursor) is all its state. */
typedef struct train_sampler {
    int64_t n;
    uint64_t seed;
    int shuffle;
    int64_t epoch, cursor;
    int64_t *perm;   /* (n) the current epoch's order (shuffle only) */
} train_sampler;
int train_sampler_init(train_sampler *s, int64_t n, uint64_t seed, int shuffle, int64_t epoch, int64_t cursor);
void train_sampler_free(train_sampler *s);
/* The next sample; moves to the next epoch after the last one. */
int64_t train_sampler_next(train_sampler *s);

/* ---- params.c: settings, their JSON form and their comparison ------------ */

/* A cJSON object of p's run settings (caller owns it). */
struct cJSON;
struct cJSON *train_params_to_json(const vttt_train_params *p);
/* Reads the settings written by train_params_to_json into p (unknown keys
 * and wrong types: VTTT_EFORMAT naming the key and path). */
int train_params_from_json(vttt_train_params *p, const struct cJSON *j, const char *path, const vttt_logger *lg);
/* Compares the settings that decide the training trajectory; logs the
 * first difference as "--option: given X, the run in DIR used Y" and
 * returns VTTT_EINVAL. */
/* A decimal uint64 (digits only); VTTT_EINVAL otherwise. */
int train_parse_u64(const char *s, uint64_t *out);
int train_params_match(const vttt_train_params *given, const vttt_train_params *saved, const char *dir,
                       const vttt_logger *lg);

/* ---- state_head.c: what both trainers' trainer_state.json share --------- */

#define TRAIN_STATE_HINT "(a damaged checkpoint?)"
/* format, step, the count of what was trained on (under count_key:
 * "tokens", "frames"), the data position and the seed. */
typedef struct train_state_head {
    const char *format, *count_key;
    int64_t step, count, epoch, cursor, samples;
    uint64_t seed;
} train_state_head;
/* Logs "<path>: <what> (a damaged checkpoint?)"; VTTT_EFORMAT. */
int train_state_fail(const vttt_logger *lg, const char *path, const char *what);
/* The document {format, version, step, <count_key>, data {files, epoch,
 * cursor, samples}, rng {seed, generator}, config} (config consumed);
 * *files is its empty files list, for train_state_add_file. */
struct cJSON *train_state_json(const train_state_head *h, struct cJSON *config, struct cJSON **files);
/* Appends {path, <count_key>: count} to files. */
void train_state_add_file(struct cJSON *files, const char *count_key, const char *path, int64_t count);
/* Reads h's fields from j (h->format and h->count_key set by the caller);
 * another format is VTTT_EFORMAT saying not_this, and so are another
 * version and missing or out-of-range fields. */
/* The trainer's own bounds on a parsed head: step <= steps (the run's
 * length) and count == step * per_step exactly (what each step adds).
 * VTTT_EFORMAT with a message otherwise. */
int train_state_head_bounds(const train_state_head *h, int64_t steps, int64_t per_step, const char *path,
                            const vttt_logger *lg);
int train_state_head_parse(train_state_head *h, const struct cJSON *j, const char *not_this, const char *path,
                           const vttt_logger *lg);

/* ---- state.c: trainer_state.json ----------------------------------------- */

typedef struct train_state {
    int64_t step;          /* optimizer steps done */
    int64_t tokens;        /* training tokens so far */
    int64_t epoch, cursor; /* data position (train_sampler) */
    uint64_t seed;         /* the sampler's and the initialisation's (a string in the file) */
    int64_t samples;       /* samples per epoch: checks the data on resume */
    vttt_train_params params;
} train_state;
/* Writes atomically; the data section lists the shards and their sizes. */
int train_state_write(const train_state *s, const train_data *d, const char *path, const vttt_logger *lg);
/* Reads and checks one; when d is not NULL its shards must be those of the
 * file (same names and sizes), else VTTT_EINVAL says what changed. */
int train_state_read(train_state *s, const train_data *d, const char *path, const vttt_logger *lg);

/* ---- checkpoint.c: checkpoint directories -------------------------------- */

/* The newest complete checkpoint in run (its step; -1 if none) and its
 * directory into dir (n bytes). Leftover temporary directories of a killed
 * save are removed. */
int64_t train_ckpt_latest(const char *run, char *dir, size_t n);
/* What a failed run leaves to resume from, in words for its message:
 * "the last checkpoint, RUN/step-N, is intact" or that there is none. */
void train_ckpt_status(const char *run, char *buf, size_t n);
/* VTTT_ENAN with a message naming the tensor when one of t (n) holds a
 * non-finite value: no checkpoint is written with such weights. */
int train_tensors_finite(const vttt_model_tensor *t, int n, const vttt_logger *lg);
/* Writes run/step-N (step) through a temporary directory that fill(user,
 * tmpdir) fills, renames it into place, points run/latest at it and
 * prunes all but the newest keep; dir (n bytes) gets its path. A step
 * saved already is left alone. On failure the previous checkpoints are
 * intact and nothing named step-N appears. */
typedef int (*train_ckpt_fill_fn)(void *user, const char *tmpdir);
int train_ckpt_write(const char *run, int64_t step, train_ckpt_fill_fn fill, void *user, int keep, char *dir,
                     size_t n, const vttt_logger *lg);
/* train_ckpt_write of the language model's checkpoint (model, optimizer,
 * state). */
int train_ckpt_save(const char *run, const vttt_model *m, const train_adamw *o, const train_state *s,
                    const train_data *d, int keep, char *dir, size_t n, const vttt_logger *lg);

/* ---- metrics.c: metrics.jsonl -------------------------------------------- */

/* Opens run/metrics.jsonl for appending; keep_step >= 0 first drops lines
 * of later steps (left by a run killed after its last checkpoint). */
int train_metrics_open(FILE **out, const char *run, int64_t keep_step, const vttt_logger *lg);
/* What a resumed run takes over from the lines of run/metrics.jsonl (a
 * missing file has none): the lowest val_loss (NAN: none) and its step
 * (-1), so that the summary's best covers the whole run, and the largest
 * time_s (0: none; logs before time_s have none), so that time_s goes on
 * from there. */
typedef struct train_metrics_history {
    float best_val;
    int64_t best_step;
    double time_s;
} train_metrics_history;
int train_metrics_history_read(const char *run, train_metrics_history *h, const vttt_logger *lg);
void train_metrics_step(FILE *f, const vttt_train_report *r);
void train_metrics_eval(FILE *f, const vttt_train_report *r);

/* ---- summary.c: the end-of-run summary ----------------------------------- */

typedef struct train_summary {
    double t0;                 /* when this process began (train_now_s) */
    double time0;              /* the run's wall time before this process (s; from metrics.jsonl) */
    int64_t tokens0;           /* training tokens at this process's first step */
    double ema;                /* training loss, moving average before bias correction */
    int64_t ema_n;             /* steps in it */
    float best_val;            /* lowest val_loss so far (NAN: none) */
    int64_t best_step;         /* its step (-1: none) */
} train_summary;
#define TRAIN_SUMMARY_BETA 0.95

void train_summary_step(train_summary *s, float loss);
void train_summary_eval(train_summary *s, int64_t step, float val_loss);
/* The END report of a run at step with tokens trained in all. */
vttt_train_report train_summary_report(const train_summary *s, int64_t step, int64_t steps, int64_t tokens);
/* run/summary.json from an END report, atomically. */
int train_summary_write(const char *run, const vttt_train_report *r, const vttt_logger *lg);

/* ---- the trainer (trainer.c, step.c, eval.c, signal.c) ------------------- */

/* "ttt_linear", "ttt_mlp", "attention" -> *k; VTTT_EINVAL (no message) for
 * another name. */
int train_layer_parse(const char *name, vttt_layer_kind *k);
/* Fills the settings p left to the recipe (see train.h) for a model of
 * cfg: window, the TTT inner base lr and its warmup. A run fine-tuned from
 * --init keeps its model's inner base lr, without warmup. */
void train_params_resolve(vttt_train_params *p, const vttt_model_config *cfg);

typedef struct train_ctx {
    vttt_train_params p;       /* resolved settings */
    vttt_logger log;
    vttt_comm *comm;
    vttt_model *model;
    train_adamw *opt;
    train_data *data, *val;
    train_sampler sampler;
    train_schedule sched;
    vttt_model_state *carry;   /* (micro) sequences, window < seq only */
    int shift;                 /* target shift */
    int micro;                 /* sequences per micro-batch */
    int rank_seqs;             /* sequences per step on this rank */
    int32_t *samples;          /* (micro, seq + shift) */
    int32_t *tok, *tgt;        /* (micro, window) */
    int64_t *ids;              /* (batch) this step's samples */
    int64_t step, tokens;
    int64_t saved_step;        /* the step of the newest checkpoint on disk (-1: none) */
    FILE *metrics;             /* rank 0 */
    train_summary summary;
    volatile sig_atomic_t stop; /* set by the signal handler */
} train_ctx;

/* Sets up c for p (setup.c): communicator, model (new, or the newest
 * checkpoint's when resuming), data, optimizer, buffers, metrics file.
 * *resumed_from: the checkpoint's step, or -1 for a new run. */
int train_setup(train_ctx *c, const vttt_train_params *p, const vttt_logger *lg, int64_t *resumed_from);
void train_teardown(train_ctx *c);
/* One optimizer step: loss (mean over the batch) and gradient norm
 * before clipping. */
int train_step(train_ctx *c, float *loss, float *grad_norm);
/* The end of a step once the gradients are summed: *grad_norm (before
 * clipping), then, unless it or loss is not finite (VTTT_ENAN, nothing
 * applied, the caller says why), clipping to grad_clip and the AdamW
 * update at the schedule's rate of update `step` (0-based). */
int train_update(vttt_model *m, train_adamw *o, const train_schedule *s, int64_t step, float grad_clip, float loss,
                 float *grad_norm);
/* Mean validation loss over the validation samples, all ranks. */
int train_eval(train_ctx *c, float *loss);
/* SIGINT/SIGTERM set c->stop while installed. */
void train_signals_install(train_ctx *c);
/* The same for any trainer's flag (the frame tokenizer's). */
void train_signals_install_flag(volatile sig_atomic_t *stop);
void train_signals_restore(void);

/* ---- loop.c: the run loop both trainers drive ---------------------------- */

/* Monotonic clock in seconds. */
double train_now_s(void);
/* A step's report r (step, steps set) gets tokens_per_s = items over the
 * step's time t1 - t0, and eta_s from the pace since t_start, when this
 * process began at step step0. */
void train_report_rates(vttt_train_report *r, double items, double t0, double t1, double t_start, int64_t step0);
/* One trainer's run: its counters and its callbacks on ctx. */
typedef struct train_loop {
    void *ctx;
    const int64_t *step;                 /* the trainer's step counter */
    int64_t steps, eval_every;
    const volatile sig_atomic_t *stop;   /* set by a signal */
    int can_eval;                        /* there are held-out data */
    const vttt_logger *log;
    /* one step and what follows it; t_start, step0: when and where the loop began */
    int (*step_and_report)(void *ctx, double t_start, int64_t step0);
    int (*evaluate)(void *ctx);
    int (*save)(void *ctx);
} train_loop;
/* Steps until the last step, an error or a signal. On an error nothing is
 * saved (the newest checkpoint stays the one to resume from); otherwise a
 * final evaluation unless the last step had one, and a checkpoint. */
int train_loop_run(const train_loop *l);
/* The message of an evaluation whose loss is not finite (the trainers
 * then stop without saving): what is left to resume from in run. */
void train_eval_nan_stop(const vttt_logger *lg, const char *run, int64_t step);

#endif
