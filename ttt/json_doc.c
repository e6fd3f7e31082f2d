/* One JSON document from a buffer (see json_doc.h). */
#include <string.h>

#include "json_doc.h"

int vttt_json_parse(cJSON **out, const char *buf, size_t n, const char *name, const char *hint,
                    const vttt_logger *lg) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(buf, n, &end, 0);
    size_t at = end && end >= buf && end <= buf + n ? (size_t)(end - buf) : 0;
    if (*out) { /* one document: only white space may follow it */
        while (at < n && strchr(" \t\r\n", buf[at]) && buf[at]) at++;
        if (at == n) return VTTT_OK;
        cJSON_Delete(*out);
        *out = NULL;
    }
    vttt_log(lg, VTTT_LOG_ERROR, "%s: not valid JSON (error near byte %zu of %zu) %s", name, at, n, hint);
    return VTTT_EFORMAT;
}
