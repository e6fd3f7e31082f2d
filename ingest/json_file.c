/* Whole-file JSON reads with a size cap and atomic JSON writes (see
 * json_file.h). */
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

int vttt_json_file_read(cJSON **out, const char *path, size_t max_bytes, const char *cannot_open, const char *hint,
                        const vttt_logger *lg) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: %s", path, cannot_open);
        return VTTT_EIO;
    }
    char *buf = malloc(max_bytes + 1);
    size_t n = buf ? fread(buf, 1, max_bytes + 1, f) : 0;
    fclose(f);
    if (!buf) return VTTT_ENOMEM;
    if (n > max_bytes) {
        char size[32];
        size_text(size, sizeof size, max_bytes);
        free(buf);
        vttt_log(lg, VTTT_LOG_ERROR, "%s: larger than %s %s", path, size, hint);
        return VTTT_EFORMAT;
    }
    *out = cJSON_ParseWithLength(buf, n);
    free(buf);
    if (!*out) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: not valid JSON %s", path, hint);
        return VTTT_EFORMAT;
    }
    return VTTT_OK;
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
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.0) || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return -1;
    return (int64_t)v->valuedouble;
}
