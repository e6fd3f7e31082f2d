/* Whole-file JSON reads with a size cap, JSON parsing of a buffer, and
 * atomic JSON writes (see json_file.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_file.h"
#include "token_shard.h"

/* "16 MiB", "64 KiB" or "100 bytes", for the too-large message. */
static void size_text(char *out, size_t n, size_t bytes) {
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) snprintf(out, n, "%zu MiB", bytes >> 20);
    else if (bytes >= 1024 && bytes % 1024 == 0) snprintf(out, n, "%zu KiB", bytes >> 10);
    else snprintf(out, n, "%zu bytes", bytes);
}

static void keep_message(void *user, int level, const char *msg) {
    if (level == VTTT_LOG_ERROR) snprintf(user, 512, "%s", msg);
}

int vttt_json_file_read(cJSON **out, const char *path, size_t max_bytes, const char *cannot_open, const char *hint,
                        const vttt_logger *lg) {
    *out = NULL;
    char *buf = NULL, why[512] = "";
    size_t n = 0;
    vttt_logger keep = {keep_message, why, VTTT_LOG_ERROR};
    int err = vttt_file_read_all(path, max_bytes, &buf, &n, &keep);
    if (err == VTTT_EFORMAT) {
        char size[32];
        size_text(size, sizeof size, max_bytes);
        vttt_log(lg, VTTT_LOG_ERROR, "%s: larger than %s %s", path, size, hint);
    } else if (err == VTTT_EIO) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: %s (%s)", path, cannot_open, why);
    }
    if (err) return err;
    err = vttt_json_parse(out, buf, n, path, hint, lg);
    free(buf);
    return err;
}

int vttt_json_file_write(cJSON *j, const char *path, const vttt_logger *lg) {
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return VTTT_ENOMEM;
    size_t n = strlen(text);
    text[n] = '\n'; /* the NUL becomes the final newline */
    int err = vttt_file_write_atomic(path, text, n + 1, lg);
    free(text);
    return err;
}

int64_t vttt_json_count(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    /* below 2^53: 2^53 + 1 reads as 2^53, so 2^53 itself cannot be trusted */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.0) || v->valuedouble >= 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return -1;
    return (int64_t)v->valuedouble;
}
