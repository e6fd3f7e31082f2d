/* The meta.json beside token shards, read strictly (see data_meta.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_meta.h"
#include "json_file.h"

#define META_HINT "(meta.json describes the token shards beside it; write it again with `vttt ingest text` or `vttt encoder encode`)"

static int bad(const vttt_logger *lg, const char *name, const char *what) {
    vttt_log(lg, VTTT_LOG_ERROR, "%s: %s %s", name, what, META_HINT);
    return VTTT_EFORMAT;
}

/* The optional member key as a whole number in lo..hi: 0 and *v set, 1
 * when absent (*v untouched), -1 when present but not such a number. */
static int whole(const cJSON *j, const char *key, int64_t lo, int64_t hi, int *v) {
    if (!cJSON_GetObjectItemCaseSensitive(j, key)) return 1;
    int64_t k = vttt_json_count(j, key);
    if (k < lo || k > hi) return -1;
    *v = (int)k;
    return 0;
}

/* "fps": "N/D" with N >= 0 and D >= 1, both whole numbers. */
static int parse_fps(vttt_data_meta *m, const cJSON *j) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "fps");
    if (!f) return 0;
    const char *s = cJSON_GetStringValue(f);
    long a, b;
    int used = 0;
    if (!s || sscanf(s, "%ld/%ld%n", &a, &b, &used) != 2 || s[used] || a < 0 || b < 1 || a > INT32_MAX ||
        b > INT32_MAX || !strchr("0123456789", s[0]))
        return -1;
    m->fps_num = (int)a, m->fps_den = (int)b;
    return 0;
}

int vttt_data_meta_parse(vttt_data_meta *m, const char *buf, size_t n, const char *name, const vttt_logger *lg) {
    memset(m, 0, sizeof *m);
    m->eot = -1;
    cJSON *j = NULL;
    int err = vttt_json_parse(&j, buf, n, name, META_HINT, lg);
    if (err) return err;
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "kind"));
    int has_kind = cJSON_GetObjectItemCaseSensitive(j, "kind") != NULL;
    if (!cJSON_IsObject(j)) err = bad(lg, name, "is not a JSON object");
    else if (whole(j, "vocab_size", 1, INT32_MAX, &m->vocab_size))
        err = bad(lg, name, "has no \"vocab_size\" (a whole number from 1)");
    else if (whole(j, "eot", 0, m->vocab_size - 1, &m->eot) < 0)
        err = bad(lg, name, "has an \"eot\" that is not one of the ids 0..vocab_size-1");
    else if (has_kind && (!kind || (strcmp(kind, "video") && strcmp(kind, "text"))))
        err = bad(lg, name, "has a \"kind\" other than \"video\" or \"text\"");
    else if (whole(j, "tokens_per_frame", 1, VTTT_DATA_META_MAX_TPF, &m->tokens_per_frame) < 0 ||
             (kind && !strcmp(kind, "video") && m->tokens_per_frame < 1))
        err = bad(lg, name, "has no valid \"tokens_per_frame\" (a whole number from 1) for its video token shards");
    else if (kind && !strcmp(kind, "text") && m->tokens_per_frame)
        err = bad(lg, name, "says \"kind\": \"text\" but has \"tokens_per_frame\"");
    else if (parse_fps(m, j) < 0)
        err = bad(lg, name, "has an \"fps\" that is not \"N/D\" (whole numbers, D from 1)");
    cJSON_Delete(j);
    return err;
}

int vttt_data_meta_read(vttt_data_meta *m, const char *path, const vttt_logger *lg) {
    memset(m, 0, sizeof *m);
    m->eot = -1;
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) return VTTT_EOF;
    char *buf = NULL;
    size_t n = 0;
    int err = vttt_file_read_all(path, VTTT_DATA_META_MAX_BYTES, &buf, &n, lg);
    if (!err) err = vttt_data_meta_parse(m, buf, n, path, lg);
    free(buf);
    return err;
}

int vttt_data_meta_path(char *out, size_t n, const char *file) {
    const char *slash = strrchr(file, '/');
    int len = slash ? (int)(slash - file + 1) : 0;
    int k = snprintf(out, n, "%.*smeta.json", len, file);
    return k < 0 || (size_t)k >= n ? VTTT_EINVAL : VTTT_OK;
}
