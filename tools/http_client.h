/*
 * tools/http_client.h — a small blocking HTTP/1.1 client over TCP for the
 * daemon's tests and load generator (tests/test_serve.c, bench_serve.c):
 * keep-alive connections, Content-Length bodies, a receive timeout so a
 * wedged server fails a test instead of hanging it. Not a general client:
 * no TLS, no redirects, no chunked request bodies.
 */
#ifndef VTTT_HTTP_CLIENT_H
#define VTTT_HTTP_CLIENT_H
#include <stddef.h>

typedef struct http_resp {
    int status;           /* 0: no answer (connection closed or timed out) */
    char head[4096];      /* status line and headers, NUL-terminated (cut at 4095 bytes) */
    char *body;           /* malloc'd, NUL after the last byte; NULL when empty */
    size_t n;
} http_resp;

/* A TCP connection to 127.0.0.1:port with a receive timeout of timeout_s
 * seconds; -1 on failure. */
int http_connect(int port, double timeout_s);
/* Sends one request on fd and reads its answer into *r (freed first by
 * the caller with http_resp_free). headers: extra header lines, each
 * ending in "\r\n", or NULL. Returns 0, or -1 when the connection failed
 * (r->status 0). */
int http_request(int fd, const char *method, const char *path, const char *headers, const void *body, size_t n,
                 http_resp *r);
/* One request on a fresh connection (closed afterwards). */
int http_do(int port, const char *method, const char *path, const char *headers, const void *body, size_t n,
            http_resp *r);
/* Sends raw bytes and reads whatever answer comes (for malformed input). */
int http_raw(int port, const void *bytes, size_t n, http_resp *r);
/* The value of header name in r (case-insensitive) copied into buf, or NULL. */
const char *http_header(const http_resp *r, const char *name, char *buf, size_t n);
void http_resp_free(http_resp *r);
#endif
