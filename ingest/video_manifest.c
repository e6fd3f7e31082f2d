/*
 * The ingestion manifest: one JSON object per line and per processed source
 * (fields in ingest.h). This file formats a line from a result and loads
 * the records of earlier runs for resuming; ingest_job.c appends the lines.
 */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "json_file.h"
#include "video_internal.h"

static const char *fit_name(vttt_video_fit f) {
    return f == VTTT_VIDEO_FIT_PAD ? "pad" : f == VTTT_VIDEO_FIT_STRETCH ? "stretch" : "crop";
}

static const char *scaler_name(vttt_video_scaler s) {
    static const char *names[] = {"bicubic", "bilinear", "fast_bilinear", "area", "lanczos", "neighbor"};
    return (unsigned)s <= VTTT_VIDEO_SCALER_POINT ? names[s] : "bicubic";
}

void manifest_params_key(const vttt_video_params *p, char *out, size_t n) {
    snprintf(out, n, "size=%d fps=%d/%d fit=%s scaler=%s start=%.6g duration=%.6g", p->size, p->fps_num,
             p->fps_den, fit_name(p->fit), scaler_name(p->scaler), p->start_s,
             p->duration_s > 0 ? p->duration_s : 0.0);
}

/* "fps": 29.97, "fps_rational": "30000/1001", or nulls when unknown. */
static void add_rational(cJSON *o, const char *name, const char *rname, int num, int den) {
    char q[48];
    snprintf(q, sizeof q, "%d/%d", num, den);
    if (num > 0 && den > 0) {
        cJSON_AddNumberToObject(o, name, round((double)num / den * 1e6) / 1e6);
        cJSON_AddStringToObject(o, rname, q);
    } else {
        cJSON_AddNullToObject(o, name);
        cJSON_AddNullToObject(o, rname);
    }
}

static void add_string_or_null(cJSON *o, const char *name, const char *s) {
    if (s && *s) cJSON_AddStringToObject(o, name, s);
    else cJSON_AddNullToObject(o, name);
}

char *manifest_line(const ingest_result *r, const vttt_video_params *p) {
    char key[256];
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    manifest_params_key(p, key, sizeof key);
    cJSON_AddStringToObject(o, "source", r->source);
    add_string_or_null(o, "shard", r->shard);
    cJSON_AddStringToObject(o, "status", r->ok ? "ok" : "error");
    add_string_or_null(o, "error", r->ok ? NULL : r->error);
    cJSON_AddBoolToObject(o, "partial", r->partial);
    cJSON_AddNumberToObject(o, "frames", (double)r->frames);
    cJSON_AddNumberToObject(o, "duration", round(r->duration_s * 1e6) / 1e6);
    add_rational(o, "fps", "fps_rational", r->fps_num, r->fps_den);
    cJSON_AddNumberToObject(o, "size", p->size);
    cJSON_AddStringToObject(o, "fit", fit_name(p->fit));
    cJSON_AddStringToObject(o, "params", key);
    if (r->have_info) {
        cJSON_AddStringToObject(o, "src_codec", r->info.codec);
        cJSON_AddNumberToObject(o, "src_width", r->info.width);
        cJSON_AddNumberToObject(o, "src_height", r->info.height);
        add_rational(o, "src_fps", "src_fps_rational", r->info.fps_num, r->info.fps_den);
        if (r->info.duration_s >= 0) cJSON_AddNumberToObject(o, "src_duration", r->info.duration_s);
        else cJSON_AddNullToObject(o, "src_duration");
    }
    cJSON_AddStringToObject(o, "hwaccel", r->info.hw ? "cuda" : "none");
    cJSON_AddNumberToObject(o, "seconds", round(r->seconds * 1e3) / 1e3);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---- loading earlier runs ----------------------------------------------- */

static int add_record(manifest_index *ix, const char *source, const char *shard, const char *params, int ok,
                      int64_t frames) {
    if (ix->n == ix->cap) {
        size_t cap = ix->cap ? 2 * ix->cap : 64;
        manifest_record *r = realloc(ix->r, cap * sizeof *r);
        if (!r) return VTTT_ENOMEM;
        ix->r = r;
        ix->cap = cap;
    }
    manifest_record *m = &ix->r[ix->n];
    m->source = strdup(source);
    m->shard = strdup(shard ? shard : "");
    m->params = strdup(params ? params : "");
    m->ok = ok;
    m->frames = frames;
    m->seq = ix->n;
    if (!m->source || !m->shard || !m->params) {
        free(m->source), free(m->shard), free(m->params);
        return VTTT_ENOMEM;
    }
    ix->n++;
    return 0;
}

static const char *json_str(const cJSON *o, const char *name) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* One manifest line; malformed lines (a line cut short by a crash, a
 * frame count that is not a whole number >= 0) are skipped: their sources
 * are redone. */
static int load_line(manifest_index *ix, const char *line) {
    cJSON *o = cJSON_Parse(line);
    if (!o) return 0;
    const char *source = json_str(o, "source"), *status = json_str(o, "status");
    int64_t frames = vttt_json_count(o, "frames");
    int ret = 0;
    if (source && status && frames >= 0)
        ret = add_record(ix, source, json_str(o, "shard"), json_str(o, "params"), !strcmp(status, "ok"), frames);
    cJSON_Delete(o);
    return ret;
}

/* Opens a manifest for reading: a regular file only (a FIFO in its place
 * must not block the job). */
static FILE *open_manifest_file(const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        FILE *f = fdopen(fd, "r");
        if (f) return f;
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static int load_file(manifest_index *ix, const char *path, const vttt_logger *lg) {
    FILE *f = open_manifest_file(path);
    if (!f) {
        vttt_log(lg, VTTT_LOG_WARNING, "%s: cannot read the manifest (not a readable regular file); its sources "
                 "will be redone", path);
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    int ret = 0;
    while (ret == 0 && getline(&line, &cap, f) > 0) ret = load_line(ix, line);
    free(line);
    fclose(f);
    return ret;
}

static int is_manifest_name(const char *name) {
    size_t n = strlen(name);
    return !strncmp(name, "manifest", 8) && n > 6 && !strcmp(name + n - 6, ".jsonl");
}

static int cmp_record(const void *a, const void *b) {
    const manifest_record *x = a, *y = b;
    int c = strcmp(x->source, y->source);
    return c ? c : (x->seq < y->seq ? -1 : x->seq > y->seq);
}

int manifest_index_load(manifest_index *ix, const char *dir, const vttt_logger *lg) {
    memset(ix, 0, sizeof *ix);
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int ret = 0;
    while (ret == 0 && (e = readdir(d))) {
        if (!is_manifest_name(e->d_name)) continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(n);
        if (!path) {
            ret = VTTT_ENOMEM;
            break;
        }
        snprintf(path, n, "%s/%s", dir, e->d_name);
        ret = load_file(ix, path, lg);
        free(path);
    }
    closedir(d);
    if (ix->n) qsort(ix->r, ix->n, sizeof *ix->r, cmp_record);
    return ret;
}

/* The record that decides a source's fate under these params: the latest
 * "ok" one if any, else the latest one; NULL if none matches. */
const manifest_record *manifest_index_find(const manifest_index *ix, const char *source, const char *params) {
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {  /* first record of this source */
        size_t mid = (lo + hi) / 2;
        if (strcmp(ix->r[mid].source, source) < 0) lo = mid + 1;
        else hi = mid;
    }
    const manifest_record *best = NULL;
    for (size_t i = lo; i < ix->n && !strcmp(ix->r[i].source, source); i++) {
        if (strcmp(ix->r[i].params, params)) continue;
        if (!best || ix->r[i].ok || !best->ok) best = &ix->r[i];
    }
    return best;
}

void manifest_index_free(manifest_index *ix) {
    for (size_t i = 0; i < ix->n; i++) free(ix->r[i].source), free(ix->r[i].shard), free(ix->r[i].params);
    free(ix->r);
    memset(ix, 0, sizeof *ix);
}
