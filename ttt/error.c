/* Error codes to words, and the logging function. */
#include <stdarg.h>
#include <stdio.h>

#include "ttt.h"

const char *vttt_strerror(int err) {
    switch (err) {
    case VTTT_OK: return "success";
    case VTTT_EINVAL: return "invalid argument";
    case VTTT_ENOMEM: return "out of memory";
    case VTTT_EIO: return "input/output error";
    case VTTT_EFORMAT: return "malformed data";
    case VTTT_ENODEV: return "no such device";
    case VTTT_ENAN: return "non-finite value in input";
    case VTTT_ENOTSUP: return "not supported";
    case VTTT_EAGAIN: return "need more input";
    case VTTT_EOF: return "end of stream";
    default: return "unknown error";
    }
}

static const char *level_name(int level) {
    switch (level) {
    case VTTT_LOG_ERROR: return "error";
    case VTTT_LOG_WARNING: return "warning";
    case VTTT_LOG_INFO: return "info";
    default: return "debug";
    }
}

void vttt_log(const vttt_logger *lg, int level, const char *fmt, ...) {
    int max_level = lg ? lg->level : 0;
    if (max_level < VTTT_LOG_WARNING) max_level = VTTT_LOG_WARNING;
    if (lg && lg->fn) max_level = lg->level;
    if (level > max_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (lg && lg->fn) {
        lg->fn(lg->user, level, msg);
        return;
    }
    fprintf(stderr, "vttt: %s: %s\n", level_name(level), msg);
}
