/* The stages of `vttt video fit` (docs/video_fit.md): ingest, the
 * held-out split, the initial pair's score, tokenizer fine-tuning,
 * encoding, model fine-tuning in segments (a checkpoint each), the
 * checkpoints' scores, the best pair saved, fit.json, DIR.tmp renamed to
 * DIR. Times are wall-clock seconds from cli_now_s(). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "encoder_train.h"
#include "infer.h"
#include "json_file.h"
#include "video_fit.h"

#define CMD "vttt video fit"
#define LM_LR "1e-3"          /* constant learning rates: how many steps fit the budget is not known ahead */
#define TOKENIZER_LR "5e-4"
#define LM_BATCH "2"          /* sequences per step */
#define LM_SEQ_FRAMES 16      /* frames per training sequence at most */
#define LM_WINDOW_TOKENS 4096 /* tokens per training window at most (the TTT state is carried between) */
#define INGEST_SHARE 0.25     /* of the budget, at most */
#define SEGMENT_S 5.0         /* model training segments last this long at least */

static void say(const fit_ctx *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, CMD ": [%5.1f s] ", cli_now_s() - f->t0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* A child stage: this binary with args (NULL-terminated), the thread
 * option appended; its output in logs/LOG. A fit_child_run outcome. */
static int run_stage(fit_ctx *f, const char *stage, const char *log, const char *metrics, double stop_at,
                     const char **args) {
    char threads[16], logpath[FIT_PATH + 128];
    int n = 0;
    while (args[n]) n++;
    char **argv = calloc((size_t)n + 4, sizeof *argv);
    if (!argv) return FIT_CHILD_FAILED;
    argv[0] = f->exe;
    for (int i = 0; i < n; i++) argv[i + 1] = (char *)args[i];
    snprintf(threads, sizeof threads, "%d", f->threads);
    if (f->threads) argv[n + 1] = "--threads", argv[n + 2] = threads;
    snprintf(logpath, sizeof logpath, "%s/%s", f->logs, log);
    double left = f->deadline - cli_now_s();
    fit_child c = {f->exe, stage, logpath, metrics, stop_at, fmax(10.0, 0.05 * f->budget),
                   fmax(5.0, fmin(60.0, left / 10.0))};
    int rc = fit_child_run(&c, argv);
    free(argv);
    return rc;
}

/* Stage 1: every file into frames of S x S, then the clips and their
 * training parts as shards of their own in work/train. */
static int stage_ingest(fit_ctx *f) {
    char frames[FIT_PATH + 64], size[16], log[FIT_PATH + 128], train[FIT_PATH + 64], path[FIT_PATH + 128];
    const char **args = calloc((size_t)f->n + 16, sizeof *args);
    if (!args) return 1;
    snprintf(frames, sizeof frames, "%s/frames", f->work);
    snprintf(size, sizeof size, "%d", f->S);
    int k = 0;
    args[k++] = "ingest", args[k++] = "video", args[k++] = "--out", args[k++] = frames, args[k++] = "--size";
    args[k++] = size, args[k++] = "--jobs", args[k++] = "1";
    if (f->fps) args[k++] = "--fps", args[k++] = f->fps;
    for (int i = 0; i < f->n; i++) args[k++] = f->files[i];
    say(f, "ingest: %d file(s) at %dx%d", f->n, f->S, f->S);
    double t = cli_now_s();
    int rc = run_stage(f, "ingest", "ingest.log", NULL, f->t0 + INGEST_SHARE * f->budget, args);
    free(args);
    f->t_ingest = cli_now_s() - t;
    if (rc == FIT_CHILD_TIMEOUT)
        return fprintf(stderr, CMD ": ingest took more than %.0f s (a quarter of the budget); give more --minutes "
                       "or shorter clips\n", INGEST_SHARE * f->budget), 1;
    snprintf(log, sizeof log, "%s/ingest.log", f->logs);
    if (!(f->clips = calloc((size_t)f->n, sizeof *f->clips))) return 1;
    if (fit_clips_find(frames, f->files, f->n, f->heldout, f->S, log, f->clips) || rc != FIT_CHILD_DONE) return 1;
    snprintf(train, sizeof train, "%s/train", f->work);
    if (mkdir(train, 0777)) return fprintf(stderr, CMD ": cannot create %s: %s\n", train, strerror(errno)), 1;
    for (int i = 0; i < f->n; i++) {
        snprintf(path, sizeof path, "%s/clip-%05d.vfr", train, i);
        if (fit_clip_write_train(&f->clips[i], path)) return 1;
        say(f, "%s: %lld frames, %lld to train on, the last %lld held out", f->files[i],
            (long long)f->clips[i].frames, (long long)f->clips[i].train_frames,
            (long long)(f->clips[i].frames - f->clips[i].train_frames));
    }
    return 0;
}

/* Scores a candidate pair and records it in f->candidates. */
static int evaluate(fit_ctx *f, const char *name, const char *model, const char *encoder, fit_score *sc) {
    int err = fit_eval(model, encoder, f->clips, f->n, sc);
    f->t_eval += sc->seconds;
    if (err) return err;
    say(f, "candidate %s: held-out next-frame PSNR %.2f dB (repeat last frame %.2f dB) over %lld frames, %.1f s",
        name, sc->psnr, sc->repeat_psnr, (long long)sc->scored, sc->seconds);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", name);
    cJSON_AddStringToObject(c, "tokenizer", strcmp(name, "init") ? "fine-tuned" : "init");
    cJSON_AddNumberToObject(c, "psnr", sc->psnr);
    cJSON_AddNumberToObject(c, "repeat_psnr", sc->repeat_psnr);
    cJSON_AddNumberToObject(c, "scored_frames", (double)sc->scored);
    cJSON_AddNumberToObject(c, "seconds", sc->seconds);
    cJSON_AddItemToArray(f->candidates, c);
    return 0;
}

static void last_step(const char *metrics, long long *steps) {
    double loss;
    if (!fit_metrics_last(metrics, steps, &loss)) *steps = 0;
}

/* Stage 2: the tokenizer fine-tuned on the training frames until end. */
static int stage_tokenizer(fit_ctx *f, double end) {
    char train[FIT_PATH + 64], run[FIT_PATH + 64], metrics[FIT_PATH + 96];
    snprintf(train, sizeof train, "%s/train", f->work);
    snprintf(run, sizeof run, "%s/enc", f->work);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run);
    const char *args[] = {"encoder", "train", "--frames", train, "--out", run, "--init", f->encoder, "--steps",
                          "1000000000", "--lr", TOKENIZER_LR, "--min-lr", TOKENIZER_LR, "--warmup", "10",
                          "--val-frames", "0", "--ckpt-every", "0", "--quiet", NULL};
    say(f, "tokenizer: fine-tuning %s for %.0f s", f->encoder, end - cli_now_s());
    double t = cli_now_s();
    int rc = run_stage(f, "tokenizer", "tokenizer.log", metrics, end, args);
    f->t_tokenizer = cli_now_s() - t;
    last_step(metrics, &f->tokenizer_steps);
    if (rc == FIT_CHILD_NO_STEP)
        return fprintf(stderr, CMD ": the tokenizer did not finish one training step in its %.0f s; give more "
                       "--minutes\n", f->t_tokenizer), 1;
    if (rc < 0) return 1;
    say(f, "tokenizer: %lld steps in %.1f s", f->tokenizer_steps, f->t_tokenizer);
    return 0;
}

/* The model's training sequence and window, in frames: sequences of up to
 * LM_SEQ_FRAMES frames (fewer than the training frames), windows the
 * largest divisor of it within LM_WINDOW_TOKENS tokens. */
static void lm_shape(const fit_ctx *f, int *seq, int *window) {
    int64_t frames = 0;
    for (int i = 0; i < f->n; i++) frames += f->clips[i].train_frames;
    *seq = frames - 1 < LM_SEQ_FRAMES ? (int)frames - 1 : LM_SEQ_FRAMES;
    *window = 1;
    for (int w = 1; w <= *seq; w++)
        if (*seq % w == 0 && (int64_t)w * f->P <= LM_WINDOW_TOKENS) *window = w;
}

/* Stage 3a: the training frames into tokens with the fine-tuned
 * tokenizer. */
static int stage_encode(fit_ctx *f, double end) {
    char train[FIT_PATH + 64], enc[FIT_PATH + 64], tok[FIT_PATH + 64];
    snprintf(train, sizeof train, "%s/train", f->work);
    snprintf(enc, sizeof enc, "%s/enc", f->work);
    snprintf(tok, sizeof tok, "%s/tok", f->work);
    const char *args[] = {"encoder", "encode", "--encoder", enc, "--out", tok, "--val-frames", "0", train, NULL};
    double t = cli_now_s();
    int rc = run_stage(f, "encode", "encode.log", NULL, end, args);
    f->t_encode = cli_now_s() - t;
    if (rc == FIT_CHILD_TIMEOUT)
        return fprintf(stderr, CMD ": encoding the training frames did not finish in the budget; give more "
                       "--minutes\n"), 1;
    return rc < 0;
}

/* Stage 3b: the model fine-tuned until end, in segments that each end
 * with a checkpoint (SIGTERM), the later ones resuming the run. */
static int stage_model(fit_ctx *f, double end) {
    char tok[FIT_PATH + 64], run[FIT_PATH + 64], metrics[FIT_PATH + 96], seq[32], win[32], name[32];
    int L, W;
    lm_shape(f, &L, &W);
    snprintf(tok, sizeof tok, "%s/tok", f->work);
    snprintf(run, sizeof run, "%s/lm", f->work);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run);
    snprintf(seq, sizeof seq, "%d", L * f->P), snprintf(win, sizeof win, "%d", W * f->P);
    const char *first[] = {"train", "--data", tok, "--out", run, "--init", f->model, "--seq", seq, "--window", win,
                           "--batch", LM_BATCH, "--steps", "1000000000", "--lr", LM_LR, "--min-lr", LM_LR,
                           "--warmup", "10", "--ckpt-every", "0", "--keep", "1000", "--quiet", NULL};
    const char *resume[] = {"train", "--out", run, "--resume", "--quiet", NULL};
    double t = cli_now_s();
    int K = (int)((end - t) / SEGMENT_S);
    K = K < 1 ? 1 : K > FIT_MAX_SEGMENTS ? FIT_MAX_SEGMENTS : K;
    say(f, "model: fine-tuning %s for %.0f s (%d-frame sequences in %d-frame windows), %d checkpoint(s)", f->model,
        end - t, L, W, K);
    int rc = FIT_CHILD_STOPPED;
    for (f->segments = 0; f->segments < K && rc == FIT_CHILD_STOPPED; f->segments++) {
        snprintf(name, sizeof name, "model %d/%d", f->segments + 1, K);
        rc = run_stage(f, name, "model.log", metrics, t + (end - t) * (f->segments + 1) / K,
                       f->segments ? resume : first);
    }
    f->t_model = cli_now_s() - t;
    last_step(metrics, &f->model_steps);
    if (rc == FIT_CHILD_FAILED) return 1;
    if (rc == FIT_CHILD_NO_STEP)
        say(f, "model: %s finished no step in its share of the budget; give more --minutes", name);
    say(f, "model: %lld steps in %.1f s", f->model_steps, f->t_model);
    return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Stage 4: every checkpoint of the model run, with the fine-tuned
 * tokenizer; *best (the index in f->candidates) and its score updated. */
static int evaluate_checkpoints(fit_ctx *f, int *best, double *best_psnr) {
    char run[FIT_PATH + 64], dir[2 * FIT_PATH], enc[FIT_PATH + 64], *names[1024];
    int n = 0, err = 0;
    snprintf(run, sizeof run, "%s/lm", f->work);
    snprintf(enc, sizeof enc, "%s/enc", f->work);
    DIR *d = opendir(run);
    for (struct dirent *e; d && (e = readdir(d)) && n < 1024;)
        if (!strncmp(e->d_name, "step-", 5) && !strchr(e->d_name, '.') && (names[n] = strdup(e->d_name))) n++;
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    for (int i = 0; i < n && !err; i++) {
        fit_score sc;
        snprintf(dir, sizeof dir, "%s/%s", run, names[i]);
        if ((err = evaluate(f, names[i], dir, enc, &sc))) break;
        if (sc.psnr > *best_psnr) *best_psnr = sc.psnr, *best = cJSON_GetArraySize(f->candidates) - 1;
    }
    for (int i = 0; i < n; i++) free(names[i]);
    return err;
}

/* The kept pair into DIR.tmp (model) and DIR.tmp/encoder, each file
 * written atomically, then loaded back as `vttt predict` will. */
static int save_pair(fit_ctx *f, const char *model, const char *encoder) {
    char encdir[FIT_PATH + 64], used[FIT_PATH + 128];
    vttt_model *m = NULL;
    vttt_encoder *e = NULL;
    vttt_predictor *p = NULL;
    snprintf(encdir, sizeof encdir, "%s/encoder", f->tmp);
    int err = vttt_model_load(&m, model, NULL);
    if (!err) err = vttt_model_save(m, f->tmp);
    if (!err) err = vttt_encoder_load_any(&e, encoder, used, sizeof used, NULL);
    if (!err) err = vttt_encoder_save(e, encdir);
    if (!err) err = vttt_predictor_open(&p, f->tmp, encdir, NULL);
    if (err) fprintf(stderr, CMD ": cannot save the kept model %s and tokenizer %s into %s (%s)\n", model, encoder,
                     f->tmp, vttt_strerror(err));
    vttt_predictor_close(&p);
    vttt_encoder_free(&e);
    vttt_model_free(&m);
    return err;
}

static void add_inputs(const fit_ctx *f, cJSON *j) {
    cJSON *in = cJSON_AddArrayToObject(j, "inputs");
    int64_t train = 0, held = 0;
    for (int i = 0; i < f->n; i++) {
        const fit_clip *c = &f->clips[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", c->file);
        cJSON_AddNumberToObject(o, "frames", (double)c->frames);
        cJSON_AddNumberToObject(o, "train_frames", (double)c->train_frames);
        cJSON_AddNumberToObject(o, "heldout_frames", (double)(c->frames - c->train_frames));
        cJSON_AddItemToArray(in, o);
        train += c->train_frames, held += c->frames - c->train_frames;
    }
    cJSON *fr = cJSON_AddObjectToObject(j, "frames");
    cJSON_AddNumberToObject(fr, "train", (double)train);
    cJSON_AddNumberToObject(fr, "heldout", (double)held);
}

/* fit.json: what was done, the candidates and the kept one. */
static int write_report(fit_ctx *f, const char *kept) {
    char path[FIT_PATH + 64];
    int L, W;
    lm_shape(f, &L, &W);
    cJSON *j = cJSON_CreateObject();
    cJSON *init = cJSON_AddObjectToObject(j, "init");
    cJSON_AddStringToObject(init, "model", f->model);
    cJSON_AddStringToObject(init, "encoder", f->encoder);
    cJSON_AddNumberToObject(j, "size", f->S);
    cJSON_AddNumberToObject(j, "tokens_per_frame", f->P);
    cJSON_AddNumberToObject(j, "minutes", f->minutes);
    cJSON_AddNumberToObject(j, "heldout", f->heldout);
    cJSON_AddStringToObject(j, "fps", f->fps ? f->fps : "source");
    add_inputs(f, j);
    cJSON *s = cJSON_AddObjectToObject(j, "seconds");
    cJSON_AddNumberToObject(s, "ingest", f->t_ingest);
    cJSON_AddNumberToObject(s, "tokenizer", f->t_tokenizer);
    cJSON_AddNumberToObject(s, "encode", f->t_encode);
    cJSON_AddNumberToObject(s, "model", f->t_model);
    cJSON_AddNumberToObject(s, "evaluation", f->t_eval);
    cJSON_AddNumberToObject(s, "total", cli_now_s() - f->t0);
    cJSON *t = cJSON_AddObjectToObject(j, "tokenizer");
    cJSON_AddNumberToObject(t, "steps", (double)f->tokenizer_steps);
    cJSON_AddNumberToObject(t, "lr", atof(TOKENIZER_LR));
    cJSON *m = cJSON_AddObjectToObject(j, "model");
    cJSON_AddNumberToObject(m, "steps", (double)f->model_steps);
    cJSON_AddNumberToObject(m, "segments", f->segments);
    cJSON_AddNumberToObject(m, "seq_frames", L);
    cJSON_AddNumberToObject(m, "window_frames", W);
    cJSON_AddNumberToObject(m, "batch", atoi(LM_BATCH));
    cJSON_AddNumberToObject(m, "lr", atof(LM_LR));
    cJSON_AddItemToObject(j, "candidates", f->candidates);
    f->candidates = NULL;
    cJSON_AddStringToObject(j, "kept", kept);
    snprintf(path, sizeof path, "%s/fit.json", f->tmp);
    return vttt_json_file_write(j, path, NULL) ? 1 : 0;
}

/* The stages up to the scored candidates; *best indexes f->candidates. */
static int stages(fit_ctx *f, int *best) {
    fit_score sc;
    int rc = stage_ingest(f);
    if (rc || evaluate(f, "init", f->model, f->encoder, &sc)) return 1;
    double best_psnr = sc.psnr, now = cli_now_s(), reserve = sc.seconds * (FIT_MAX_SEGMENTS + 0.5) + 1.0;
    double train = f->deadline - now - reserve;
    *best = 0;
    if (train < 4.0)
        return fprintf(stderr, CMD ": the budget of %g minute(s) leaves %.0f s to train after ingest (%.0f s) and "
                       "evaluation (about %.0f s); give more --minutes\n", f->minutes, train, f->t_ingest, reserve),
               1;
    if (stage_tokenizer(f, now + FIT_TOKENIZER_SHARE * train) || stage_encode(f, now + train) ||
        stage_model(f, now + train))
        return 1;
    return evaluate_checkpoints(f, best, &best_psnr) ? 1 : 0;
}

/* DIR.tmp without the work files and the marker becomes DIR. */
static int finish(fit_ctx *f) {
    char marker[FIT_PATH + 96];
    snprintf(marker, sizeof marker, "%s/.vttt-video-fit", f->tmp);
    if (fit_remove_tree(f->work) || remove(marker) || rename(f->tmp, f->out)) {
        fprintf(stderr, CMD ": cannot move %s to %s: %s\n", f->tmp, f->out, strerror(errno));
        return 1;
    }
    return 0;
}

int fit_run(fit_ctx *f) {
    f->t0 = cli_now_s();
    f->budget = 60.0 * f->minutes, f->deadline = f->t0 + f->budget;
    ssize_t k = readlink("/proc/self/exe", f->exe, sizeof f->exe - 1);
    if (k <= 0) return fprintf(stderr, CMD ": cannot find this program (/proc/self/exe): %s\n", strerror(errno)), 1;
    f->exe[k] = '\0';
    int rc = fit_resolve_init(f);
    if (!rc) rc = fit_make_dirs(f);
    if (rc) return rc;
    f->candidates = cJSON_CreateArray();
    int best = 0;
    rc = stages(f, &best);
    const cJSON *b = cJSON_GetArrayItem(f->candidates, best);
    const char *kept = b ? cJSON_GetStringValue(cJSON_GetObjectItem(b, "name")) : NULL;
    char model[2 * FIT_PATH], enc[FIT_PATH + 64];
    if (!rc && kept && strcmp(kept, "init")) {
        snprintf(model, sizeof model, "%s/lm/%s", f->work, kept);
        snprintf(enc, sizeof enc, "%s/enc", f->work);
    } else if (!rc && kept) {
        snprintf(model, sizeof model, "%s", f->model), snprintf(enc, sizeof enc, "%s", f->encoder);
    }
    if (!rc && kept) say(f, "kept %s (held-out PSNR %.2f dB)", kept, cJSON_GetNumberValue(cJSON_GetObjectItem(b, "psnr")));
    if (!rc) rc = !kept || save_pair(f, model, enc) || write_report(f, kept) || finish(f);
    if (rc) fprintf(stderr, CMD ": failed; the work so far and the logs are in %s\n", f->tmp);
    else say(f, "wrote %s: `vttt predict --model %s --video FILE --out OUT`", f->out, f->out);
    return rc;
}
