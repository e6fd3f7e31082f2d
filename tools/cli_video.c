/* `vttt video fit`: fine-tunes a video model and its tokenizer on a
 * user's clips within a wall-clock budget and keeps the pair that predicts
 * the held-out frames best (docs/video_fit.md). The stages run as child
 * processes of this binary (video_fit_child.c): ingest, tokenizer
 * training, encoding, model training in segments (each ends with a
 * checkpoint, a candidate); the held-out evaluation runs here
 * (video_fit_eval.c). Everything is written under DIR.tmp, renamed to DIR
 * at the end. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "encoder_train.h"
#include "infer.h"
#include "json_file.h"
#include "lm.h"
#include "video_fit.h"

#define CMD "vttt video fit"
#define MARKER ".vttt-video-fit"  /* in DIR.tmp: a leftover of ours, safe to remove */

static void usage(FILE *f) {
    fprintf(f,
            "usage: vttt video fit --out DIR [--minutes M] [--size S] [--init MODELDIR] [--heldout F] [--fps R]\n"
            "                      [--threads N] FILES...\n"
            "  fine-tunes a video model and its tokenizer on FILES within M minutes of wall time and keeps the\n"
            "  pair that predicts held-out frames best. DIR gets config.json + model.safetensors, encoder/\n"
            "  (the tokenizer), fit.json (what was done) and logs/: `vttt predict --model DIR` and\n"
            "  `vttt serve --model DIR` take it as it is.\n"
            "  --minutes M (10)   the whole command's budget; the stages are scaled to fit\n"
            "  --init MODELDIR    the model to start from, its tokenizer in MODELDIR/encoder (default: the\n"
            "                     shipped model for --size)\n"
            "  --size S           frame size (default: the init tokenizer's; must equal it)\n"
            "  --heldout F (0.2)  the last F of each clip's frames are never trained on; candidates are\n"
            "                     scored on them (next-frame PSNR, at most %d frames per clip)\n"
            "  --fps R            ingest at R frames/s (default: every frame of the source)\n"
            "  --threads N        threads of every stage\n"
            "stages: ingest; tokenizer fine-tuning (%.0f%% of the training time); encoding and model\n"
            "fine-tuning (the rest, checkpoints at up to %d points); evaluation of the initial pair and each\n"
            "checkpoint on the held-out tails; the best is kept. DIR must not exist.\n",
            FIT_EVAL_FRAMES, 100.0 * FIT_TOKENIZER_SHARE, FIT_MAX_SEGMENTS);
}



/* Options into f; 0, or the exit status of a usage error. */
static int parse(fit_ctx *f, int argc, char **argv) {
    double d;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--out") && v) f->out = v, i++;
        else if (!strcmp(a, "--init") && v) f->init = v, i++;
        else if (!strcmp(a, "--fps") && v) f->fps = v, i++;
        else if (!strcmp(a, "--minutes")) { if (cli_num(CMD, a, v, 0.05, 1e6, &f->minutes)) return 2; i++; }
        else if (!strcmp(a, "--heldout")) { if (cli_num(CMD, a, v, 0.01, 0.9, &f->heldout)) return 2; i++; }
        else if (!strcmp(a, "--size")) { if (cli_num(CMD, a, v, 8, 4096, &d)) return 2; f->size = (int)d, i++; }
        else if (!strcmp(a, "--threads")) { if (cli_num(CMD, a, v, 1, 1024, &d)) return 2; f->threads = (int)d, i++; }
        else if (a[0] == '-' && a[1]) return fprintf(stderr, CMD ": unknown option '%s'; see --help\n", a), 2;
        else if (f->n < FIT_MAX_FILES) f->files[f->n++] = a;
        else return fprintf(stderr, CMD ": more than %d files\n", FIT_MAX_FILES), 2;
    }
    if (!f->out || !f->n) return fprintf(stderr, CMD ": --out DIR and at least one video file are required\n"), 2;
    if (strlen(f->out) > FIT_PATH / 2) return fprintf(stderr, CMD ": --out is too long\n"), 2;
    for (int i = 0; i < f->n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(f->files[i], f->files[j]))
                return fprintf(stderr, CMD ": %s is given twice\n", f->files[i]), 2;
    return 0;
}

/* The initial pair: loads it once to check it (and learn the frame size
 * and tokens per frame). */
int fit_resolve_init(fit_ctx *f) {
    const char *model = f->init, *encoder = NULL;
    int rc = cli_video_dirs(CMD, &model, &encoder, f->size, f->model, f->encoder, sizeof f->model);
    if (rc) return rc;
    if (model != f->model) snprintf(f->model, sizeof f->model, "%s", model);
    vttt_predictor *p = NULL;
    vttt_logger quiet = {NULL, NULL, -1};
    int err = vttt_predictor_open(&p, f->model, f->encoder, &quiet);
    if (err) {
        fprintf(stderr, CMD ": --init %s: cannot load the video model and its tokenizer %s (%s); give a video "
                "model directory (config.json, model.safetensors, encoder/)\n", f->model, f->encoder,
                vttt_strerror(err));
        return 1;
    }
    f->S = vttt_predictor_frame_size(p), f->P = vttt_predictor_tokens_per_frame(p);
    vttt_predictor_close(&p);
    if (f->size && f->size != f->S) {
        fprintf(stderr, CMD ": --size %d differs from the frame size %d of the model %s (its tokens per frame "
                "are fixed); leave --size out or pick a model of that size\n", f->size, f->S, f->model);
        return 2;
    }
    return 0;
}

static int make_dir(const char *path) {
    if (mkdir(path, 0777) == 0) return 0;
    fprintf(stderr, CMD ": %s: cannot create the directory: %s\n", path, strerror(errno));
    return -1;
}

/* DIR.tmp, fresh (a leftover of an earlier fit is removed; anything else
 * there is an error), with work/ and logs/. */
int fit_make_dirs(fit_ctx *f) {
    char marker[FIT_PATH + 32];
    struct stat st;
    if (stat(f->out, &st) == 0)
        return fprintf(stderr, CMD ": %s exists; give a new --out (the result is written whole or not at all)\n",
                       f->out), 2;
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp", f->out);
    snprintf(marker, sizeof marker, "%s/" MARKER, f->tmp);
    if (stat(f->tmp, &st) == 0) {
        if (access(marker, F_OK) != 0)
            return fprintf(stderr, CMD ": %s exists and is not a leftover of vttt video fit; remove it or give "
                           "another --out\n", f->tmp), 2;
        if (fit_remove_tree(f->tmp))
            return fprintf(stderr, CMD ": cannot remove the leftover %s: %s\n", f->tmp, strerror(errno)), 1;
    }
    snprintf(f->work, sizeof f->work, "%s/work", f->tmp);
    snprintf(f->logs, sizeof f->logs, "%s/logs", f->tmp);
    if (make_dir(f->tmp) || make_dir(f->work) || make_dir(f->logs)) return 1;
    FILE *m = fopen(marker, "w");
    if (!m) return fprintf(stderr, CMD ": cannot write %s: %s\n", marker, strerror(errno)), 1;
    fclose(m);
    return 0;
}


int cli_video(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "fit")) {
        fprintf(stderr, "vttt video: unknown subcommand '%s'; `vttt video --help`\n", argv[1]);
        return 2;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout), 0;
    fit_ctx *f = calloc(1, sizeof *f);
    if (!f) return 1;
    f->minutes = 10.0, f->heldout = 0.2;
    int rc = parse(f, argc - 1, argv + 1);
    if (!rc) rc = fit_run(f);
    free(f->clips);
    cJSON_Delete(f->candidates);
    free(f);
    return rc;
}
