/*
 * metrics.jsonl: one JSON object per line, flushed line by line. Floats
 * are written with 9 significant digits, enough to give back the same
 * fp32 value, so two runs' lines can be compared exactly.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "ingest.h"
#include "train_internal.h"

#define METRICS_MAX_BYTES ((size_t)1 << 32) /* a line per step: far above any run */

/* Keeps the complete lines of buf (n) whose "step" is <= keep_step;
 * returns the new length. */
static size_t filter_lines(char *buf, size_t n, int64_t keep_step) {
    size_t out = 0, i = 0;
    while (i < n) {
        char *nl = memchr(buf + i, '\n', n - i);
        if (!nl) break; /* a line cut short by a kill */
        size_t len = (size_t)(nl - (buf + i)) + 1;
        *nl = '\0';
        cJSON *j = cJSON_Parse(buf + i);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
        int keep = cJSON_IsNumber(s) && s->valuedouble <= (double)keep_step;
        cJSON_Delete(j);
        *nl = '\n';
        if (keep) memmove(buf + out, buf + i, len), out += len;
        i += len;
    }
    return out;
}

/* Rewrites path without the lines of steps after keep_step. A file that
 * cannot be read whole is an error, never rewritten from a part. */
static int truncate_after(const char *path, int64_t keep_step, const vttt_logger *lg) {
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) return VTTT_OK;
    char *buf = NULL;
    size_t n = 0;
    int err = vttt_file_read_all(path, METRICS_MAX_BYTES, &buf, &n, lg);
    if (!err) err = vttt_file_write_atomic(path, buf, filter_lines(buf, n, keep_step), lg);
    free(buf);
    return err;
}

/* One kept line into the history. */
static void history_line(train_metrics_history *h, const cJSON *j) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step"), *v = cJSON_GetObjectItemCaseSensitive(j, "val_loss");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "time_s");
    if (!cJSON_IsNumber(s)) return;
    if (cJSON_IsNumber(v) && (h->best_step < 0 || v->valuedouble < h->best_val))
        h->best_val = (float)v->valuedouble, h->best_step = (int64_t)s->valuedouble;
    if (cJSON_IsNumber(t) && t->valuedouble > h->time_s) h->time_s = t->valuedouble;
}

int train_metrics_history_read(const char *run, train_metrics_history *h, const vttt_logger *lg) {
    char path[4096], *buf = NULL;
    size_t n = 0;
    struct stat st;
    *h = (train_metrics_history){.best_val = NAN, .best_step = -1, .time_s = 0.0};
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    if (stat(path, &st) != 0 && errno == ENOENT) return VTTT_OK;
    int err = vttt_file_read_all(path, METRICS_MAX_BYTES, &buf, &n, lg);
    for (size_t i = 0; !err && i < n;) {
        char *nl = memchr(buf + i, '\n', n - i);
        if (!nl) break;
        *nl = '\0';
        cJSON *j = cJSON_Parse(buf + i);
        history_line(h, j);
        cJSON_Delete(j);
        i = (size_t)(nl - buf) + 1;
    }
    free(buf);
    return err;
}

int train_metrics_open(FILE **out, const char *run, int64_t keep_step, const vttt_logger *lg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    int err = keep_step >= 0 ? truncate_after(path, keep_step, lg) : VTTT_OK;
    if (err) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot rewrite the metrics from step %lld on", path, (long long)keep_step);
        return err;
    }
    if (!(*out = fopen(path, keep_step >= 0 ? "a" : "w"))) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot open for writing: %s", path, strerror(errno));
        return VTTT_EIO;
    }
    return VTTT_OK;
}

void train_metrics_step(FILE *f, const vttt_train_report *r) {
    fprintf(f, "{\"step\":%lld,\"loss\":%.9g,\"lr\":%.9g,\"ttt_base_lr\":%.9g,\"grad_norm\":%.9g,\"tokens\":%lld,"
            "\"tokens_per_s\":%.1f,\"time_s\":%.3f}\n", (long long)r->step, (double)r->loss, (double)r->lr,
            (double)r->ttt_base_lr, (double)r->grad_norm, (long long)r->tokens, r->tokens_per_s, r->time_s);
    fflush(f);
}

void train_metrics_eval(FILE *f, const vttt_train_report *r) {
    fprintf(f, "{\"step\":%lld,\"val_loss\":%.9g,\"val_ppl\":%.9g}\n", (long long)r->step, (double)r->val_loss,
            (double)r->val_ppl);
    fflush(f);
}
