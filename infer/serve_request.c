/*
 * infer/serve_request.c — what a request means (serve_request.h), with
 * no sockets: framing headers, bearer token, declared size, the target's
 * path and query, route and method, query values, JSON and frame bodies.
 * Strict on purpose: a request that two HTTP parsers could read two ways
 * (duplicate or conflicting lengths, chunked bodies, NUL or control
 * characters in the path, signs or spaces in numbers, bytes after a JSON
 * body) is refused with 4xx rather than guessed at.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "encoder.h"
#include "json_file.h"
#include "serve_request.h"

/* Raw frames larger than this many pixels per side are refused outright. */
#define SERVE_MAX_PIXELS (4096 * 4096)

static const char routes_help[] = "GET /health, GET /metrics, POST /v1/streams, GET|DELETE /v1/streams/{id}, "
                                  "POST /v1/streams/{id}/frames, POST /v1/streams/{id}/snapshot";

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int refuse(serve_decision *d, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
    d->status = status;
    return status;
}

const char *serve_http_header(const serve_http *q, const char *name) {
    for (int i = 0; i < q->nheaders; i++)
        if (q->headers[i].name && !strcasecmp(q->headers[i].name, name)) return q->headers[i].value;
    return NULL;
}

static int header_count(const serve_http *q, const char *name) {
    int n = 0;
    for (int i = 0; i < q->nheaders; i++) n += q->headers[i].name && !strcasecmp(q->headers[i].name, name);
    return n;
}

/* A decimal number of at most 18 digits and nothing else (no sign, no
 * spaces): 0 and *v, or -1. */
static int parse_digits(const char *s, long long *v) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 18) return -1;
    long long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 0;
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0, n) into out (cap bytes with the NUL): the decoded
 * length, -1 for a bad escape or a NUL / control character (raw or
 * decoded), -2 when it does not fit. */
static long decode(const char *s, size_t n, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '%') {
            if (i + 2 >= n) return -1;
            int h1 = hexval((unsigned char)s[i + 1]), h2 = hexval((unsigned char)s[i + 2]);
            if (h1 < 0 || h2 < 0) return -1;
            ch = h1 * 16 + h2;
            i += 2;
        }
        if (ch < 0x20 || ch == 0x7f) return -1;
        if (k + 1 >= cap) return -2;
        out[k++] = (char)ch;
    }
    out[k] = 0;
    return (long)k;
}

/* The path part of the target, decoded into d->path: 0, or a refusal. A
 * path too long for d->path is kept cut, ending in "...", and so matches
 * no route. */
static int decode_path(const serve_http *q, serve_decision *d) {
    const char *t = q->target ? q->target : "";
    size_t n = q->target ? q->target_n : 0;
    const char *qm = memchr(t, '?', n);
    size_t pn = qm ? (size_t)(qm - t) : n;
    if (memchr(t, 0, n) || pn == 0 || t[0] != '/')
        return refuse(d, 400, "the request target must be a path starting with '/', without NUL bytes");
    long k = decode(t, pn, d->path, sizeof d->path);
    if (k == -2) {
        snprintf(d->path, sizeof d->path, "%.*s...", 64, t);
        for (char *p = d->path; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
        return 0;
    }
    if (k < 0)
        return refuse(d, 400, "the request path has a malformed %%-escape or a NUL or control character after decoding; "
                              "send plain paths such as /v1/streams/{id}/frames");
    return 0;
}

int serve_http_query(const serve_http *q, const char *name, char *buf, size_t n) {
    const char *t = q->target ? q->target : "";
    const char *end = t + (q->target ? q->target_n : 0);
    const char *p = memchr(t, '?', (size_t)(end - t));
    size_t ln = strlen(name);
    if (!p) return 0;
    for (p++; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *ne = eq ? eq : e;
        char key[64];
        long kn = decode(p, (size_t)(ne - p), key, sizeof key);
        if (kn == (long)ln && !memcmp(key, name, ln)) {
            if (!eq) return -1;
            return decode(eq + 1, (size_t)(e - eq - 1), buf, n) < 0 ? -1 : 1;
        }
        p = e + 1;
    }
    return 0;
}

/* Framing: at most one Content-Length, of plain digits, and no
 * Transfer-Encoding. A refusal here closes the connection: where the body
 * ends is not known. */
static int check_framing(const serve_http *q, serve_decision *d) {
    int ncl = header_count(q, "Content-Length"), nte = header_count(q, "Transfer-Encoding");
    const char *cl = serve_http_header(q, "Content-Length");
    long long n;
    d->close = 1;
    if (nte && ncl)
        return refuse(d, 400, "both Content-Length and Transfer-Encoding: a request must have exactly one body "
                              "length; send Content-Length only");
    if (nte)
        return refuse(d, 411, "Transfer-Encoding (chunked) request bodies are not accepted: send Content-Length "
                              "(bodies are at most --max-body bytes)");
    if (ncl > 1) return refuse(d, 400, "%d Content-Length headers: a request must have exactly one", ncl);
    if (cl && parse_digits(cl, &n)) return refuse(d, 400, "Content-Length '%.40s' is not a plain decimal number", cl);
    d->close = 0;
    return 0;
}

int serve_http_head(const serve_rules *rules, const serve_http *q, serve_decision *d) {
    memset(d, 0, sizeof *d);
    if (check_framing(q, d) || decode_path(q, d)) return d->status;
    if (strcmp(d->path, "/health") && !serve_auth_ok(serve_http_header(q, "Authorization"), rules->token))
        return refuse(d, 401, "missing or wrong bearer token: send the header 'Authorization: Bearer <token>'");
    long long n = 0;
    const char *cl = serve_http_header(q, "Content-Length");
    if (cl && !parse_digits(cl, &n) && (unsigned long long)n > rules->max_body)
        return refuse(d, 413, "request body of %lld bytes is over the limit of %zu bytes (--max-body)", n,
                      rules->max_body);
    return 0;
}

/* ---- route and method ----------------------------------------------------- */
static int not_allowed(serve_decision *d, const serve_http *q, const char *allow) {
    d->allow = allow;
    return refuse(d, 405, "method %.32s is not allowed on %s (allowed: %s)", q->method, d->path, allow);
}

/* "/v1/streams/{id}[rest]": a route for rest and the method, and the id
 * (16 lowercase hex characters; anything else is an unknown stream). */
static int route_stream(const serve_http *q, serve_decision *d, int get, int post) {
    const char *s = d->path + strlen("/v1/streams/");
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    const char *rest = s + n;
    if (!*rest || !strcmp(rest, "/")) {
        if (get) d->route = SERVE_ROUTE_INFO;
        else if (!strcmp(q->method, "DELETE")) d->route = SERVE_ROUTE_DELETE;
        else return not_allowed(d, q, "GET, DELETE");
    } else if (!strcmp(rest, "/frames")) {
        if (!post) return not_allowed(d, q, "POST");
        d->route = SERVE_ROUTE_FRAMES;
    } else if (!strcmp(rest, "/snapshot")) {
        if (!post) return not_allowed(d, q, "POST");
        d->route = SERVE_ROUTE_SNAPSHOT;
    } else {
        return refuse(d, 404, "no route for %.32s %s; the routes are %s", q->method, d->path, routes_help);
    }
    int ok = n == SERVE_ID_LEN;
    for (size_t i = 0; ok && i < n; i++) ok = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
    if (!ok)
        return refuse(d, 404, "no stream '%.*s' (closed, expired, or never opened): open one with POST /v1/streams",
                      (int)(n < 40 ? n : 40), s);
    memcpy(d->id, s, n);
    d->id[n] = 0;
    return 0;
}

static int route(const serve_http *q, serve_decision *d) {
    const char *m = q->method ? q->method : "";
    int get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), post = !strcmp(m, "POST");
    if (!strcmp(d->path, "/health")) return get ? (d->route = SERVE_ROUTE_HEALTH, 0) : not_allowed(d, q, "GET");
    if (!strcmp(d->path, "/metrics")) return get ? (d->route = SERVE_ROUTE_METRICS, 0) : not_allowed(d, q, "GET");
    if (!strcmp(d->path, "/v1/streams") || !strcmp(d->path, "/v1/streams/"))
        return post ? (d->route = SERVE_ROUTE_OPEN, 0) : not_allowed(d, q, "POST");
    if (!strncmp(d->path, "/v1/streams/", 12)) return route_stream(q, d, get, post);
    return refuse(d, 404, "no route for %.32s %s; the routes are %s", m, d->path, routes_help);
}

/* ---- query values and bodies ----------------------------------------------- */
/* ?name= as a plain decimal number in [lo, hi]: 1 when given (in *v), 0
 * when absent, -1 malformed or out of range. */
static int query_num(const serve_http *q, const char *name, const char *header, long lo, long hi, long *v) {
    char buf[32];
    int got = serve_http_query(q, name, buf, sizeof buf);
    const char *s = got > 0 ? buf : NULL;
    if (!got && header) s = serve_http_header(q, header);
    if (got < 0) return -1;
    if (!s) return 0;
    long long x;
    if (parse_digits(s, &x) || x < lo || x > hi) return -1;
    *v = (long)x;
    return 1;
}

static int output_format(const serve_http *q, serve_decision *d) {
    char f[16];
    int got = serve_http_query(q, "format", f, sizeof f);
    if (got < 0) return refuse(d, 400, "format= is malformed; use png, json or rgb24");
    if (got) {
        if (!strcmp(f, "json")) d->want = SERVE_OUT_JSON;
        else if (!strcmp(f, "png")) d->want = SERVE_OUT_PNG;
        else if (!strcmp(f, "rgb24") || !strcmp(f, "raw")) d->want = SERVE_OUT_RAW;
        else return refuse(d, 400, "format=%s is not one of png, json, rgb24", f);
        return 0;
    }
    const char *a = serve_http_header(q, "Accept");
    d->want = a && strstr(a, "application/json") ? SERVE_OUT_JSON : SERVE_OUT_PNG;
    return 0;
}

static void keep_msg(void *user, int level, const char *m) {
    if (level <= VTTT_LOG_WARNING) snprintf(user, 256, "%s", m);
}

/* POST /v1/streams: an empty body or exactly one empty JSON object (with
 * Content-Type: application/json) opens a fresh stream; any other body is
 * snapshot bytes to restore. */
static int open_body(const serve_http *q, serve_decision *d) {
    const char *type = serve_http_header(q, "Content-Type");
    int is_json = type && !strncasecmp(type, "application/json", 16);
    if (is_json && q->body_n) {
        char why[256] = "";
        vttt_logger lg = {keep_msg, why, VTTT_LOG_WARNING};
        cJSON *j = NULL;
        int ok = !vttt_json_parse(&j, (const char *)q->body, q->body_n, "body", "", &lg) && cJSON_IsObject(j) &&
                 !j->child;
        cJSON_Delete(j);
        if (!ok)
            return refuse(d, 400, "bad JSON body: POST /v1/streams takes an empty body, {} (and nothing after it) or "
                                  "snapshot bytes (Content-Type: application/octet-stream)");
    }
    d->snapshot_body = !is_json && q->body_n;
    return 0;
}

static int parse_raw(const serve_rules *rules, const serve_http *q, serve_decision *d) {
    long w = 0, h = 0;
    int S = rules->frame_size;
    int gw = query_num(q, "width", "X-Frame-Width", 1, SERVE_MAX_PIXELS, &w);
    int gh = query_num(q, "height", "X-Frame-Height", 1, SERVE_MAX_PIXELS, &h);
    if (gw <= 0 || gh <= 0)
        return refuse(d, 400, "raw rgb24 frames need a width and height in [1, %d] (?width=%d&height=%d or the "
                              "X-Frame-Width/X-Frame-Height headers)", SERVE_MAX_PIXELS, S, S);
    if ((size_t)w * (size_t)h * 3 != q->body_n)
        return refuse(d, 400, "raw rgb24 body has %zu bytes, but %ldx%ld rgb24 is %ld*%ld*3 bytes", q->body_n, w, h, w,
                      h);
    if (w != S || h != S)
        return refuse(d, 422, "frame is %ldx%ld; this model takes %dx%d frames (resize them, e.g. ffmpeg -vf scale=%d:%d)",
                      w, h, S, S, S, S);
    d->rgb = malloc(q->body_n);
    if (!d->rgb) return refuse(d, 503, "out of memory");
    memcpy(d->rgb, q->body, q->body_n);
    return 0;
}

static int parse_png(const serve_rules *rules, const serve_http *q, serve_decision *d) {
    char why[256] = "";
    vttt_logger lg = {keep_msg, why, VTTT_LOG_WARNING};
    int w = 0, h = 0, S = rules->frame_size;
    /* At most S*S pixels: a larger image is refused from its header, before
     * anything is decompressed. */
    int err = vttt_png_decode(q->body, q->body_n, &d->rgb, &w, &h, (int64_t)S * S, &lg);
    if (err == VTTT_EINVAL) return refuse(d, 422, "frame is too large (%s); this model takes %dx%d frames", why, S, S);
    if (err)
        return refuse(d, err == VTTT_ENOMEM ? 503 : 400,
                      "body is not a valid PNG (%s); send a %dx%d PNG or raw rgb24 with ?width=&height=",
                      why[0] ? why : vttt_strerror(err), S, S);
    if (w != S || h != S) {
        free(d->rgb);
        d->rgb = NULL;
        return refuse(d, 422, "frame is %dx%d; this model takes %dx%d frames (resize them, e.g. ffmpeg -vf scale=%d:%d)",
                      w, h, S, S, S, S);
    }
    return 0;
}

/* The frame in the body: PNG, or raw rgb24 when a width or height is
 * given (query or X-Frame-* headers) or the type says raw. */
static int frame_body(const serve_rules *rules, const serve_http *q, serve_decision *d) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int S = rules->frame_size;
    const char *type = serve_http_header(q, "Content-Type");
    char v[32];
    int raw_size = serve_http_query(q, "width", v, sizeof v) || serve_http_query(q, "height", v, sizeof v) ||
                   serve_http_header(q, "X-Frame-Width") || serve_http_header(q, "X-Frame-Height");
    if (q->body_n == 0)
        return refuse(d, 400, "empty body: send the frame as a %dx%d PNG (Content-Type: image/png) or as raw rgb24 "
                              "with ?width=%d&height=%d", S, S, S, S);
    if (raw_size) return parse_raw(rules, q, d);
    int is_png = q->body_n >= 8 && !memcmp(q->body, png_sig, 8);
    if (!is_png && type && strncasecmp(type, "image/png", 9)) {
        if (!strncasecmp(type, "application/octet-stream", 24) || !strncasecmp(type, "image/x-rgb", 11))
            return parse_raw(rules, q, d);
        return refuse(d, 415, "Content-Type %.64s is not a frame: send image/png, or raw rgb24 with ?width=&height=",
                      type);
    }
    return parse_png(rules, q, d);
}

static int frames_request(const serve_rules *rules, const serve_http *q, serve_decision *d) {
    long horizon = 1;
    if (query_num(q, "horizon", NULL, 1, rules->max_horizon, &horizon) < 0)
        return refuse(d, 400, "horizon must be a plain integer in [1, %d] (--max-horizon)", rules->max_horizon);
    d->horizon = (int)horizon;
    if (output_format(q, d)) return d->status;
    return rules->frame_size > 0 ? frame_body(rules, q, d) : 0;
}

int serve_http_decide(const serve_rules *rules, const serve_http *q, serve_decision *d) {
    if (serve_http_head(rules, q, d)) return d->status;
    if (q->body_n > rules->max_body)
        return refuse(d, 413, "request body is over the limit of %zu bytes (--max-body)", rules->max_body);
    if (route(q, d)) return d->status;
    if (d->route == SERVE_ROUTE_OPEN) return open_body(q, d);
    if (d->route == SERVE_ROUTE_FRAMES) return frames_request(rules, q, d);
    return 0;
}

void serve_decision_clear(serve_decision *d) {
    free(d->rgb);
    d->rgb = NULL;
}
