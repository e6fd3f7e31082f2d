/*
 * infer/serve_request.c — what requests carry and how answers go out:
 * the frame in a request body (PNG, or raw rgb24 with its size in the
 * query or headers), integer query values, the output format a client
 * asks for, and the reply helpers (JSON errors with the status codes the
 * README lists, bytes, JSON bodies).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "serve_internal.h"

/* Raw frames larger than this many pixels per side are refused outright. */
#define SERVE_MAX_PIXELS (4096 * 4096)

enum MHD_Result serve_reply(serve_req *r, struct MHD_Connection *c, int status, struct MHD_Response *resp) {
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_TOO_MANY_REQUESTS || status == MHD_HTTP_SERVICE_UNAVAILABLE)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (atomic_load(&r->srv->stopping)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    r->status = status;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result serve_reply_bytes(serve_req *r, struct MHD_Connection *c, int status, const char *type, void *data,
                                  size_t n) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, data, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    return serve_reply(r, c, status, resp);
}

enum MHD_Result serve_reply_json(serve_req *r, struct MHD_Connection *c, int status, cJSON *json) {
    char *s = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!s) return MHD_NO;
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return MHD_NO;
    }
    t[n] = '\n';
    t[n + 1] = 0;
    return serve_reply_bytes(r, c, status, "application/json", t, n + 1);
}

enum MHD_Result serve_reply_error(serve_req *r, struct MHD_Connection *c, int status, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *j = cJSON_CreateObject();
    if (j && !cJSON_AddStringToObject(j, "error", msg)) {
        cJSON_Delete(j);
        j = NULL;
    }
    return serve_reply_json(r, c, status, j);
}

static int parse_int(const char *s, long *v) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (!*s || *end || errno || x < 0) return -1;
    *v = x;
    return 0;
}

int serve_query_int(struct MHD_Connection *c, const char *name, long *v) {
    const char *s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (!s) return 1;
    return parse_int(s, v) ? -1 : 0;
}

int serve_output_format(struct MHD_Connection *c, char *msg, size_t msg_n) {
    const char *f = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "format");
    if (f) {
        if (!strcmp(f, "json")) return SERVE_OUT_JSON;
        if (!strcmp(f, "png")) return SERVE_OUT_PNG;
        if (!strcmp(f, "rgb24") || !strcmp(f, "raw")) return SERVE_OUT_RAW;
        snprintf(msg, msg_n, "format=%s is not one of png, json, rgb24", f);
        return -1;
    }
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    if (a && strstr(a, "application/json")) return SERVE_OUT_JSON;
    return SERVE_OUT_PNG;
}

/* A frame size from ?name= or the header X-Frame-<Name>: 1 when given
 * (in *v), 0 when absent, -1 malformed. */
static int frame_dim(struct MHD_Connection *c, const char *query, const char *header, long *v) {
    const char *s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, query);
    if (!s) s = MHD_lookup_connection_value(c, MHD_HEADER_KIND, header);
    if (!s) return 0;
    return parse_int(s, v) || *v <= 0 ? -1 : 1;
}

static int parse_raw(serve_req *r, struct MHD_Connection *c, int S, uint8_t **rgb, char *msg, size_t msg_n) {
    long w = 0, h = 0;
    int gw = frame_dim(c, "width", "X-Frame-Width", &w), gh = frame_dim(c, "height", "X-Frame-Height", &h);
    if (gw <= 0 || gh <= 0) {
        snprintf(msg, msg_n, "raw rgb24 frames need a positive width and height (?width=%d&height=%d or the "
                 "X-Frame-Width/X-Frame-Height headers)", S, S);
        return MHD_HTTP_BAD_REQUEST;
    }
    if (w > SERVE_MAX_PIXELS || h > SERVE_MAX_PIXELS || (size_t)w * (size_t)h * 3 != r->body.n) {
        snprintf(msg, msg_n, "raw rgb24 body has %zu bytes, but %ldx%ld rgb24 is %ld*%ld*3 bytes", r->body.n, w, h, w, h);
        return MHD_HTTP_BAD_REQUEST;
    }
    if (w != S || h != S) {
        snprintf(msg, msg_n, "frame is %ldx%ld; this model takes %dx%d frames (resize them, e.g. ffmpeg -vf scale=%d:%d)",
                 w, h, S, S, S, S);
        return MHD_HTTP_UNPROCESSABLE_CONTENT;
    }
    *rgb = malloc(r->body.n);
    if (!*rgb) {
        snprintf(msg, msg_n, "out of memory");
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    }
    memcpy(*rgb, r->body.p, r->body.n);
    return 0;
}

static void keep_msg(void *user, int level, const char *m) {
    if (level <= VTTT_LOG_WARNING) snprintf(user, 256, "%s", m);
}

static int parse_png(serve_req *r, int S, uint8_t **rgb, char *msg, size_t msg_n) {
    char why[256] = "";
    vttt_logger lg = {keep_msg, why, VTTT_LOG_WARNING};
    int w = 0, h = 0;
    /* At most S*S pixels: a larger image is refused from its header, before
     * anything is decompressed. */
    int err = vttt_png_decode((const uint8_t *)r->body.p, r->body.n, rgb, &w, &h, (int64_t)S * S, &lg);
    if (err == VTTT_EINVAL) {
        snprintf(msg, msg_n, "frame is too large (%s); this model takes %dx%d frames", why, S, S);
        return MHD_HTTP_UNPROCESSABLE_CONTENT;
    }
    if (err) {
        snprintf(msg, msg_n, "body is not a valid PNG (%s); send a %dx%d PNG or raw rgb24 with ?width=&height=",
                 why[0] ? why : vttt_strerror(err), S, S);
        return err == VTTT_ENOMEM ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_BAD_REQUEST;
    }
    if (w != S || h != S) {
        free(*rgb);
        *rgb = NULL;
        snprintf(msg, msg_n, "frame is %dx%d; this model takes %dx%d frames (resize them, e.g. ffmpeg -vf scale=%d:%d)",
                 w, h, S, S, S, S);
        return MHD_HTTP_UNPROCESSABLE_CONTENT;
    }
    return 0;
}

int serve_parse_frame(serve_req *r, struct MHD_Connection *c, int S, uint8_t **rgb, char *msg, size_t msg_n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    *rgb = NULL;
    const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    long dummy;
    int raw_size = frame_dim(c, "width", "X-Frame-Width", &dummy) || frame_dim(c, "height", "X-Frame-Height", &dummy);
    if (r->body.n == 0) {
        snprintf(msg, msg_n, "empty body: send the frame as a %dx%d PNG (Content-Type: image/png) or as raw rgb24 "
                 "with ?width=%d&height=%d", S, S, S, S);
        return MHD_HTTP_BAD_REQUEST;
    }
    if (raw_size) return parse_raw(r, c, S, rgb, msg, msg_n);
    int is_png = r->body.n >= 8 && !memcmp(r->body.p, png_sig, 8);
    if (!is_png && type && strncasecmp(type, "image/png", 9)) {
        if (!strncasecmp(type, "application/octet-stream", 24) || !strncasecmp(type, "image/x-rgb", 11))
            return parse_raw(r, c, S, rgb, msg, msg_n);
        snprintf(msg, msg_n, "Content-Type %s is not a frame: send image/png, or raw rgb24 with ?width=&height=", type);
        return MHD_HTTP_UNSUPPORTED_MEDIA_TYPE;
    }
    return parse_png(r, S, rgb, msg, msg_n);
}
