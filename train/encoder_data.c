/*
 * The frame tokenizer's data: frame shards named on the command line
 * (directories expand to their *.vfr in name order), each split into
 * training frames and its last val_frames held out.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "encoder_train_internal.h"

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Appends a copy of s to the list. */
static int push(char ***list, int *n, int *cap, const char *s) {
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 16;
        char **l = realloc(*list, (size_t)c * sizeof *l);
        if (!l) return VTTT_ENOMEM;
        *list = l, *cap = c;
    }
    if (!((*list)[*n] = strdup(s))) return VTTT_ENOMEM;
    (*n)++;
    return VTTT_OK;
}

/* The *.vfr of dir, sorted, appended to the list. */
static int push_dir(char ***list, int *n, int *cap, const char *dir, const vttt_logger *lg) {
    DIR *d = opendir(dir);
    if (!d) return VTTT_EIO;
    int first = *n, err = VTTT_OK;
    struct dirent *e;
    char path[4096];
    while (!err && (e = readdir(d))) {
        if (!ends_with(e->d_name, ".vfr") || e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        err = push(list, n, cap, path);
    }
    closedir(d);
    if (!err && *n == first) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: no frame shards (*.vfr) in this directory; `vttt ingest video` writes them",
                 dir);
        return VTTT_EIO;
    }
    if (!err) qsort(*list + first, (size_t)(*n - first), sizeof **list, cmp_str);
    return err;
}

void vttt_encoder_frames_free(char ***paths, int n) {
    if (!paths || !*paths) return;
    for (int i = 0; i < n; i++) free((*paths)[i]);
    free(*paths);
    *paths = NULL;
}

int vttt_encoder_frames_list(const char *const *args, int n_args, char ***paths, int *n, const vttt_logger *lg) {
    char **list = NULL;
    int cnt = 0, cap = 0, err = VTTT_OK;
    for (int i = 0; i < n_args && !err; i++) {
        struct stat sb;
        if (stat(args[i], &sb) != 0) {
            vttt_log(lg, VTTT_LOG_ERROR, "%s: no such frame shard or directory", args[i]);
            err = VTTT_EIO;
        } else if (S_ISDIR(sb.st_mode)) {
            err = push_dir(&list, &cnt, &cap, args[i], lg);
        } else {
            err = push(&list, &cnt, &cap, args[i]);
        }
    }
    if (!err && cnt > VTTT_ENCODER_TRAIN_MAX_SHARDS) {
        vttt_log(lg, VTTT_LOG_ERROR, "%d frame shards: at most %d", cnt, VTTT_ENCODER_TRAIN_MAX_SHARDS);
        err = VTTT_EINVAL;
    }
    if (err) {
        vttt_encoder_frames_free(&list, cnt);
        return err;
    }
    *paths = list, *n = cnt;
    return VTTT_OK;
}

/* Opens shard i and checks its frames against the first shard's size. */
static int open_one(enc_data *d, int i, const vttt_logger *lg) {
    int err = vttt_frame_shard_open(&d->sh[i], d->paths[i], lg);
    if (err) return err;
    const vttt_frame_shard_info *in = vttt_frame_shard_get_info(d->sh[i]);
    if (in->channels != 3 || in->width != in->height || (i > 0 && in->width != d->S)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: frames are %dx%dx%d; the tokenizer needs square RGB frames%s%d", d->paths[i],
                 in->width, in->height, in->channels, i ? " of the first shard's size " : "", d->S);
        return VTTT_EINVAL;
    }
    d->S = in->width;
    if (in->frame_count <= d->val_frames) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: %lld frames, not more than the %d held out (--val-frames)", d->paths[i],
                 (long long)in->frame_count, d->val_frames);
        return VTTT_EINVAL;
    }
    d->frames[i] = in->frame_count;
    d->train_off[i + 1] = d->train_off[i] + in->frame_count - d->val_frames;
    d->val_off[i + 1] = d->val_off[i] + d->val_frames;
    return VTTT_OK;
}

int enc_data_open(enc_data *d, char **paths, int n, int val_frames, const vttt_logger *lg) {
    memset(d, 0, sizeof *d);
    d->n = n, d->paths = paths, d->val_frames = val_frames;
    d->sh = calloc((size_t)n + 1, sizeof *d->sh);
    d->frames = calloc((size_t)n + 1, sizeof *d->frames);
    d->train_off = calloc((size_t)n + 1, sizeof *d->train_off);
    d->val_off = calloc((size_t)n + 1, sizeof *d->val_off);
    if (!d->sh || !d->frames || !d->train_off || !d->val_off) {
        enc_data_close(d);
        d->paths = NULL, d->n = 0;
        return VTTT_ENOMEM;
    }
    int err = n > 0 ? VTTT_OK : VTTT_EINVAL;
    if (err) vttt_log(lg, VTTT_LOG_ERROR, "no frame shards given (--frames)");
    for (int i = 0; i < n && !err; i++) err = open_one(d, i, lg);
    if (err) {
        enc_data_close(d);
        d->paths = NULL, d->n = 0; /* the caller still owns the list */
    }
    return err;
}

void enc_data_close(enc_data *d) {
    for (int i = 0; d->sh && i < d->n; i++) vttt_frame_shard_close(&d->sh[i]);
    free(d->sh), free(d->frames), free(d->train_off), free(d->val_off);
    d->sh = NULL, d->frames = d->train_off = d->val_off = NULL;
}

int64_t enc_data_train(const enc_data *d) { return d->train_off[d->n]; }
int64_t enc_data_val(const enc_data *d) { return d->val_off[d->n]; }

int enc_data_read_pair(const enc_data *d, int val, int64_t i, int gap, uint8_t *prev, int *have_prev, uint8_t *out) {
    const int64_t *off = val ? d->val_off : d->train_off;
    if (i < 0 || i >= off[d->n]) return VTTT_EINVAL;
    int s = 0;
    while (off[s + 1] <= i) s++;
    int64_t local = i - off[s] + (val ? d->frames[s] - d->val_frames : 0);
    int err = vttt_frame_shard_read(d->sh[s], local, 1, out);
    if (have_prev) *have_prev = 0;
    if (!err && prev && gap > 0 && local >= gap) {
        err = vttt_frame_shard_read(d->sh[s], local - gap, 1, prev);
        if (have_prev) *have_prev = !err;
    }
    return err;
}

int enc_data_read(const enc_data *d, int val, int64_t i, uint8_t *out) {
    return enc_data_read_pair(d, val, i, 0, NULL, NULL, out);
}
