/*
 * tools/http_client.c — see http_client.h.
 */
#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int http_connect(int port, double timeout_s) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {(time_t)timeout_s, (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

void http_resp_free(http_resp *r) {
    free(r->body);
    memset(r, 0, sizeof *r);
}

const char *http_header(const http_resp *r, const char *name, char *buf, size_t n) {
    size_t len = strlen(name);
    for (const char *l = strstr(r->head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, name, len) || h[len] != ':') continue;
        h += len + 1;
        while (*h == ' ') h++;
        const char *e = strstr(h, "\r\n");
        size_t m = e ? (size_t)(e - h) : strlen(h);
        if (m >= n) m = n - 1;
        memcpy(buf, h, m);
        buf[m] = 0;
        return buf;
    }
    return NULL;
}

/* Reads the answer: the head up to the blank line, then Content-Length
 * bytes (or up to the end of the connection without one). */
static int read_response(int fd, http_resp *r) {
    char buf[65536];
    size_t have = 0;
    char *end = NULL;
    memset(r, 0, sizeof *r);
    while (!end) {
        if (have == sizeof buf - 1) return -1;
        ssize_t k = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        have += (size_t)k;
        buf[have] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    size_t hn = (size_t)(end - buf) + 2;
    snprintf(r->head, sizeof r->head, "%.*s", (int)hn, buf);
    if (sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) return -1;
    char v[64];
    long long len = http_header(r, "Content-Length", v, sizeof v) ? atoll(v) : -1;
    size_t extra = have - (hn + 2);
    size_t cap = len >= 0 ? (size_t)len : extra + 65536;
    r->body = malloc(cap + 1);
    if (!r->body) return -1;
    memcpy(r->body, end + 4, extra < cap ? extra : cap);
    r->n = extra < cap ? extra : cap;
    while (len < 0 || r->n < (size_t)len) {
        if (len < 0 && r->n == cap) {
            char *p = realloc(r->body, 2 * cap + 1);
            if (!p) return -1;
            r->body = p;
            cap *= 2;
        }
        ssize_t k = recv(fd, r->body + r->n, cap - r->n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (len < 0) break;
            return -1;
        }
        r->n += (size_t)k;
    }
    r->body[r->n] = 0;
    return 0;
}

int http_request(int fd, const char *method, const char *path, const char *headers, const void *body, size_t n,
                 http_resp *r) {
    char head[8192];
    int hn = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %zu\r\n\r\n", method,
                      path, headers ? headers : "", n);
    memset(r, 0, sizeof *r);
    if (hn < 0 || (size_t)hn >= sizeof head) return -1;
    /* One send for head and body: two would leave the second segment to
     * Nagle and the peer's delayed ACK (tens of ms on keep-alive). */
    char *msg = malloc((size_t)hn + n);
    if (!msg) return -1;
    memcpy(msg, head, (size_t)hn);
    if (n) memcpy(msg + hn, body, n);
    int err = send_all(fd, msg, (size_t)hn + n);
    free(msg);
    if (err) return -1;
    if (read_response(fd, r)) {
        r->status = 0;
        return -1;
    }
    return 0;
}

int http_do(int port, const char *method, const char *path, const char *headers, const void *body, size_t n,
            http_resp *r) {
    memset(r, 0, sizeof *r);
    int fd = http_connect(port, 60);
    if (fd < 0) return -1;
    int err = http_request(fd, method, path, headers, body, n, r);
    close(fd);
    return err;
}

int http_raw(int port, const void *bytes, size_t n, http_resp *r) {
    memset(r, 0, sizeof *r);
    int fd = http_connect(port, 30);
    if (fd < 0) return -1;
    int err = send_all(fd, bytes, n);
    if (!err) err = read_response(fd, r);
    close(fd);
    return err;
}
