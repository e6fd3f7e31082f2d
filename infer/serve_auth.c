/*
 * infer/serve_auth.c — where the daemon listens and who may talk to it:
 * "HOST:PORT" parsing (IPv4 or bracketed IPv6 literals, "localhost"), the
 * loopback check that decides whether a token is required, and the bearer
 * token comparison (constant time in the token's length).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve_internal.h"

static int parse_port(const char *s, int *port) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < 0 || v > 65535) return -1;
    *port = (int)v;
    return 0;
}

int serve_parse_listen(const char *s, struct sockaddr_storage *addr, socklen_t *len, int *loopback,
                       const vttt_logger *lg) {
    char host[256];
    const char *colon = NULL;
    memset(addr, 0, sizeof *addr);
    if (!s || !*s) goto bad;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof host) goto bad;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = 0;
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host) goto bad;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    int port;
    if (parse_port(colon + 1, &port)) goto bad;
    if (!strcasecmp(host, "localhost")) strcpy(host, "127.0.0.1");
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof *a4;
        *loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof *a6;
        *loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
        return 0;
    }
bad:
    vttt_log(lg, VTTT_LOG_ERROR,
             "serve: listen address '%s' is not HOST:PORT with a numeric IPv4/IPv6 address or localhost "
             "(e.g. 127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080)",
             s ? s : "(null)");
    return VTTT_EINVAL;
}

int serve_auth_ok(const char *h, const char *token) {
    if (!token) return 1;
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    while (*h == ' ') h++;
    size_t n = strlen(token), m = strlen(h);
    unsigned diff = (unsigned)(n != m);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)token[i] ^ (unsigned char)(i < m ? h[i] : 0);
    return diff == 0;
}
