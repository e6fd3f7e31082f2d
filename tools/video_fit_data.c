/* `vttt video fit`'s frames: the clips `vttt ingest video` made of the
 * input files, each cut into the part trained on and the held-out tail,
 * and the training parts written as shards of their own (the tokenizer
 * and the model never see a tail frame). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder_train.h"
#include "ingest.h"
#include "video_fit.h"

#define CMD "vttt video fit"
#define FIT_MIN_TRAIN 4 /* frames of a clip trained on at least */

/* The shard in frames_dir ingested from file, and its frame count; 0
 * when found. */
static int find_shard(char **paths, int n, const char *file, fit_clip *c) {
    for (int i = 0; i < n; i++) {
        vttt_frame_shard *s = NULL;
        vttt_logger quiet = {NULL, NULL, -1};
        if (vttt_frame_shard_open(&s, paths[i], &quiet)) continue;
        const vttt_frame_shard_info *info = vttt_frame_shard_get_info(s);
        int same = !strcmp(info->source, file);
        if (same) snprintf(c->shard, sizeof c->shard, "%s", paths[i]), c->frames = info->frame_count;
        vttt_frame_shard_close(&s);
        if (same) return 0;
    }
    return -1;
}

/* Where the tail starts: the last `heldout` of the frames, at least one;
 * -1 when the clip is too short to keep FIT_MIN_TRAIN frames besides. */
static int64_t tail_start(int64_t frames, double heldout) {
    int64_t h = (int64_t)ceil(heldout * (double)frames - 1e-9);
    if (h < 1) h = 1;
    return frames - h >= FIT_MIN_TRAIN ? frames - h : -1;
}

int fit_clips_find(const char *frames_dir, const char *const *files, int n, double heldout, int size,
                   const char *log, fit_clip *clips) {
    char **paths = NULL;
    int np = 0, bad = 0;
    const char *arg[1] = {frames_dir};
    vttt_logger quiet = {NULL, NULL, -1}; /* no shards at all: each file is named below */
    if (vttt_encoder_frames_list(arg, 1, &paths, &np, &quiet)) np = 0, paths = NULL;
    for (int i = 0; i < n; i++) {
        fit_clip *c = &clips[i];
        memset(c, 0, sizeof *c);
        c->file = files[i];
        if (find_shard(paths, np, files[i], c) || c->frames == 0) {
            fprintf(stderr, CMD ": %s: no frames (not a video FFmpeg can read, or empty; see %s)\n", files[i], log);
            bad = 1;
            continue;
        }
        int64_t t = tail_start(c->frames, heldout);
        if (t < 0) {
            fprintf(stderr, CMD ": %s: %lld frames at %dx%d, too short to hold out the last %g of them and train on "
                    "%d or more (give a longer clip, or a smaller --heldout)\n", files[i], (long long)c->frames, size,
                    size, heldout, FIT_MIN_TRAIN);
            bad = 1;
        }
        c->train_frames = t;
    }
    vttt_encoder_frames_free(&paths, np);
    return bad ? -1 : 0;
}

/* Copies frames [0, c->train_frames) of the clip's shard into path. */
int fit_clip_write_train(const fit_clip *c, const char *path) {
    vttt_frame_shard *in = NULL;
    vttt_frame_shard_writer *w = NULL;
    int err = vttt_frame_shard_open(&in, c->shard, NULL);
    if (err) return err;
    vttt_frame_shard_info info = *vttt_frame_shard_get_info(in);
    size_t fb = vttt_frame_shard_frame_bytes(&info);
    uint8_t *buf = malloc(64 * fb);
    err = buf ? vttt_frame_shard_writer_open(&w, path, &info, NULL) : VTTT_ENOMEM;
    for (int64_t i = 0; !err && i < c->train_frames; i += 64) {
        int64_t k = c->train_frames - i < 64 ? c->train_frames - i : 64;
        err = vttt_frame_shard_read(in, i, k, buf);
        if (!err) err = vttt_frame_shard_writer_write(w, buf, k);
    }
    if (w) err ? vttt_frame_shard_writer_abort(&w) : (void)(err = vttt_frame_shard_writer_finish(&w, 0));
    if (err) fprintf(stderr, CMD ": cannot write %s (%s)\n", path, vttt_strerror(err));
    free(buf);
    vttt_frame_shard_close(&in);
    return err;
}
