/*
 * Checkpoint directories in a run directory: run/step-NNNNNNNN, each a
 * model directory with optimizer.safetensors and trainer_state.json
 * beside it. A save fills run/.step-NNNNNNNN.tmp and renames it into
 * place, so a directory named step-* is always complete: the newest one is
 * the checkpoint to resume from, whatever moment a run was killed at.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_internal.h"

#define CKPT_PREFIX "step-"

/* The step of a checkpoint directory name "step-<digits>", else -1. */
static int64_t name_step(const char *name) {
    size_t k = strlen(CKPT_PREFIX);
    if (strncmp(name, CKPT_PREFIX, k) || !name[k]) return -1;
    int64_t s = 0;
    for (const char *c = name + k; *c; c++) {
        if (*c < '0' || *c > '9' || s > (INT64_MAX - 9) / 10) return -1;
        s = s * 10 + (*c - '0');
    }
    return s;
}

int64_t train_ckpt_latest(const char *run, char *dir, size_t n) {
    DIR *d = opendir(run);
    if (!d) return -1;
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t s = name_step(e->d_name);
        if (s > best) best = s;
    }
    closedir(d);
    if (best >= 0 && dir) snprintf(dir, n, "%s/" CKPT_PREFIX "%08lld", run, (long long)best);
    return best;
}

/* Removes a directory of plain files (a checkpoint). */
static void remove_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(path);
}

static int sync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return VTTT_EIO;
    int rc = fsync(fd);
    close(fd);
    return rc ? VTTT_EIO : VTTT_OK;
}

/* Removes leftovers (.step-*: temporary or half-removed directories) and
 * all but the newest keep checkpoints. */
static void prune(const char *run, int keep) {
    DIR *d = opendir(run);
    if (!d) return;
    int64_t *steps = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d))) {
        int64_t s = name_step(e->d_name);
        if (!strncmp(e->d_name, "." CKPT_PREFIX, strlen(CKPT_PREFIX) + 1)) {
            snprintf(p, sizeof p, "%s/%s", run, e->d_name);
            remove_dir(p);
            continue;
        }
        if (s < 0) continue;
        if (n == cap) {
            int64_t *t = realloc(steps, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *t);
            if (!t) break;
            steps = t;
        }
        steps[n++] = s;
    }
    closedir(d);
    for (int i = 0; i < n; i++) { /* remove those with keep or more newer ones */
        int newer = 0;
        for (int k = 0; k < n; k++) newer += steps[k] > steps[i];
        if (newer < keep) continue;
        /* renamed first: a removal cut short leaves no step-* directory
         * with files missing, only a leftover for the next prune */
        char gone[4096];
        snprintf(p, sizeof p, "%s/" CKPT_PREFIX "%08lld", run, (long long)steps[i]);
        snprintf(gone, sizeof gone, "%s/." CKPT_PREFIX "%08lld.old", run, (long long)steps[i]);
        if (rename(p, gone) == 0) remove_dir(gone);
    }
    free(steps);
}

/* run/latest -> name, replaced atomically (a convenience for users; resuming
 * scans the directory instead). */
static void point_latest(const char *run, const char *name) {
    char tmp[4096], link[4096];
    snprintf(tmp, sizeof tmp, "%s/.latest.tmp", run);
    snprintf(link, sizeof link, "%s/latest", run);
    unlink(tmp);
    if (symlink(name, tmp) == 0 && rename(tmp, link) != 0) unlink(tmp);
}

void train_ckpt_status(const char *run, char *buf, size_t n) {
    int64_t last = train_ckpt_latest(run, NULL, 0);
    if (last >= 0) snprintf(buf, n, "the last checkpoint, %s/" CKPT_PREFIX "%08lld, is intact", run, (long long)last);
    else snprintf(buf, n, "there is no checkpoint in %s yet", run);
}

int train_ckpt_write(const char *run, int64_t step, train_ckpt_fill_fn fill, void *user, int keep, char *dir,
                     size_t n, const vttt_logger *lg) {
    char name[64], tmp[4096];
    snprintf(name, sizeof name, CKPT_PREFIX "%08lld", (long long)step);
    snprintf(dir, n, "%s/%s", run, name);
    struct stat sb;
    if (stat(dir, &sb) == 0) return VTTT_OK; /* this step is saved already */
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", run, name);
    remove_dir(tmp);
    int err = VTTT_OK;
    if (mkdir(tmp, 0777) != 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot create the checkpoint directory: %s", tmp, strerror(errno));
        err = VTTT_EIO;
    }
    if (!err) err = fill(user, tmp);
    if (!err && (sync_dir(tmp) || rename(tmp, dir) != 0 || sync_dir(run))) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot move the checkpoint into place: %s", dir, strerror(errno));
        err = VTTT_EIO;
    }
    if (err) {
        remove_dir(tmp);
        char last[4200];
        train_ckpt_status(run, last, sizeof last);
        vttt_log(lg, VTTT_LOG_ERROR, "%s: checkpoint of step %lld not written (%s); %s", run, (long long)step,
                 vttt_strerror(err), last);
        return err;
    }
    point_latest(run, name);
    prune(run, keep);
    return VTTT_OK;
}

typedef struct {
    const vttt_model *m;
    const train_adamw *o;
    const train_state *s;
    const train_data *d;
    const vttt_logger *lg;
} lm_ckpt;

int train_tensors_finite(const vttt_model_tensor *t, int n, const vttt_logger *lg) {
    for (int i = 0; i < n; i++) {
        for (int64_t j = 0; j < t[i].numel; j++) {
            if (isfinite(t[i].data[j])) continue;
            vttt_log(lg, VTTT_LOG_ERROR, "tensor %s holds a non-finite value (%g at index %lld): not saving it",
                     t[i].name, (double)t[i].data[j], (long long)j);
            return VTTT_ENAN;
        }
    }
    return VTTT_OK;
}

/* The language model's checkpoint files. */
static int lm_fill(void *user, const char *tmp) {
    const lm_ckpt *c = user;
    char path[4200];
    int nt = 0;
    const vttt_model_tensor *t = vttt_model_tensors(c->m, &nt);
    int err = train_tensors_finite(t, nt, c->lg);
    if (!err) err = vttt_model_save(c->m, tmp);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
    if (!err) err = train_adamw_save(c->o, path);
    snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
    if (!err) err = train_state_write(c->s, c->d, path, c->lg);
    return err;
}

int train_ckpt_save(const char *run, const vttt_model *m, const train_adamw *o, const train_state *s,
                    const train_data *d, int keep, char *dir, size_t n, const vttt_logger *lg) {
    lm_ckpt c = {m, o, s, d, lg};
    return train_ckpt_write(run, s->step, lm_fill, &c, keep, dir, n, lg);
}
