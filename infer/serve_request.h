/*
 * infer/serve_request.h — what an HTTP request to `vttt serve` means,
 * decided without sockets or libmicrohttpd: the request's framing
 * headers, the bearer token, the declared body size, the request target
 * (percent-decoding, control characters), the route and method, the query
 * values and the body (JSON when opening a stream, the frame as PNG or
 * raw rgb24). serve_server.c / serve_routes.c feed it what libmicrohttpd
 * received; a fuzz target (tests/fuzz/) can feed it arbitrary bytes:
 *
 *     serve_rules rules = {.frame_size = 32, .max_horizon = 16, .max_body = 1 << 20};
 *     serve_header h[] = {{"Content-Type", "image/png"}};
 *     serve_http q = {"POST", url, url_n, h, 1, body, body_n};
 *     serve_decision d;
 *     serve_http_decide(&rules, &q, &d);   // d.status: 0 accepted, else 4xx + d.msg
 *     serve_decision_clear(&d);
 *
 * What it does not decide (it needs the daemon's state): whether the
 * model is loaded (503), whether a stream id is open (404 for a well-formed
 * id), full queues and stream limits (429/503). Nothing here allocates
 * except the decoded frame (d.rgb), which serve_decision_clear frees; no
 * input makes it abort, read out of bounds or answer 5xx other than 503
 * for an allocation failure.
 */
#ifndef VTTT_SERVE_REQUEST_H
#define VTTT_SERVE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#define SERVE_ID_LEN 16   /* stream ids: hex characters */

typedef struct serve_rules {
    int frame_size;       /* S of the model's S x S frames; 0: not loaded (frames are not decoded) */
    int max_horizon;      /* --max-horizon */
    size_t max_body;      /* --max-body, bytes */
    const char *token;    /* bearer token, or NULL: none required */
} serve_rules;

typedef struct serve_header {
    const char *name, *value;   /* as received, NUL-terminated; names compare case-insensitively */
} serve_header;

typedef struct serve_http {
    const char *method;
    const char *target;         /* the request target as on the wire: percent-encoded path, '?' query */
    size_t target_n;            /* its bytes (a NUL among them is refused) */
    const serve_header *headers;
    int nheaders;               /* every header line, duplicates included */
    const uint8_t *body;        /* NULL when there is none (yet) */
    size_t body_n;
} serve_http;

typedef enum {
    SERVE_ROUTE_NONE = 0,
    SERVE_ROUTE_HEALTH,     /* GET /health */
    SERVE_ROUTE_METRICS,    /* GET /metrics */
    SERVE_ROUTE_OPEN,       /* POST /v1/streams */
    SERVE_ROUTE_INFO,       /* GET /v1/streams/{id} */
    SERVE_ROUTE_DELETE,     /* DELETE /v1/streams/{id} */
    SERVE_ROUTE_FRAMES,     /* POST /v1/streams/{id}/frames */
    SERVE_ROUTE_SNAPSHOT    /* POST /v1/streams/{id}/snapshot */
} serve_route_id;

enum { SERVE_OUT_PNG = 0, SERVE_OUT_JSON = 1, SERVE_OUT_RAW = 2 };

typedef struct serve_decision {
    int status;                 /* 0: accepted; else the HTTP status to refuse with */
    char msg[512];              /* why (status != 0), naming the input and what to do */
    const char *allow;          /* 405: the Allow header's value */
    int close;                  /* refused because the body's framing cannot be trusted: close after answering */
    serve_route_id route;
    char path[256];             /* the decoded path (cut), for messages */
    char id[SERVE_ID_LEN + 1];  /* INFO, DELETE, FRAMES, SNAPSHOT: a well-formed id */
    int horizon;                /* FRAMES: in [1, max_horizon] */
    int want;                   /* FRAMES: SERVE_OUT_* */
    int snapshot_body;          /* OPEN: the body is snapshot bytes to restore */
    uint8_t *rgb;               /* FRAMES with frame_size > 0: the decoded frame (S, S, 3), malloc'd */
} serve_decision;

/* What the head alone decides, before any body byte is read: the framing
 * (duplicate or conflicting Content-Length, Transfer-Encoding -> 400/411,
 * close), the bearer token (401; not for /health), the declared body size
 * (413) and a target that is not a clean path (400, close). d->status 0:
 * read the body. Returns d->status. */
int serve_http_head(const serve_rules *rules, const serve_http *q, serve_decision *d);
/* Everything: serve_http_head, then route and method (404, 405), query
 * values (400), the body (400, 413, 415, 422). Returns d->status. */
int serve_http_decide(const serve_rules *rules, const serve_http *q, serve_decision *d);
void serve_decision_clear(serve_decision *d);

/* 1 when authorization (an Authorization header's value, or NULL) is
 * "Bearer <token>" or no token is required (token NULL); constant time in
 * the token's length (serve_auth.c). */
int serve_auth_ok(const char *authorization, const char *token);

/* The value of header name (the first such line), or NULL. */
const char *serve_http_header(const serve_http *q, const char *name);
/* The value of query parameter name (percent-decoded, '+' kept) into buf:
 * 1 when present, 0 absent, -1 malformed or too long. */
int serve_http_query(const serve_http *q, const char *name, char *buf, size_t n);

#endif
